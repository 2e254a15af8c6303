"""``certform audit``: print the audit log, or verify its hash chain.

Reading the log needs no master key: records hold who, when, what and the
result, never key material.  ``--verify`` exits 0 when the chain is intact and
1 with one line per problem when a record was edited or deleted.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from reconciler.state import audit_chain

COLUMNS = ("at", "actor", "command", "address", "action", "result", "detail")


def audit_command(
    config: Path,
    verify: bool,
    json_output: bool,
    var: list[str] | None,
    var_file: list[Path] | None,
    lock_timeout: float,
) -> None:
    """The work of ``certform audit``; raises typer.Exit(1) when verification fails."""
    rows, head = read_audit(config, var, var_file, lock_timeout)
    if verify:
        _verify(rows, head, json_output)
    elif json_output:
        typer.echo(json.dumps(rows, indent=2))
    else:
        typer.echo(render_audit(rows), nl=False)


def read_audit(
    config: Path, var: list[str] | None, var_file: list[Path] | None, lock_timeout: float
) -> tuple[list[dict[str, Any]], str | None]:
    """The audit rows and the stored chain head, read under the state lock."""
    from reconciler.cli import _load  # here: reconciler.cli registers this command
    from reconciler.engine.workspace import open_store

    validated = _load(config, var, var_file)
    store = open_store(validated.config.state, validated.root, validated.config.providers)
    if not store.exists:
        return [], None
    store.lock("audit", lock_timeout)
    try:
        rows = store.audit_log()
        # No public reader of the chain head yet: one read-only query of the meta table.
        found = (
            store._connect(create=False)
            .execute("SELECT value FROM meta WHERE key = 'audit_head'")
            .fetchone()
        )
        head = found[0] if found else None
    finally:
        store.unlock()
        store.close()
    return rows, head


def _verify(rows: list[dict[str, Any]], head: str | None, json_output: bool) -> None:
    problems = audit_chain.verify_chain(rows, head)
    unverifiable = audit_chain.unverifiable_count(rows)
    if json_output:
        report = {
            "intact": not problems,
            "records": len(rows),
            "unverifiable": unverifiable,
            "head": head,
            "problems": problems,
        }
        typer.echo(json.dumps(report, indent=2))
    else:
        for problem in problems:
            typer.echo(f"audit chain broken: {problem}")
        if unverifiable:
            typer.echo(f"{unverifiable} records before the chain began (not verifiable)")
        if not problems:
            typer.echo(f"audit chain intact: {len(rows)} records")
    if problems:
        raise typer.Exit(1)


def render_audit(rows: list[dict[str, Any]]) -> str:
    """A plain text table, one record a line, oldest first."""
    if not rows:
        return "No audit records.\n"
    cells = [list(COLUMNS)] + [[str(row[c] or "") for c in COLUMNS] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS) - 1)]
    lines = [
        "  ".join([*(cell.ljust(w) for cell, w in zip(line, widths, strict=False)), line[-1]])
        for line in cells
    ]
    return "".join(line.rstrip() + "\n" for line in lines)
