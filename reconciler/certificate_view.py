"""``certform show ADDRESS``: one certificate (or CA) in full.

What the configuration declares, what the state recorded (serial, validity,
fingerprint, the PEMs it holds, where it is deployed) and its history from the
audit log, merged into one document.  Public data only: the private key is
reported as sealed in the state or not, never read.
"""

from __future__ import annotations

import difflib
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from reconciler.errors import UsageError
from reconciler.model.desired import DesiredState
from reconciler.model.material import IssuedMaterial
from reconciler.model.records import RecordedState

HISTORY_FIELDS = ("at", "actor", "command", "action", "result", "detail")


def resolve(address: str, desired: DesiredState, recorded: RecordedState) -> tuple[str, str]:
    """``(kind, name)`` of ``address`` (``certificate.NAME``, ``authority.NAME``, or a
    bare certificate name); UsageError with the closest known address otherwise."""
    known = {c.address for c in desired.certificates} | {a.address for a in desired.authorities}
    known |= {r.address for r in recorded.certificates.values()}
    known |= {r.address for r in recorded.authorities.values()}
    wanted = address if "." in address else f"certificate.{address}"
    if wanted in known:
        kind, _, name = wanted.partition(".")
        return kind, name
    close = difflib.get_close_matches(wanted, sorted(known), n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else " (see `certform show`)"
    raise UsageError(f"{address} is not a certificate or authority certform knows{hint}")


def details(
    kind: str,
    name: str,
    desired: DesiredState,
    recorded: RecordedState,
    material: IssuedMaterial | None,
    audit: list[dict[str, Any]],
    now: datetime,
) -> dict[str, Any]:
    """The whole picture of ``kind.name`` (see the module docstring)."""
    address = f"{kind}.{name}"
    declared = next(
        (c for c in [*desired.certificates, *desired.authorities] if c.address == address), None
    )
    record = (recorded.certificates if kind == "certificate" else recorded.authorities).get(name)
    document: dict[str, Any] = {
        "address": address,
        "kind": kind,
        "declared": declared is not None,
        "status": record.status if record is not None else "not issued",
        "names": list(getattr(declared.spec, "names", ())) if kind == "certificate" and declared
        else [],
        "issuer": getattr(declared, "issuer", None) or getattr(declared, "parent", None),
    }  # fmt: skip
    if record is not None:
        document |= {
            "serial": record.serial,
            "not_before": record.not_before.isoformat(),
            "not_after": record.not_after.isoformat(),
            "days_left": (record.not_after - now).days,
            "private_key": "sealed in the state"
            if getattr(record, "has_key", True)
            else "none (held by its issuer)",
        }
        if getattr(record, "revoked_at", None) is not None:
            document["revoked_at"] = record.revoked_at.isoformat()
        if getattr(record, "tags", None):
            document["tags"] = dict(record.tags)
    if material is not None and material.certificate_pem:
        document |= _from_pem(material)
    document["bound_to"] = [
        {
            "address": binding.address,
            "serial": binding.serial,
            "deployed_at": binding.deployed_at.isoformat(),
            "current": record is not None and binding.serial == record.serial,
        }
        for binding in sorted(recorded.bindings.values(), key=lambda b: b.address)
        if kind == "certificate" and binding.certificate == name
    ]
    document["history"] = [
        {field: row.get(field) for field in HISTORY_FIELDS}
        for row in audit
        if row.get("address") == address
    ]
    return document


def _from_pem(material: IssuedMaterial) -> dict[str, Any]:
    leaf = x509.load_pem_x509_certificate(material.certificate_pem.encode())
    chain = _certificates(material.chain_pem)
    root = _certificates(material.root_pem)
    try:
        names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        sans = [str(getattr(n, "value", n)) for n in names]
    except x509.ExtensionNotFound:
        sans = []
    return {
        "subject": leaf.subject.rfc4514_string(),
        "issuer_subject": leaf.issuer.rfc4514_string(),
        "subject_alt_names": sans,
        "fingerprint_sha256": leaf.fingerprint(hashes.SHA256()).hex(":").upper(),
        "chain": [c.subject.rfc4514_string() for c in chain],
        "root": root[0].subject.rfc4514_string() if root else None,
    }


def _certificates(pem: str | None) -> list[x509.Certificate]:
    if not pem or "BEGIN CERTIFICATE" not in pem:
        return []
    return x509.load_pem_x509_certificates(pem.encode())
