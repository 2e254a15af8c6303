"""What every command module of the CLI shares: the session of one command and stderr."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from reconciler import cli_options as opt

if TYPE_CHECKING:  # imported by the command that runs (see cli.py)
    from reconciler.plan.model import Plan
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


def plan_printer(form: opt.PlanFormat = opt.PlanFormat.text) -> Callable[[Plan], None]:
    """Print a plan as text, Markdown, or its JSON document (no MAC: see ``plan --out``)."""
    from reconciler.plan.render import render_plan
    from reconciler.plan.render_markdown import render_markdown

    render = {"json": lambda p: p.dumps(), "markdown": render_markdown}.get(form, render_plan)
    return lambda p: typer.echo(render(p), nl=False)


def confirm(question: str = "Do you want to perform these actions?") -> bool:
    typer.echo(f"\n{question} Only 'yes' will be accepted.")
    answer = typer.prompt("  Enter a value", default="", show_default=False)
    return answer.strip() == "yes"
