"""Encryption of private keys at rest: AES-256-GCM under a data key, the data key
wrapped by the master key (envelope encryption, so the master key can later come
from a KMS without re-encrypting every private key).

Each sealed blob is bound to its row through the GCM associated data.  Version 1
(states written before row authentication) bound it to the address only, so an
older blob of the same address restored onto the row still opened and a key that
no longer matched the certificate was deployed.  Version 2 (``key_aad``) binds it to
the address and to the SubjectPublicKeyInfo of the row's certificate, and a
journaled key to its journal entry (``journal_aad``): an older blob restored onto a
row no longer opens.  Which version a state's blobs use is recorded, unforgeably,
in the associated data of the wrapped data key (``DATA_KEY_V2``); see migration.py
for how a version 1 state becomes version 2.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from reconciler.errors import MasterKeyError, StateError
from reconciler.fsutil import STATE_DIR_MODE, create_exclusive, make_dirs, too_open

MASTER_KEY_ENV = "CERTFORM_MASTER_KEY"
_WRAP_AAD = b"certform data key v1"
_WRAP_AAD_V2 = b"certform data key v2 (authenticated rows)"
DATA_KEY_V1, DATA_KEY_V2 = 1, 2
"""Versions of the data key's wrapping: 2 says every row is authenticated and every
sealed key bound to its row (``key_aad``); only the master key can produce it, so an
attacker cannot make a migrated state look like an old one by editing the file."""
_KEY_AAD = "certform key v2"
_NONCE = 12


def _decode_master_key(text: str, source: str) -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise MasterKeyError(f"master key from {source} is not valid base64") from None
    if len(key) != 32:
        raise MasterKeyError(
            f"master key from {source} must be 32 bytes (base64 of 32 random bytes), "
            f"got {len(key)}; create one with: head -c 32 /dev/urandom | base64"
        )
    return key


@dataclass(frozen=True)
class MasterKeySource:
    """Where the master key comes from: the environment or a key file."""

    key_file: Path
    explicit_file: bool = False
    file_only: bool = False
    """Ignore ``$CERTFORM_MASTER_KEY``: the key of another state than the configured
    one (``state migrate --from-master-key-file``)."""

    def load(self, *, create: bool) -> bytes:
        """Return the master key; create the default key file only when ``create``.

        A state that already exists never gets a fresh key silently: a missing
        key is an error, because a new key could not open the old state.
        """
        env_value = None if self.file_only else os.environ.get(MASTER_KEY_ENV)
        if env_value:
            return _decode_master_key(env_value, f"${MASTER_KEY_ENV}")
        if self.key_file.exists():
            return self._read_file()
        if not create or self.explicit_file:
            raise MasterKeyError(f"no master key: set ${MASTER_KEY_ENV} or provide {self.key_file}")
        key = os.urandom(32)
        make_dirs(self.key_file.parent, STATE_DIR_MODE)
        try:
            # Create-if-absent: never replace a key another run made meanwhile
            # (a replaced key could no longer open the state it sealed).
            create_exclusive(self.key_file, base64.b64encode(key) + b"\n", 0o600)
        except FileExistsError:
            return self._read_file()
        return key

    def _read_file(self) -> bytes:
        problem = too_open(self.key_file)
        if problem is not None:
            raise MasterKeyError(problem)
        return _decode_master_key(self.key_file.read_text(), str(self.key_file))


@dataclass(frozen=True)
class Sealer:
    """Seals and opens private keys with the state's data key (see keystores.py for
    what wraps the data key itself)."""

    data_key: bytes = field(repr=False)

    def seal(self, plaintext: bytes, address: str) -> bytes:
        return _encrypt(self.data_key, plaintext, address.encode())

    def open(self, sealed: bytes, address: str) -> bytes:
        try:
            return _decrypt(self.data_key, sealed, address.encode())
        except InvalidTag:
            raise StateError(f"the private key of {address} in the state is corrupted") from None

    def seal_bound(self, plaintext: bytes, aad: bytes) -> bytes:
        """Seal under version 2 associated data (``key_aad`` or ``journal_aad``)."""
        return _encrypt(self.data_key, plaintext, aad)

    def open_bound(self, sealed: bytes, aad: bytes, address: str) -> bytes:
        """Open a version 2 blob; a blob that is not this row's is tampering."""
        try:
            return _decrypt(self.data_key, sealed, aad)
        except (InvalidTag, ValueError):
            raise StateError(
                f"state tampered: {address} (sealed_key); the sealed key does not belong "
                "to this row: restore the state from a backup; nothing was changed"
            ) from None

    def derive(self, label: bytes) -> bytes:
        """A 32-byte key for one purpose (plan MACs, row MACs, the audit chain), derived
        with HKDF-SHA256 under its own ``label``: a key leaked or misused for one purpose
        says nothing about the data key or the others."""
        return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=label).derive(
            self.data_key
        )


def key_aad(address: str, certificate_pem: str) -> bytes:
    """Version 2 associated data of a resource's sealed key: its address and the
    SHA-256 of its certificate's SubjectPublicKeyInfo (the key's own public half, so
    a renewal that keeps the key keeps the binding); "no-certificate" for rows that
    hold a key without one (an ACME account)."""
    return f"{_KEY_AAD}|{address}|{_public_key_binding(certificate_pem)}".encode()


def journal_aad(address: str, run_id: str, entry: int) -> bytes:
    """Version 2 associated data of a journaled key: its journal entry."""
    return f"{_KEY_AAD}|journal:{address}|{run_id}|{entry}".encode()


def _public_key_binding(certificate_pem: str) -> str:
    if not certificate_pem.strip():
        return "no-certificate"
    from cryptography import x509
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    try:
        certificate = x509.load_pem_x509_certificate(certificate_pem.encode())
    except ValueError:
        # Not a certificate: bind to the text itself (a changed PEM then fails too).
        return "pem-sha256:" + hashlib.sha256(certificate_pem.encode()).hexdigest()
    try:
        spki = certificate.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    except (UnsupportedAlgorithm, ValueError):
        der = certificate.public_bytes(serialization.Encoding.DER)
        return "cert-sha256:" + hashlib.sha256(der).hexdigest()
    return "spki-sha256:" + hashlib.sha256(spki).hexdigest()


def wrap_data_key(master_key: bytes, data_key: bytes, version: int = DATA_KEY_V2) -> bytes:
    return _encrypt(master_key, data_key, _WRAP_AAD_V2 if version == DATA_KEY_V2 else _WRAP_AAD)


def unwrap_data_key(master_key: bytes, wrapped: bytes) -> tuple[bytes, int]:
    """The data key and its wrapping version; raise InvalidTag when ``master_key`` is
    not the one that wrapped it."""
    try:
        return _decrypt(master_key, wrapped, _WRAP_AAD_V2), DATA_KEY_V2
    except InvalidTag:
        return _decrypt(master_key, wrapped, _WRAP_AAD), DATA_KEY_V1


def _encrypt(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(_NONCE)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def _decrypt(key: bytes, blob: bytes, aad: bytes) -> bytes:
    return AESGCM(key).decrypt(blob[:_NONCE], blob[_NONCE:], aad)
