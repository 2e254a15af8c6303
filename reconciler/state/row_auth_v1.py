"""Row MACs of format 1 (states written before ``certform-state/2``): kept to read
such a state and to check every row once more while upgrading it (``migration.py``).

Format 1: the ``mac`` column holds ``<row mac><fields>``: the row MAC (64 hex,
HMAC-SHA256 over ``_canonical`` of the table name and every column in ``TABLES``
order) and a JSON map of short per-column MACs (16 hex each), looked at only after a
mismatch, to name the changed column.  Superseded by format 2 (``row_auth.py``),
whose check costs a fraction: ``seal`` stays here for the tests that build a format 1
state, and to document what old states hold.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from reconciler.state.row_auth import TABLES, RowChecker

ROW_MAC_LABEL = b"certform row mac v1"
"""HKDF label of the format 1 row MAC key (``Sealer.derive``)."""

_ROW_HEX = 64
_FIELD_HEX = 16


def _canonical(values: Sequence[Any]) -> bytes:
    """An unambiguous, type-preserving encoding of SQLite values: each is tagged with
    its type and length-prefixed, so no value can spill into its neighbour and a text
    column holding a blob's bytes does not MAC like the blob.  (Several times faster
    than JSON for rows holding PEMs, which JSON would escape character by character.)
    The encoding of a sequence is the concatenation of its values' (``_encode``),
    inlined here."""
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
class RowAuthenticatorV1(RowChecker):
    """Computes and checks format 1 row MACs under one state's format 1 row key."""

    label: ClassVar[bytes] = ROW_MAC_LABEL

    def _row_mac(self, table: str, values: Sequence[Any]) -> str:
        message = _prefixes(table).row + _canonical(values)
        return hmac.digest(self.key, message, "sha256").hex()

    def _field_mac(self, table: str, key_value: Any, column: str, value: Any) -> str:
        message = _canonical(("field v1", table, key_value, column, value))
        return hmac.digest(self.key, message, "sha256").hex()[:_FIELD_HEX]

    def seal(self, table: str, values: Sequence[Any]) -> str:
        """The format 1 ``mac`` column text for a row (``TABLES`` order), each value
        encoded once."""
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

    def _matches(self, table: str, values: Sequence[Any], mac: str) -> bool:
        return hmac.compare_digest(self._row_mac(table, values), mac[:_ROW_HEX])

    def _fields(self, table: str, mac: str) -> dict[str, str] | None:
        try:
            stored = json.loads(mac[_ROW_HEX:])
        except ValueError:
            return None
        return stored if isinstance(stored, dict) else None
