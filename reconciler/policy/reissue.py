"""Does a certificate (or CA) need a new issuance, and why?

Each check is a small pure function of one gathered input, named after the
condition it detects, returning a Violation (the action it calls for and a
reason for the plan) or None.  The plan lists every violation; the strongest
action wins (replace over renew).  The clock is an input.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from reconciler.durations import format_duration, parse_duration
from reconciler.plan.specs import CertificateSpec
from reconciler.policy.renewal import describe_window, renewal_time

RENEW = "renew"
REPLACE = "replace"


@dataclass(frozen=True)
class Violation:
    action: str
    reason: str


@dataclass(frozen=True)
class IssuedFacts:
    """What is recorded about the current issuance."""

    spec: dict[str, Any]
    not_before: datetime
    not_after: datetime
    issuer_key_id: str | None
    has_key: bool
    revoked_at: datetime | None = None
    serial: str | None = None
    """The recorded serial (lowercase hex), for issuers that renew at the same identity."""


@dataclass(frozen=True)
class ReissueInput:
    """Everything the checks look at, gathered beforehand."""

    desired_spec: dict[str, Any]
    renew_before: str | None
    issued: IssuedFacts
    issuer_key_id: str | None
    issuer_rekeyed: bool
    now: datetime
    renewal_window: Any = None
    """ACME Renewal Information for this certificate (an ``ari.RenewalWindow``), if any."""


Check = Callable[[ReissueInput], Violation | None]

SPEC_CHECKS: set[Check] = set()
"""Checks that look at nothing but the issued and the desired spec, so find nothing
when the two are equal: ``evaluate`` skips them then.  (``acme_issuer_changed`` is
not one: the recorded ``issued_by`` may name an issuer no longer desired.)"""


def _spec_check(check: Check) -> Check:
    """Mark ``check`` as one of the ``SPEC_CHECKS``."""
    SPEC_CHECKS.add(check)
    return check


def private_key_missing(i: ReissueInput) -> Violation | None:
    if not i.issued.has_key:
        return Violation(REPLACE, "private key missing from state")
    return None


@_spec_check
def names_changed(i: ReissueInput) -> Violation | None:
    old, new = i.issued.spec.get("names"), i.desired_spec.get("names")
    if old is None or new is None or old == new:
        return None
    added = [f"+{n}" for n in new if n not in old]
    removed = [f"-{n}" for n in old if n not in new]
    detail = " ".join(added + removed) or "order changed (first name is the subject CN)"
    return Violation(REPLACE, f"names changed: {detail}")


def _field_changed(field: str, label: str, action: str) -> Check:
    def check(i: ReissueInput) -> Violation | None:
        old, new = i.issued.spec.get(field), i.desired_spec.get(field)
        if old == new:
            return None
        return Violation(action, f"{label} changed: {_show(old)} → {_show(new)}")

    check.__name__ = f"{field}_changed"
    return _spec_check(check)


def _show(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, list):
        return "[" + ", ".join(str(v) for v in value) + "]"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_show(v)}" for k, v in sorted(value.items()))
    return str(value)


def issuer_rekeyed(i: ReissueInput) -> Violation | None:
    if i.issuer_rekeyed:
        issuer = i.desired_spec.get("issuer") or i.desired_spec.get("parent")
        return Violation(REPLACE, f"issuer authority.{issuer} gets a new key in this plan")
    return None


def chain_broken(i: ReissueInput) -> Violation | None:
    if i.issuer_key_id is not None and i.issued.issuer_key_id not in (None, i.issuer_key_id):
        return Violation(REPLACE, "chain no longer verifies: the issuing CA's key changed")
    return None


def revoked(i: ReissueInput) -> Violation | None:
    if i.issued.revoked_at is not None:
        return Violation(RENEW, f"revoked on {i.issued.revoked_at:%Y-%m-%d}")
    return None


def authority_revoked(i: ReissueInput) -> Violation | None:
    """A revoked CA gets a new key (its old key is not to be trusted any more),
    which re-issues everything below it."""
    if i.issued.revoked_at is not None:
        return Violation(REPLACE, f"revoked on {i.issued.revoked_at:%Y-%m-%d}: new key")
    return None


@_spec_check
def validity_changed(i: ReissueInput) -> Violation | None:
    old, new = i.issued.spec.get("validity"), i.desired_spec.get("validity")
    if old == new or old is None or new is None or parse_duration(old) == parse_duration(new):
        return None
    return Violation(RENEW, f"validity changed: {old} → {new}")


def expiring(i: ReissueInput) -> Violation | None:
    if i.now >= i.issued.not_after:
        return Violation(RENEW, f"expired on {i.issued.not_after:%Y-%m-%d}")
    due = renewal_time(i.issued.not_before, i.issued.not_after, i.renew_before)
    if i.now >= due:
        return Violation(
            RENEW,
            f"expires {i.issued.not_after:%Y-%m-%d}, {describe_window(i.renew_before)}",
        )
    return None


def acme_issuer_changed(i: ReissueInput) -> Violation | None:
    """A fallback list may be reordered or extended without a new certificate;
    only an issuer that is no longer listed calls for one."""
    issued_by = CertificateSpec.parse(i.issued.spec).issuing_authority
    wanted = i.desired_spec.get("issuers") or [i.desired_spec.get("issuer")]
    if issued_by in wanted:
        return None
    return Violation(REPLACE, f"issuer changed: {issued_by} → {_show(wanted)}")


def renewal_due(i: ReissueInput) -> Violation | None:
    """The CA's own suggestion (ARI, RFC 9773) when it gives one, else renew_before."""
    if i.renewal_window is None or i.now >= i.issued.not_after:
        return expiring(i)
    from reconciler.acme.ari import ari_due

    due, reason = ari_due(i.renewal_window, i.issued.not_before.isoformat(), i.now)
    return Violation(RENEW, reason) if due else None


CERTIFICATE_CHECKS: tuple[Check, ...] = (
    private_key_missing,
    names_changed,
    _field_changed("key", "key algorithm", REPLACE),
    _field_changed("issuer", "issuer", REPLACE),
    issuer_rekeyed,
    chain_broken,
    _field_changed("usages", "usages", REPLACE),
    revoked,
    validity_changed,
    expiring,
)

# ACM keeps the private key and renews the certificate itself: only a change of
# what was asked for calls for a new request.
ACM_CERTIFICATE_CHECKS: tuple[Check, ...] = (
    names_changed,
    _field_changed("key", "key algorithm", REPLACE),
    _field_changed("issuer", "issuer", REPLACE),
    revoked,
)

# ACME: the CA sets the validity; the chain is the CA's business.
ACME_CERTIFICATE_CHECKS: tuple[Check, ...] = (
    private_key_missing,
    names_changed,
    _field_changed("key", "key algorithm", REPLACE),
    acme_issuer_changed,
    _field_changed("usages", "usages", REPLACE),
    revoked,
    renewal_due,
)


@_spec_check
def imported_file_changed(i: ReissueInput) -> Violation | None:
    """An imported certificate changes only when its file does (never renewed here)."""
    old, new = i.issued.spec.get("fingerprint"), i.desired_spec.get("fingerprint")
    if old == new:
        return None
    return Violation(REPLACE, "the imported certificate file changed")


IMPORTED_CERTIFICATE_CHECKS: tuple[Check, ...] = (imported_file_changed,)

AUTHORITY_CHECKS: tuple[Check, ...] = (
    authority_revoked,
    private_key_missing,
    _field_changed("type", "type", REPLACE),
    _field_changed("key", "key algorithm", REPLACE),
    _field_changed("subject", "subject", REPLACE),
    _field_changed("parent", "parent", REPLACE),
    issuer_rekeyed,
    chain_broken,
    _field_changed("path_length", "path_length", REPLACE),
    _field_changed("name_constraints", "name_constraints", REPLACE),
    validity_changed,
    expiring,
)


_WITHOUT_SPEC_CHECKS: dict[tuple[Check, ...], tuple[Check, ...]] = {}


def evaluate(checks: tuple[Check, ...], data: ReissueInput) -> list[Violation]:
    """Every violation, in check order.  When the issued spec is the desired one (a
    no-change plan: every certificate), the ``SPEC_CHECKS`` cannot find one and are
    not run (half the checks of 10,000 certificates)."""
    if data.issued.spec == data.desired_spec:
        run = _WITHOUT_SPEC_CHECKS.get(checks)
        if run is None:
            run = _WITHOUT_SPEC_CHECKS[checks] = tuple(c for c in checks if c not in SPEC_CHECKS)
        checks = run
    return [v for check in checks if (v := check(data)) is not None]


def strongest(violations: list[Violation]) -> str | None:
    if not violations:
        return None
    return REPLACE if any(v.action == REPLACE for v in violations) else RENEW


__all__ = ["format_duration"]
