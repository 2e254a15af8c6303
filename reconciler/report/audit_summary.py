"""The audit log condensed for the page: totals, the last apply, what failed,
the most recent records.

The audit log (``StateAuditLog.audit_log``) has no run id: the last apply is the
trailing run of consecutive ``apply`` records by one actor.  Two applies by the
same person with no other audited command between them therefore read as one;
an apply that changed nothing writes no record and is not seen.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

RECENT = 20
PROBLEMS = 10


@dataclass(frozen=True)
class AuditRow:
    at: str
    actor: str
    command: str
    address: str
    action: str
    result: str
    detail: str


@dataclass(frozen=True)
class LastApply:
    started: str
    finished: str
    actor: str
    changes: int
    results: tuple[tuple[str, int], ...]
    """(result, count), e.g. ("ok", 7), ("failed", 1); most common first."""

    @property
    def ok(self) -> bool:
        return all(result == "ok" for result, _ in self.results)


@dataclass(frozen=True)
class AuditSummary:
    total: int
    first_at: str | None
    last_at: str | None
    by_command: tuple[tuple[str, int], ...]
    by_result: tuple[tuple[str, int], ...]
    last_apply: LastApply | None
    problems: tuple[AuditRow, ...]
    """The most recent records whose result is not ok, newest first."""
    recent: tuple[AuditRow, ...]
    """The most recent records, newest first."""


def _row(record: Mapping[str, Any]) -> AuditRow:
    return AuditRow(*(str(record.get(k) or "") for k in AuditRow.__dataclass_fields__))


def summarize_audit(records: Sequence[Mapping[str, Any]]) -> AuditSummary:
    """``records`` oldest first, as ``audit_log`` returns them."""
    rows = [_row(r) for r in records]
    newest = rows[::-1]
    return AuditSummary(
        total=len(rows),
        first_at=rows[0].at if rows else None,
        last_at=rows[-1].at if rows else None,
        by_command=tuple(Counter(r.command for r in rows).most_common()),
        by_result=tuple(Counter(r.result for r in rows).most_common()),
        last_apply=_last_apply(rows),
        problems=tuple(r for r in newest if r.result != "ok")[:PROBLEMS],
        recent=tuple(newest[:RECENT]),
    )


def _last_apply(rows: Sequence[AuditRow]) -> LastApply | None:
    end = next((i for i in range(len(rows) - 1, -1, -1) if rows[i].command == "apply"), None)
    if end is None:
        return None
    actor = rows[end].actor
    start = end
    while start > 0 and rows[start - 1].command == "apply" and rows[start - 1].actor == actor:
        start -= 1
    run = rows[start : end + 1]
    return LastApply(
        run[0].at, run[-1].at, run[-1].actor, len(run),
        tuple(Counter(r.result for r in run).most_common()),
    )  # fmt: skip
