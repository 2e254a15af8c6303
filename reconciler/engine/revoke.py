"""``certform revoke``: revoke the current certificate of NAME and record it.

ACME certificates are revoked at the CA that issued them (with the account
that ordered them); private-CA certificates are recorded as revoked (the CRL
lists them); ACM-issued ones are refused (revoke them in ACM).  Either way the
next plan re-issues the certificate if it is still declared ("revoked on ...").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from reconciler.acme.client import REVOCATION_REASONS
from reconciler.engine.apply import actor
from reconciler.errors import CertformError, PlanError
from reconciler.issuers.registry import (
    authority_issuer,
    authority_spec,
    certificate_issuer,
    certificate_spec,
)
from reconciler.model.records import RecordedState
from reconciler.state.store import StateStore


def revoke_certificate(
    store: StateStore, recorded: RecordedState, name: str, reason: str, root: Path
) -> str:
    """Revoke and record; returns a line for the output.  Raises CertformError."""
    if reason not in REVOCATION_REASONS:
        raise PlanError(
            f"unknown revocation reason {reason!r}; expected one of: "
            + ", ".join(REVOCATION_REASONS)
        )
    if name.startswith("authority."):
        return _revoke_authority(store, recorded, name.split(".", 1)[1], reason)
    name = name.removeprefix("certificate.")
    record = recorded.certificates.get(name)
    if record is None:
        raise PlanError(f"certificate.{name} is not in the state (nothing issued to revoke)")
    if record.revoked_at is not None:
        return f"certificate.{name} (serial {record.serial}) is already revoked"
    issuer = certificate_issuer(record.spec)
    refusal = issuer.revoke_refusal(record)
    if refusal is not None:
        raise PlanError(refusal)
    access = _Access(store, recorded, root)
    try:
        where = issuer.revoke(
            access, record, store.material("certificate", name).certificate_pem, reason
        )
    except CertformError as exc:
        store.audit(actor(), "revoke", record.address, "revoke", "failed", str(exc))
        raise
    with store.transaction() as writer:
        issued_by = certificate_spec(record.spec).issuing_authority
        writer.mark_revoked(name, record.serial, datetime.now(UTC), reason, issued_by)
        writer.audit(
            actor(), "revoke", record.address, "revoke", "ok",
            f"serial {record.serial}, reason {reason}, {where}",
        )  # fmt: skip
    return (
        f"certificate.{name} (serial {record.serial}) revoked, reason {reason}: {where}. "
        "The next apply issues a new certificate if it is still declared."
    )


@dataclass
class _Access:
    """What an issuer may read to revoke (``issuers.base.IssuerAccess``)."""

    store: StateStore
    recorded: RecordedState
    root: Path
    caches: dict[str, dict[str, Any]] = field(default_factory=dict)

    def scratch(self, name: str) -> dict[str, Any]:
        return self.caches.setdefault(name, {})


def _revoke_authority(store: StateStore, recorded: RecordedState, name: str, reason: str) -> str:
    """A subordinate CA is listed in its parent's CRL; the next plan gives it a new
    key and re-issues everything below it (which needs apply --force)."""
    record = recorded.authorities.get(name)
    if record is None or not authority_issuer(record.spec).signs_authorities:
        raise PlanError(f"authority.{name} is not a private CA in the state")
    parent = authority_spec(record.spec).parent
    if not parent:
        raise PlanError(
            f"authority.{name} is a root: no CA above it can list it in a CRL; replace it "
            "(change its key) and re-distribute the new root instead"
        )
    if any(r.address == record.address and r.serial == record.serial for r in recorded.revocations):
        return f"authority.{name} (serial {record.serial}) is already revoked"
    with store.transaction() as writer:
        writer.mark_revoked(name, record.serial, datetime.now(UTC), reason, parent, "authority")
        writer.audit(
            actor(), "revoke", record.address, "revoke", "ok",
            f"serial {record.serial}, reason {reason}, listed in authority.{parent}'s CRL",
        )  # fmt: skip
    return (
        f"authority.{name} (serial {record.serial}) revoked, reason {reason}: listed in "
        f"authority.{parent}'s CRL. The next apply (with --force) gives it a new key and "
        "re-issues every certificate below it."
    )
