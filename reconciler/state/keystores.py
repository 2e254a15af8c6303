"""Key stores: what wraps the state's data key.

Private keys are sealed with one data key per state (``sealing.Sealer``); a key
store only wraps and unwraps that data key.  ``local`` uses the master key
(``CERTFORM_MASTER_KEY`` or a key file); ``aws-kms`` uses AWS KMS envelope
encryption (GenerateDataKey / Decrypt / Encrypt), so the state holds only the
KMS-encrypted data key.  Switching stores re-wraps the data key in one
transaction: the sealed private keys themselves do not change.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag

from reconciler.errors import MasterKeyError
from reconciler.state.sealing import MasterKeySource, unwrap_data_key, wrap_data_key


class KeyStore(ABC):
    """Wraps the state's data key."""

    @abstractmethod
    def descriptor(self) -> dict[str, Any]:
        """Public description recorded in the state (no secret), to reopen it later."""

    @abstractmethod
    def wrap(self, data_key: bytes, *, creating: bool = False) -> bytes: ...

    @abstractmethod
    def unwrap(self, wrapped: bytes) -> bytes:
        """Raise MasterKeyError when this store cannot open ``wrapped``."""

    def label(self) -> str:
        return describe(self.descriptor())


def describe(descriptor: dict[str, Any]) -> str:
    if descriptor.get("type") == "aws-kms":
        return f"aws-kms {descriptor['key_id']}"
    return "local master key"


@dataclass(frozen=True)
class LocalKeyStore(KeyStore):
    source: MasterKeySource

    def descriptor(self) -> dict[str, Any]:
        return {"type": "local"}

    def wrap(self, data_key: bytes, *, creating: bool = False) -> bytes:
        return wrap_data_key(self.source.load(create=creating), data_key)

    def unwrap(self, wrapped: bytes) -> bytes:
        master = self.source.load(create=False)
        try:
            return unwrap_data_key(master, wrapped)
        except InvalidTag:
            raise MasterKeyError(
                "the master key does not open this state (wrong CERTFORM_MASTER_KEY or "
                "key file?); nothing was changed"
            ) from None


@dataclass(frozen=True)
class KmsKeyStore(KeyStore):
    """AWS KMS envelope encryption under ``key_id`` (an ARN, key id or alias)."""

    key_id: str
    provider: dict[str, Any]

    def descriptor(self) -> dict[str, Any]:
        return {"type": "aws-kms", "key_id": self.key_id, "provider": self.provider}

    def _kms(self) -> Any:
        from reconciler.providers.aws.config import AwsProviderConfig
        from reconciler.providers.aws.session import client

        return client(AwsProviderConfig.model_validate(self.provider), "kms")

    def wrap(self, data_key: bytes, *, creating: bool = False) -> bytes:
        from reconciler.providers.aws.session import aws_errors

        with aws_errors(f"KMS encrypt under {self.key_id}"):
            blob = self._kms().encrypt(KeyId=self.key_id, Plaintext=data_key)["CiphertextBlob"]
        return bytes(blob)

    def unwrap(self, wrapped: bytes) -> bytes:
        from reconciler.errors import ProviderError
        from reconciler.providers.aws.session import aws_errors

        try:
            with aws_errors(f"KMS decrypt with {self.key_id}"):
                return bytes(
                    self._kms().decrypt(CiphertextBlob=wrapped, KeyId=self.key_id)["Plaintext"]
                )
        except ProviderError as exc:
            raise MasterKeyError(f"cannot open the state's data key: {exc}") from None


def keystore_from_descriptor(descriptor: dict[str, Any], local: MasterKeySource) -> KeyStore:
    if descriptor.get("type") == "aws-kms":
        return KmsKeyStore(descriptor["key_id"], descriptor["provider"])
    return LocalKeyStore(local)


def dumps(descriptor: dict[str, Any]) -> str:
    return json.dumps(descriptor, sort_keys=True)
