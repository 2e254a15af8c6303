"""Typed, frozen specs: what a change's ``after`` holds and what state records.

A spec is parsed once from its JSON form (built by the issuers from the
validated config, or read back from a saved plan or the state) and keeps that
form verbatim, so a saved plan and a recorded ``spec`` serialise exactly as
before.  Code reads the typed attributes; the read-only mapping view exists
for the few generic consumers (plan rendering, JSON output, policy on names).

Which spec class a JSON form is parsed into is decided by the issuer registry
(``reconciler/issuers/registry.py``); this module holds the shapes every
issuer shares and the binding and CRL specs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar, Self

AFTER_ONLY = ("renew_before", "prevent_destroy", "tags")
"""Keys a change's ``after`` carries besides the recorded spec (guards, schedule)."""

Dependencies = tuple[tuple[str, ...], ...]
"""Addresses a step needs: each inner tuple is satisfied when any one of them did not fail."""


def _typed(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


_LAYOUTS: dict[type, tuple[dict[str, str], dict[str, Any]]] = {}
_EMPTY: Mapping[str, Any] = MappingProxyType({})


def _layout(cls: type) -> tuple[dict[str, str], dict[str, Any]]:
    """(JSON key -> field name of a spec class's typed fields, their defaults in field
    order), computed once per class (parsing 10,000 specs must stay cheap)."""
    layout = _LAYOUTS.get(cls)
    if layout is None:
        fields = [f for f in dataclasses.fields(cls) if f.name != "raw" and f.init]
        names = {f.metadata.get("key", f.name): f.name for f in fields}
        if len(names) != len(fields):
            raise TypeError(f"two fields of {cls.__name__} read the same JSON key")
        defaults = {
            f.name: f.default if f.default is not dataclasses.MISSING else _EMPTY for f in fields
        }
        layout = _LAYOUTS[cls] = (names, defaults)
    return layout


@dataclass(frozen=True, eq=False)
class Spec(Mapping[str, Any]):
    """Base of every typed spec: typed fields plus the verbatim JSON form ``raw``.

    Build one with ``parse`` only: the typed fields are read from ``raw`` once,
    so both always agree.  A field's JSON key is its name unless its metadata
    says ``key``; lists become tuples.
    """

    raw: Mapping[str, Any] = field(repr=False)

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> Self:
        raw = dict(data)
        names, defaults = _layout(cls)
        state = dict(defaults)
        for key, value in raw.items():  # the few keys a spec has, not every field
            name = names.get(key)
            if name is not None and value is not None:
                state[name] = _typed(value)
        state["raw"] = raw
        spec = object.__new__(cls)
        spec.__dict__.update(state)  # frozen: built once, here, like __init__ would
        return spec

    def to_json(self) -> dict[str, Any]:
        """The JSON form, as plans and state hold it."""
        return dict(self.raw)

    def extended(self, **extra: Any) -> Self:
        """This spec with more JSON keys (a change's guard and schedule)."""
        return self.parse({**self.raw, **extra})

    def recorded(self) -> dict[str, Any]:
        """The spec as state records it: without the guard and schedule keys."""
        return {k: v for k, v in self.raw.items() if k not in AFTER_ONLY}

    @property
    def depends_on(self) -> Dependencies:
        return ()

    # -- read-only mapping view over the JSON form ----------------------------------
    def __getitem__(self, key: str) -> Any:
        return self.raw[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.raw)

    def __len__(self) -> int:
        return len(self.raw)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Spec):
            return type(self) is type(other) and dict(self.raw) == dict(other.raw)
        if isinstance(other, Mapping):
            return dict(self.raw) == dict(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True, eq=False)
class AuthoritySpec(Spec):
    """An authority: a private CA, an ACME account, an external issuer (ACM, imported)."""

    type: str = ""
    parent: str | None = None
    """The authority that signs this one (private subordinate CAs)."""
    crl: Mapping[str, Any] | None = None
    """CRL settings, when the authority publishes one (private CAs)."""
    renew_before: str | None = None
    prevent_destroy: bool = False

    @property
    def depends_on(self) -> Dependencies:
        return ((f"authority.{self.parent}",),) if self.parent else ()


@dataclass(frozen=True, eq=False)
class CertificateSpec(Spec):
    """What every leaf has, whoever issues it; issuers subclass it with their own fields."""

    issuer_type: ClassVar[str | None] = None
    """The ``issuer_type`` key of this kind of certificate spec (None: absent)."""

    names: tuple[str, ...] = ()
    issuer: str = ""
    key: str = ""
    usages: tuple[str, ...] = ()
    validity: str | None = None
    key_rotation: str = "always"
    revoke_replaced: bool = False
    crl_url: str | None = None
    issued_by: str | None = None
    """Recorded: the authority that actually issued it (with fallback issuers)."""
    renew_before: str | None = None
    prevent_destroy: bool = False
    tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def issuing_authority(self) -> str:
        """The authority that issued the recorded certificate (its CRL lists it)."""
        return self.issued_by or self.issuer

    @property
    def authorities(self) -> tuple[str, ...]:
        """The authorities apply may ask, in order (several: fallback issuers)."""
        return (self.issuer,)

    @property
    def depends_on(self) -> Dependencies:
        return (tuple(f"authority.{name}" for name in self.authorities),)


@dataclass(frozen=True, eq=False)
class BindingSpec(Spec):
    """A deployment of one certificate to one target (settings without secrets)."""

    certificate: str = ""
    target: Mapping[str, Any] = field(default_factory=dict)

    @property
    def depends_on(self) -> Dependencies:
        return ((f"certificate.{self.certificate}",),)


@dataclass(frozen=True, eq=False)
class CrlSpec(Spec):
    """One CA's CRL: its settings and how many entries it lists."""

    authority: str = ""
    crl: Mapping[str, Any] = field(default_factory=dict)
    entries: int = 0

    @property
    def depends_on(self) -> Dependencies:
        return ((f"authority.{self.authority}",),)


def spec_for(kind: str, data: Mapping[str, Any] | Spec | None) -> Spec | None:
    """The typed ``after`` of a change of ``kind`` (``authority``, ``certificate``, ...)."""
    if data is None or isinstance(data, Spec):
        return data
    if not isinstance(data, Mapping):
        raise TypeError(f"the spec of a {kind} change must be a JSON object")
    if kind == "binding":
        return BindingSpec.parse(data)
    if kind == "crl":
        return CrlSpec.parse(data)
    from reconciler.issuers.registry import authority_spec, certificate_spec

    if kind == "authority":
        return authority_spec(data)
    if kind == "certificate":
        return certificate_spec(data)
    raise ValueError(f"unknown kind of change {kind!r}")
