"""Private CA signing: CA and leaf certificates with keys certform keeps.

Pure apart from the randomness of keys and serials: the caller passes the
clock, the issuer's certificate and key, and gets back certificates and the
public chain to record.  A CA renewal keeps the CA's key (so everything it
issued still verifies); only a replacement changes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING

from cryptography import x509

from reconciler.durations import parse_duration
from reconciler.model.material import IssuedMaterial
from reconciler.pki.builder import (
    Subject,
    build_ca_certificate,
    build_leaf_certificate,
    certificate_to_pem,
    fingerprint_sha256,
)
from reconciler.pki.keys import PrivateKey

if TYPE_CHECKING:
    from reconciler.issuers.private_ca import PrivateCaSpec
    from reconciler.plan.specs import CertificateSpec

BACKDATE = timedelta(minutes=1)


@dataclass(frozen=True)
class SigningAuthority:
    """A CA ready to sign: certificate, key, and the PEMs above it.  Loaded once per
    run (``private_ca.signing_authority``): what every leaf it signs needs from it
    (key id, chain) is worked out once, not per leaf."""

    name: str
    certificate: x509.Certificate
    key: PrivateKey
    chain_pem: str
    root_pem: str

    @cached_property
    def key_id(self) -> str:
        return key_id_of(self.certificate)

    @cached_property
    def is_root(self) -> bool:
        return not self.root_pem or self.root_pem == certificate_to_pem(self.certificate)

    @cached_property
    def chain_below(self) -> str:
        """The chain of what this CA signs: itself and its own chain; empty for a root."""
        return "" if self.is_root else certificate_to_pem(self.certificate) + self.chain_pem


@dataclass(frozen=True)
class Issued:
    """A freshly signed certificate and the public material that goes with it."""

    certificate: x509.Certificate
    certificate_pem: str
    chain_pem: str
    root_pem: str

    @property
    def serial(self) -> str:
        return format(self.certificate.serial_number, "x")

    @property
    def fingerprint(self) -> str:
        return fingerprint_sha256(self.certificate)

    @property
    def material(self) -> IssuedMaterial:
        return IssuedMaterial(self.certificate_pem, self.chain_pem, self.root_pem)


def key_id_of(certificate: x509.Certificate) -> str:
    """The subject key identifier: what ties a certificate to the key that signs below it."""
    ski = certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    return ski.value.digest.hex()


def _window(validity: str, now: datetime, cap: datetime | None) -> tuple[datetime, datetime]:
    not_before = (now - BACKDATE).replace(microsecond=0)
    not_after = not_before + parse_duration(validity)
    if cap is not None and not_after > cap:
        not_after = cap
    return not_before, not_after


def crl_key_id(key_id: str) -> str:
    """The short key id that names one CA key's CRL (16 hex digits of the SKI)."""
    return key_id[:16]


def crl_url_for(template: str | None, issuer: SigningAuthority | None) -> str | None:
    """The CRL distribution point for certificates ``issuer`` signs: ``{key_id}`` in
    the configured URL becomes the issuer's key id, so each CA key (old and new,
    across a rotation) has its own CRL."""
    if not template or issuer is None:
        return None
    return template.replace("{key_id}", crl_key_id(issuer.key_id))


def issue_authority(
    spec: PrivateCaSpec, key: PrivateKey, parent: SigningAuthority | None, now: datetime
) -> Issued:
    """Sign a root (``parent`` None, self-signed) or a subordinate CA certificate."""
    constraints = spec.name_constraints or {}
    not_before, not_after = _window(
        spec.validity, now, parent.certificate.not_valid_after_utc if parent else None
    )
    certificate = build_ca_certificate(
        public_key=key.public_key(),
        subject=Subject(**spec.subject),
        issuer_cert=parent.certificate if parent else None,
        issuer_key=parent.key if parent else key,
        not_before=not_before,
        not_after=not_after,
        path_length=spec.path_length,
        permitted=constraints.get("permitted", ()),
        excluded=constraints.get("excluded", ()),
        crl_url=crl_url_for(spec.parent_crl_url, parent),
    )
    pem = certificate_to_pem(certificate)
    if parent is None:
        return Issued(certificate, pem, "", pem)
    return Issued(certificate, pem, parent.chain_below, parent.root_pem)


def issue_leaf(
    spec: CertificateSpec, key: PrivateKey, issuer: SigningAuthority, now: datetime
) -> Issued:
    """Sign a leaf; its lifetime never outlasts the issuing CA."""
    assert spec.validity is not None, "a private CA leaf always has a validity"
    not_before, not_after = _window(spec.validity, now, issuer.certificate.not_valid_after_utc)
    usages = spec.usages if "usages" in spec else ("server_auth",)
    certificate = build_leaf_certificate(
        public_key=key.public_key(),
        names=list(spec.names),
        issuer_cert=issuer.certificate,
        issuer_key=issuer.key,
        not_before=not_before,
        not_after=not_after,
        server_auth="server_auth" in usages,
        client_auth="client_auth" in usages,
        crl_url=crl_url_for(spec.crl_url, issuer),
    )
    pem = certificate_to_pem(certificate)
    return Issued(certificate, pem, issuer.chain_below, issuer.root_pem)
