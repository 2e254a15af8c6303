"""The ``certform`` command line: options (``cli_options.py``) in, text (``cli_format.py``)
out; the work is a ``Session``'s (``session.py``).  Here: wiring and exit codes.

Exit codes: 0 success (and, with --detailed-exitcode, no changes), 1 error,
2 changes or drift present (--detailed-exitcode only).  Usage errors exit 1 so
that 2 keeps meaning "changes" in CI scripts.
"""

from __future__ import annotations

import gc
import json
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
    cli_format,
    cli_iam,
    cli_import,
    cli_report,
    cli_start,
    cli_state,
)
from reconciler import cli_options as opt
from reconciler.cli_common import confirm as _confirm
from reconciler.cli_common import err as _err
from reconciler.cli_common import plan_printer as _plan_printer
from reconciler.cli_common import session_for as _session
from reconciler.errors import CertformError, ConfigError
from reconciler.hardening import disable_core_dumps

# The session (configuration models, state, engine) is imported by the command
# that runs, not here: ``certform --version`` and ``--help`` start in a fraction
# of the time, and no command pays for another's modules.
DEFAULT_CONFIG = opt.DEFAULT_CONFIG

app = typer.Typer(
    name="certform",
    help="TLS certificates as code: declare CAs, certificates and bindings; plan; apply.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
cli_state.register(app)
cli_iam.register(app)
cli_start.register(app)
cli_report.register(app)
cli_import.register(app)


@app.command()
def validate(
    config: opt.Config = DEFAULT_CONFIG, var: opt.Var = None, var_file: opt.VarFile = None
) -> None:
    """Check the configuration; print every problem with file, line and field."""
    typer.echo(cli_format.validate_text(_session(config, var, var_file).validate()))


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
    if detailed_exitcode and the_plan.has_changes:
        raise typer.Exit(2)


@app.command()
def apply(
    plan_file: opt.PlanFile = None,
    config: opt.Config = DEFAULT_CONFIG,
    auto_approve: opt.AutoApprove = False,
    var: opt.Var = None,
    var_file: opt.VarFile = None,
    lock_timeout: opt.LockTimeout = 0.0,
    parallelism: opt.Parallelism = 10,
    force: opt.Force = False,
    replace: opt.Replace = None,
) -> None:
    """Issue, renew, deploy and remove until the world matches the configuration."""
    from reconciler.session import ApplyHooks

    # Without a terminal nobody can answer: the session then refuses unless approved.
    hooks = ApplyHooks(_plan_printer(), typer.echo, _confirm if sys.stdin.isatty() else None)
    outcome = _session(config, var, var_file, lock_timeout).apply(
        plan_file, auto_approve=auto_approve, force=force, parallelism=parallelism, hooks=hooks,
        replace=replace or (),
    )  # fmt: skip
    if outcome.result is None:
        if outcome.from_saved_plan:
            typer.echo("No changes.")
        return
    if not outcome.ok:
        _err(cli_format.apply_summary(outcome))
        raise typer.Exit(1)
    typer.echo(cli_format.apply_summary(outcome))


@app.command()
def show(
    config: opt.Config = DEFAULT_CONFIG,
    json_output: opt.Json = False,
    tag: opt.Tag = None,
    var: opt.Var = None,
    var_file: opt.VarFile = None,
    lock_timeout: opt.LockTimeout = 0.0,
) -> None:
    """Inventory: authorities and certificates, serials, expiry, where bound, tags."""
    rows = _session(config, var, var_file, lock_timeout).show(tag)
    if json_output:
        typer.echo(json.dumps(rows, indent=2))
    else:
        from reconciler.inventory import render_inventory

        render_inventory(rows)


@app.command()
def check(
    config: opt.Config = DEFAULT_CONFIG,
    within: opt.Within = None,
    at: opt.CheckAt = None,
    json_output: opt.CheckJson = False,
    output_format: opt.Format = opt.CheckFormat.text,
    textfile: opt.Textfile = None,
    cloudwatch: opt.CloudWatch = False,
    tag: opt.Tag = None,
    var: opt.Var = None,
    var_file: opt.VarFile = None,
    lock_timeout: opt.LockTimeout = 0.0,
) -> None:
    """For scheduled jobs: expiring certificates, ACM renewal health, what TLS endpoints
    really serve; Prometheus gauges, CloudWatch metrics and expiry notifications. Exit 0
    all well, 1 error (including a notification or metric not delivered), 2 something
    needs attention."""
    session = _session(config, var, var_file, lock_timeout)
    publishing = session.cloudwatch_settings(cloudwatch)
    result = session.check(within, at, tag, textfile)
    fmt = opt.CheckFormat.json if json_output else output_format
    if fmt is opt.CheckFormat.prometheus:
        from reconciler.monitoring.prometheus import render_prometheus

        typer.echo(render_prometheus(result.metrics, result.now), nl=False)
    elif fmt is opt.CheckFormat.text:
        typer.echo(cli_format.check_text(result), nl=False)
    # The stdout sink must not corrupt JSON or Prometheus output: it goes to stderr then.
    reports = session.notify(result, sys.stdout if fmt is opt.CheckFormat.text else sys.stderr)
    metrics = session.publish_metrics(result, publishing)
    if fmt is opt.CheckFormat.json:
        typer.echo(cli_format.check_json(result, reports, metrics))
    text = fmt is opt.CheckFormat.text
    for line in cli_format.notification_lines(reports, text):
        _err(line)
    for line in cli_format.notification_lines([metrics] if metrics else [], text, "CloudWatch"):
        _err(line)
    if status := result.exit_status([*(reports or ()), *([metrics] if metrics else [])]):
        raise typer.Exit(status)


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
def audit(
    config: opt.Config = DEFAULT_CONFIG,
    verify: opt.Verify = False,
    json_output: opt.Json = False,
    var: opt.Var = None,
    var_file: opt.VarFile = None,
    lock_timeout: opt.LockTimeout = 0.0,
) -> None:
    """The audit log: who did what, when, with what result; --verify checks its chain."""
    session = _session(config, var, var_file, lock_timeout)
    if verify:  # needs the master key: the chain is keyed (see state/audit_chain.py)
        verification = session.verify_audit()
        typer.echo(cli_format.audit_verification(verification, json_output), nl=False)
        if not verification.intact:
            raise typer.Exit(1)
    else:
        typer.echo(cli_format.audit_log(session.audit_log(), json_output), nl=False)


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
