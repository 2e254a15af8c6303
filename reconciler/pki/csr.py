"""Certificate signing requests for issuers that sign elsewhere (AWS Private CA).

Pure: the key and names come in, a PEM CSR goes out.  The subject is the first
name (when it fits a common name), every name is a subject alternative name,
exactly as certform's own leaves carry them.
"""

from __future__ import annotations

from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from reconciler.pki.builder import MAX_COMMON_NAME_LENGTH, _check_leaf_names, _subject_alt_name
from reconciler.pki.keys import PrivateKey, signing_hash_for


def build_csr(key: PrivateKey, names: Sequence[str]) -> bytes:
    """A PEM CSR for ``names`` signed with ``key``."""
    _check_leaf_names(names)
    subject = (
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
        if len(names[0]) <= MAX_COMMON_NAME_LENGTH
        else x509.Name([])
    )
    builder = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(subject)
        .add_extension(_subject_alt_name(names), critical=not subject)
    )
    csr = builder.sign(key, signing_hash_for(key))
    return csr.public_bytes(serialization.Encoding.PEM)
