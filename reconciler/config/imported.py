"""Certificates certform does not issue but manages (ACM's ImportCertificate):
PEM files in the repository, checked before anything is stored.

The checks are those ACM makes on import: the key matches the certificate, the
chain verifies up to its last certificate, the certificate is not expired, and
(when the config declares ``names``) the certificate covers exactly those
names.  Every failure names the file and what is wrong.  The private key comes
from a file or an environment variable; it is read here and at apply time, and
never reaches a plan.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from reconciler.config.inputs import input_env, input_path, note_volatile
from reconciler.pki.builder import certificate_to_pem, fingerprint_sha256, verify_chain
from reconciler.pki.inspect import is_self_signed
from reconciler.pki.keys import PrivateKey, key_algorithm_of, public_key_matches


class ImportError_(ValueError):
    """One import check failed: ``field`` is the config key the message is about."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class ImportedMaterial:
    certificate: x509.Certificate
    certificate_pem: str
    chain_pem: str
    root_pem: str
    key_pem: bytes = field(repr=False)

    @property
    def serial(self) -> str:
        return format(self.certificate.serial_number, "x")

    @property
    def names(self) -> list[str]:
        try:
            sans = self.certificate.extensions.get_extension_for_class(
                x509.SubjectAlternativeName
            ).value
        except x509.ExtensionNotFound:
            return []
        return [str(name.value).lower() for name in sans]

    @property
    def key_algorithm(self) -> str:
        return key_algorithm_of(self.certificate.public_key())  # type: ignore[arg-type]

    @property
    def fingerprint(self) -> str:
        return fingerprint_sha256(self.certificate)


def _path(root: Path, value: str) -> Path:
    return input_path(root, value)


def _read(root: Path, value: str, what: str) -> bytes:
    path = _path(root, value)
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ImportError_(what, f"cannot read {path}: {exc.strerror or exc}") from None


def _certificates(data: bytes, path: str, what: str) -> list[x509.Certificate]:
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError:
        certificates = []
    if not certificates:
        raise ImportError_(what, f"{path} holds no PEM certificate")
    return certificates


def load_imported(
    root: Path,
    certificate: str,
    chain: str | None,
    private_key: str | None,
    private_key_env: str | None,
    names: list[str] | None = None,
    now: datetime | None = None,
) -> ImportedMaterial:
    """Read and check an imported certificate; raise ``ImportError_`` naming the file."""
    if now is None:
        note_volatile()  # "not expired" is a question of when it is asked
    when = now or datetime.now(UTC)
    cert_path = str(_path(root, certificate))
    certificates = _certificates(_read(root, certificate, "certificate"), cert_path, "certificate")
    leaf, extra = certificates[0], certificates[1:]
    chain_certs = extra
    if chain:
        chain_path = str(_path(root, chain))
        chain_certs = extra + _certificates(_read(root, chain, "chain"), chain_path, "chain")
    key = _private_key(root, private_key, private_key_env)
    if not public_key_matches(key, leaf):
        where = private_key or f"${private_key_env}"
        raise ImportError_(
            "private_key", f"the private key in {where} does not match the certificate {cert_path}"
        )
    if leaf.not_valid_after_utc <= when:
        raise ImportError_(
            "certificate", f"{cert_path} expired on {leaf.not_valid_after_utc:%Y-%m-%d}"
        )
    if chain_certs:
        top = chain_certs[-1]
        problem = verify_chain(leaf, chain_certs[:-1], top, when)
        if problem:
            where = chain or certificate
            raise ImportError_("chain", f"the chain in {where} does not verify: {problem}")
    material = ImportedMaterial(
        certificate=leaf,
        certificate_pem=certificate_to_pem(leaf),
        chain_pem="".join(certificate_to_pem(c) for c in chain_certs if not is_self_signed(c)),
        root_pem="".join(certificate_to_pem(c) for c in chain_certs if is_self_signed(c)),
        key_pem=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    if names and sorted(n.lower() for n in names) != sorted(material.names):
        raise ImportError_(
            "names",
            f"{cert_path} is for {', '.join(material.names) or 'no names'}, not {', '.join(names)}",
        )
    return material


def _private_key(root: Path, path: str | None, env: str | None) -> PrivateKey:
    if path:
        data, where = _read(root, path, "private_key"), str(_path(root, path))
    else:
        value = input_env(env or "")
        if not value:
            raise ImportError_("private_key_env", f"environment variable {env} is not set")
        data, where = value.encode(), f"${env}"
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise ImportError_(
            "private_key" if path else "private_key_env",
            f"{where} holds no unencrypted PEM private key",
        ) from None
    return key  # type: ignore[return-value]


def load_cached(root: Path, certificate: Any) -> ImportedMaterial:
    """``load_imported`` for a config ``Certificate``, once per process (validate and
    resolve both need it)."""
    return _load_cached(
        root,
        certificate.certificate,
        certificate.chain,
        certificate.private_key_file,
        certificate.private_key_env,
        tuple(certificate.names),
    )


@functools.cache
def _load_cached(
    root: Path,
    certificate: str,
    chain: str | None,
    private_key: str | None,
    private_key_env: str | None,
    names: tuple[str, ...],
) -> ImportedMaterial:
    return load_imported(root, certificate, chain, private_key, private_key_env, list(names))
