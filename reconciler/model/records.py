"""What certform remembers: the recorded side of every plan.

Records are immutable and hold only public material (certificates, serials,
dates, settings); private keys stay sealed inside the backend and are fetched
one at a time by address when an apply step needs them.
"""

from __future__ import annotations

import json
import json.scanner
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

R = TypeVar("R")

_SCAN = json.scanner.make_scanner(json.JSONDecoder())


def decode_json(text: str) -> Any:
    """``json.loads`` of a column certform wrote with ``json.dumps``, by the C scanner
    alone: ``loads`` adds three Python calls and a regular expression per value, half
    of decoding a binding's target or facts (a plan decodes 10,000 of each).  Anything
    else (whitespace around it, trailing data, not JSON) goes to ``loads``, so the
    value and any error are ``loads``'s."""
    try:
        value, end = _SCAN(text, 0)
    except StopIteration:
        return json.loads(text)
    return value if end == len(text) else json.loads(text)


class JsonField:
    """A dataclass field (descriptor-typed) holding a JSON object that the state
    backend may hand over undecoded, as its text (a ``str``): it is decoded on first
    access and the decoded value kept, so e.g. a record's ``facts`` is one object
    as if it had been decoded when read.

    Why: a whole-state read (every ``plan``) would otherwise turn 10,000 bindings'
    facts and certificates' specs into some 100,000 lists and dicts that live to the
    end of the command, and the garbage collector's full passes over them cost more
    than decoding them.  Plan reads each once, with ``peek``.  (The text is kept
    under a private attribute, not in a materialised ``__dict__``, and as a plain
    ``str``: neither adds an object for the collector to track.)"""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name
        self.slot = f"_{name}_value"

    def __get__(self, record: object, owner: type | None = None) -> Any:
        if record is None:
            raise AttributeError(self.name)  # no default (dataclasses asks this)
        value = getattr(record, self.slot)
        if type(value) is str:
            value = decode_json(value)
            object.__setattr__(record, self.slot, value)
        return value

    def __set__(self, record: object, value: Any) -> None:
        object.__setattr__(record, self.slot, value)


def peek(record: object, name: str) -> Any:
    """The decoded value of ``record``'s ``JsonField`` ``name``, not kept on the
    record when it was still undecoded: for a caller that reads every record once
    and lets go (refresh, diff), so that the decoded values die young."""
    value = getattr(record, f"_{name}_value")
    return decode_json(value) if type(value) is str else value


def assemble(cls: type[R], fields: dict[str, Any]) -> R:
    """A record of the frozen dataclass ``cls`` holding ``fields`` (every field by
    name, a ``JsonField`` by its private attribute ``_NAME_value``), made without
    calling ``__init__``.

    Why: the state reader builds a record per row, 20,000 for a plan over 10,000
    certificates, and the ``__init__`` of a frozen dataclass sets each field through
    ``object.__setattr__``: half of building a record.  The reader knows every column
    (tests/test_state_read_speed.py checks that what it builds equals ``__init__``'s)."""
    record = object.__new__(cls)
    object.__setattr__(record, "__dict__", fields)
    return record


@dataclass(frozen=True)
class AuthorityRecord:
    """An issued CA certificate and the spec it was issued from."""

    name: str
    spec: dict[str, Any]
    serial: str
    not_before: datetime
    not_after: datetime
    key_id: str
    issuer_key_id: str | None
    prevent_destroy: bool
    status: str = "active"

    @property
    def address(self) -> str:
        return f"authority.{self.name}"


@dataclass(frozen=True)
class CertificateRecord:
    """An issued leaf certificate, the spec it came from and what guards it."""

    name: str
    spec: dict[str, Any] = JsonField()  # type: ignore[assignment]
    serial: str
    not_before: datetime
    not_after: datetime
    issuer_key_id: str
    fingerprint: str
    prevent_destroy: bool
    tags: dict[str, str]
    has_key: bool
    status: str = "active"
    revoked_at: datetime | None = None
    external_id: str | None = None  # the ACM ARN of a certificate ACM issued

    @property
    def address(self) -> str:
        return f"certificate.{self.name}"


@dataclass(frozen=True)
class BindingRecord:
    """A deployment: which certificate serial went to which target, and its facts."""

    address: str
    certificate: str
    target: dict[str, Any]
    serial: str
    facts: dict[str, Any] = JsonField()  # type: ignore[assignment]
    deployed_at: datetime


@dataclass(frozen=True)
class RevocationRecord:
    """A revoked certificate, by the authority that issued it (for its CRL)."""

    address: str
    serial: str
    issuer: str
    revoked_at: datetime
    reason: str


@dataclass(frozen=True)
class CrlRecord:
    """The last CRL published for an authority."""

    authority: str
    number: int
    this_update: datetime
    next_update: datetime
    entries: int
    files: dict[str, Any]
    """Published file name -> [size, mtime_ns, sha256]."""


@dataclass(frozen=True)
class InterruptedStep:
    """A journaled step that started and never finished (the process died)."""

    id: int
    run_id: str
    address: str
    action: str
    started_at: datetime
    has_key: bool


@dataclass(frozen=True)
class RecordedState:
    """Everything recorded, as of ``serial`` in ``lineage``."""

    lineage: str
    serial: int
    authorities: dict[str, AuthorityRecord] = field(default_factory=dict)
    certificates: dict[str, CertificateRecord] = field(default_factory=dict)
    bindings: dict[str, BindingRecord] = field(default_factory=dict)
    interrupted: tuple[InterruptedStep, ...] = ()
    revocations: tuple[RevocationRecord, ...] = ()
    crls: dict[str, CrlRecord] = field(default_factory=dict)

    @property
    def is_empty(self) -> bool:
        return not (self.authorities or self.certificates or self.bindings)
