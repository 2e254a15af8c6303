"""Apply checks a plan again, against the state it is about to change and the
policy of the configuration it was given, just before executing it.

A plan is checked when it is made; a saved plan is applied later, perhaps after
the policy tightened, and defence in depth says the last step before signing or
deleting anything checks once more: the state's ``prevent_destroy`` guards, the
change limits (``--force`` reasons are recomputed here, never taken from the
plan), ``allowed_domains``, ``allowed_keys``, ``min_rsa_bits`` and
``max_validity``.  The rules are the ones validate applies (``policy/rules.py``).
Pure: plan, state and policy in, a plan or an error out.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

from reconciler.errors import PlanError
from reconciler.issuers.registry import authority_issuer, certificate_issuer
from reconciler.model.records import RecordedState
from reconciler.plan.model import Action, Change, Plan
from reconciler.plan.specs import AuthoritySpec, CertificateSpec
from reconciler.policy.guards import ChangeLimit, force_reasons, guarded_destroys
from reconciler.policy.rules import Policy

SIGNING_ACTIONS = (Action.ISSUE, Action.RENEW, Action.REPLACE)


class _Limit(Protocol):
    @property
    def percent(self) -> float: ...
    @property
    def minimum_certificates(self) -> int: ...


class PolicyBlock(Policy, Protocol):
    """The fields of ``config.models.PolicyConfig`` apply checks."""

    @property
    def change_limit(self) -> _Limit: ...


def recheck_plan(plan: Plan, recorded: RecordedState, policy: PolicyBlock) -> Plan:
    """``plan`` with its ``requires_force`` recomputed from ``recorded`` and the
    policy's change limit; ``PlanError`` naming each address and rule it breaks."""
    problems = [
        f"{address}: lifecycle.prevent_destroy is set in the state, it cannot be destroyed"
        for address in guarded_destroys(plan.changes, recorded)
    ]
    for change in plan.changes:
        problems += [
            f"{change.address}: {problem}" for problem in policy_violations(change, policy)
        ]
    if problems:
        raise PlanError(
            "refusing to apply this plan, it breaks the state's guards or the policy: "
            + "; ".join(problems)
            + ". Nothing was changed."
        )
    limit = ChangeLimit(policy.change_limit.percent, policy.change_limit.minimum_certificates)
    reasons = force_reasons(plan.changes, len(recorded.certificates), limit)
    return dataclasses.replace(plan, requires_force=tuple(reasons))


def require_force(plan: Plan, force: bool) -> None:
    """Refuse, without ``--force``, a plan that exceeds the change limit or rotates a CA
    (its ``requires_force`` as recomputed by ``recheck_plan``)."""
    if plan.requires_force and not force:
        raise PlanError(
            "refusing to apply without --force: "
            + "; ".join(plan.requires_force)
            + ". Nothing was changed."
        )


def policy_violations(change: Change, policy: Policy) -> list[str]:
    """What ``change`` would sign against the policy: names, key and validity of a
    certificate, the key of a private CA.  Imported certificates are not signed
    by certform; ACME and ACM ones are requested with the names and key shown."""
    after = change.after
    if change.action not in SIGNING_ACTIONS:
        return []
    try:
        if isinstance(after, CertificateSpec):
            return certificate_issuer(after).policy_violations(after, policy)
        if isinstance(after, AuthoritySpec):
            return authority_issuer(after).authority_policy_violations(after, policy)
    except (TypeError, ValueError, OverflowError, AttributeError) as exc:
        return [f"unreadable spec ({type(exc).__name__})"]
    return []
