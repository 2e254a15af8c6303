"""``certform audit``: the audit log as a hash chain, listed and verified."""

from __future__ import annotations

import json
from typing import Any

import pytest

from reconciler.state.audit_chain import (
    GENESIS,
    format_head,
    next_link,
    record_hash,
    unverifiable_count,
    verify_chain,
)
from tests.conftest import Result, Workspace

# SQLite only: this logic lives in the SQL core both backends share; PostgreSQL runs
# the lifecycle, crash recovery, state commands and its own tests (tests/test_postgres_state.py).

APPLY_STEPS = [
    "authority.root",
    "authority.issuing",
    "certificate.web",
    "certificate.api",
    "binding.files:out/web",
    "binding.files:out/api",
]


def audit_json(ws: Workspace) -> list[dict[str, Any]]:
    return json.loads(ws.ok("audit", "--json").out)["records"]


def verify(ws: Workspace) -> Result:
    return ws.run("audit", "--verify")


def sql(ws: Workspace, *statements: str) -> None:
    for statement in statements:
        ws.query(statement)


@pytest.fixture
def applied(workspace: Workspace) -> Workspace:
    workspace.ok("apply", "--auto-approve")
    return workspace


def test_audit_lists_apply_steps_with_actor_and_result(applied: Workspace) -> None:
    rows = audit_json(applied)
    assert [r["address"] for r in rows] == APPLY_STEPS
    assert {(r["command"], r["result"]) for r in rows} == {("apply", "ok")}
    assert all("@" in r["actor"] for r in rows)
    assert [r["id"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert rows[0]["previous"] == GENESIS
    assert [r["previous"] for r in rows[1:]] == [r["hash"] for r in rows[:-1]]
    text = applied.ok("audit").out
    assert text.splitlines()[0].split() == [
        "at", "actor", "command", "address", "action", "result", "detail",
    ]  # fmt: skip
    assert "binding.files:out/web" in text and "PRIVATE KEY" not in text
    assert applied.env["CERTFORM_MASTER_KEY"] not in text


def test_verify_intact_chain(applied: Workspace) -> None:
    result = verify(applied)
    assert result.code == 0, result.text
    assert "audit chain intact: 6 records" in result.out
    report = json.loads(applied.ok("audit", "--verify", "--json").out)
    assert report["intact"] is True and report["problems"] == []
    assert report["head"] == format_head(6, audit_json(applied)[-1]["hash"])


def test_edited_record_is_named(applied: Workspace) -> None:
    sql(applied, "UPDATE audit SET detail = 'serial 00' WHERE id = 3")
    result = verify(applied)
    assert result.code == 1, result.text
    assert "record 3 does not match its hash" in result.out
    assert "intact" not in result.out


def test_deleted_middle_record_is_a_gap(applied: Workspace) -> None:
    sql(applied, "DELETE FROM audit WHERE id = 4")
    result = verify(applied)
    assert result.code == 1, result.text
    assert "record 4 is missing" in result.out


def test_deleted_newest_record_misses_the_head(applied: Workspace) -> None:
    sql(applied, "DELETE FROM audit WHERE id = 6")
    result = verify(applied)
    assert result.code == 1, result.text
    assert "record 6 is missing (the newest records were deleted?)" in result.out


def test_deleted_newest_record_stays_visible_after_later_writes(applied: Workspace) -> None:
    sql(applied, "DELETE FROM audit WHERE id BETWEEN 5 AND 6")
    applied.ok("revoke", "web", "--reason", "superseded")
    assert [r["id"] for r in audit_json(applied)] == [1, 2, 3, 4, 7]
    result = verify(applied)
    assert result.code == 1, result.text
    assert "records 5 to 6 are missing" in result.out


def test_deleted_head_is_reported(applied: Workspace) -> None:
    sql(applied, "DELETE FROM meta WHERE key = 'audit_head'")
    result = verify(applied)
    assert result.code == 1, result.text
    assert "no chain head" in result.out


def test_failed_step_is_recorded_as_failed(workspace: Workspace) -> None:
    (workspace.root / "out").mkdir()
    (workspace.root / "out/web").write_text("a regular file where a directory belongs\n")
    result = workspace.run("apply", "--auto-approve")
    assert result.code == 1, result.text
    failed = [r for r in audit_json(workspace) if r["result"] == "failed"]
    assert [(r["address"], r["action"], r["command"]) for r in failed] == [
        ("binding.files:out/web", "bind", "apply")
    ]
    assert "File exists" in failed[0]["detail"]
    assert verify(workspace).code == 0


def test_revoke_is_recorded(applied: Workspace) -> None:
    applied.ok("revoke", "web", "--reason", "superseded")
    last = audit_json(applied)[-1]
    assert (last["command"], last["address"], last["action"], last["result"]) == (
        "revoke", "certificate.web", "revoke", "ok",
    )  # fmt: skip
    assert "reason superseded" in last["detail"]
    result = verify(applied)
    assert result.code == 0 and "audit chain intact: 7 records" in result.out


@pytest.mark.sqlite_only
def test_state_from_before_the_chain(applied: Workspace) -> None:
    # The audit table as older certform versions made it: no previous/hash columns.
    sql(
        applied,
        "ALTER TABLE audit DROP COLUMN previous",
        "ALTER TABLE audit DROP COLUMN hash",
        "DELETE FROM meta WHERE key = 'audit_head'",
    )
    assert [r["hash"] for r in audit_json(applied)] == [None] * 6
    result = verify(applied)
    assert result.code == 0, result.text
    assert "6 records before the chain began (not verifiable)" in result.out
    applied.ok("revoke", "web", "--reason", "superseded")  # adds the columns, starts the chain
    rows = audit_json(applied)
    assert rows[-1]["id"] == 7 and rows[-1]["previous"] == GENESIS
    result = verify(applied)
    assert result.code == 0, result.text
    assert "6 records before the chain began (not verifiable)" in result.out
    assert "audit chain intact: 7 records" in result.out
    sql(applied, "DELETE FROM audit WHERE id = 7")
    assert "record 7 is missing" in verify(applied).out


def test_no_state_yet(workspace: Workspace) -> None:
    assert workspace.ok("audit").out == "No audit records.\n"
    assert "audit chain intact: 0 records" in workspace.ok("audit", "--verify").out
    assert not workspace.state_exists()


# -- the chain as pure functions ------------------------------------------------


def chain(count: int, before: int = 0) -> list[dict[str, Any]]:
    """``before`` unchained records, then ``count`` chained ones."""
    rows: list[dict[str, Any]] = []
    previous = GENESIS
    for record_id in range(1, before + count + 1):
        row: dict[str, Any] = {
            "id": record_id, "at": "2026-01-01T00:00:00+00:00", "actor": "a@h",
            "command": "apply", "address": f"certificate.c{record_id}", "action": "issue",
            "result": "ok", "detail": "", "previous": None, "hash": None,
        }  # fmt: skip
        if record_id > before:
            row["previous"], row["hash"] = previous, record_hash(previous, row)
            previous = row["hash"]
        rows.append(row)
    return rows


def head_of(rows: list[dict[str, Any]]) -> str:
    return format_head(rows[-1]["id"], rows[-1]["hash"])


def test_record_hash_covers_every_field_and_the_previous_hash() -> None:
    row = chain(1)[0]
    assert record_hash(GENESIS, row) == record_hash(GENESIS, {**row, "id": "1"})
    for field in ("id", "at", "actor", "command", "address", "action", "result", "detail"):
        assert record_hash(GENESIS, {**row, field: "changed"}) != row["hash"], field
    assert record_hash("1" * 64, row) != row["hash"]


def test_rewritten_record_breaks_the_link_to_the_next() -> None:
    rows = chain(4)
    rows[1]["detail"] = "forged"
    rows[1]["hash"] = record_hash(rows[1]["previous"], rows[1])
    assert verify_chain(rows, head_of(rows)) == [
        "record 3 does not follow record 2 (its previous hash differs: records replaced or "
        "reordered?)"
    ]


def test_unchained_record_after_the_chain_began() -> None:
    rows = chain(3)
    rows.append({**rows[-1], "id": 4, "previous": None, "hash": None})
    problems = verify_chain(rows, head_of(rows[:3]))
    assert "record 4 has no hash but follows chained records (added outside?)" in problems


def test_first_records_deleted() -> None:
    rows = chain(3)[1:]
    assert verify_chain(rows, head_of(rows)) == [
        "record 2 does not start the chain but nothing precedes it (earlier records deleted?)"
    ]


def test_unchained_prefix_is_counted_not_judged() -> None:
    rows = chain(2, before=3)
    rows[0]["detail"] = "edited, but never verifiable"
    assert unverifiable_count(rows) == 3
    assert verify_chain(rows, head_of(rows)) == []
    assert verify_chain(chain(0, before=2)) == []


def test_next_link_prefers_the_head_over_the_newest_row() -> None:
    assert next_link(None, None) == (1, GENESIS)
    assert next_link((5, None), None) == (6, GENESIS)
    assert next_link((5, "h5"), (5, "h5")) == (6, "h5")
    assert next_link((4, "h4"), (6, "h6")) == (7, "h6")  # newest rows deleted
