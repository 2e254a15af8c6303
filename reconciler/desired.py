"""The desired state: what the configuration asks for, as plain frozen data.

Built from the validated config by ``config/resolve.py``; read by the pure diff
and policy code, which therefore never import pydantic models or providers.
``spec`` dicts hold exactly the fields whose change requires a new issuance,
so the same dicts are recorded in state and compared on the next plan.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class DesiredAuthority:
    name: str
    spec: dict[str, Any]
    renew_before: str | None
    prevent_destroy: bool

    @property
    def address(self) -> str:
        return f"authority.{self.name}"

    @property
    def parent(self) -> str | None:
        return self.spec.get("parent")


@dataclass(frozen=True)
class DesiredCertificate:
    name: str
    spec: dict[str, Any]
    renew_before: str | None
    prevent_destroy: bool
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return f"certificate.{self.name}"

    @property
    def issuer(self) -> str:
        return self.spec["issuer"]


@dataclass(frozen=True)
class DesiredBinding:
    address: str
    certificate: str
    target: dict[str, Any]


@dataclass(frozen=True)
class DesiredState:
    """Authorities in dependency order (parents first), certificates, bindings."""

    authorities: tuple[DesiredAuthority, ...]
    certificates: tuple[DesiredCertificate, ...]
    bindings: tuple[DesiredBinding, ...]


def binding_address(target_type: str, identity: str) -> str:
    """Bindings are addressed by where they write: one target, one binding."""
    return f"binding.{target_type}:{identity}"
