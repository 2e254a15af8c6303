"""What apply's steps share: a change's spec, and material as targets deploy it."""

from __future__ import annotations

from cryptography import x509

from reconciler.pki.builder import fingerprint_sha256
from reconciler.plan.model import Change
from reconciler.providers.base import CertificateMaterial
from reconciler.providers.private_ca import Issued
from reconciler.state.records import CertificateRecord, IssuedMaterial


def spec_of(after: dict | None, drop: tuple[str, ...]) -> dict:
    assert after is not None
    return {k: v for k, v in after.items() if k not in drop}


def deployable(
    record: CertificateRecord, material: IssuedMaterial, key_pem: bytes
) -> CertificateMaterial:
    """What a target deploys: the recorded certificate, its PEMs and its key (empty
    when ACM keeps the key, in which case targets use ``acm_arn``)."""
    return CertificateMaterial(
        address=record.address,
        name=record.name,
        serial=record.serial,
        not_after=record.not_after,
        not_before=record.not_before,
        certificate_pem=material.certificate_pem,
        chain_pem=material.chain_pem,
        root_pem=material.root_pem,
        private_key_pem=key_pem,
        tags=dict(record.tags),
        acm_arn=record.external_id,
    )


def issued_material(issued: Issued) -> IssuedMaterial:
    return IssuedMaterial(issued.certificate_pem, issued.chain_pem, issued.root_pem)


def leaf_record(
    change: Change, spec: dict, certificate: x509.Certificate, issuer_key_id: str
) -> CertificateRecord:
    """The state record of a leaf certform holds the key of, whoever signed it
    (private CA, ACME, import): dates, serial and fingerprint from the certificate,
    guard and tags from the change."""
    after = change.after or {}
    return CertificateRecord(
        name=change.name,
        spec=spec,
        serial=format(certificate.serial_number, "x"),
        not_before=certificate.not_valid_before_utc,
        not_after=certificate.not_valid_after_utc,
        issuer_key_id=issuer_key_id,
        fingerprint=fingerprint_sha256(certificate),
        prevent_destroy=bool(after.get("prevent_destroy")),
        tags=dict(after.get("tags") or {}),
        has_key=True,
    )
