"""``certform show``: what exists, when it expires, where it is served."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from reconciler.issuers.registry import certificate_spec
from reconciler.model.desired import DesiredState
from reconciler.model.records import RecordedState


def inventory(desired: DesiredState, recorded: RecordedState, now: datetime) -> dict[str, Any]:
    """Rows for authorities and certificates, config and state merged (public data only)."""
    bound: dict[str, list[str]] = {}
    for binding in recorded.bindings.values():
        bound.setdefault(binding.certificate, []).append(binding.address)
    authorities = []
    for authority in desired.authorities:
        record = recorded.authorities.get(authority.name)
        authorities.append(
            {
                "address": authority.address,
                "type": authority.spec.type,
                "subject": (authority.spec.get("subject") or {}).get("common_name")
                or authority.spec.get("directory"),
                "parent": authority.parent,
                "key": authority.spec.get("key", "-"),
                **_issued(record, now),
            }
        )
    certificates = []
    for certificate in desired.certificates:
        record = recorded.certificates.get(certificate.name)
        certificates.append(
            {
                "address": certificate.address,
                "names": list(certificate.spec.names),
                # With fallback issuers, the one that actually issued it.
                "issuer": (certificate_spec(record.spec).issued_by if record else None)
                or certificate.issuer,
                "key": certificate.spec.key,
                **_issued(record, now),
                "bound_to": sorted(bound.get(certificate.name, [])),
                "tags": certificate.tags,
            }
        )
    return {"authorities": authorities, "certificates": certificates}


def _issued(record: Any, now: datetime) -> dict[str, Any]:
    if record is None:
        return {"status": "not issued", "serial": None, "not_after": None, "days_left": None}
    return {
        "status": "issued",
        "serial": record.serial,
        "not_after": record.not_after.isoformat(),
        "days_left": (record.not_after - now).days,
    }


def render_inventory(rows: dict[str, Any]) -> None:
    console = Console(width=200, highlight=False)
    table = Table(title="Authorities", title_justify="left")
    for column in ("address", "type", "parent", "key", "serial", "not after", "days left"):
        table.add_column(column)
    for row in rows["authorities"]:
        table.add_row(
            row["address"],
            row["type"],
            row["parent"] or "-",
            row["key"],
            _short(row["serial"]),
            _date(row["not_after"]),
            _days(row["days_left"]),
        )
    console.print(table)
    table = Table(title="Certificates", title_justify="left")
    for column in ("address", "names", "issuer", "serial", "not after", "days left", "bound to",
                   "tags"):  # fmt: skip
        table.add_column(column)
    for row in rows["certificates"]:
        table.add_row(
            row["address"],
            ", ".join(row["names"]),
            row["issuer"],
            _short(row["serial"]),
            _date(row["not_after"]),
            _days(row["days_left"]),
            ", ".join(row["bound_to"]) or "-",
            ", ".join(f"{k}={v}" for k, v in row["tags"].items()) or "-",
        )
    console.print(table)


def _short(serial: str | None) -> str:
    return f"{serial[:16]}…" if serial else "(not issued)"


def _date(value: str | None) -> str:
    return value[:10] if value else "-"


def _days(value: int | None) -> str:
    return "-" if value is None else str(value)
