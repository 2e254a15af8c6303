"""Plans as a pull-request comment (``plan --format markdown``), in octoDNS's style.

A summary line first (what a reviewer reads), then one table per kind of
resource (address, action, reason, bindings touched) with drift called out, and
the field-level details collapsed in ``<details>``.  Everything that comes from
the configuration is escaped, so a certificate name cannot inject markup or
break a table, and the comment is cut to fit GitHub's 65,536-character limit
with a note saying what was left out.  Like every rendering, it only reads the
plan, which holds no secret.
"""

from __future__ import annotations

import html
from collections.abc import Iterable

from reconciler.plan.model import Change, Plan
from reconciler.plan.render import render_plan, summary

MAX_COMMENT_CHARS = 65_536
"""GitHub's limit for an issue or pull-request comment (GitLab's is larger)."""

_KIND_TITLES = {
    "authority": "Authorities",
    "certificate": "Certificates",
    "binding": "Bindings",
    "account": "ACME accounts",
    "crl": "Revocation lists",
}

_TRUNCATED = (
    "\n> **Plan truncated** to fit a comment: {left} of {total} changes are not shown. "
    "Run `certform plan` for all of them.\n"
)
_NO_DETAILS = "\n> Details left out to fit a comment: run `certform plan` for them.\n"


def render_markdown(plan: Plan, limit: int = MAX_COMMENT_CHARS) -> str:
    """The plan as Markdown no longer than ``limit`` characters."""
    head = _head(plan)
    if not plan.has_changes:
        return head
    tables = _tables(plan.changes)
    details = _details(plan)
    full = head + tables + details
    if len(full) <= limit:
        return full
    if len(head + tables + _NO_DETAILS) <= limit:
        return head + tables + _NO_DETAILS
    return _cut(plan, head, limit)


def _head(plan: Plan) -> str:
    lines = ["## certform plan", ""]
    if plan.has_changes:
        drift = sum(1 for change in plan.changes if change.drift)
        lines.append(f"**{_escape(summary(plan))}**")
        if drift:
            lines.append("")
            lines.append(
                f"> :warning: **Drift**: {drift} change(s) repair what differs from the "
                "recorded state outside certform."
            )
    else:
        lines.append(
            "**No changes.** Authorities, certificates and bindings match the configuration."
        )
    if plan.requires_force:
        lines += ["", "> This plan needs `certform apply --force`:"]
        lines += [f"> - {_escape(reason)}" for reason in plan.requires_force]
    if plan.endpoint_drift:
        lines += ["", "> :warning: **Watched endpoints serving something else** (fix them there):"]
        lines += [f"> - {_escape(line)}" for line in plan.endpoint_drift]
    if plan.warnings:
        lines += ["", "**Warnings**", ""]
        lines += [f"- {_escape(warning)}" for warning in plan.warnings]
    if plan.moves:
        lines += ["", "**Moved** (renamed in the state; nothing issued or deployed):", ""]
        lines += [f"- `{_code(m.source)}` → `{_code(m.target)}`" for m in plan.moves]
    if plan.state_updates:
        lines += [
            "",
            f"{len(plan.state_updates)} setting(s) to record (no certificate change):",
            "",
        ]
        lines += [f"- `{_code(update.address)}`" for update in plan.state_updates]
    return "\n".join(lines) + "\n"


def _tables(changes: Iterable[Change]) -> str:
    by_kind: dict[str, list[Change]] = {}
    for change in changes:
        by_kind.setdefault(change.kind, []).append(change)
    parts = []
    for kind, rows in by_kind.items():
        parts.append(f"\n### {_KIND_TITLES.get(kind, _escape(kind))}\n\n")
        parts.append("| Address | Action | Reason | Bindings touched |\n|---|---|---|---|\n")
        parts.extend(_row(change) for change in rows)
    return "".join(parts)


def _row(change: Change) -> str:
    action = f"`{change.action.symbol}` {change.action.value}"
    if change.drift:
        action += " (drift)"
    reason = "<br>".join(_escape(reason) for reason in change.reasons) or "—"
    bindings = "<br>".join(f"`{_code(b)}`" for b in change.bindings) or "—"
    return f"| `{_code(change.address)}` | {action} | {reason} | {bindings} |\n"


def _details(plan: Plan) -> str:
    text = render_plan(plan).replace("```", "'''")
    return f"\n<details><summary>Details</summary>\n\n```\n{text}```\n\n</details>\n"


def _cut(plan: Plan, head: str, limit: int) -> str:
    """As many table rows as fit, then a note with how many were left out."""
    total = len(plan.changes)
    budget = limit - len(head) - len(_TRUNCATED) - 40
    low, high = 0, total
    while low < high:  # the largest prefix whose tables fit
        middle = (low + high + 1) // 2
        if len(_tables(plan.changes[:middle])) <= budget:
            low = middle
        else:
            high = middle - 1
    return head + _tables(plan.changes[:low]) + _TRUNCATED.format(left=total - low, total=total)


def _escape(text: str) -> str:
    """Text for a table cell: no HTML, no cell breaks, no line breaks."""
    escaped = html.escape(text, quote=False).replace("|", "\\|")
    return " ".join(escaped.split())


def _code(text: str) -> str:
    """Text inside backticks: Markdown does not render it, but a backtick or a pipe
    would end the span or the cell."""
    return " ".join(text.replace("`", "'").replace("|", "\\|").split())
