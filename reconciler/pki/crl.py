"""Certificate revocation lists for certform's private CAs (RFC 5280 §5).

A CRL is rebuilt in full each time from the recorded revocations of the
certificates a CA issued: number (monotonic), this/next update, one entry per
revoked serial with its date and reason, the issuer's key identifier.
Pure: records in, signed CRL out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from reconciler.pki.keys import PrivateKey, signing_hash_for

REASONS = {
    "unspecified": x509.ReasonFlags.unspecified,
    "keyCompromise": x509.ReasonFlags.key_compromise,
    "cACompromise": x509.ReasonFlags.ca_compromise,
    "affiliationChanged": x509.ReasonFlags.affiliation_changed,
    "superseded": x509.ReasonFlags.superseded,
    "cessationOfOperation": x509.ReasonFlags.cessation_of_operation,
    "certificateHold": x509.ReasonFlags.certificate_hold,
    "removeFromCRL": x509.ReasonFlags.remove_from_crl,
    "privilegeWithdrawn": x509.ReasonFlags.privilege_withdrawn,
    "aACompromise": x509.ReasonFlags.aa_compromise,
}


@dataclass(frozen=True)
class Revoked:
    serial: str
    """Lowercase hex, as certform records serials."""
    revoked_at: datetime
    reason: str


def build_crl(
    issuer: x509.Certificate,
    issuer_key: PrivateKey,
    revoked: Sequence[Revoked],
    number: int,
    this_update: datetime,
    next_update: datetime,
) -> x509.CertificateRevocationList:
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.subject)
        .last_update(this_update)
        .next_update(next_update)
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
                issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
            ),
            critical=False,
        )
    )
    for entry in sorted(revoked, key=lambda r: int(r.serial, 16)):
        revoked_certificate = (
            x509.RevokedCertificateBuilder()
            .serial_number(int(entry.serial, 16))
            .revocation_date(entry.revoked_at)
        )
        if entry.reason != "unspecified":  # RFC 5280: omit the extension for unspecified
            revoked_certificate = revoked_certificate.add_extension(
                x509.CRLReason(REASONS[entry.reason]), critical=False
            )
        builder = builder.add_revoked_certificate(revoked_certificate.build())
    return builder.sign(issuer_key, signing_hash_for(issuer_key))  # type: ignore[arg-type]


def crl_files(crl: x509.CertificateRevocationList) -> tuple[bytes, bytes]:
    """DER (what CDP URLs usually serve) and PEM."""
    return crl.public_bytes(serialization.Encoding.DER), crl.public_bytes(
        serialization.Encoding.PEM
    )
