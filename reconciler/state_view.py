"""``certform state list`` / ``state show``: the recorded state as rows, by address.

Only what the state records, not what the configuration declares (that is
``show``): a certificate removed from the config but still recorded appears here.
Public data only: a private key is reported as present or not, never shown.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from reconciler.errors import UsageError
from reconciler.model.records import (
    AuthorityRecord,
    BindingRecord,
    CertificateRecord,
    RecordedState,
)

FORMAT_VERSION = "1"
KINDS = ("authority", "certificate", "binding")


def addresses(recorded: RecordedState) -> list[dict[str, Any]]:
    """One row per recorded resource, authorities first, each kind sorted."""
    rows: list[dict[str, Any]] = []
    for record in sorted(recorded.authorities.values(), key=lambda r: r.name):
        rows.append(_row(record.address, "authority", record.status, record.serial))
    for cert in sorted(recorded.certificates.values(), key=lambda r: r.name):
        rows.append(_row(cert.address, "certificate", cert.status, cert.serial))
    for binding in sorted(recorded.bindings.values(), key=lambda r: r.address):
        rows.append(_row(binding.address, "binding", "deployed", binding.serial))
    return rows


def _row(address: str, kind: str, status: str, serial: str) -> dict[str, Any]:
    return {"address": address, "kind": kind, "status": status, "serial": serial}


def record_of(
    recorded: RecordedState, address: str
) -> AuthorityRecord | CertificateRecord | BindingRecord:
    """The record at ``address``; UsageError naming the known addresses otherwise."""
    kind, _, name = address.partition(".")
    found: AuthorityRecord | CertificateRecord | BindingRecord | None = None
    if kind == "authority":
        found = recorded.authorities.get(name)
    elif kind == "certificate":
        found = recorded.certificates.get(name)
    elif kind == "binding":
        found = recorded.bindings.get(address)
    else:
        raise UsageError(
            f"{address!r} is not a state address: expected authority.NAME, "
            "certificate.NAME or binding.TARGET (see `certform state list`)"
        )
    if found is None:
        raise UsageError(f"{address} is not in the state (see `certform state list`)")
    return found


def details(recorded: RecordedState, address: str) -> dict[str, Any]:
    """Everything the state records about ``address`` (public), for ``state show``."""
    record = record_of(recorded, address)
    if isinstance(record, BindingRecord):
        return {
            "address": record.address,
            "kind": "binding",
            "certificate": f"certificate.{record.certificate}",
            "serial": record.serial,
            "deployed_at": _when(record.deployed_at),
            "target": record.target,
            "facts": record.facts,
        }
    bound = sorted(b.address for b in recorded.bindings.values() if b.certificate == record.name)
    common = {
        "address": record.address,
        "kind": "authority" if isinstance(record, AuthorityRecord) else "certificate",
        "status": record.status,
        "serial": record.serial,
        "not_before": _when(record.not_before),
        "not_after": _when(record.not_after),
        "prevent_destroy": record.prevent_destroy,
        "spec": record.spec,
    }
    if isinstance(record, AuthorityRecord):
        return common | {"key_id": record.key_id, "issuer_key_id": record.issuer_key_id}
    return common | {
        "fingerprint": record.fingerprint,
        "issuer_key_id": record.issuer_key_id,
        "tags": record.tags,
        "private_key": "sealed in the state" if record.has_key else "none (held by its issuer)",
        "revoked_at": _when(record.revoked_at),
        "external_id": record.external_id,
        "bindings": bound if isinstance(record, CertificateRecord) else [],
    }


def _when(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def render_list(rows: list[dict[str, Any]]) -> str:
    """One address a line, as ``terraform state list``."""
    return "".join(f"{row['address']}\n" for row in rows)


def render_details(record: dict[str, Any]) -> str:
    """``key: value`` lines; nested settings one level indented."""
    lines = []
    for key, value in record.items():
        if isinstance(value, dict):
            lines.append(f"{key}:")
            lines.extend(f"  {k}: {_flat(v)}" for k, v in value.items())
        elif isinstance(value, list):
            lines.append(f"{key}: {', '.join(map(str, value)) or '-'}")
        else:
            lines.append(f"{key}: {_flat(value)}")
    return "\n".join(lines) + "\n"


def _flat(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return "[" + ", ".join(map(str, value)) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_flat(v)}" for k, v in value.items()) + "}"
    return str(value)
