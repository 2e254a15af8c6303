"""Private keys: the few algorithms certform supports, by a stable name.

Configuration and state refer to key algorithms by the names in
``KEY_ALGORITHMS``; everything else in the package maps between those names and
``cryptography`` key objects here, so the set of supported keys lives in one place.
Serialisation is always unencrypted PKCS#8: sealing keys at rest is the state
store's job, not this module's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeAlias

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, mldsa, rsa

KEY_ALGORITHMS: tuple[str, ...] = (
    "ec-p256",
    "ec-p384",
    "rsa-2048",
    "rsa-3072",
    "rsa-4096",
    "ed25519",
)
"""The classic algorithms: every TLS stack and OpenSSL 3.0 understand them."""

PQ_KEY_ALGORITHMS: tuple[str, ...] = ("ml-dsa-44", "ml-dsa-65", "ml-dsa-87")
"""Post-quantum signatures (FIPS 204) for private PKI.  OpenSSL 3.5+, BoringSSL,
Go 1.24+ (crypto/mldsa) and cryptography 45+ verify them; OpenSSL 3.0, browsers'
Web PKI, ACME CAs and AWS services do not accept them today."""

ALL_KEY_ALGORITHMS: tuple[str, ...] = KEY_ALGORITHMS + PQ_KEY_ALGORITHMS

PrivateKey: TypeAlias = (
    rsa.RSAPrivateKey
    | ec.EllipticCurvePrivateKey
    | ed25519.Ed25519PrivateKey
    | mldsa.MLDSA44PrivateKey
    | mldsa.MLDSA65PrivateKey
    | mldsa.MLDSA87PrivateKey
)
PublicKey: TypeAlias = (
    rsa.RSAPublicKey
    | ec.EllipticCurvePublicKey
    | ed25519.Ed25519PublicKey
    | mldsa.MLDSA44PublicKey
    | mldsa.MLDSA65PublicKey
    | mldsa.MLDSA87PublicKey
)

_PRIVATE_TYPES = (
    rsa.RSAPrivateKey,
    ec.EllipticCurvePrivateKey,
    ed25519.Ed25519PrivateKey,
    mldsa.MLDSA44PrivateKey,
    mldsa.MLDSA65PrivateKey,
    mldsa.MLDSA87PrivateKey,
)
_MLDSA_NAMES: tuple[tuple[type, str], ...] = (
    (mldsa.MLDSA44PublicKey, "ml-dsa-44"),
    (mldsa.MLDSA65PublicKey, "ml-dsa-65"),
    (mldsa.MLDSA87PublicKey, "ml-dsa-87"),
)
_RSA_PUBLIC_EXPONENT = 65537

_GENERATORS: dict[str, Callable[[], PrivateKey]] = {
    "ec-p256": lambda: ec.generate_private_key(ec.SECP256R1()),
    "ec-p384": lambda: ec.generate_private_key(ec.SECP384R1()),
    "rsa-2048": lambda: rsa.generate_private_key(_RSA_PUBLIC_EXPONENT, 2048),
    "rsa-3072": lambda: rsa.generate_private_key(_RSA_PUBLIC_EXPONENT, 3072),
    "rsa-4096": lambda: rsa.generate_private_key(_RSA_PUBLIC_EXPONENT, 4096),
    "ed25519": ed25519.Ed25519PrivateKey.generate,
    "ml-dsa-44": mldsa.MLDSA44PrivateKey.generate,
    "ml-dsa-65": mldsa.MLDSA65PrivateKey.generate,
    "ml-dsa-87": mldsa.MLDSA87PrivateKey.generate,
}

_CURVE_NAMES: dict[str, str] = {"secp256r1": "ec-p256", "secp384r1": "ec-p384"}
_RSA_SIZES: frozenset[int] = frozenset({2048, 3072, 4096})


def generate_private_key(algorithm: str) -> PrivateKey:
    """Generate a fresh key for one of ``KEY_ALGORITHMS``."""
    try:
        generate = _GENERATORS[algorithm]
    except KeyError:
        expected = ", ".join(ALL_KEY_ALGORITHMS)
        raise ValueError(
            f"unknown key algorithm {algorithm!r}; expected one of {expected}"
        ) from None
    return generate()


def private_key_to_der(key: PrivateKey) -> bytes:
    """PKCS#8 DER, unencrypted: the caller seals it before it touches disk."""
    return key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def private_key_to_pem(key: PrivateKey) -> bytes:
    """PKCS#8 PEM, unencrypted: the format servers expect in a key file."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def private_key_from_der(data: bytes) -> PrivateKey:
    """Load a key written by ``private_key_to_der``; reject algorithms we do not use."""
    key = serialization.load_der_private_key(data, password=None)
    if not isinstance(key, _PRIVATE_TYPES):
        raise ValueError(f"unsupported private key type {type(key).__name__}")
    return key


def key_algorithm_of(public_key: PublicKey) -> str:
    """Name of the algorithm of ``public_key``, so drift can be compared to configuration.

    Returns ``"unknown"`` for keys outside ``KEY_ALGORITHMS`` (e.g. rsa-1024, P-521)
    rather than raising, because such keys show up in certificates we did not issue.
    """
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return "ed25519"
    for key_type, name in _MLDSA_NAMES:
        if isinstance(public_key, key_type):
            return name
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return _CURVE_NAMES.get(public_key.curve.name, "unknown")
    if isinstance(public_key, rsa.RSAPublicKey) and public_key.key_size in _RSA_SIZES:
        return f"rsa-{public_key.key_size}"
    return "unknown"


def signing_hash_for(key: PrivateKey | PublicKey) -> hashes.HashAlgorithm | None:
    """Hash to sign with ``key``, matched to the key's strength; ``None`` for Ed25519.

    Ed25519 and ML-DSA hash internally and cryptography requires ``None`` for them.
    """
    public_key = key.public_key() if isinstance(key, _PRIVATE_TYPES) else key
    if isinstance(public_key, ed25519.Ed25519PublicKey) or is_post_quantum(public_key):
        return None
    if isinstance(public_key, rsa.RSAPublicKey):
        return hashes.SHA256()
    algorithm = key_algorithm_of(public_key)
    if algorithm == "ec-p256":
        return hashes.SHA256()
    if algorithm == "ec-p384":
        return hashes.SHA384()
    raise ValueError(f"no signing hash for unsupported key type {type(key).__name__}")


def is_post_quantum(public_key: object) -> bool:
    """ML-DSA: signs without a separate hash, and has no key encipherment."""
    return any(isinstance(public_key, key_type) for key_type, _ in _MLDSA_NAMES)


def public_key_matches(private_key: PrivateKey, certificate: x509.Certificate) -> bool:
    """True when ``certificate`` certifies ``private_key``'s public half."""
    try:
        certified = certificate.public_key()
    except (UnsupportedAlgorithm, ValueError):
        return False
    return _spki(private_key.public_key()) == _spki(certified)


def _spki(public_key: x509.CertificatePublicKeyTypes) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
