"""What every command module of the CLI shares: the session of one command and stderr."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:  # imported by the command that runs (see cli.py)
    from reconciler.session import Session


def err(message: str) -> None:
    typer.echo(message, err=True)


def session_for(
    config: Path, var: list[str] | None, var_file: list[Path] | None, lock_timeout: float = 0.0
) -> Session:
    """The session of one command; notes (an old state's upgrade) go to stderr."""
    from reconciler.session import Session

    return Session(
        config, var=var or (), var_files=var_file or (), lock_timeout=lock_timeout, note=err
    )
