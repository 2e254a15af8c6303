"""``certform apply``: the plan, the question, the progress, the summary (or, with
``--json``, the steps and their results on stdout and everything else on stderr)."""

from __future__ import annotations

import sys

import typer

from reconciler import cli_format, cli_json, terminal
from reconciler import cli_options as opt
from reconciler.cli_common import confirm, err, plan_printer, session_for
from reconciler.cli_options import DEFAULT_CONFIG


def register(app: typer.Typer) -> None:
    app.command()(apply)


def apply(
    plan_file: opt.PlanFile = None,
    config: opt.Config = DEFAULT_CONFIG,
    auto_approve: opt.AutoApprove = False,
    json_output: opt.ApplyJson = False,
    var: opt.Var = None,
    var_file: opt.VarFile = None,
    lock_timeout: opt.LockTimeout = 0.0,
    parallelism: opt.Parallelism = 10,
    force: opt.Force = False,
    replace: opt.Replace = None,
) -> None:
    """Issue, renew, deploy and remove until the world matches the configuration."""
    from reconciler.progress import ApplyProgress
    from reconciler.session import ApplyHooks

    stream = sys.stderr if json_output else sys.stdout
    progress = ApplyProgress(stream, quiet=terminal.settings.quiet)
    # Without a terminal nobody can answer: the session then refuses unless approved.
    asking = (lambda: confirm(to_stderr=json_output)) if sys.stdin.isatty() else None
    # -q without a question to answer: the summary (or JSON) is the whole output.
    silent = terminal.settings.quiet and (auto_approve or plan_file is not None)
    hooks = ApplyHooks(
        (lambda plan: None) if silent else plan_printer(to_stderr=json_output),
        progress,
        asking,
        starting=lambda plan: progress.start(c.address for c in plan.changes),
    )
    with progress:
        outcome = session_for(config, var, var_file, lock_timeout).apply(
            plan_file, auto_approve=auto_approve, force=force, parallelism=parallelism,
            hooks=hooks, replace=replace or (),
        )  # fmt: skip
    if json_output:
        typer.echo(cli_json.dumps(cli_json.apply_document(outcome)), nl=False)
        if not outcome.ok:
            raise typer.Exit(1)
        return
    if outcome.result is None:
        if outcome.from_saved_plan:
            typer.echo("No changes.")
        return
    if not outcome.ok:
        err(cli_format.apply_summary(outcome))
        raise typer.Exit(1)
    typer.echo(cli_format.apply_summary(outcome))
