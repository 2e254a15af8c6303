"""The ``state`` commands and ``force-unlock``: looking at and repairing the recorded
state without touching the world.  Formatting only; the work is the session's."""

from __future__ import annotations

import typer

from reconciler import cli_options as opt
from reconciler.cli_common import session_for
from reconciler.session import DEFAULT_CONFIG

state_app = typer.Typer(
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
