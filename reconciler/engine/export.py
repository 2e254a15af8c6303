"""``certform export``: hand out a certificate with its chain and its key, encrypted.

Like ACM's ExportCertificate: only for certificates declared ``exportable: true``,
only with a passphrase, and every attempt is audited (``ok`` or ``refused``).

Formats (``NAME`` is the certificate's name, files go into the ``out`` directory):

``pem``
    ``NAME.crt`` (leaf), ``NAME.chain.pem`` (intermediates), ``NAME.root.pem``
    (the root, when the state knows it) and ``NAME.key``: an encrypted PKCS#8
    ``ENCRYPTED PRIVATE KEY`` from cryptography's ``BestAvailableEncryption``:
    PBES2 = PBKDF2-HMAC-SHA256 + AES-256-CBC (cryptography 50 uses 2,048 PBKDF2
    rounds and offers no way to raise them for PKCS#8: use a long random
    passphrase).  ``openssl pkcs8 -in NAME.key`` (OpenSSL 3.0) opens it.

``pkcs12``
    ``NAME.p12``: key, leaf and chain (intermediates, then the root), keys and
    certificates encrypted with PBES2 = PBKDF2-HMAC-SHA256 (``KDF_ITERATIONS``) +
    AES-256-CBC, integrity MAC HMAC-SHA256.  OpenSSL 3.0 opens it without
    ``-legacy``.  cryptography fixes the MAC's key derivation at 2,048 rounds, so a
    guess at the passphrase can be checked against the MAC more cheaply than
    against the encryption: use a long random passphrase.

Nothing is written unless every check passes; no target file is overwritten; the
passphrase and the key never appear in output, errors or the state.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from reconciler.config.models import Certificate
from reconciler.engine.apply import actor
from reconciler.errors import CertformError
from reconciler.fsutil import make_dirs, write_atomic
from reconciler.model.material import IssuedMaterial
from reconciler.model.records import CertificateRecord, RecordedState
from reconciler.pki.keys import PrivateKey, private_key_from_der, public_key_matches
from reconciler.state.store import StateStore

FORMATS: tuple[str, ...] = ("pem", "pkcs12")
PASSPHRASE_MIN_LENGTH = 8
PASSPHRASE_MAX_BYTES = 1024
KDF_ITERATIONS = 600_000
"""PBKDF2-HMAC-SHA256 rounds for the key (OWASP's 2023 recommendation)."""

PUBLIC_MODE = 0o644
SECRET_MODE = 0o600


class ExportError(CertformError):
    """An export that cannot be done (bad input, unknown certificate); nothing written."""


class ExportRefused(ExportError):
    """An export the policy forbids; audited with result ``refused``."""


@dataclass(frozen=True)
class ExportFile:
    """One file to write: where, what it is (for the output line) and its mode."""

    path: Path
    what: str
    mode: int
    data: bytes = field(repr=False)


def export_certificate(
    store: StateStore,
    recorded: RecordedState,
    declared: Mapping[str, Certificate],
    name: str,
    passphrase: bytes,
    fmt: str,
    out: Path,
) -> list[ExportFile]:
    """Export certificate NAME into ``out``; returns the files written.

    The caller holds the state lock.  Raises ``ExportRefused`` (audited) when the
    policy forbids the export and ``ExportError`` for bad input; in both cases
    nothing is written.
    """
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; expected one of: {', '.join(FORMATS)}")
    record = _exportable_record(store, recorded, declared, name)
    material = store.material("certificate", name)
    key = private_key_from_der(store.private_key("certificate", name))
    leaf = x509.load_pem_x509_certificate(material.certificate_pem.encode())
    if not public_key_matches(key, leaf):
        raise ExportError(f"the key recorded for {record.address} does not match its certificate")
    if fmt == "pem":
        files = pem_files(name, out, material, key, passphrase)
    else:
        files = [pkcs12_file(name, out, material, key, passphrase)]
    write_all(files)
    store.audit(
        actor(), "export", record.address, "export", "ok",
        f"serial {record.serial}, format {fmt}, to {out.resolve()}",
    )  # fmt: skip
    return files


def refusal(name: str, spec: Certificate | None, record: CertificateRecord) -> str | None:
    """Why the policy forbids exporting ``record``, or None when it allows it."""
    address = record.address
    if spec is None:
        return f"{address} is not declared in the configuration, so it is not exportable"
    if not spec.exportable:
        return (
            f"{address} is not exportable: set 'exportable: true' on certificates.{name} "
            "in the configuration to allow exporting its private key"
        )
    if not record.has_key:
        return f"{address} was issued by ACM, which keeps its private key: export it from ACM"
    if record.revoked_at is not None:
        return (
            f"{address} (serial {record.serial}) was revoked on {record.revoked_at:%Y-%m-%d}; "
            "run certform apply to issue a new one"
        )
    return None


def _exportable_record(
    store: StateStore, recorded: RecordedState, declared: Mapping[str, Certificate], name: str
) -> CertificateRecord:
    record = recorded.certificates.get(name)
    if record is None:
        if name in declared:
            raise ExportError(f"certificate.{name} has not been issued yet: run certform apply")
        known = ", ".join(sorted(set(declared) | set(recorded.certificates))) or "none"
        raise ExportError(f"unknown certificate {name!r} (certificates: {known})")
    reason = refusal(name, declared.get(name), record)
    if reason is not None:
        store.audit(actor(), "export", record.address, "export", "refused", reason)
        raise ExportRefused(f"refusing to export: {reason}. Nothing was written.")
    return record


def read_passphrase(path: Path) -> bytes:
    """The passphrase in ``path``, without one trailing newline.

    ``-`` reads standard input (``printf %s "$PASS" | certform export NAME
    --passphrase-file -``), so a passphrase never needs to touch the disk.
    Raises ExportError for a missing or unreadable file and for a passphrase that
    is empty, shorter than ``PASSPHRASE_MIN_LENGTH`` characters, longer than
    ``PASSPHRASE_MAX_BYTES``, not UTF-8 or more than one line (``openssl -passin
    file:`` reads only the first line).
    """
    if str(path) == "-":
        data = sys.stdin.buffer.read(PASSPHRASE_MAX_BYTES + 1)
        source, within = "standard input (the passphrase)", "on standard input"
    else:
        try:
            with path.open("rb") as file:
                data = file.read(PASSPHRASE_MAX_BYTES + 1)
        except OSError as exc:
            raise ExportError(f"cannot read the passphrase file {path}: {exc.strerror}") from None
        source, within = f"the passphrase file {path}", f"in {path}"
    if data.endswith(b"\r\n"):
        data = data[:-2]
    elif data.endswith(b"\n"):
        data = data[:-1]
    if not data:
        raise ExportError(f"{source} is empty")
    if len(data) > PASSPHRASE_MAX_BYTES:
        raise ExportError(f"the passphrase {within} is longer than {PASSPHRASE_MAX_BYTES} bytes")
    if b"\n" in data or b"\r" in data:
        raise ExportError(f"the passphrase {within} must be a single line")
    try:
        length = len(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ExportError(f"the passphrase {within} is not UTF-8 text") from None
    if length < PASSPHRASE_MIN_LENGTH:
        raise ExportError(
            f"the passphrase {within} is too short: use at least "
            f"{PASSPHRASE_MIN_LENGTH} characters (a long random one is best)"
        )
    return data


def pem_files(
    name: str, out: Path, material: IssuedMaterial, key: PrivateKey, passphrase: bytes
) -> list[ExportFile]:
    """The files of the ``pem`` format (the root only when known)."""
    files = [
        _public(out / f"{name}.crt", "certificate", material.certificate_pem),
        _public(out / f"{name}.chain.pem", "intermediate chain", material.chain_pem),
    ]
    if material.root_pem.strip():
        files.append(_public(out / f"{name}.root.pem", "root certificate", material.root_pem))
    key_pem = encrypt_pkcs8_pem(key, passphrase)
    files.append(ExportFile(out / f"{name}.key", "encrypted private key", SECRET_MODE, key_pem))
    return files


def pkcs12_file(
    name: str, out: Path, material: IssuedMaterial, key: PrivateKey, passphrase: bytes
) -> ExportFile:
    """``NAME.p12``: key, leaf and chain, PBES2/AES-256 so that OpenSSL 3.0 opens it."""
    leaf = x509.load_pem_x509_certificate(material.certificate_pem.encode())
    cas = _certificates(material.chain_pem) + _certificates(material.root_pem)
    encryption = (
        serialization.PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(KDF_ITERATIONS)
        .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
        .hmac_hash(hashes.SHA256())
        .build(passphrase)
    )
    try:
        data = pkcs12.serialize_key_and_certificates(
            name.encode(), key, leaf, cas or None, encryption
        )
    except (TypeError, ValueError) as exc:
        raise ExportError(f"certificate.{name} cannot be exported as PKCS#12: {exc}") from None
    return ExportFile(out / f"{name}.p12", "PKCS#12 bundle", SECRET_MODE, data)


def write_all(files: list[ExportFile]) -> None:
    """Write every file or none: refuse existing targets, undo a partial write."""
    existing = [str(f.path) for f in files if f.path.exists() or f.path.is_symlink()]
    if existing:
        raise ExportError(
            f"refusing to overwrite existing {', '.join(existing)}: move it away or choose "
            "another --out directory. Nothing was written."
        )
    directory = files[0].path.parent
    if directory.exists() and not directory.is_dir():
        raise ExportError(f"--out {directory} is not a directory")
    make_dirs(directory, 0o700)
    written: list[Path] = []
    try:
        for file in files:
            write_atomic(file.path, file.data, file.mode)
            written.append(file.path)
    except BaseException:
        for path in written:
            with contextlib.suppress(OSError):
                path.unlink()
        raise


def encrypt_pkcs8_pem(key: PrivateKey, passphrase: bytes) -> bytes:
    """PKCS#8 ``ENCRYPTED PRIVATE KEY`` PEM with cryptography's best available scheme."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(passphrase),
    )


def _certificates(pem: str) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(pem.encode()) if pem.strip() else []


def _public(path: Path, what: str, pem: str) -> ExportFile:
    text = pem if not pem or pem.endswith("\n") else pem + "\n"
    return ExportFile(path, what, PUBLIC_MODE, text.encode())
