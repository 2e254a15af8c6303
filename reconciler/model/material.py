"""Certificate material as it travels between issuers, the state and targets.

``IssuedMaterial`` is what an issuer produced and the state stores (public
PEMs only); ``CertificateMaterial`` is what a target is handed to deploy, the
only object that carries a private key outside the sealed state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class IssuedMaterial:
    """Public PEMs of an issued certificate, fetched on demand."""

    certificate_pem: str
    chain_pem: str
    root_pem: str


@dataclass(frozen=True)
class CertificateMaterial:
    """Everything a target may need to serve one certificate.

    ``private_key_pem`` is secret: it is excluded from ``repr`` so that it can
    never reach a log line or a traceback through this object.
    """

    address: str
    name: str
    serial: str
    not_after: datetime
    certificate_pem: str
    chain_pem: str
    root_pem: str
    private_key_pem: bytes = field(repr=False)
    tags: dict[str, str] = field(default_factory=dict)
    acm_arn: str | None = None
    """Set for certificates ACM issued: the key stays in ACM, targets use this ARN."""
    not_before: datetime | None = None

    @property
    def fullchain_pem(self) -> str:
        return self.certificate_pem + self.chain_pem
