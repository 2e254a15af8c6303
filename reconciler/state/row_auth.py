"""Authentication of state rows: an HMAC-SHA256 per row under a key derived from the
state's data key, so that editing the SQLite file outside certform is detected.

Why: the data key only protected private keys.  Anyone able to write ``state.db``
could swap a certificate's ``root_pem`` for a foreign CA (deployed as ``ca.pem`` by
the next rebind), move a binding to another target or clear ``prevent_destroy``,
and certform trusted it.  Every security-relevant table (``TABLES``) now carries a
``mac`` column, checked whenever a row is read and recomputed whenever certform
writes one.

The ``mac`` column holds ``<row mac><fields>``: the row MAC (64 hex, HMAC-SHA256 over
a canonical encoding of the table name and every column in ``TABLES`` order, the
primary key included, so a row moved to another name fails too) and a JSON map of
short per-column MACs (16 hex each).  Reads verify only the row MAC (one HMAC a row, fast
enough for ``plan`` over thousands of certificates); the per-column MACs are looked
at only after a mismatch, to say which column was changed:
"state tampered: certificate.web (root_pem)".

Rows of a state written before row MACs existed have a NULL ``mac``; they are
accepted only while the state as a whole is unmigrated (``required`` False), which
the wrapped data key itself records (see ``migration.py``): once migrated, a NULL or
wrong MAC is tampering.  Pure computation only; the backend reads and writes.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from reconciler.errors import StateError

ROW_MAC_LABEL = b"certform row mac v1"
"""HKDF label of the row MAC key (``Sealer.derive``)."""

_ROW_HEX = 64
_FIELD_HEX = 16


@dataclass(frozen=True)
class TableSpec:
    """The authenticated columns of one table, its key column and how rows are named."""

    columns: tuple[str, ...]
    key: str
    address: str
    """Format of the row's name in messages; ``{}`` gets the key column's value."""

    def name(self, key_value: object) -> str:
        return self.address.format(key_value)


_COMMON = ("name", "status", "spec", "serial", "not_before", "not_after")
_PEMS = ("certificate_pem", "chain_pem", "root_pem", "sealed_key")
_CERTIFICATE_COLUMNS = (
    *_COMMON,
    *("issuer_key_id", "fingerprint", "prevent_destroy", "tags"),
    *_PEMS,
    *("revoked_at", "updated_at", "external_id"),
)
_AUTHORITY_COLUMNS = (
    *_COMMON,
    *("key_id", "issuer_key_id", "prevent_destroy"),
    *_PEMS,
    "updated_at",
)

TABLES: dict[str, TableSpec] = {
    "certificates": TableSpec(_CERTIFICATE_COLUMNS, "name", "certificate.{}"),
    "authorities": TableSpec(_AUTHORITY_COLUMNS, "name", "authority.{}"),
    "bindings": TableSpec(
        ("address", "certificate", "target", "serial", "facts", "deployed_at"), "address", "{}"
    ),
    "revocations": TableSpec(
        ("id", "address", "serial", "issuer", "revoked_at", "reason"), "id", "revocation {}"
    ),
    "crls": TableSpec(
        ("authority", "number", "this_update", "next_update", "entries", "files"),
        "authority",
        "crl of authority.{}",
    ),
}
"""Authenticated tables: every column (in the order the readers select them), all but
``mac`` itself.  Changing a tuple changes every MAC: add a new MAC version then."""


def _canonical(values: Sequence[Any]) -> bytes:
    """An unambiguous, type-preserving encoding of SQLite values: each is tagged with
    its type and length-prefixed, so no value can spill into its neighbour and a text
    column holding a blob's bytes does not MAC like the blob.  (Several times faster
    than JSON for rows holding PEMs, which JSON would escape character by character.)
    The encoding of a sequence is the concatenation of its values' (``_encode``),
    inlined here: every read checks one row MAC per row."""
    parts: list[bytes] = []
    add = parts.append
    for value in values:
        if value is None:
            add(b"n;")
        elif isinstance(value, str):
            data = value.encode("utf-8", "surrogatepass")
            add(b"s%d:" % len(data))
            add(data)
        elif isinstance(value, bytes | bytearray | memoryview):
            data = bytes(value)
            add(b"b%d:" % len(data))
            add(data)
        elif isinstance(value, int):
            add(b"i%d;" % value)
        else:  # a REAL: certform stores none, but an edit could
            text = repr(value).encode()
            add(b"f%d:" % len(text))
            add(text)
    return b"".join(parts)


def _encode(value: Any) -> bytes:
    """One value's part of ``_canonical``."""
    if value is None:
        return b"n;"
    if isinstance(value, str):
        data = value.encode("utf-8", "surrogatepass")
        return b"s%d:%s" % (len(data), data)
    if isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
        return b"b%d:%s" % (len(data), data)
    if isinstance(value, int):
        return b"i%d;" % value
    text = repr(value).encode()  # a REAL: certform stores none, but an edit could
    return b"f%d:%s" % (len(text), text)


@dataclass(frozen=True)
class _Prefixes:
    """Encoded constant parts of one table's MAC messages (computed once)."""

    row: bytes
    field: bytes
    columns: tuple[bytes, ...]
    key_index: int


_PREFIXES: dict[str, _Prefixes] = {}


def _prefixes(table: str) -> _Prefixes:
    found = _PREFIXES.get(table)
    if found is None:
        spec = TABLES[table]
        found = _PREFIXES[table] = _Prefixes(
            _canonical(("row v1", table)),
            _canonical(("field v1", table)),
            tuple(_encode(column) for column in spec.columns),
            spec.columns.index(spec.key),
        )
    return found


@dataclass(frozen=True)
class RowAuthenticator:
    """Computes and checks row MACs under one state's row key.

    ``required``: the state is migrated, so every row must carry a valid MAC; False
    for a state written before row MACs, whose rows must then all have none.
    """

    key: bytes = field(repr=False)
    required: bool = True

    def _row_mac(self, table: str, values: Sequence[Any]) -> str:
        message = _prefixes(table).row + _canonical(values)
        return hmac.digest(self.key, message, "sha256").hex()

    def _field_mac(self, table: str, key_value: Any, column: str, value: Any) -> str:
        message = _canonical(("field v1", table, key_value, column, value))
        return hmac.digest(self.key, message, "sha256").hex()[:_FIELD_HEX]

    def seal(self, table: str, values: Sequence[Any]) -> str:
        """The ``mac`` column text for a row whose columns (``TABLES`` order) are ``values``.

        The same bytes as ``_row_mac`` and ``_field_mac`` would MAC, with each value
        encoded once (apply seals a row per step it records)."""
        spec, prefixes, key = TABLES[table], _prefixes(table), self.key
        encoded = [_encode(value) for value in values]
        field_head = prefixes.field + encoded[prefixes.key_index]
        digest = hmac.digest
        fields = {
            column: digest(key, field_head + name + value, "sha256").hex()[:_FIELD_HEX]
            for column, name, value in zip(spec.columns, prefixes.columns, encoded, strict=True)
        }
        row = digest(key, prefixes.row + b"".join(encoded), "sha256").hex()
        return row + json.dumps(fields, separators=(",", ":"))

    def check(self, table: str, values: Sequence[Any], mac: str | None) -> None:
        """Raise StateError "state tampered: ADDRESS (FIELD)" unless ``mac`` is right."""
        if mac is None and not self.required:
            return
        spec = TABLES[table]
        key_value = values[spec.columns.index(spec.key)]
        if mac is None or not self.required:
            # A missing MAC in a migrated state, or a MAC in a state that has none: the
            # mac column itself was edited (or the wrapped data key rolled back).
            raise tampered(spec.name(key_value), ["mac"])
        if not isinstance(mac, str):
            raise tampered(spec.name(key_value), ["mac"])  # edited into a blob or a number
        expected = self._row_mac(table, values)
        if hmac.compare_digest(expected, mac[:_ROW_HEX]):
            return
        raise tampered(spec.name(key_value), self._changed(table, spec, values, mac))

    def check_rows(self, table: str, rows: Iterable[Sequence[Any]]) -> None:
        """``check`` every row read with ``select_list`` (its values, then its mac).

        The same bytes and the same verdict as ``check`` row by row, with the
        per-table work done once: a whole-state read checks 20,000 rows."""
        if not self.required:
            for row in rows:
                self.check(table, row[:-1], row[-1])
            return
        prefix, key = _prefixes(table).row, self.key
        digest, equal = hmac.digest, hmac.compare_digest
        for row in rows:
            mac = row[-1]
            values = row[:-1]
            if type(mac) is not str or not equal(
                digest(key, prefix + _canonical(values), "sha256").hex(), mac[:_ROW_HEX]
            ):
                self.check(table, values, mac)  # raises, naming the changed column

    def _changed(self, table: str, spec: TableSpec, values: Sequence[Any], mac: str) -> list[str]:
        """The columns whose per-column MAC differs (["mac"] when none can be named)."""
        key_value = values[spec.columns.index(spec.key)]
        try:
            stored = json.loads(mac[_ROW_HEX:])
        except ValueError:
            return ["mac"]
        if not isinstance(stored, dict):
            return ["mac"]
        changed = [
            column
            for column, value in zip(spec.columns, values, strict=True)
            if not hmac.compare_digest(
                str(stored.get(column, "")), self._field_mac(table, key_value, column, value)
            )
        ]
        if spec.key in changed:
            # Every per-column MAC covers the key column: a row renamed or moved differs
            # in all of them, and the key is the one column that was changed.
            return [spec.key]
        return changed or ["mac"]


def tampered(address: str, fields: Sequence[str]) -> StateError:
    """The one error for a state edited outside certform; names no value, only fields."""
    return StateError(
        f"state tampered: {address} ({', '.join(fields)}); the state file was changed "
        "outside certform: restore it from a backup; nothing was changed"
    )


def select_list(table: str, have_mac: bool) -> str:
    """The SELECT column list for ``check``: the authenticated columns, then ``mac``."""
    columns = ", ".join(TABLES[table].columns)
    return f"{columns}, {'mac' if have_mac else 'NULL AS mac'}"
