"""``certform check``: what a scheduled job should shout about.

Expiry within a window for every recorded certificate and authority; for
certificates ACM issued and renews itself, ACM's own view (status, renewal
status, expiry) so a renewal ACM could not complete is caught before it bites;
and for ``tls-endpoint`` bindings and the config's ``endpoints:``, what a TLS
client really gets there (expiry, wrong name, incomplete chain, self-signed,
not the certificate certform holds, unreachable).  Read-only.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from cryptography import x509

from reconciler.issuers.registry import authority_issuer, certificate_issuer
from reconciler.model.desired import DesiredState
from reconciler.model.records import CertificateRecord, RecordedState
from reconciler.policy.renewal import describe_window, renewal_time
from reconciler.providers.endpoint import WatchedEndpoint

if TYPE_CHECKING:  # the ACM issuer is imported by a check that has ACM certificates
    from reconciler.issuers.aws_acm import AcmLeafSpec


@dataclass(frozen=True)
class Finding:
    address: str
    severity: str  # "problem" or "info"
    message: str
    not_after: datetime | None = None
    """Expiry of the certificate the finding is about, when there is one."""
    days_left: int | None = None

    def to_json(self) -> dict[str, Any]:
        expiry = self.not_after.isoformat() if self.not_after is not None else None
        return {"address": self.address, "severity": self.severity, "message": self.message,
                "not_after": expiry, "days_left": self.days_left}  # fmt: skip


def _expiry(not_after: datetime, now: datetime) -> dict[str, Any]:
    """The ``not_after`` and ``days_left`` fields of a finding about a certificate."""
    return {"not_after": not_after, "days_left": (not_after - now).days}


AcmReader = Callable[[dict[str, Any], str], dict[str, Any]]
PendingReader = Callable[["AcmLeafSpec", str], "str | None"]
"""(spec, address) -> why an ACM request waits for approval, None when none does."""
IMPORTED_WINDOW = timedelta(days=30)
_ACM_ISSUER = "reconciler.issuers.aws_acm"
"""The ACM issuer's module: the issuer registry imports it when a config, plan or state
names ACM, so a check of certificates no ACM issued does not import it."""


def expiry_findings(
    recorded: RecordedState,
    now: datetime,
    within: timedelta | None,
    renew_before: Mapping[str, str | None] | None = None,
) -> list[Finding]:
    """Pure: one finding per certificate and CA.  Problems: expired, revoked; with
    ``within``, expiring before ``now + within``; without it, past its own renewal
    time (renewal overdue: apply has not run, or failed); imported certificates
    within 30 days of expiry (certform cannot renew them).  Everything else is
    listed as ``info`` with its days left.  ACM renews its own certificates."""
    findings = []
    windows = renew_before or {}
    accounts = {
        name
        for name, record in recorded.authorities.items()
        if not authority_issuer(record.spec).authority_has_certificate
    }  # ACME accounts: no certificate, nothing expires
    records = [
        *(r for r in recorded.authorities.values() if r.name not in accounts),
        *recorded.certificates.values(),
    ]
    for record in records:
        message = _expiry_problem(record, now, within, windows)
        expiry = _expiry(record.not_after, now)
        if message is not None:
            findings.append(Finding(record.address, "problem", message, **expiry))
        else:
            left = record.not_after - now
            findings.append(
                Finding(
                    record.address,
                    "info",
                    f"ok: expires {record.not_after:%Y-%m-%d} ({left.days} days left)",
                    **expiry,
                )
            )
    return findings


def _expiry_problem(
    record: Any, now: datetime, within: timedelta | None, windows: Mapping[str, str | None]
) -> str | None:
    left = record.not_after - now
    imported = isinstance(record, CertificateRecord) and not certificate_issuer(record.spec).renews
    revoked_at = getattr(record, "revoked_at", None)
    if left <= timedelta(0):
        return f"expired on {record.not_after:%Y-%m-%d}"
    if revoked_at is not None:
        return f"revoked on {revoked_at:%Y-%m-%d} (apply issues a new one if still declared)"
    if imported and within is None:
        # certform cannot renew what it imported: warn a month ahead, like ACM.
        if left > IMPORTED_WINDOW:
            return None
        return (
            f"expires {record.not_after:%Y-%m-%d} ({left.days} days left); imported: "
            "replace its files with a renewed certificate"
        )
    if within is not None:
        if left > within:
            return None
        return f"expires {record.not_after:%Y-%m-%d} ({left.days} days left)"
    if getattr(record, "external_id", None) or record.address not in windows:
        return None
    window = windows[record.address]
    if now < renewal_time(record.not_before, record.not_after, window):
        return None
    return (
        f"renewal overdue: expires {record.not_after:%Y-%m-%d}, "
        f"{describe_window(window)} ({left.days} days left)"
    )


def acm_findings(recorded: RecordedState, read: AcmReader) -> list[Finding]:
    """ACM's view of the certificates it issued for us (one DescribeCertificate each)."""
    from reconciler.issuers.aws_acm import AcmLeafSpec  # called when ACM certificates exist

    findings = []
    for record in recorded.certificates.values():
        if not record.external_id:
            continue
        settings = dict(AcmLeafSpec.parse(record.spec).acm)
        try:
            detail = read(settings, record.external_id)
        except Exception as exc:  # reported, not fatal: the other checks still count
            findings.append(Finding(record.address, "problem", f"cannot read ACM: {exc}"))
            continue
        findings.extend(_acm_detail_findings(record.address, record.not_after, detail))
    return findings


def pending_findings(
    desired: DesiredState, recorded: RecordedState, read: PendingReader
) -> list[Finding]:
    """Email-validated ACM requests not issued yet: ACM status PENDING_VALIDATION,
    waiting for the domain owner's approval (one lookup per such certificate)."""
    acm_issuer = sys.modules.get(_ACM_ISSUER)
    if acm_issuer is None:  # only that module makes ACM specs: none was made
        return []
    findings = []
    for certificate in desired.certificates:
        spec = certificate.spec
        if (
            not isinstance(spec, acm_issuer.AcmLeafSpec)
            or certificate.name in recorded.certificates
        ):
            continue
        if spec.acm.get("validation", {}).get("method") != "email":
            continue
        try:
            pending = read(spec, certificate.address)
        except Exception as exc:  # reported, not fatal: the other checks still count
            findings.append(Finding(certificate.address, "problem", f"cannot read ACM: {exc}"))
            continue
        if pending is not None:
            findings.append(
                Finding(certificate.address, "problem", f"ACM PENDING_VALIDATION: {pending}")
            )
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


# -- live endpoints -------------------------------------------------------------------
ENDPOINT_WINDOW = timedelta(days=30)
"""Without ``--within``, an endpoint whose certificate expires within 30 days is reported."""


@dataclass(frozen=True)
class EndpointWatch:
    """One endpoint to handshake with, and what it should present."""

    address: str
    endpoint: WatchedEndpoint
    roots: tuple[x509.Certificate, ...] | None
    """Trust anchors for the chain check; None: the system store."""
    expected_serial: str | None = None
    expected: str = ""
    """Which certificate should be served (for messages), when certform knows."""


def endpoint_findings(
    watches: Sequence[EndpointWatch], now: datetime, within: timedelta | None
) -> list[Finding]:
    """Handshake with every endpoint (in parallel: one slow endpoint must not
    serialise a fleet) and report what a client would trip over."""
    if not watches:
        return []
    window = within if within is not None else ENDPOINT_WINDOW
    with ThreadPoolExecutor(max_workers=min(16, len(watches))) as pool:
        results = pool.map(lambda watch: _watch_findings(watch, now, window), watches)
        return [finding for findings in results for finding in findings]


def _watch_findings(watch: EndpointWatch, now: datetime, window: timedelta) -> list[Finding]:
    from reconciler.pki.inspect import assess, describe_leaf
    from reconciler.providers.tls_probe import EndpointUnreachable, probe

    endpoint = watch.endpoint
    try:
        presented = probe(
            endpoint.host, endpoint.port, endpoint.sni, min(5.0, endpoint.timeout_seconds)
        )
    except EndpointUnreachable as exc:
        return [Finding(watch.address, "problem", f"unreachable: {exc}")]
    where = endpoint.describe()
    findings = [
        Finding(watch.address, "problem", f"{where}: {problem}")
        for problem in assess(presented, endpoint.sni, now, watch.roots)
    ]
    leaf = presented.leaf
    left = leaf.not_valid_after_utc - now
    if timedelta(0) < left <= window:
        findings.append(
            Finding(
                watch.address,
                "problem",
                f"{where} serves a certificate that expires {leaf.not_valid_after_utc:%Y-%m-%d} "
                f"({left.days} days left)",
            )
        )
    if watch.expected_serial and presented.serial != watch.expected_serial:
        findings.append(
            Finding(
                watch.address,
                "problem",
                f"{where} serves {describe_leaf(leaf)}, not {watch.expected} "
                f"(serial {watch.expected_serial})",
            )
        )
    if not findings:
        findings.append(Finding(watch.address, "info", f"{where} serves {describe_leaf(leaf)}: ok"))
    expiry = _expiry(leaf.not_valid_after_utc, now)
    return [replace(finding, **expiry) for finding in findings]
