"""``certform import``: adopt what already runs.  Four forms, one command:

* ``import NAME --cert F --key F [--chain F]`` checks one certificate on disk
  and prints the YAML adopting it;
* ``import --scan DIR`` proposes YAML for every certificate/key pair under DIR;
* ``import --from-aws --region R`` proposes YAML for every ACM certificate of R
  and the places serving it;
* ``import ADDRESS --acm-arn ARN [--key F]`` records an ACM certificate the
  configuration declares (and the AWS bindings serving it) in the state.

Option parsing and output only; the work is the session's (``adopt/``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from reconciler import cli_options as opt
from reconciler.cli_common import session_for
from reconciler.cli_options import DEFAULT_CONFIG
from reconciler.errors import UsageError

if TYPE_CHECKING:  # imported by the command that runs (see cli.py)
    from reconciler.adopt.acm_record import Adopted
    from reconciler.session import Session

ImportAddress = Annotated[
    str | None,
    typer.Argument(
        help="Name of the certificate (NAME or certificate.NAME): for --cert, the name "
        "in the printed YAML; for --acm-arn, the declared certificate to record.",
        show_default=False,
    ),
]
Cert = Annotated[
    Path | None, typer.Option("--cert", help="PEM certificate (may include the chain).")
]
Key = Annotated[
    Path | None,
    typer.Option(
        "--key",
        help="PEM private key (unencrypted); with --acm-arn, the key of "
        "a certificate imported into ACM.",
    ),
]
Chain = Annotated[Path | None, typer.Option("--chain", help="PEM chain.")]
Issuer = Annotated[str, typer.Option("--issuer", help="Name of the `imported` authority to use.")]
Scan = Annotated[
    Path | None,
    typer.Option(
        "--scan",
        help="Propose YAML for every certificate/key pair found under "
        "this directory (PEM or DER, by content).",
        show_default=False,
    ),
]
AcmArn = Annotated[
    str | None,
    typer.Option(
        "--acm-arn",
        help="Record this ACM certificate as ADDRESS (declared in "
        "the config) without re-issuing it.",
        show_default=False,
    ),
]
FromAws = Annotated[
    bool,
    typer.Option(
        "--from-aws",
        help="Propose YAML for every ACM certificate of --region and where it is in use.",
    ),
]
Region = Annotated[
    str | None, typer.Option("--region", help="AWS region for --from-aws.", show_default=False)
]


def register(app: typer.Typer) -> None:
    """Add ``import`` to the main application."""
    app.command("import")(import_)


def _refuse(mode: str, given: dict[str, object]) -> None:
    extra = [flag for flag, value in given.items() if value not in (None, False)]
    if extra:
        raise UsageError(f"{mode} does not take {', '.join(extra)}")


def import_(
    name: ImportAddress = None,
    cert: Cert = None,
    key: Key = None,
    chain: Chain = None,
    issuer: Issuer = "imported",
    scan: Scan = None,
    acm_arn: AcmArn = None,
    from_aws: FromAws = False,
    region: Region = None,
    config: opt.Config = DEFAULT_CONFIG,
    var: opt.Var = None,
    var_file: opt.VarFile = None,
    lock_timeout: opt.LockTimeout = 0.0,
) -> None:
    """Adopt certificates that already run: print the YAML for files on disk (NAME
    --cert/--key, or --scan DIR) or for ACM (--from-aws), or record an ACM certificate
    the config declares (ADDRESS --acm-arn) so that nothing is re-issued."""
    session = session_for(config, var, var_file, lock_timeout)
    if scan is not None:
        _refuse(
            "import --scan",
            {
                "NAME": name,
                "--cert": cert,
                "--key": key,
                "--chain": chain,
                "--acm-arn": acm_arn,
                "--from-aws": from_aws,
            },
        )
        typer.echo(session.scan_for_import(scan, issuer).text(), nl=False)
    elif from_aws:
        _refuse(
            "import --from-aws",
            {"NAME": name, "--cert": cert, "--key": key, "--chain": chain, "--acm-arn": acm_arn},
        )
        if not region:
            raise UsageError("import --from-aws needs --region (e.g. --region eu-west-1)")
        typer.echo(session.aws_for_import(region).text(), nl=False)
    elif acm_arn is not None:
        _refuse("import --acm-arn", {"--cert": cert, "--chain": chain})
        if not name:
            raise UsageError(
                "import --acm-arn needs the certificate's address: "
                "certform import certificate.NAME --acm-arn ARN"
            )
        _print_adopted(session.adopt_acm(name, acm_arn, key))
    else:
        if not (name and cert and key):
            raise UsageError(
                "import needs NAME --cert F --key F, --scan DIR, --from-aws --region R, "
                "or ADDRESS --acm-arn ARN (see certform import --help)"
            )
        _print_checked(session, name, cert, key, chain, issuer)


def _print_checked(
    session: Session, name: str, cert: Path, key: Path, chain: Path | None, issuer: str
) -> None:
    import yaml

    from reconciler import cli_format

    result = session.import_certificate(name, cert, key, chain, issuer)
    typer.echo(cli_format.import_header(result))
    typer.echo(yaml.safe_dump(result.document, sort_keys=False), nl=False)


def _print_adopted(adopted: Adopted) -> None:
    typer.echo(
        f"Imported {adopted.address} from {adopted.arn} ({adopted.kind}, serial "
        f"{adopted.serial[:16]}…, expires {adopted.not_after:%Y-%m-%d}); "
        "nothing was re-issued."
    )
    for address in adopted.bound:
        typer.echo(f"  {address}: already serves it; recorded")
    for line in adopted.left:
        typer.echo(f"  {line}")
