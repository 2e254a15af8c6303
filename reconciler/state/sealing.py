"""Encryption of private keys at rest: AES-256-GCM under a data key, the data key
wrapped by the master key (envelope encryption, so the master key can later come
from a KMS without re-encrypting every private key).

Each sealed blob is bound to its address through the GCM associated data, so a
blob copied onto another row does not decrypt.
"""

from __future__ import annotations

import base64
import binascii
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

    def load(self, *, create: bool) -> bytes:
        """Return the master key; create the default key file only when ``create``.

        A state that already exists never gets a fresh key silently: a missing
        key is an error, because a new key could not open the old state.
        """
        env_value = os.environ.get(MASTER_KEY_ENV)
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

    def derive(self, label: bytes) -> bytes:
        """A 32-byte key for one purpose (plan MACs, row MACs, the audit chain), derived
        with HKDF-SHA256 under its own ``label``: a key leaked or misused for one purpose
        says nothing about the data key or the others."""
        return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=label).derive(
            self.data_key
        )


def wrap_data_key(master_key: bytes, data_key: bytes) -> bytes:
    return _encrypt(master_key, data_key, _WRAP_AAD)


def unwrap_data_key(master_key: bytes, wrapped: bytes) -> bytes:
    """Raise InvalidTag when ``master_key`` is not the one that wrapped it."""
    return _decrypt(master_key, wrapped, _WRAP_AAD)


def _encrypt(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(_NONCE)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def _decrypt(key: bytes, blob: bytes, aad: bytes) -> bytes:
    return AESGCM(key).decrypt(blob[:_NONCE], blob[_NONCE:], aad)
