"""The desired state: what the configuration asks for, as plain frozen data.

Built from the validated config by ``config/resolve.py`` (through the issuers);
read by the pure diff and policy code, which therefore never import pydantic
models or providers.  ``spec`` is the typed spec of the authority or
certificate: exactly the fields whose change requires a new issuance, so its
JSON form is recorded in state and compared on the next plan.  A JSON mapping
given as ``spec`` is parsed into the typed spec of its issuer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from reconciler.plan.specs import AuthoritySpec, CertificateSpec


@dataclass(frozen=True)
class DesiredAuthority:
    name: str
    spec: AuthoritySpec
    renew_before: str | None
    prevent_destroy: bool

    def __post_init__(self) -> None:
        if not isinstance(self.spec, AuthoritySpec):
            from reconciler.issuers.registry import authority_spec

            object.__setattr__(self, "spec", authority_spec(self.spec))

    @property
    def address(self) -> str:
        return f"authority.{self.name}"

    @property
    def parent(self) -> str | None:
        return self.spec.parent


@dataclass(frozen=True)
class DesiredCertificate:
    name: str
    spec: CertificateSpec
    renew_before: str | None
    prevent_destroy: bool
    tags: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.spec, CertificateSpec):
            from reconciler.issuers.registry import certificate_spec

            object.__setattr__(self, "spec", certificate_spec(self.spec))

    @property
    def address(self) -> str:
        return f"certificate.{self.name}"

    @property
    def issuer(self) -> str:
        return self.spec.issuer


@dataclass(frozen=True)
class DesiredBinding:
    address: str
    certificate: str
    target: dict[str, Any]
    acm_region: str | None = None
    """The ACM region the target serves certificates from (AWS targets), None for
    targets that deploy the key themselves: an ACM certificate renewed in place
    needs redeploying only to the latter."""
    watch_only: bool = False
    """A target certform only looks at (``tls-endpoint``): checked, never changed."""


@dataclass(frozen=True)
class DesiredState:
    """Authorities in dependency order (parents first), certificates, bindings."""

    authorities: tuple[DesiredAuthority, ...]
    certificates: tuple[DesiredCertificate, ...]
    bindings: tuple[DesiredBinding, ...]


def binding_address(target_type: str, identity: str) -> str:
    """Bindings are addressed by where they write: one target, one binding."""
    return f"binding.{target_type}:{identity}"
