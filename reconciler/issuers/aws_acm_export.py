"""Exporting an ACM certificate's private key (ExportCertificate) for targets
outside AWS: exportable public certificates and private ones from AWS Private CA.

ACM returns the key as encrypted PKCS#8 under a passphrase the caller chooses.
The passphrase is random, made for one call and held only in this function's
locals: it is never logged, recorded or put into an exception (botocore's
errors are re-raised as a message of our own, without the request they carry).
The decrypted key is checked against the certificate before it is used, then
sealed in the state like every other key by the caller.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from reconciler.errors import ProviderError
from reconciler.pki.keys import private_key_to_pem
from reconciler.providers.aws.config import AwsProviderConfig
from reconciler.providers.aws.session import client, describe_error

PASSPHRASE_BYTES = 32
"""Random bytes behind the passphrase (ACM asks for 4 to 128 characters)."""


@dataclass(frozen=True)
class Exported:
    chain_pem: str
    key_der: bytes = field(repr=False)
    """PKCS#8 DER, as the state seals keys."""
    key_pem: bytes = field(repr=False)
    """What targets deploy."""


def export_certificate(settings: Mapping[str, Any], arn: str, certificate_pem: str) -> Exported:
    """Export ``arn`` and return its chain and decrypted key; ProviderError on failure."""
    provider = AwsProviderConfig.model_validate(settings["provider"])
    acm_client = client(provider, "acm", settings["region"])
    passphrase = secrets.token_urlsafe(PASSPHRASE_BYTES).encode()
    try:
        response = acm_client.export_certificate(CertificateArn=arn, Passphrase=passphrase)
    except Exception as exc:  # botocore's errors: never let one carry the request
        reason = _scrubbed(_reason(exc), passphrase)
        raise ProviderError(f"ACM export of {arn}: {reason}") from None
    try:
        key = serialization.load_pem_private_key(response["PrivateKey"].encode(), passphrase)
    except (ValueError, TypeError, KeyError):
        raise ProviderError(
            f"ACM export of {arn}: the private key could not be decrypted"
        ) from None
    exported_pem = response.get("Certificate") or certificate_pem
    certificate = x509.load_pem_x509_certificate(exported_pem.encode())
    if certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) != key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ):
        raise ProviderError(f"ACM export of {arn}: the key does not match the certificate")
    key_der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return Exported(
        _chain(response.get("CertificateChain") or ""), key_der, private_key_to_pem(key)
    )


def _reason(exc: Exception) -> str:
    from botocore.exceptions import BotoCoreError, ClientError

    if isinstance(exc, ClientError):
        return describe_error(exc)
    if isinstance(exc, BotoCoreError):
        return type(exc).__name__
    return type(exc).__name__


def _scrubbed(message: str, passphrase: bytes) -> str:
    """``message`` without the passphrase, raw or base64 (as it travels), should a
    server ever echo the request back."""
    import base64

    for form in (passphrase.decode(), base64.b64encode(passphrase).decode()):
        message = message.replace(form, "[passphrase]")
    return message


def _chain(pem: str) -> str:
    """The chain as ACM returns it, one certificate after another, newline-ended."""
    pem = pem.strip()
    return pem + "\n" if pem else ""
