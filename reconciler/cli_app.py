"""The ``certform`` command line: options (``cli_options.py``) in, text (``cli_format.py``)
out; the work is a ``Session``'s (``session.py``).  Here: wiring and exit codes.
``cli.py`` is the entry point in front of it (``--version`` without typer).

Exit codes: 0 success (and, with --detailed-exitcode, no changes), 1 error,
2 changes or drift present (--detailed-exitcode only).  Usage errors exit 1 so
that 2 keeps meaning "changes" in CI scripts.
"""

from __future__ import annotations

import gc
import sys
from pathlib import Path
from typing import Annotated

import typer

try:  # typer >= 0.16 vendors click
    from typer._click.exceptions import ClickException
except ImportError:  # pragma: no cover
    from click import ClickException

from reconciler import (
    __version__,
    cli_apply,
    cli_format,
    cli_iam,
    cli_import,
    cli_inspect,
    cli_json,
    cli_report,
    cli_ssh,
    cli_start,
    cli_state,
)
from reconciler import cli_options as opt
from reconciler.cli_common import confirm as _confirm
from reconciler.cli_common import err as _err
from reconciler.cli_common import plan_printer as _plan_printer
from reconciler.cli_common import session_for as _session
from reconciler.cli_group import HELP_OPTIONS, CertformGroup
from reconciler.errors import CertformError, ConfigError
from reconciler.hardening import disable_core_dumps

# The session (configuration models, state, engine) is imported by the command
# that runs, not here: ``certform --version`` and ``--help`` start in a fraction
# of the time, and no command pays for another's modules.
DEFAULT_CONFIG = opt.DEFAULT_CONFIG

app = typer.Typer(
    name="certform",
    cls=CertformGroup,
    help="TLS certificates as code: declare CAs, certificates and bindings; plan; apply.",
    no_args_is_help=True,
    context_settings={"help_option_names": HELP_OPTIONS},
    pretty_exceptions_enable=False,
)
cli_state.register(app)
cli_iam.register(app)
cli_start.register(app)
cli_report.register(app)
cli_import.register(app)
cli_ssh.register(app)


@app.command()
def validate(
    config: opt.Config = DEFAULT_CONFIG,
    json_output: opt.ValidateJson = False,
    var: opt.Var = None,
    var_file: opt.VarFile = None,
) -> None:
    """Check the configuration; print every problem with file, line and field."""
    if not json_output:
        typer.echo(cli_format.validate_text(_session(config, var, var_file).validate()))
        return
    try:
        document = cli_json.validate_document(_session(config, var, var_file).validate())
    except ConfigError as exc:
        document = cli_json.validate_document(None, exc.issues)
    typer.echo(cli_json.dumps(document), nl=False)
    if not document["valid"]:
        raise typer.Exit(1)


@app.command()
def plan(
    config: opt.Config = DEFAULT_CONFIG,
    out: opt.PlanOut = None,
    json_output: opt.PlanJson = False,
    output_format: opt.PlanFormatOption = opt.PlanFormat.text,
    detailed_exitcode: opt.DetailedExitcode = False,
    at: opt.PlanAt = None,
    var: opt.Var = None,
    var_file: opt.VarFile = None,
    lock_timeout: opt.LockTimeout = 0.0,
    replace: opt.Replace = None,
) -> None:
    """Show what apply would change; nothing is changed."""
    # With --out the plan is saved with its MAC (after it was shown); --json has none.
    form = opt.PlanFormat.json if json_output else output_format
    session = _session(config, var, var_file, lock_timeout)
    the_plan = session.plan(at, out=out, show=_plan_printer(form), replace=replace or ())
    if out is not None and form == opt.PlanFormat.text:
        typer.echo(f"\nSaved the plan to {out}. Apply it with: certform apply {out}")
    if detailed_exitcode and (the_plan.has_changes or the_plan.endpoint_drift):
        raise typer.Exit(2)


# Registered here so that help lists the commands in the order of a workflow.
cli_apply.register(app)
cli_inspect.register(app)


@app.command()
def revoke(
    name: opt.RevokeName,
    reason: opt.Reason = "unspecified",
    config: opt.Config = DEFAULT_CONFIG,
    var: opt.Var = None,
    var_file: opt.VarFile = None,
    lock_timeout: opt.LockTimeout = 0.0,
    yes: opt.Yes = False,
) -> None:
    """Revoke a certificate (at its ACME CA, or for a private CA's CRL); asks on a terminal."""
    if not yes and sys.stdin.isatty() and not _confirm(f"Revoke {name} ({reason})?"):
        _err("Revoke cancelled: nothing was changed.")
        raise typer.Exit(1)
    typer.echo(_session(config, var, var_file, lock_timeout).revoke(name, reason).message)


@app.command()
def schema(out: opt.SchemaOut = Path("-")) -> None:
    """Write the JSON Schema of the configuration (generated from the models)."""
    from reconciler.schema import schema_text, write_schema

    if str(out) == "-":
        typer.echo(schema_text(), nl=False)
        return
    write_schema(out)
    typer.echo(f"Wrote {out}")


@app.command()
def export(
    name: opt.ExportName,
    passphrase_file: opt.PassphraseFile,
    fmt: opt.ExportFormat = "pem",
    out: opt.ExportOut = Path("."),
    config: opt.Config = DEFAULT_CONFIG,
    var: opt.Var = None,
    var_file: opt.VarFile = None,
    lock_timeout: opt.LockTimeout = 0.0,
) -> None:
    """Export a certificate declared 'exportable: true' with its chain and its private
    key encrypted with a passphrase; audited."""
    result = _session(config, var, var_file, lock_timeout).export(name, passphrase_file, fmt, out)
    for file in result.files:
        typer.echo(f"Wrote {file.path} ({file.what})")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"certform {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print version.")
    ] = False,
    quiet: opt.Quiet = False,
    verbose: opt.Verbose = 0,
    no_color: opt.NoColor = False,
) -> None:
    """certform: TLS certificates as code."""
    from reconciler import logs, terminal

    terminal.settings.quiet = quiet
    terminal.settings.no_color = no_color
    logs.configure(logs.level_for(quiet, verbose))
    if (unknown := logs.unknown_level()) is not None:
        _err(f"Warning: {logs.LEVEL_ENV}={unknown} is not a level (debug, info, warning, "
             "error); using warning.")  # fmt: skip


def main() -> None:
    """Entry point: map every certform error to exit 1 with a clear message."""
    # certform is a short-lived process building many small acyclic objects; the
    # cyclic collector only costs time here (~15% of a 10,000-certificate plan).
    gc.disable()
    disable_core_dumps()  # a core would hold the master key and private keys
    try:
        code = app(standalone_mode=False, prog_name="certform")
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
