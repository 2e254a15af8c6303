"""``certform audit``: print the audit log, or verify its hash chain.

Reading the log needs no master key: records hold who, when, what and the
result, never key material.  ``--verify`` needs it: the chain is keyed (HMAC
under a key derived from the state's data key), so that whoever edits a record
cannot re-chain the later ones.  It exits 0 when the chain is intact and 1 with
one line per problem when a record was edited or deleted.
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
    rows, head, chain_key = read_audit(config, var, var_file, lock_timeout, keyed=verify)
    if verify:
        _verify(rows, head, json_output, chain_key)
    elif json_output:
        typer.echo(json.dumps(rows, indent=2))
    else:
        typer.echo(render_audit(rows), nl=False)


ChainKey = tuple[bytes | None, int | None]
"""The audit chain key and the last SHA-256 record id (``SqliteStateStore.audit_chain_key``)."""


def read_audit(
    config: Path,
    var: list[str] | None,
    var_file: list[Path] | None,
    lock_timeout: float,
    keyed: bool = False,
) -> tuple[list[dict[str, Any]], str | None, ChainKey]:
    """The audit rows, the stored chain head and, when ``keyed``, the chain key (which
    needs the master key), read under the state lock."""
    from reconciler.cli import _load  # here: reconciler.cli registers this command
    from reconciler.engine.workspace import open_store

    validated = _load(config, var, var_file)
    store = open_store(validated.config.state, validated.root, validated.config.providers)
    if not store.exists:
        return [], None, (None, 0)
    store.lock("audit", lock_timeout)
    try:
        chain_key: ChainKey = store.audit_chain_key() if keyed else (None, 0)
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
    return rows, head, chain_key


def _verify(
    rows: list[dict[str, Any]], head: str | None, json_output: bool, chain_key: ChainKey
) -> None:
    key, keyed_after = chain_key
    problems = []
    if keyed_after is None:
        # The switch point was moved: check every chained record as keyed.
        problems.append("the stored start of the keyed chain was edited")
    problems += audit_chain.verify_chain(rows, head, key, keyed_after or 0)
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
