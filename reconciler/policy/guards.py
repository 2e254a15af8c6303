"""Change limits: a plan that replaces, moves or destroys a large share of the
managed certificates, or rotates a CA, needs ``--force`` (as octoDNS guards
DNS record updates).

A mass change is usually a mistake (a wrong variable, a deleted file in a
config directory, a renamed issuer); when it is intended, ``--force`` says
so.  Routine renewals (the same certificate renewed and redeployed) never
count.  Pure: plan in, reasons out.
"""

from __future__ import annotations

from dataclasses import dataclass

from reconciler.model.records import RecordedState
from reconciler.plan.model import Action, Change

DEFAULT_PERCENT = 30
DEFAULT_MINIMUM = 10


@dataclass(frozen=True)
class ChangeLimit:
    percent: float = DEFAULT_PERCENT
    minimum_certificates: int = DEFAULT_MINIMUM


def force_reasons(changes: tuple[Change, ...], managed: int, limit: ChangeLimit) -> list[str]:
    """Why this plan needs ``--force`` (empty: it does not)."""
    reasons = [
        f"{change.address} is a CA and would be "
        + ("replaced with a new key" if change.action == Action.REPLACE else "destroyed")
        for change in changes
        if change.kind == "authority" and change.action in (Action.REPLACE, Action.DESTROY)
    ]
    renewed = {
        change.name
        for change in changes
        if change.kind == "certificate" and change.action == Action.RENEW
    }
    affected: set[str] = set()
    for change in changes:
        if change.kind == "certificate" and change.action in (Action.REPLACE, Action.DESTROY):
            affected.add(change.name)
        elif change.kind == "binding" and change.action in (Action.REBIND, Action.UNBIND):
            certificate = (change.before or {}).get("certificate") or (change.after or {}).get(
                "certificate"
            )
            if certificate and certificate not in renewed:
                affected.add(str(certificate))
    if managed >= limit.minimum_certificates and managed:
        share = 100 * len(affected) / managed
        if share > limit.percent:
            reasons.append(
                f"{len(affected)} of {managed} managed certificates would be replaced, "
                f"moved or destroyed ({share:.0f}%, policy limit {limit.percent:g}%)"
            )
    return reasons


def guarded_destroys(changes: tuple[Change, ...], recorded: RecordedState) -> list[str]:
    """Addresses ``changes`` would destroy although the state records
    ``lifecycle.prevent_destroy`` for them (the diff never plans that; apply checks
    again, so no plan does it either)."""
    guarded = {
        record.address
        for record in (*recorded.authorities.values(), *recorded.certificates.values())
        if record.prevent_destroy
    }
    return [c.address for c in changes if c.action == Action.DESTROY and c.address in guarded]
