"""The report's data: every authority, certificate and binding, config and state
merged, with days left in colour bands, the CA tree and the audit summary.

Pure: no I/O and no clock (``now`` is given), so the page a test renders is the
page a user gets.  The rows start from ``show``'s inventory (``inventory.py``),
so both commands agree on issuer, days left and where a certificate is bound;
what only the state still records (removed from the config, destroyed at the
next apply) is added and marked.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from reconciler.inventory import inventory
from reconciler.issuers.registry import authority_issuer
from reconciler.model.desired import DesiredState
from reconciler.model.records import RecordedState
from reconciler.policy.renewal import renewal_time
from reconciler.report.audit_summary import AuditSummary, summarize_audit
from reconciler.report.timeline import Timeline, timeline

CRITICAL = timedelta(days=7)
WARNING = timedelta(days=30)
"""Colour bands: expired, under 7 days (critical), under 30 days (warning; also
``check``'s window for imported certificates, which certform cannot renew), ok."""
BAND_LABELS = {
    "expired": "expired",
    "revoked": "revoked",
    "critical": "under 7 days",
    "warning": "under 30 days",
    "ok": "ok",
    "none": "not issued",
    "account": "no certificate",
}
"""Band -> its words on the page, in the order the page counts them."""


@dataclass(frozen=True)
class Expiry:
    """When something expires, in the page's terms."""

    not_after: datetime | None = None
    days_left: int | None = None
    band: str = "none"
    renewal_due: bool = False
    """Past its own renewal time (``renew_before``): what ``check`` reports as overdue."""

    @property
    def band_label(self) -> str:
        return BAND_LABELS[self.band]


@dataclass(frozen=True)
class BindingRow:
    address: str
    certificate: str
    target_type: str
    target: str
    """The target's identity (a directory, a listener ARN...), never its settings."""
    state: str  # "current", "older serial", "not deployed", "recorded only"
    serial: str | None
    deployed_at: datetime | None


@dataclass(frozen=True)
class CertificateRow:
    address: str
    name: str
    names: tuple[str, ...]
    issuer: str
    key: str
    status: str
    serial: str | None
    expiry: Expiry
    bindings: tuple[BindingRow, ...]
    tags: dict[str, str]
    declared: bool


@dataclass(frozen=True)
class AuthorityRow:
    address: str
    name: str
    type: str
    subject: str
    parent: str | None
    key: str
    status: str
    serial: str | None
    expiry: Expiry
    declared: bool


@dataclass(frozen=True)
class TreeNode:
    """One authority of the CA hierarchy with its sub-authorities and certificates."""

    authority: AuthorityRow | None  # None: certificates whose issuer is not listed
    children: tuple[TreeNode, ...]
    certificates: tuple[CertificateRow, ...]


@dataclass(frozen=True)
class Report:
    generated_at: datetime
    config: str
    state: str
    lineage: str
    serial: int
    authorities: tuple[AuthorityRow, ...]
    certificates: tuple[CertificateRow, ...]
    bindings: tuple[BindingRow, ...]
    tree: tuple[TreeNode, ...]
    timeline: Timeline
    audit: AuditSummary
    bands: tuple[tuple[str, str, int], ...] = ()
    """(band, label, count): how many certificates and authorities fall in each
    colour band, in ``BAND_LABELS``' order, bands nobody is in left out."""


def expiry(
    not_before: datetime | None,
    not_after: datetime | None,
    now: datetime,
    renew_before: str | None = None,
    revoked: bool = False,
) -> Expiry:
    """The band of a certificate expiring at ``not_after`` (None: not issued)."""
    if not_after is None:
        return Expiry()
    left = not_after - now
    if left <= timedelta(0):
        band = "expired"
    elif revoked:
        band = "revoked"
    elif left < CRITICAL:
        band = "critical"
    elif left < WARNING:
        band = "warning"
    else:
        band = "ok"
    due = not_before is not None and now >= renewal_time(not_before, not_after, renew_before)
    return Expiry(not_after, left.days, band, due and band not in ("expired", "revoked"))


def build_report(
    desired: DesiredState,
    recorded: RecordedState,
    audit_rows: Sequence[Mapping[str, Any]],
    now: datetime,
    *,
    config: str = "",
    state: str = "",
    wanted: Mapping[str, str] | None = None,
) -> Report:
    """The whole page's data; ``wanted`` tags keep only the certificates carrying
    them (and their bindings), as ``show --tag`` does."""
    rows = inventory(desired, recorded, now)
    windows = {c.address: c.renew_before for c in desired.certificates} | {
        a.address: a.renew_before for a in desired.authorities
    }
    bindings = _bindings(desired, recorded)
    authorities = _authorities(rows["authorities"], recorded, now, windows)
    certificates = [
        c
        for c in _certificates(rows["certificates"], recorded, bindings, now, windows)
        if all(c.tags.get(k) == v for k, v in (wanted or {}).items())
    ]
    shown = {c.name for c in certificates}
    kept = tuple(b for b in bindings if b.certificate in shown)
    counts = Counter(row.expiry.band for row in (*authorities, *certificates))
    bands = tuple((b, label, counts[b]) for b, label in BAND_LABELS.items() if counts[b])
    return Report(
        generated_at=now,
        config=config,
        state=state,
        lineage=recorded.lineage,
        serial=recorded.serial,
        authorities=tuple(authorities),
        certificates=tuple(certificates),
        bindings=kept,
        tree=_tree(authorities, certificates),
        timeline=timeline(
            [(a.address, a.expiry) for a in authorities if a.expiry.not_after]
            + [(c.address, c.expiry) for c in certificates if c.expiry.not_after],
            now,
        ),
        audit=summarize_audit(audit_rows),
        bands=bands,
    )


def _with_recorded(
    rows: Sequence[dict[str, Any]], records: Mapping[str, Any]
) -> list[tuple[dict[str, Any], Any, bool]]:
    """(row, record, declared): ``show``'s rows (``inventory``, which lists what only
    the state records too, ``declared`` false) with their records; a recorded-only
    row's status is "recorded only"."""
    result = []
    for row in rows:
        record = records.get(row["address"].split(".", 1)[1])
        declared = row.get("declared", True)
        result.append((row if declared else row | {"status": "recorded only"}, record, declared))
    return result


def _authorities(
    rows: Sequence[dict[str, Any]],
    recorded: RecordedState,
    now: datetime,
    windows: Mapping[str, str | None],
) -> list[AuthorityRow]:
    return [
        AuthorityRow(
            row["address"],
            row["address"].split(".", 1)[1],
            str(row["type"]),
            str(row["subject"] or "-"),
            row["parent"],
            str(row["key"]),
            _status(row["status"], record),
            row["serial"],
            _expiry_of(record, now, windows.get(row["address"])),
            declared,
        )
        for row, record, declared in _with_recorded(rows, recorded.authorities)
    ]


def _expiry_of(record: Any, now: datetime, window: str | None) -> Expiry:
    """A record's expiry; an ACME account has no certificate and none."""
    if record is None:
        return Expiry()
    spec = getattr(record, "spec", {})
    if "type" in spec and not authority_issuer(spec).authority_has_certificate:
        return Expiry(band="account")
    revoked = getattr(record, "revoked_at", None) is not None or record.status == "revoked"
    return expiry(record.not_before, record.not_after, now, window, revoked)


def _status(status: str, record: Any) -> str:
    if record is not None and record.status != "active":
        return record.status
    return status


def _certificates(
    rows: Sequence[dict[str, Any]],
    recorded: RecordedState,
    bindings: Sequence[BindingRow],
    now: datetime,
    windows: Mapping[str, str | None],
) -> list[CertificateRow]:
    by_certificate: dict[str, list[BindingRow]] = {}
    for binding in bindings:
        by_certificate.setdefault(binding.certificate, []).append(binding)
    result = []
    for row, record, declared in _with_recorded(rows, recorded.certificates):
        name = row["address"].split(".", 1)[1]
        result.append(
            CertificateRow(
                row["address"], name, tuple(row["names"]), str(row["issuer"]), str(row["key"]),
                _status(row["status"], record), row["serial"],
                _expiry_of(record, now, windows.get(row["address"])),
                tuple(by_certificate.get(name, ())), dict(row["tags"]), declared,
            )
        )  # fmt: skip
    return result


def _bindings(desired: DesiredState, recorded: RecordedState) -> list[BindingRow]:
    """Declared bindings with what the state says was deployed there, then the
    recorded ones no longer declared."""
    rows = []
    for binding in desired.bindings:
        record = recorded.bindings.get(binding.address)
        issued = recorded.certificates.get(binding.certificate)
        if record is None:
            state = "not deployed"
        elif issued is not None and record.serial == issued.serial:
            state = "current"
        else:
            state = "older serial"
        rows.append(_binding_row(binding.address, binding.certificate, state, record))
    declared = {b.address for b in desired.bindings}
    for address, record in sorted(recorded.bindings.items()):
        if address not in declared:
            rows.append(_binding_row(address, record.certificate, "recorded only", record))
    return rows


def _binding_row(address: str, certificate: str, state: str, record: Any) -> BindingRow:
    target_type, _, identity = address.removeprefix("binding.").partition(":")
    return BindingRow(
        address, certificate, target_type, identity, state,
        record.serial if record is not None else None,
        record.deployed_at if record is not None else None,
    )  # fmt: skip


def _tree(
    authorities: Sequence[AuthorityRow], certificates: Sequence[CertificateRow]
) -> tuple[TreeNode, ...]:
    """Roots first; each authority with its sub-authorities and the certificates it
    issued; certificates of an authority not listed under one node of their own."""
    names = {a.name for a in authorities}
    issued: dict[str | None, list[CertificateRow]] = {}
    for certificate in certificates:
        issuer = certificate.issuer if certificate.issuer in names else None
        issued.setdefault(issuer, []).append(certificate)
    below: dict[str | None, list[AuthorityRow]] = {}
    for authority in authorities:
        parent = authority.parent if authority.parent in names else None
        below.setdefault(parent, []).append(authority)

    def node(authority: AuthorityRow) -> TreeNode:
        children = tuple(node(child) for child in below.get(authority.name, ()))
        return TreeNode(authority, children, tuple(issued.get(authority.name, ())))

    roots = [node(a) for a in below.get(None, ())]
    if issued.get(None):
        roots.append(TreeNode(None, (), tuple(issued[None])))
    return tuple(roots)
