"""``certform init`` and ``certform graph``: formatting only (see ``starter.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from reconciler import cli_options as opt
from reconciler.cli_common import session_for
from reconciler.cli_options import DEFAULT_CONFIG


def register(app: typer.Typer) -> None:
    app.command("init")(init)
    app.command("graph")(graph)


def init(
    directory: Annotated[
        Path, typer.Argument(help="Where to write certform.yaml (created if missing).")
    ] = Path("."),
) -> None:
    """Write a starter certform.yaml (a private CA, one certificate, files) that
    applies as is, with its JSON Schema beside it; never over an existing file."""
    from reconciler.starter import write_starter

    for path in write_starter(directory):
        typer.echo(f"Wrote {path}")
    where = "" if directory == Path(".") else f" -c {directory}"
    typer.echo(f"Next: certform plan{where}, then certform apply{where}")


def graph(
    config: opt.Config = DEFAULT_CONFIG,
    var: opt.Var = None,
    var_file: opt.VarFile = None,
) -> None:
    """Print the CA -> certificate -> binding graph in Graphviz dot (pipe to `dot -Tsvg`)."""
    from reconciler.starter import dot_graph

    typer.echo(dot_graph(session_for(config, var, var_file).validated), nl=False)
