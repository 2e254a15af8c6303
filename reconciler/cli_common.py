"""What every command module of the CLI shares: the session of one command and stderr."""

from __future__ import annotations

import sys
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


def plan_printer(
    form: opt.PlanFormat = opt.PlanFormat.text, to_stderr: bool = False
) -> Callable[[Plan], None]:
    """Print a plan as text (in colour on a terminal), Markdown, or its JSON document
    (no MAC: see ``plan --out``); on stderr when stdout carries another document."""
    from reconciler.plan.render import render_plan
    from reconciler.terminal import color_enabled, colorize_plan

    def markdown(plan: Plan) -> str:
        from reconciler.plan.render_markdown import render_markdown  # --format markdown only

        return render_markdown(plan)

    render = {"json": lambda p: p.dumps(), "markdown": markdown}.get(form, render_plan)
    stream = sys.stderr if to_stderr else sys.stdout
    colored = form == opt.PlanFormat.text and color_enabled(stream)

    def show(plan: Plan) -> None:
        text = render(plan)
        typer.echo(colorize_plan(text) if colored else text, nl=False, err=to_stderr, color=colored)

    return show


def confirm(
    question: str = "Do you want to perform these actions?", to_stderr: bool = False
) -> bool:
    typer.echo(f"\n{question} Only 'yes' will be accepted.", err=to_stderr)
    answer = typer.prompt("  Enter a value", default="", show_default=False, err=to_stderr)
    return answer.strip() == "yes"
