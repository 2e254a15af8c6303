"""Plans for people: Terraform-like lines, reasons, blast radius and a summary.

Rendering only reads the plan; ``--json`` output is ``Plan.to_json`` and needs
nothing from here.
"""

from __future__ import annotations

from typing import Any

from reconciler.plan.model import SUMMARY_ORDER, Action, Change, Plan

_VERBS = {
    Action.ISSUE: "will be issued",
    Action.RENEW: "will be renewed",
    Action.REPLACE: "must be replaced (new certificate created before the old one goes)",
    Action.BIND: "will be bound",
    Action.REBIND: "will be redeployed",
    Action.UNBIND: "will be unbound",
    Action.REVOKE: "will be revoked",
    Action.DESTROY: "will be destroyed",
    Action.REGISTER: "will be registered (ACME account)",
    Action.UPDATE: "will be updated in place (ACME account contact, AWS Private CA settings)",
    Action.PUBLISH: "will be published",
}

_SHOWN_FIELDS = ("names", "issuer", "parent", "key", "validity", "serial", "not_after")


def render_plan(plan: Plan) -> str:
    lines: list[str] = []
    for warning in plan.warnings:
        lines.append(f"Warning: {warning}")
    if plan.warnings:
        lines.append("")
    if plan.endpoint_drift:
        lines.append("Watched endpoints serving something else (certform cannot change them):")
        lines.extend(f"  ! {line}" for line in plan.endpoint_drift)
        lines.append("")
    if plan.requires_force:
        lines.append("This plan needs `apply --force`:")
        lines.extend(f"  - {reason}" for reason in plan.requires_force)
        lines.append("")
    if not plan.has_changes:
        lines.append("No changes. Authorities, certificates and bindings match the configuration.")
        return "\n".join(lines) + "\n"
    lines.append("certform will perform the following actions:")
    lines.append("")
    for move in plan.moves:
        lines.append(f"  # {move.source} has moved to {move.target}")
        lines.append("")
    for change in plan.changes:
        lines.extend(_render_change(change))
        lines.append("")
    for update in plan.state_updates:
        lines.append(f"  # {update.address} settings will be recorded (no certificate change)")
        for key in update.after:
            if update.before.get(key) != update.after[key]:
                old, new = _value(update.before.get(key)), _value(update.after[key])
                lines.append(f"  ~ {key}: {old} → {new}")
        lines.append("")
    lines.append(summary(plan))
    return "\n".join(lines) + "\n"


def _render_change(change: Change) -> list[str]:
    lines = [f"  # {change.address} {_VERBS[change.action]}"]
    lines.extend(f"  #   because {reason}" for reason in change.reasons)
    lines.append(f"  {change.action.symbol} {change.address}")
    lines.extend(_fields(change))
    if change.bindings:
        label = "bindings touched" if change.action != Action.DESTROY else "bindings removed"
        lines.append(f"      {label}: {', '.join(change.bindings)}")
    return lines


def _fields(change: Change) -> list[str]:
    before, after = change.before or {}, change.after or {}
    lines = []
    if change.kind == "binding":
        certificate = after.get("certificate") or before.get("certificate")
        lines.append(f"      certificate: certificate.{certificate}")
        if before.get("serial"):
            lines.append(f"      deployed serial: {before['serial']}")
        return lines
    for key in _SHOWN_FIELDS:
        if key in before and key in after and before[key] != after[key]:
            lines.append(f"      {key}: {_value(before[key])} → {_value(after[key])}")
        elif key in after:
            lines.append(f"      {key}: {_value(after[key])}")
        elif key in before:
            suffix = " → (new)" if change.action in (Action.RENEW, Action.REPLACE) else ""
            lines.append(f"      {key}: {_value(before[key])}{suffix}")
    return lines


def _value(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(str(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {v}" for k, v in value.items()) + "}"
    return str(value)


def summary(plan: Plan) -> str:
    counts = plan.counts()
    parts = [f"{counts[a.value]} to {a.value}" for a in SUMMARY_ORDER if counts[a.value]]
    if plan.moves:
        parts.append(f"{len(plan.moves)} to move")
    if plan.state_updates:
        parts.append(f"{len(plan.state_updates)} settings to record")
    drift = sum(1 for c in plan.changes if c.drift)
    tail = f" ({drift} from drift)" if drift else ""
    return "Plan: " + ", ".join(parts) + "." + tail
