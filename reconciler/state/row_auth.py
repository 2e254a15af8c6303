"""Authentication of state rows: an HMAC-SHA256 per row under a key derived from the
state's data key, so that editing the state outside certform is detected.

Why: the data key only protected private keys.  Anyone able to write ``state.db``
could swap a certificate's ``root_pem`` for a foreign CA (deployed as ``ca.pem`` by
the next rebind), move a binding to another target or clear ``prevent_destroy``,
and certform trusted it.  Every security-relevant table (``TABLES``) now carries a
``mac`` column, checked whenever a row is read and recomputed whenever certform
writes one.

Format 2 (states of format ``certform-state/2``; format 1 is ``row_auth_v1.py``,
read and upgraded on the first write, see ``migration.py``).  The ``mac`` column
holds ``v2:<row mac><column fingerprints>``:

* the row MAC (64 hex): HMAC-SHA256, under its own key (``ROW_MAC_LABEL``), of
  ``encode(("certform row v2", table))`` followed by ``encode(values)``: every
  column in ``TABLES`` order, the key column included, so a row moved to another
  name or table fails too;
* one fingerprint per column, in ``TABLES`` order (16 hex each): a SHA-256 keyed
  with the same key (see ``RowAuthenticator._columns``) of the table, the column,
  the row's key and the value, truncated.  Looked at only after a row MAC mismatch,
  to say which column was changed: "state tampered: certificate.web (root_pem)".
  They are not part of the row MAC: editing them changes no verdict, only which
  column a failure names.

Why a format 2: format 1 encoded each value in Python (tag, length, UTF-8) and MACed
it with the one-shot ``hmac.digest``; a whole-state read of 20,000 rows spent most of
its time there.  ``encode`` is the ``marshal`` format version 2 of a tuple of the
SQL values (str, bytes, int, float, None), written in C by ``marshal.dumps``: tagged
and length-prefixed, so unambiguous, and free of interning and back-references at
version 2.  The format is pinned here by a pure-Python encoder (``encode_reference``)
that ``marshal.dumps`` is checked against when this module loads: a Python whose
marshal ever wrote otherwise would fall back to the reference, never MAC otherwise.
The HMAC is computed from the key's precomputed inner and outer SHA-256 states
(``_Hmac``), half the cost of ``hmac.digest`` per row.

Rows of a state written before row MACs existed have a NULL ``mac``; they are
accepted only while the state as a whole is unmigrated (``required`` False), which
the wrapped data key itself records (see ``migration.py``): once migrated, a NULL or
wrong MAC is tampering.  Pure computation only; the backend reads and writes.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import marshal
import operator
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from reconciler.errors import StateError

ROW_MAC_LABEL = b"certform row mac v2"
"""HKDF label of the format 2 row MAC key (``Sealer.derive``)."""

_TAG = "v2:"
_ROW_END = len(_TAG) + 64
_FIELD_HEX = 16
_DIGEST = operator.methodcaller("digest")
_FINGERPRINT = operator.itemgetter(slice(_FIELD_HEX // 2))


@dataclass(frozen=True)
class TableSpec:
    """The authenticated columns of one table, its key column and how rows are named."""

    columns: tuple[str, ...]
    key: str
    address: str
    """Format of the row's name in messages; ``{}`` gets the key column's value."""

    def name(self, key_value: object) -> str:
        return self.address.format(key_value)

    @property
    def key_index(self) -> int:
        return self.columns.index(self.key)


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


def encode_reference(value: Any) -> bytes:
    """The format 2 encoding, spelled out: ``marshal`` version 2 of a str (UTF-8,
    surrogates passed), bytes-like, int, float, bool, None or a tuple of them.  Each
    value carries its type and (where it has one) its length, so no value can spill
    into its neighbour and a text column holding a blob's bytes does not encode like
    the blob.  ValueError for any other type (as ``marshal.dumps`` raises)."""
    if value is None:
        return b"N"
    if value is True or value is False:
        return b"T" if value else b"F"
    kind = type(value)
    if kind is int:
        if -(2**31) <= value < 2**31:
            return b"i" + struct.pack("<i", value)
        digits, rest = [], abs(value)  # base 2**15, least significant first
        while rest:
            digits.append(rest & 0x7FFF)
            rest >>= 15
        count = len(digits) if value > 0 else -len(digits)
        return b"l" + struct.pack(f"<i{len(digits)}H", count, *digits)
    if kind is float:
        return b"g" + struct.pack("<d", value)
    if kind is str:
        return _sized(b"u", value.encode("utf-8", "surrogatepass"))
    if kind is tuple:
        return b"(" + struct.pack("<i", len(value)) + b"".join(map(encode_reference, value))
    if isinstance(value, bytes | bytearray | memoryview):
        return _sized(b"s", bytes(value))
    raise ValueError(f"a {kind.__name__} has no row MAC encoding")


def _sized(tag: bytes, data: bytes) -> bytes:
    return tag + struct.pack("<i", len(data)) + data


def _marshal(value: Any) -> bytes:
    return marshal.dumps(value, 2)


_SAMPLE = (
    *(None, True, False, 0, -1, 2**31 - 1, -(2**31), 2**31, -(2**70) - 5, 1.5, -0.0),
    *("", "a", "PEM\n\u00e9\u20ac\U0001f512", "\ud800", b"", b"\x00\xff"),
    *(bytearray(b"ab"), memoryview(b"cd"), ("nested", 1)),
)
_FAST = _marshal(_SAMPLE) == encode_reference(_SAMPLE)
encode: Callable[[Any], bytes] = _marshal if _FAST else encode_reference
"""The format 2 encoding of a value or a tuple of values (see the module docstring)."""


def encode_each(values: Iterable[Any]) -> list[bytes]:
    """``encode`` of each value, in C when marshal is the encoder (a row has up to 17)."""
    if _FAST:
        return list(map(marshal.dumps, values, itertools.repeat(2)))
    return list(map(encode_reference, values))


def _padded_key(key: bytes, pad: int) -> bytes:
    """HMAC-SHA256's key block XOR ``pad`` (0x36 inner, 0x5C outer; RFC 2104)."""
    block = key if len(key) <= 64 else hashlib.sha256(key).digest()
    return bytes(b ^ pad for b in block.ljust(64, b"\0"))


class _Hmac:
    """HMAC-SHA256 under one key (RFC 2104) of messages that start with one prefix,
    from the inner and outer SHA-256 states computed once: a MAC then costs two state
    copies, not a key setup (``hmac.digest`` sets the key up on every call)."""

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes, prefix: bytes = b"") -> None:
        self._inner = hashlib.sha256(_padded_key(key, 0x36) + prefix)
        self._outer = hashlib.sha256(_padded_key(key, 0x5C))

    def hexdigest(self, *parts: bytes) -> str:
        """The MAC of the prefix given at construction followed by ``parts``."""
        inner = self._inner.copy()
        for part in parts:
            inner.update(part)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()


@dataclass(frozen=True)
class RowChecker:
    """What a row MAC format provides (``RowAuthenticator``, and format 1's in
    ``row_auth_v1.py``): checking rows as read and sealing rows as written.

    ``required``: the state is migrated, so every row must carry a valid MAC; False
    for a state written before row MACs, whose rows must then all have none.
    """

    key: bytes = field(repr=False)
    required: bool = True
    label: ClassVar[bytes]
    """HKDF label of the format's row MAC key (``Sealer.derive``)."""

    def seal(self, table: str, values: Sequence[Any]) -> str:
        """The ``mac`` column text for a row whose columns (``TABLES`` order) are ``values``."""
        raise NotImplementedError

    def _matches(self, table: str, values: Sequence[Any], mac: str) -> bool:
        """Whether the row MAC in ``mac`` is that of ``values``."""
        raise NotImplementedError

    def _fields(self, table: str, mac: str) -> dict[str, str] | None:
        """The per-column MACs stored in ``mac`` (None: unreadable)."""
        raise NotImplementedError

    def _field_mac(self, table: str, key_value: Any, column: str, value: Any) -> str:
        raise NotImplementedError

    def check(self, table: str, values: Sequence[Any], mac: str | None) -> None:
        """Raise StateError "state tampered: ADDRESS (FIELD)" unless ``mac`` is right."""
        if mac is None and not self.required:
            return
        spec = TABLES[table]
        key_value = values[spec.key_index]
        if mac is None or not self.required or type(mac) is not str:
            # A missing MAC in a migrated state, a MAC in a state that has none (the
            # mac column itself was edited, or the wrapped data key rolled back), or
            # a MAC edited into a blob or a number.
            raise tampered(spec.name(key_value), ["mac"])
        if not self._matches(table, values, mac):
            raise tampered(spec.name(key_value), self._changed(table, spec, values, mac))

    def check_rows(self, table: str, rows: Iterable[Sequence[Any]]) -> None:
        """``check`` every row read with ``select_list`` (its values, then its mac)."""
        for row in rows:
            self.check(table, row[:-1], row[-1])

    def _changed(self, table: str, spec: TableSpec, values: Sequence[Any], mac: str) -> list[str]:
        """The columns whose per-column MAC differs (["mac"] when none can be named)."""
        key_value = values[spec.key_index]
        stored = self._fields(table, mac)
        if stored is None:
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


@dataclass(frozen=True)
class RowAuthenticator(RowChecker):
    """Computes and checks format 2 row MACs under one state's row key."""

    label: ClassVar[bytes] = ROW_MAC_LABEL

    _rows: dict[str, _Hmac] = field(init=False, repr=False, compare=False)
    _columns: dict[str, tuple[bytes, ...]] = field(init=False, repr=False, compare=False)
    """Per table, per column: what its fingerprints' message starts with.  A
    fingerprint is the first 8 bytes of SHA-256(key block XOR ipad, ``encode`` of
    ("certform field v2", table, column), ``encode`` of the row's key, ``encode`` of
    the value): the inner hash of an HMAC without the outer one.  It authenticates
    nothing (the row MAC does), it only picks the column a failure names, so the
    outer hash (against extending a full digest; these are truncated) would only
    double the cost of sealing a row, one fingerprint per column."""

    def __post_init__(self) -> None:
        rows = {t: _Hmac(self.key, encode(("certform row v2", t))) for t in TABLES}
        columns = {
            t: tuple(
                _padded_key(self.key, 0x36) + encode(("certform field v2", t, c))
                for c in spec.columns
            )
            for t, spec in TABLES.items()
        }
        object.__setattr__(self, "_rows", rows)
        object.__setattr__(self, "_columns", columns)

    def seal(self, table: str, values: Sequence[Any]) -> str:
        """The ``mac`` column text for a row (``TABLES`` order), each value encoded
        once (the encoding of a tuple is its header and its values' encodings) and
        the fingerprints hashed in C (apply seals a row per recorded step)."""
        encoded = encode_each(values)
        key = encoded[TABLES[table].key_index]
        heads = self._columns[table]
        messages = [head + key + value for head, value in zip(heads, encoded, strict=True)]
        digests = map(_DIGEST, map(hashlib.sha256, messages))
        fields = b"".join(map(_FINGERPRINT, digests)).hex()
        header = b"(" + struct.pack("<i", len(encoded))
        return _TAG + self._rows[table].hexdigest(header, *encoded) + fields

    def _matches(self, table: str, values: Sequence[Any], mac: str) -> bool:
        expected = _TAG + self._rows[table].hexdigest(_encoded(values))
        return hmac.compare_digest(expected, mac[:_ROW_END])

    def _fields(self, table: str, mac: str) -> dict[str, str] | None:
        columns = TABLES[table].columns
        if not mac.startswith(_TAG) or len(mac) != _ROW_END + _FIELD_HEX * len(columns):
            return None
        start = _ROW_END
        return {c: mac[start + i * _FIELD_HEX : start + (i + 1) * _FIELD_HEX]
                for i, c in enumerate(columns)}  # fmt: skip

    def _field_mac(self, table: str, key_value: Any, column: str, value: Any) -> str:
        head = self._columns[table][TABLES[table].columns.index(column)]
        digest = hashlib.sha256(head + _encoded(key_value) + _encoded(value)).digest()
        return _FINGERPRINT(digest).hex()

    def check_rows(self, table: str, rows: Iterable[Sequence[Any]]) -> None:
        """``check`` every row read with ``select_list`` (its values, then its mac):
        the same verdict as ``check`` row by row, the per-row work inlined (a
        whole-state read checks 20,000 rows)."""
        if not self.required:
            super().check_rows(table, rows)
            return
        row_mac = self._rows[table]
        inner, outer, equal, tag = row_mac._inner, row_mac._outer, hmac.compare_digest, _TAG
        dumps, version = (marshal.dumps, 2) if _FAST else (_reference_with, encode_reference)
        for row in rows:
            mac, values = row[-1], row[:-1]
            h = inner.copy()
            try:
                h.update(dumps(values, version))
            except ValueError:  # a value of a type no column holds: edited in
                h.update(b"?")
            o = outer.copy()
            o.update(h.digest())
            if type(mac) is not str or not equal(tag + o.hexdigest(), mac[:_ROW_END]):
                self.check(table, values, mac)  # raises, naming the changed column


def _reference_with(values: Any, encoder: Callable[[Any], bytes]) -> bytes:
    """``encoder(values)``, called as ``marshal.dumps(values, 2)`` is."""
    return encoder(values)


def _encoded(value: Any) -> bytes:
    """``encode``, where a type no column holds (an edit) gets bytes no row MAC has."""
    try:
        return encode(tuple(value) if isinstance(value, list) else value)
    except ValueError:
        return b"?" + repr(value).encode()


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
