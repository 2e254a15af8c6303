"""``certform check``: what a scheduled job should shout about.

Expiry within a window for every recorded certificate and authority, and, for
certificates ACM issued and renews itself, ACM's own view (status, renewal
status, expiry) so a renewal ACM could not complete is caught before it bites.
Read-only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from reconciler.state.records import RecordedState


@dataclass(frozen=True)
class Finding:
    address: str
    severity: str  # "problem" or "info"
    message: str

    def to_json(self) -> dict[str, str]:
        return asdict(self)


AcmReader = Callable[[dict[str, Any], str], dict[str, Any]]


def expiry_findings(recorded: RecordedState, now: datetime, within: timedelta) -> list[Finding]:
    """Pure: everything recorded that expires before ``now + within``."""
    findings = []
    records = [*recorded.authorities.values(), *recorded.certificates.values()]
    for record in records:
        left = record.not_after - now
        if left <= timedelta(0):
            findings.append(
                Finding(record.address, "problem", f"expired on {record.not_after:%Y-%m-%d}")
            )
        elif left <= within:
            findings.append(
                Finding(
                    record.address,
                    "problem",
                    f"expires {record.not_after:%Y-%m-%d} ({left.days} days left)",
                )
            )
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
