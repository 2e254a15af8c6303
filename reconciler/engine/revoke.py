"""``certform revoke``: revoke the current certificate of NAME and record it.

ACME certificates are revoked at the CA that issued them (with the account
that ordered them); private-CA certificates are recorded as revoked (the CRL
lists them); ACM-issued ones are refused (revoke them in ACM).  Either way the
next plan re-issues the certificate if it is still declared ("revoked on ...").
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from reconciler.acme.client import REVOCATION_REASONS
from reconciler.engine.apply import actor
from reconciler.errors import CertformError, PlanError
from reconciler.state.records import RecordedState
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
    issuer_type = record.spec.get("issuer_type")
    if issuer_type == "aws-acm":
        raise PlanError(
            f"certificate.{name} was issued by ACM, which keeps its key: revoke it in ACM"
        )
    where = "recorded as revoked (listed in the issuing CA's CRL when it publishes one)"
    try:
        if issuer_type == "acme":
            where = _revoke_at_acme(store, recorded, name, reason, root)
    except CertformError as exc:
        store.audit(actor(), "revoke", record.address, "revoke", "failed", str(exc))
        raise
    with store.transaction() as writer:
        issuer = record.spec.get("issued_by") or record.spec["issuer"]
        writer.mark_revoked(name, record.serial, datetime.now(UTC), reason, issuer)
        writer.audit(
            actor(), "revoke", record.address, "revoke", "ok",
            f"serial {record.serial}, reason {reason}, {where}",
        )  # fmt: skip
    return (
        f"certificate.{name} (serial {record.serial}) revoked, reason {reason}: {where}. "
        "The next apply issues a new certificate if it is still declared."
    )


def _revoke_at_acme(
    store: StateStore, recorded: RecordedState, name: str, reason: str, root: Path
) -> str:
    from reconciler.acme.client import AcmeAccount

    record = recorded.certificates[name]
    issuer = record.spec.get("issued_by") or record.spec["issuer"]
    account = recorded.authorities.get(issuer)
    if account is None:
        raise PlanError(
            f"authority.{issuer} (the ACME account that ordered it) is not in the state"
        )
    spec = (record.spec.get("acme") or {}).get(issuer) or account.spec
    client = AcmeAccount(issuer, spec, root, store.private_key("authority", issuer), account.key_id)
    client.revoke(store.material("certificate", name).certificate_pem, reason)
    return f"revoked at {issuer} ({spec['directory']})"


def _revoke_authority(store: StateStore, recorded: RecordedState, name: str, reason: str) -> str:
    """A subordinate CA is listed in its parent's CRL; the next plan gives it a new
    key and re-issues everything below it (which needs apply --force)."""
    record = recorded.authorities.get(name)
    if record is None or record.spec.get("type") not in ("private-root", "private-subordinate"):
        raise PlanError(f"authority.{name} is not a private CA in the state")
    parent = record.spec.get("parent")
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
