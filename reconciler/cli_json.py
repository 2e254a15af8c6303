"""The JSON documents the commands print for programs (``--json``, ``--format json``).

Each is an object with ``format_version`` first: a program reading one checks it
and knows the fields (README, "Machine-readable output").  A field added keeps
the version; a field renamed or removed, or a meaning changed, bumps it.
Public data only, like everything certform prints.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # annotations only: ``certform --version`` imports no session
    from reconciler.errors import ConfigIssue
    from reconciler.monitoring.notifications import DeliveryReport
    from reconciler.session import ApplyOutcome, CheckResult, ValidateResult

FORMAT_VERSION = "1"


def dumps(document: dict[str, Any]) -> str:
    """``document`` behind ``format_version``, indented, newline-terminated."""
    return json.dumps({"format_version": FORMAT_VERSION, **document}, indent=2) + "\n"


def validate_document(
    result: ValidateResult | None, issues: Sequence[ConfigIssue] = ()
) -> dict[str, Any]:
    """``validate --json``: counts when valid, every problem located when not."""
    problems = [
        {"file": i.file, "line": i.line, "field": i.field, "message": i.message} for i in issues
    ]
    counts = (
        {"authorities": result.authorities, "certificates": result.certificates,
         "bindings": result.bindings}
        if result is not None else {}
    )  # fmt: skip
    return {"valid": not problems, **counts, "problems": problems}


def apply_document(outcome: ApplyOutcome) -> dict[str, Any]:
    """``apply --json``: every planned step with what became of it."""
    result = outcome.result
    plan = outcome.plan
    moves = [{"from": m.source, "to": m.target} for m in plan.moves]
    if result is None:
        return {"status": "no changes", "steps": [], "moves": moves}
    steps = []
    done = set(result.done)
    for change in plan.changes:
        address = change.address
        if address in done:
            state, detail = "done", None
        elif address in result.failed:
            state, detail = "failed", result.failed[address]
        elif address in result.waiting:
            state, detail = "waiting", result.waiting[address]
        elif address in result.skipped:
            state, detail = "skipped", result.skipped[address]
        else:
            state, detail = "not run", None
        steps.append(
            {"address": address, "action": change.action.value, "result": state, "detail": detail}
        )
    counts = {
        "done": len(result.done),
        "failed": len(result.failed),
        "skipped": len(result.skipped),
        "waiting": len(result.waiting),
    }
    status = "complete" if result.ok else "incomplete"
    return {"status": status, "counts": counts, "steps": steps, "moves": moves}


def check_document(
    result: CheckResult,
    reports: Sequence[DeliveryReport] | None,
    metrics: DeliveryReport | None = None,
) -> dict[str, Any]:
    """``check --format json``: findings by address, with expiry as fields."""
    document: dict[str, Any] = {
        "checked_at": result.now.isoformat(),
        "checked": result.checked,
        "problems": len(result.problems),
        "findings": [f.to_json() for f in result.findings],
    }
    if reports is not None:
        document["notifications"] = [r.to_json() for r in reports]
    if metrics is not None:
        document["cloudwatch"] = metrics.to_json()
    return document
