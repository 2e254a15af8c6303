"""The ``state`` commands and ``force-unlock``: looking at and repairing the recorded
state without touching the world.  Formatting only; the work is the session's."""

from __future__ import annotations

import json

import typer

from reconciler import cli_options as opt
from reconciler.cli_common import session_for
from reconciler.cli_group import CertformGroup
from reconciler.cli_options import DEFAULT_CONFIG

state_app = typer.Typer(
    cls=CertformGroup,
    help="Inspect and refactor the recorded state (nothing outside it is touched).",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    """Add ``force-unlock`` and the ``state`` group to the main application."""
    app.command("force-unlock")(force_unlock)
    app.add_typer(state_app, name="state")


def force_unlock(
    lock_id: opt.LockId,
    config: opt.Config = DEFAULT_CONFIG,
    var: opt.Var = None,
    var_file: opt.VarFile = None,
) -> None:
    """Release the state lock a dead run left behind (its ID is in the 'locked by'
    message); never needed for a run that ended, even by a crash, on this machine."""
    typer.echo(session_for(config, var, var_file).force_unlock(lock_id))


@state_app.command("list")
def state_list(
    config: opt.Config = DEFAULT_CONFIG,
    json_output: opt.Json = False,
    var: opt.Var = None,
    var_file: opt.VarFile = None,
) -> None:
    """Every address the state records, one a line (authorities, certificates, bindings)."""
    from reconciler.state_view import FORMAT_VERSION, render_list

    rows = session_for(config, var, var_file).state_list()
    if json_output:
        typer.echo(json.dumps({"format_version": FORMAT_VERSION, "resources": rows}, indent=2))
    else:
        typer.echo(render_list(rows), nl=False)


@state_app.command("show")
def state_show(
    address: opt.StateAddress,
    config: opt.Config = DEFAULT_CONFIG,
    json_output: opt.Json = False,
    var: opt.Var = None,
    var_file: opt.VarFile = None,
) -> None:
    """What the state records about one address (never a private key)."""
    from reconciler.state_view import FORMAT_VERSION, render_details

    record = session_for(config, var, var_file).state_show(address)
    if json_output:
        typer.echo(json.dumps({"format_version": FORMAT_VERSION, **record}, indent=2))
    else:
        typer.echo(render_details(record), nl=False)


@state_app.command("migrate")
def state_migrate(
    source: opt.MigrateFrom,
    from_master_key_file: opt.MigrateMasterKey = None,
    config: opt.Config = DEFAULT_CONFIG,
    var: opt.Var = None,
    var_file: opt.VarFile = None,
    lock_timeout: opt.LockTimeout = 0.0,
) -> None:
    """Copy a SQLite state into the configured (empty) backend: lineage, serial,
    history and audit chain intact, keys re-wrapped; verified after the copy."""
    session = session_for(config, var, var_file, lock_timeout)
    report = session.state_migrate(source, from_master_key_file)
    rows = ", ".join(f"{count} {table}" for table, count in report.rows.items() if count)
    typer.echo(f"Copied {report.source} to {report.target}: lineage {report.lineage}, "
               f"serial {report.serial}; {rows or 'no rows'}.")  # fmt: skip
    typer.echo(f"Verified: every row read back, audit chain intact ({report.audit.records} "
               "records).")  # fmt: skip


@state_app.command("mv")
def state_mv(
    source: opt.StateAddress,
    target: opt.StateTarget,
    config: opt.Config = DEFAULT_CONFIG,
    var: opt.Var = None,
    var_file: opt.VarFile = None,
    lock_timeout: opt.LockTimeout = 0.0,
) -> None:
    """Rename a certificate in the state without re-issuing it (for a renamed config
    entry; a `moved` block in the config does the same through plan and apply)."""
    typer.echo(session_for(config, var, var_file, lock_timeout).state_mv(source, target))


@state_app.command("rm")
def state_rm(
    addresses: opt.StateAddresses,
    config: opt.Config = DEFAULT_CONFIG,
    var: opt.Var = None,
    var_file: opt.VarFile = None,
    lock_timeout: opt.LockTimeout = 0.0,
) -> None:
    """Forget resources without touching the world (their keys are erased from the
    state); the next plan issues them anew if they are still declared."""
    for line in session_for(config, var, var_file, lock_timeout).state_rm(addresses):
        typer.echo(line)
