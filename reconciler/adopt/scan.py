"""Walk a directory tree and find certificates and private keys by their content.

Bounded, so that pointing it at ``/etc`` is harmless: files over 1 MB are
skipped (certificates and keys are a few kB), special files are never opened,
at most ``MAX_FILES`` files are looked at, and directory symlinks are not
entered (no loops, no escape into the rest of the file system).  File symlinks
are read wherever they point: that is how certbot's ``live/NAME/cert.pem``
reaches ``archive/NAME/certN.pem``, and the link is the path a server is
configured with, so it is the path reported.

PEM is found by its armour, DER by trying to parse files that start with an
ASN.1 SEQUENCE.  A private key is only ever parsed to learn its public key;
nothing here keeps or returns key material.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from reconciler.pki.keys import key_algorithm_of

MAX_FILE_BYTES = 1 << 20
MAX_FILES = 20_000
_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n.*?-----END \1-----", re.DOTALL)
_KEY_LABELS = {b"PRIVATE KEY", b"RSA PRIVATE KEY", b"EC PRIVATE KEY", b"ENCRYPTED PRIVATE KEY"}


@dataclass(frozen=True)
class Place:
    """Where something was found: the path as walked (a symlink stays a symlink)."""

    path: Path
    via_link: bool
    pem: bool

    def preference(self) -> tuple[int, int, int, str]:
        """Sort key among copies of one thing: PEM (the config reads PEM), then the
        path reached through a symlink (certbot's stable ``live/`` name), then the
        shallowest, then by name."""
        return (not self.pem, not self.via_link, len(self.path.parts), str(self.path))


@dataclass(frozen=True)
class FoundCertificate:
    place: Place
    index: int
    """Position in its file (0: first; a config ``certificate:`` file starts with its leaf)."""
    count: int
    """How many certificates the file holds."""
    certificate: x509.Certificate

    @property
    def is_ca(self) -> bool:
        try:
            constraints = self.certificate.extensions.get_extension_for_class(x509.BasicConstraints)
        except x509.ExtensionNotFound:
            return False
        return constraints.value.ca


@dataclass(frozen=True)
class FoundKey:
    place: Place
    public_key: bytes | None
    """SubjectPublicKeyInfo DER; None for an encrypted key (unreadable without its passphrase)."""
    algorithm: str | None = None

    @property
    def encrypted(self) -> bool:
        return self.public_key is None


@dataclass
class ScanResult:
    certificates: list[FoundCertificate] = field(default_factory=list)
    keys: list[FoundKey] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """What was skipped and why (too large, unreadable, broken link, the file limit)."""


def public_key_der(public_key: object) -> bytes:
    return public_key.public_bytes(  # type: ignore[attr-defined, no-any-return]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def scan(directory: Path) -> ScanResult:
    """Every certificate and key under ``directory`` (see the module docstring)."""
    result = ScanResult()
    seen = 0
    for folder, dirnames, filenames in os.walk(directory, followlinks=False):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(folder) / name
            if seen >= MAX_FILES:
                result.notes.append(f"stopped after {MAX_FILES} files; scan a smaller tree")
                return result
            seen += 1
            data = _read(path, result.notes)
            if data is not None:
                _classify(path, data, result)
    return result


def _read(path: Path, notes: list[str]) -> bytes | None:
    try:
        info = path.stat()  # follows a file symlink
    except OSError:
        if path.is_symlink():
            notes.append(f"{path}: broken symlink, skipped")
        return None
    if not stat.S_ISREG(info.st_mode) or info.st_size == 0:
        return None
    if info.st_size > MAX_FILE_BYTES:
        notes.append(f"{path}: larger than 1 MB, skipped")
        return None
    try:
        with path.open("rb") as handle:
            return handle.read(MAX_FILE_BYTES + 1)[:MAX_FILE_BYTES]
    except OSError as exc:
        notes.append(f"{path}: cannot read ({exc.strerror or exc}), skipped")
        return None


def _classify(path: Path, data: bytes, result: ScanResult) -> None:
    link = path.is_symlink()
    if b"-----BEGIN " in data:
        _pem(Place(path, link, True), data, result)
    elif data[:1] == b"\x30":
        _der(Place(path, link, False), data, result)


def _pem(place: Place, data: bytes, result: ScanResult) -> None:
    certificates: list[x509.Certificate] = []
    for block in _PEM_BLOCK.finditer(data):
        label = block.group(1)
        if label == b"CERTIFICATE":
            try:
                certificates.append(x509.load_pem_x509_certificate(block.group(0)))
            except ValueError:
                result.notes.append(f"{place.path}: a certificate that does not parse, skipped")
        elif label in _KEY_LABELS:
            _key(
                place, lambda b=block.group(0): serialization.load_pem_private_key(b, None), result
            )
    for index, certificate in enumerate(certificates):
        result.certificates.append(FoundCertificate(place, index, len(certificates), certificate))


def _der(place: Place, data: bytes, result: ScanResult) -> None:
    try:
        certificate = x509.load_der_x509_certificate(data)
    except ValueError:
        _key(place, lambda: serialization.load_der_private_key(data, None), result, quiet=True)
        return
    result.certificates.append(FoundCertificate(place, 0, 1, certificate))


def _key(place: Place, load: object, result: ScanResult, quiet: bool = False) -> None:
    """Learn the key's public half; an encrypted key is recorded as such (its
    passphrase is not asked for).  The private key object dies here."""
    try:
        key = load()  # type: ignore[operator]
    except TypeError:  # "Password was not given but private key is encrypted"
        result.keys.append(FoundKey(place, None))
        return
    except (ValueError, UnsupportedAlgorithm):  # not a key (or one nobody can use)
        if not quiet:
            result.notes.append(f"{place.path}: a private key that does not parse, skipped")
        return
    public = key.public_key()
    result.keys.append(FoundKey(place, public_key_der(public), key_algorithm_of(public)))
