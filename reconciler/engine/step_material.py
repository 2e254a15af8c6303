"""Material as targets deploy it, from a recorded certificate."""

from __future__ import annotations

from reconciler.model.material import CertificateMaterial, IssuedMaterial
from reconciler.model.records import CertificateRecord


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
