"""``certform check``: what a scheduled job should shout about.

Expiry within a window for every recorded certificate and authority, and, for
certificates ACM issued and renews itself, ACM's own view (status, renewal
status, expiry) so a renewal ACM could not complete is caught before it bites.
Read-only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from reconciler.policy.renewal import describe_window, renewal_time
from reconciler.state.records import RecordedState


@dataclass(frozen=True)
class Finding:
    address: str
    severity: str  # "problem" or "info"
    message: str

    def to_json(self) -> dict[str, str]:
        return asdict(self)


AcmReader = Callable[[dict[str, Any], str], dict[str, Any]]


def expiry_findings(
    recorded: RecordedState,
    now: datetime,
    within: timedelta | None,
    renew_before: Mapping[str, str | None] | None = None,
) -> list[Finding]:
    """Pure: everything expired; then, with ``within``, what expires before
    ``now + within``; without it, what is past its own renewal time (renewal
    overdue: apply has not run, or failed).  ACM renews its own certificates."""
    findings = []
    records = [*recorded.authorities.values(), *recorded.certificates.values()]
    windows = renew_before or {}
    for record in records:
        left = record.not_after - now
        if left <= timedelta(0):
            message = f"expired on {record.not_after:%Y-%m-%d}"
        elif within is not None:
            if left > within:
                continue
            message = f"expires {record.not_after:%Y-%m-%d} ({left.days} days left)"
        else:
            if getattr(record, "external_id", None) or record.address not in windows:
                continue
            window = windows[record.address]
            if now < renewal_time(record.not_before, record.not_after, window):
                continue
            message = (
                f"renewal overdue: expires {record.not_after:%Y-%m-%d}, "
                f"{describe_window(window)} ({left.days} days left)"
            )
        findings.append(Finding(record.address, "problem", message))
    return findings


def acm_findings(recorded: RecordedState, read: AcmReader) -> list[Finding]:
    """ACM's view of the certificates it issued for us (one DescribeCertificate each)."""
    findings = []
    for record in recorded.certificates.values():
        if not record.external_id:
            continue
        settings = record.spec.get("acm", {})
        try:
            detail = read(settings, record.external_id)
        except Exception as exc:  # reported, not fatal: the other checks still count
            findings.append(Finding(record.address, "problem", f"cannot read ACM: {exc}"))
            continue
        findings.extend(_acm_detail_findings(record.address, record.not_after, detail))
    return findings


def _acm_detail_findings(address: str, recorded_not_after: datetime,
                         detail: dict[str, Any]) -> list[Finding]:  # fmt: skip
    if detail.get("missing"):
        return [Finding(address, "problem", "the ACM certificate no longer exists")]
    findings = []
    status = detail.get("Status")
    if status != "ISSUED":
        findings.append(Finding(address, "problem", f"ACM status {status}"))
    renewal = (detail.get("RenewalSummary") or {}).get("RenewalStatus")
    if renewal in ("FAILED", "PENDING_VALIDATION"):
        reason = (detail.get("RenewalSummary") or {}).get("RenewalStatusReason", "")
        findings.append(Finding(address, "problem", f"ACM renewal {renewal} {reason}".strip()))
    not_after = detail.get("NotAfter")
    if isinstance(not_after, datetime) and not_after > recorded_not_after + timedelta(days=1):
        findings.append(
            Finding(address, "info", f"renewed by ACM: now expires {not_after:%Y-%m-%d}")
        )
    return findings
