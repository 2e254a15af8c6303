"""The ``certform`` command line: thin wiring from options to the engine.

Exit codes: 0 success (and, with --detailed-exitcode, no changes), 1 error,
2 changes or drift present (--detailed-exitcode only).  Usage errors exit 1 so
that 2 keeps meaning "changes" in CI scripts.
"""

from __future__ import annotations

import contextlib
import gc
import json
import math
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

try:  # typer >= 0.16 vendors click
    from typer._click.exceptions import ClickException
except ImportError:  # pragma: no cover
    from click import ClickException

from reconciler import __version__
from reconciler.config.loader import load_var_file, parse_var_assignments
from reconciler.config.validate import ValidatedConfig, load_and_validate
from reconciler.engine.apply import check_applicable, run_apply
from reconciler.engine.planning import plan_from
from reconciler.engine.saved_plan import prepare_state_for_saved_plan, read_saved_plan, save_plan
from reconciler.engine.workspace import open_store
from reconciler.errors import CertformError, ConfigError
from reconciler.hardening import disable_core_dumps
from reconciler.model.records import RecordedState
from reconciler.plan.render import render_plan
from reconciler.policy.recheck import recheck_plan, require_force
from reconciler.schema import DEFAULT_SCHEMA_PATH, write_schema
from reconciler.state.sqlite import SqliteStateStore
from reconciler.timeparse import parse_at, parse_within

app = typer.Typer(
    name="certform",
    help="TLS certificates as code: declare CAs, certificates and bindings; plan; apply.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ConfigOption = Annotated[
    Path,
    typer.Option("--config", "-c", help="Config file or directory of *.yaml files."),
]
VarOption = Annotated[
    list[str] | None,
    typer.Option("--var", help="Template variable key=value (repeatable)."),
]
VarFileOption = Annotated[
    list[Path] | None,
    typer.Option("--var-file", help="YAML file of template variables (repeatable)."),
]
MAX_LOCK_TIMEOUT = 86400.0


def _lock_timeout(value: float) -> float:
    """Bounded, so that ``nan`` or ``inf`` cannot make a job wait forever."""
    if not math.isfinite(value) or not 0 <= value <= MAX_LOCK_TIMEOUT:
        raise typer.BadParameter(f"expected seconds between 0 and {MAX_LOCK_TIMEOUT:.0f}")
    return value


LockTimeoutOption = Annotated[
    float,
    typer.Option(
        "--lock-timeout",
        help="Seconds to wait for the state lock (default: fail fast).",
        callback=_lock_timeout,
    ),
]
DEFAULT_CONFIG = Path("certform.yaml")


class CheckFormat(StrEnum):
    """What ``certform check`` prints on stdout."""

    text = "text"
    json = "json"
    prometheus = "prometheus"


def _err(message: str) -> None:
    typer.echo(message, err=True)


def _fail(message: str) -> NoReturn:
    _err(f"Error: {message}")
    raise typer.Exit(1)


def _variables(pairs: list[str] | None, files: list[Path] | None) -> dict[str, Any]:
    variables: dict[str, Any] = {}
    for path in files or []:
        variables.update(load_var_file(path))
    variables.update(parse_var_assignments(pairs or []))
    return variables


def _load(config: Path, var: list[str] | None, var_file: list[Path] | None) -> ValidatedConfig:
    return load_and_validate(config, _variables(var, var_file))


def _pem_reader(store: SqliteStateStore) -> Any:
    from reconciler.engine.planning import pem_reader

    return pem_reader(store)


@contextlib.contextmanager
def _existing_state(
    validated: ValidatedConfig, lock_timeout: float, operation: str
) -> Iterator[tuple[SqliteStateStore, RecordedState]]:
    """The state, opened and locked for ``operation``, for commands that act on what
    was issued (revoke, export); no state yet is an error, never a new state."""
    store = open_store(validated.config.state, validated.root, validated.config.providers)
    if not store.exists:
        _fail(f"there is no state yet: nothing was issued, nothing to {operation}")
    store.lock(operation, lock_timeout)
    try:
        store.open()
        yield store, store.read()
    finally:
        store.unlock()
        store.close()


def _read_state(store: SqliteStateStore, lock_timeout: float, operation: str) -> RecordedState:
    """Read the state under its lock; a state that does not exist yet is empty."""
    if not store.exists:
        return RecordedState(lineage="", serial=0)
    store.lock(operation, lock_timeout)
    try:
        store.open()
        return store.read()
    finally:
        store.unlock()


@app.command()
def validate(
    config: ConfigOption = DEFAULT_CONFIG,
    var: VarOption = None,
    var_file: VarFileOption = None,
) -> None:
    """Check the configuration; print every problem with file, line and field."""
    validated = _load(config, var, var_file)
    desired = validated.desired
    typer.echo(
        f"Configuration is valid: {len(desired.authorities)} authorities, "
        f"{len(desired.certificates)} certificates, {len(desired.bindings)} bindings."
    )


@app.command()
def plan(
    config: ConfigOption = DEFAULT_CONFIG,
    out: Annotated[Path | None, typer.Option("--out", help="Save the plan for apply.")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False,
    detailed_exitcode: Annotated[
        bool,
        typer.Option("--detailed-exitcode", help="Exit 0 no changes, 1 error, 2 changes/drift."),
    ] = False,
    at: Annotated[
        str | None,
        typer.Option("--at", help="Plan as if the clock said this (ISO-8601 or +61d)."),
    ] = None,
    var: VarOption = None,
    var_file: VarFileOption = None,
    lock_timeout: LockTimeoutOption = 0.0,
) -> None:
    """Show what apply would change; nothing is changed."""
    now = datetime.now(UTC)
    try:
        when = parse_at(at, now) if at else now
    except ValueError as exc:
        _fail(str(exc))
    validated = _load(config, var, var_file)
    store = open_store(validated.config.state, validated.root, validated.config.providers)
    if out is not None:
        prepare_state_for_saved_plan(store, lock_timeout)
    recorded = _read_state(store, lock_timeout, "plan")
    change = store.key_store_change if store.exists else None
    if store.exists and store.upgrade_pending:
        _err(
            "Note: this state was written by an earlier certform; its records are "
            "authenticated (tamper-evident) from the next apply on."
        )
    the_plan = plan_from(
        validated, recorded, str(store.path.resolve()), when, change, _pem_reader(store)
    )
    if json_output:
        typer.echo(the_plan.dumps(), nl=False)
    else:
        typer.echo(render_plan(the_plan), nl=False)
    if out is not None:
        save_plan(the_plan, store, out)  # with its MAC; --json on stdout has none
        if not json_output:
            typer.echo(f"\nSaved the plan to {out}. Apply it with: certform apply {out}")
    if detailed_exitcode and the_plan.has_changes:
        raise typer.Exit(2)


@app.command()
def apply(
    plan_file: Annotated[
        Path | None, typer.Argument(help="A plan saved by 'plan --out'; applied exactly.")
    ] = None,
    config: ConfigOption = DEFAULT_CONFIG,
    auto_approve: Annotated[
        bool, typer.Option("--auto-approve", help="Do not ask for confirmation.")
    ] = False,
    var: VarOption = None,
    var_file: VarFileOption = None,
    lock_timeout: LockTimeoutOption = 0.0,
    parallelism: Annotated[
        int,
        typer.Option("--parallelism", min=1, max=100, help="ACME orders placed at the same time."),
    ] = 10,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Apply a plan that exceeds policy.change_limit or rotates a CA."
        ),
    ] = False,
) -> None:
    """Issue, renew, deploy and remove until the world matches the configuration."""
    validated = _load(config, var, var_file)
    store = open_store(validated.config.state, validated.root, validated.config.providers)
    # A saved plan is verified (MAC, state, config root, serial, guards, policy, force)
    # before the lock is taken: a refused one changes nothing at all.
    saved = read_saved_plan(plan_file, store, validated, force) if plan_file else None
    if saved is None and not auto_approve and not sys.stdin.isatty():
        # Decide before touching the state: a CI job without approval changes nothing.
        recorded = _read_state(store, lock_timeout, "plan")
        preview = plan_from(
            validated,
            recorded,
            str(store.path.resolve()),
            datetime.now(UTC),
            certificate_pem=_pem_reader(store),
        )
        typer.echo(render_plan(preview), nl=False)
        _fail("refusing to apply without confirmation: no terminal to ask; pass --auto-approve")
    # The lock comes before the state is read or created, so that of two applies
    # racing on a new directory only one creates the state (the other fails naming
    # the holder, or waits and then plans against what the first one made).  Only
    # an interactive apply of a new state waits for the "yes" before it creates
    # anything at all (the lock file included).
    locked_early = store.exists or auto_approve or saved is not None
    if locked_early:
        store.lock("apply", lock_timeout)
    existed = store.exists
    try:
        if existed:
            store.open()
        recorded = store.read()
        if saved is not None:
            check_applicable(saved, recorded)
            the_plan = saved
        else:
            change = store.key_store_change if existed else None
            the_plan = plan_from(
                validated,
                recorded,
                str(store.path.resolve()),
                datetime.now(UTC),
                change,
                _pem_reader(store),
            )
            typer.echo(render_plan(the_plan), nl=False)
        # Guards, policy and --force reasons once more, under the lock.
        the_plan = recheck_plan(the_plan, recorded, validated.config.policy)
        if not the_plan.has_changes and not recorded.interrupted:
            if saved is not None:
                typer.echo("No changes.")
            return
        require_force(the_plan, force)
        if saved is None and not auto_approve and not _confirm():
            _fail("apply cancelled; nothing was changed")
        if not locked_early:  # another apply may have created the state meanwhile
            store.lock("apply", lock_timeout)
            recorded = store.read()
            check_applicable(the_plan, recorded)
        store.open()  # creates a new state, under the lock, exclusively
        result = run_apply(store, the_plan, recorded, _progress, parallelism, root=validated.root)
    finally:
        store.unlock()
        store.close()
    if not result.ok:
        _err(
            f"\nApply incomplete: {len(result.done)} done, {len(result.failed)} failed, "
            f"{len(result.skipped)} skipped. Fix the errors above and run apply again."
        )
        raise typer.Exit(1)
    typer.echo(f"\nApply complete: {len(result.done)} change(s) made.")


def _progress(message: str) -> None:
    typer.echo(message)


def _confirm() -> bool:
    typer.echo("\nDo you want to perform these actions? Only 'yes' will be accepted.")
    answer = typer.prompt("  Enter a value", default="", show_default=False)
    return answer.strip() == "yes"


@app.command()
def show(
    config: ConfigOption = DEFAULT_CONFIG,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    tag: Annotated[
        list[str] | None,
        typer.Option("--tag", help="Only certificates with this tag (key=value; repeatable)."),
    ] = None,
    var: VarOption = None,
    var_file: VarFileOption = None,
    lock_timeout: LockTimeoutOption = 0.0,
) -> None:
    """Inventory: authorities and certificates, serials, expiry, where bound, tags."""
    from reconciler.inventory import inventory, render_inventory

    validated = _load(config, var, var_file)
    store = open_store(validated.config.state, validated.root, validated.config.providers)
    recorded = _read_state(store, lock_timeout, "show")
    rows = inventory(validated.desired, recorded, datetime.now(UTC))
    wanted = _tag_filter(tag)
    rows["certificates"] = [c for c in rows["certificates"] if _tagged(c["tags"], wanted)]
    if json_output:
        typer.echo(json.dumps(rows, indent=2))
    else:
        render_inventory(rows)


@app.command()
def check(
    config: ConfigOption = DEFAULT_CONFIG,
    within: Annotated[
        str | None,
        typer.Option(
            "--within",
            help="Report what expires within this duration (default: what is past its "
            "own renewal time).",
        ),
    ] = None,
    at: Annotated[
        str | None,
        typer.Option("--at", help="Check as if the clock said this (ISO-8601 or +61d)."),
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Same as --format json.")] = False,
    output_format: Annotated[
        CheckFormat,
        typer.Option(
            "--format",
            help="text, json, or prometheus (node_exporter textfile format) on stdout.",
        ),
    ] = CheckFormat.text,
    textfile: Annotated[
        Path | None,
        typer.Option(
            "--textfile",
            help="Also write the Prometheus gauges to this file, atomically (for "
            "node_exporter's textfile collector: name it *.prom).",
        ),
    ] = None,
    tag: Annotated[
        list[str] | None,
        typer.Option("--tag", help="Only certificates with this tag (key=value; repeatable)."),
    ] = None,
    var: VarOption = None,
    var_file: VarFileOption = None,
    lock_timeout: LockTimeoutOption = 0.0,
) -> None:
    """For scheduled jobs: expiring certificates, ACM renewal health, what TLS endpoints
    really serve; Prometheus gauges and expiry notifications. Exit 0 all well, 1 error
    (including a notification not delivered), 2 something needs attention."""
    from reconciler.engine.check import acm_findings, endpoint_findings, expiry_findings
    from reconciler.engine.watches import endpoint_watches
    from reconciler.monitoring.notifications import notify
    from reconciler.monitoring.prometheus import (
        certificate_metrics,
        render_prometheus,
        write_textfile,
    )

    wanted = _tag_filter(tag)

    try:
        window = parse_within(within) if within else None
        now = parse_at(at, datetime.now(UTC)) if at else datetime.now(UTC)
    except ValueError as exc:
        _fail(str(exc))
    validated = _load(config, var, var_file)
    store = open_store(validated.config.state, validated.root, validated.config.providers)
    recorded = _read_state(store, lock_timeout, "check")
    desired = validated.desired
    renew_before = {c.address: c.renew_before for c in desired.certificates} | {
        a.address: a.renew_before for a in desired.authorities
    }
    findings = expiry_findings(recorded, now, window, renew_before)
    if any(r.external_id for r in recorded.certificates.values()):
        from reconciler.providers.aws.acm import describe_for_check

        findings += acm_findings(recorded, describe_for_check)
    watches = endpoint_watches(desired, recorded, store, validated.config.endpoints, validated.root)
    findings += endpoint_findings(watches, now, window)
    if wanted:  # only certificates carry tags: the filter keeps theirs
        chosen = {c.address for c in desired.certificates if _tagged(c.tags, wanted)}
        findings = [f for f in findings if f.address in chosen]
    problems = [f for f in findings if f.severity == "problem"]
    fmt = CheckFormat.json if json_output else output_format
    metrics = [m for m in certificate_metrics(recorded, desired) if _tagged(m.tags, wanted)]
    if textfile is not None:
        try:
            write_textfile(textfile, render_prometheus(metrics, now))
        except OSError as exc:
            _fail(f"cannot write {textfile}: {exc.strerror or exc}")
    if fmt is CheckFormat.prometheus:
        typer.echo(render_prometheus(metrics, now), nl=False)
    elif fmt is CheckFormat.text:
        for finding in findings:
            typer.echo(f"{finding.severity.upper():8} {finding.address}: {finding.message}")
        checked = len(recorded.certificates) + len(recorded.authorities) + len(watches)
        typer.echo(f"Checked {checked} resources: {len(problems)} need attention.")
    reports = []
    notifications = validated.config.notifications
    if notifications is not None:
        # The stdout sink must not corrupt JSON or Prometheus output: it goes to stderr then.
        out = sys.stdout if fmt is CheckFormat.text else sys.stderr
        reports = notify(notifications, metrics, now, root=validated.root, out=out)
    if fmt is CheckFormat.json:
        document: dict[str, Any] = {"findings": [f.to_json() for f in findings]}
        if notifications is not None:
            document["notifications"] = [r.to_json() for r in reports]
        typer.echo(json.dumps(document, indent=2))
    for report in reports:
        if not report.ok or (fmt is CheckFormat.text and report.sent):
            _err(f"Notifications: {report.summary()}")
    if any(not report.ok for report in reports):
        raise typer.Exit(1)
    if problems:
        raise typer.Exit(2)


def _tag_filter(pairs: list[str] | None) -> dict[str, str]:
    wanted: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            _fail(f"--tag takes key=value, got {pair!r}")
        wanted[key] = value
    return wanted


def _tagged(tags: Any, wanted: dict[str, str]) -> bool:
    return all((tags or {}).get(key) == value for key, value in wanted.items())


@app.command("import")
def import_(
    name: Annotated[str, typer.Argument(help="Name for the certificate in the config.")],
    cert: Annotated[Path, typer.Option("--cert", help="PEM certificate (may include chain).")],
    key: Annotated[Path, typer.Option("--key", help="PEM private key (unencrypted).")],
    chain: Annotated[Path | None, typer.Option("--chain", help="PEM chain.")] = None,
    issuer: Annotated[
        str, typer.Option("--issuer", help="Name of the `imported` authority to use.")
    ] = "imported",
) -> None:
    """Check a certificate that already runs somewhere and print the YAML that adopts it."""
    import yaml

    from reconciler.config.imported import ImportError_, load_imported

    try:
        material = load_imported(
            Path.cwd(), str(cert), str(chain) if chain else None, str(key), None
        )
    except ImportError_ as exc:
        _fail(str(exc))
    entry: dict[str, Any] = {"issuer": issuer, "names": material.names, "certificate": str(cert)}
    if chain:
        entry["chain"] = str(chain)
    entry["private_key"] = str(key)
    document = {"authorities": {issuer: {"type": "imported"}}, "certificates": {name: entry}}
    typer.echo(
        f"# {cert}: serial {material.serial}, {material.key_algorithm}, expires "
        f"{material.certificate.not_valid_after_utc:%Y-%m-%d}. Add to your config "
        "(keep the key file out of git, or use private_key_env):"
    )
    typer.echo(yaml.safe_dump(document, sort_keys=False), nl=False)


@app.command()
def revoke(
    name: Annotated[
        str, typer.Argument(help="A certificate, or authority.NAME for a subordinate CA.")
    ],
    reason: Annotated[
        str,
        typer.Option(
            "--reason",
            help="RFC 5280 reason: unspecified, keyCompromise, superseded, "
            "cessationOfOperation, affiliationChanged, ...",
        ),
    ] = "unspecified",
    config: ConfigOption = DEFAULT_CONFIG,
    var: VarOption = None,
    var_file: VarFileOption = None,
    lock_timeout: LockTimeoutOption = 0.0,
) -> None:
    """Revoke a certificate (at its ACME CA, or recorded for a private CA's CRL);
    the next apply issues a new one."""
    from reconciler.acme.client import REVOCATION_REASONS
    from reconciler.engine.revoke import revoke_certificate

    if reason not in REVOCATION_REASONS:  # before the state is opened: nothing changes
        _fail(
            f"unknown revocation reason {reason!r}; expected one of: "
            + ", ".join(REVOCATION_REASONS)
        )
    validated = _load(config, var, var_file)
    with _existing_state(validated, lock_timeout, "revoke") as (store, recorded):
        typer.echo(revoke_certificate(store, recorded, name, reason, validated.root))


@app.command()
def schema(
    out: Annotated[
        Path, typer.Option("--out", help="Where to write the JSON Schema ('-' for stdout).")
    ] = DEFAULT_SCHEMA_PATH,
) -> None:
    """Write the JSON Schema of the configuration (generated from the models)."""
    if str(out) == "-":
        from reconciler.schema import schema_text

        typer.echo(schema_text(), nl=False)
        return
    write_schema(out)
    typer.echo(f"Wrote {out}")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"certform {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print version.")
    ] = False,
) -> None:
    """certform: TLS certificates as code."""


def main() -> None:
    """Entry point: map every certform error to exit 1 with a clear message."""
    # certform is a short-lived process building many small acyclic objects; the
    # cyclic collector only costs time here (~15% of a 10,000-certificate plan).
    gc.disable()
    disable_core_dumps()  # a core would hold the master key and private keys
    try:
        code = app(standalone_mode=False)
    except ConfigError as exc:
        _err(f"Error: the configuration is invalid ({len(exc.issues)} problem(s)):")
        for issue in exc.issues:
            _err(f"  {issue}")
        sys.exit(1)
    except CertformError as exc:
        _err(f"Error: {exc}")
        sys.exit(1)
    except typer.Abort:
        _err("Aborted; nothing was changed.")
        sys.exit(1)
    except ClickException as exc:
        exc.show()
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


# audit command (registered by audit_cli)
def audit(
    config: ConfigOption = DEFAULT_CONFIG,
    verify: Annotated[
        bool, typer.Option("--verify", help="Check the hash chain: exit 1 if edited or deleted.")
    ] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    var: VarOption = None,
    var_file: VarFileOption = None,
    lock_timeout: LockTimeoutOption = 0.0,
) -> None:
    """The audit log: who did what, when, with what result; --verify checks its chain."""
    from reconciler.audit_cli import audit_command

    audit_command(config, verify, json_output, var, var_file, lock_timeout)


app.command("audit")(audit)


# export command (the work is in reconciler.engine.export)
def export(
    name: Annotated[str, typer.Argument(help="The certificate to export.")],
    passphrase_file: Annotated[
        Path,
        typer.Option(
            "--passphrase-file",
            help="File holding the passphrase that encrypts the key (one line, 8+ characters).",
        ),
    ],
    fmt: Annotated[
        str, typer.Option("--format", help="pem (NAME.crt, .chain.pem, .root.pem, .key) or pkcs12.")
    ] = "pem",
    out: Annotated[
        Path, typer.Option("--out", help="Directory to write into (existing files are kept).")
    ] = Path("."),
    config: ConfigOption = DEFAULT_CONFIG,
    var: VarOption = None,
    var_file: VarFileOption = None,
    lock_timeout: LockTimeoutOption = 0.0,
) -> None:
    """Export a certificate declared 'exportable: true' with its chain and its private
    key encrypted with a passphrase; audited."""
    from reconciler.engine.export import FORMATS, export_certificate, read_passphrase

    validated = _load(config, var, var_file)
    # Bad input is refused before the state is even opened: nothing in it changes.
    if fmt not in FORMATS:
        _fail(f"unknown export format {fmt!r}; expected one of: {', '.join(FORMATS)}")
    read_passphrase(passphrase_file)
    with _existing_state(validated, lock_timeout, "export") as (store, recorded):
        files = export_certificate(
            store, recorded, validated.config.certificates, name, passphrase_file, fmt, out
        )
    for file in files:
        typer.echo(f"Wrote {file.path} ({file.what})")


app.command("export")(export)
