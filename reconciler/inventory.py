"""``certform show``: what exists, when it expires, where it is served."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rich import box
from rich.table import Table

from reconciler import terminal
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
    declared = {row["address"] for row in authorities + certificates}
    for _, record in sorted(recorded.authorities.items()):
        if record.address not in declared:
            authorities.append(_recorded_authority(record, now))
    for name, record in sorted(recorded.certificates.items()):
        if record.address not in declared:
            certificates.append(_recorded_certificate(record, bound.get(name, []), now))
    return {"authorities": authorities, "certificates": certificates}


def _recorded_authority(record: Any, now: datetime) -> dict[str, Any]:
    """A row for an authority only the state still has (removed from the config, or
    the config could not be read): from what was recorded when it was issued."""
    spec = record.spec
    return {
        "address": record.address,
        "type": spec.get("type", "-"),
        "subject": (spec.get("subject") or {}).get("common_name") or spec.get("directory"),
        "parent": spec.get("parent"),
        "key": spec.get("key", "-"),
        **_issued(record, now),
        "declared": False,
    }


def _recorded_certificate(record: Any, bound: list[str], now: datetime) -> dict[str, Any]:
    spec = record.spec
    return {
        "address": record.address,
        "names": list(spec.get("names", ())),
        "issuer": certificate_spec(spec).issued_by or spec.get("issuer") or "-",
        "key": spec.get("key", "-"),
        **_issued(record, now),
        "bound_to": sorted(bound),
        "tags": record.tags,
        "declared": False,
    }


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
    """Two tables fitted to the terminal's width (or ``COLUMNS``; wide in a pipe)."""
    console = terminal.console()
    table = _table("Authorities")
    for column in ("address", "type", "parent", "key", "serial", "not after", "days left"):
        table.add_column(column, overflow="fold", no_wrap=column in _NARROW)
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
    table = _table("Certificates")
    for column in ("address", "names", "issuer", "serial", "not after", "days left", "bound to",
                   "tags"):  # fmt: skip
        table.add_column(column, overflow="fold", no_wrap=column in _NARROW)
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


def render_certificate(document: dict[str, Any]) -> None:
    """``show ADDRESS``: one field a row, then the bindings and the history."""
    console = terminal.console()
    fields = _table(document["address"], show_header=False)
    fields.add_column("field", style="bold", no_wrap=True)
    fields.add_column("value", overflow="fold")
    for key, value in document.items():
        if key in ("address", "bound_to", "history"):
            continue
        fields.add_row(key.replace("_", " "), _cell(value))
    console.print(fields)
    bindings = _table("Bound to")
    for column in ("address", "serial", "deployed at", "current"):
        bindings.add_column(column, overflow="fold")
    for binding in document["bound_to"]:
        bindings.add_row(binding["address"], _short(binding["serial"]), binding["deployed_at"],
                         "yes" if binding["current"] else "no (older serial)")  # fmt: skip
    if document["bound_to"]:
        console.print(bindings)
    history = _table("History")
    for column in ("at", "command", "action", "result", "detail"):
        history.add_column(column, overflow="fold")
    for row in document["history"]:
        history.add_row(*(_cell(row[c]) for c in ("at", "command", "action", "result", "detail")))
    if document["history"]:
        console.print(history)


_NARROW = frozenset({"key", "not after", "days left"})
"""Columns kept on one line: the others wrap to make room for them."""


def _table(title: str, show_header: bool = True) -> Table:
    """Light borders: in 80 columns the cells, not the lines, get the width."""
    return Table(
        title=title, title_justify="left", show_header=show_header, box=box.SIMPLE_HEAD,
        title_style="bold", header_style="bold", padding=(0, 1), collapse_padding=True,
    )  # fmt: skip


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return "\n".join(map(str, value)) or "-"
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items()) or "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _short(serial: str | None) -> str:
    return f"{serial[:16]}…" if serial else "(not issued)"


def _date(value: str | None) -> str:
    return value[:10] if value else "-"


def _days(value: int | None) -> str:
    return "-" if value is None else str(value)
