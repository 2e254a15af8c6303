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
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidTag

from reconciler.errors import MasterKeyError
from reconciler.state.sealing import (
    DATA_KEY_V1,
    DATA_KEY_V2,
    MasterKeySource,
    unwrap_data_key,
    wrap_data_key,
)

if TYPE_CHECKING:
    from reconciler.providers.aws.iam import Statement

_KMS_CONTEXT_V2 = {"certform-data-key": "v2"}
"""KMS encryption context of a version 2 wrapping (authenticated rows; see
``sealing.DATA_KEY_V2``): KMS refuses to decrypt without the same context, so, as
with the local store's associated data, the version cannot be edited."""


class KeyStore(ABC):
    """Wraps the state's data key."""

    @abstractmethod
    def descriptor(self) -> dict[str, Any]:
        """Public description recorded in the state (no secret), to reopen it later."""

    @abstractmethod
    def wrap(self, data_key: bytes, *, creating: bool = False, version: int = DATA_KEY_V2) -> bytes:
        """Wrap ``data_key``; ``version`` (``sealing.DATA_KEY_V*``) is bound to the
        wrapping so that it can be read back but not changed without this store."""

    @abstractmethod
    def unwrap_versioned(self, wrapped: bytes) -> tuple[bytes, int]:
        """The data key and the version it was wrapped with; raise MasterKeyError when
        this store cannot open ``wrapped``."""

    def unwrap(self, wrapped: bytes) -> bytes:
        """Raise MasterKeyError when this store cannot open ``wrapped``."""
        return self.unwrap_versioned(wrapped)[0]

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

    def wrap(self, data_key: bytes, *, creating: bool = False, version: int = DATA_KEY_V2) -> bytes:
        return wrap_data_key(self.source.load(create=creating), data_key, version)

    def unwrap_versioned(self, wrapped: bytes) -> tuple[bytes, int]:
        master = self.source.load(create=False)
        try:
            return unwrap_data_key(master, wrapped)
        except (InvalidTag, ValueError):
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

    def wrap(self, data_key: bytes, *, creating: bool = False, version: int = DATA_KEY_V2) -> bytes:
        from reconciler.providers.aws.session import aws_errors

        context = {"EncryptionContext": _KMS_CONTEXT_V2} if version == DATA_KEY_V2 else {}
        with aws_errors(f"KMS encrypt under {self.key_id}"):
            blob = self._kms().encrypt(KeyId=self.key_id, Plaintext=data_key, **context)
        return bytes(blob["CiphertextBlob"])

    def unwrap_versioned(self, wrapped: bytes) -> tuple[bytes, int]:
        from reconciler.errors import ProviderError
        from reconciler.providers.aws.session import aws_errors

        kms = self._kms()
        try:
            with aws_errors(f"KMS decrypt with {self.key_id}"):
                reply = kms.decrypt(
                    CiphertextBlob=wrapped, KeyId=self.key_id, EncryptionContext=_KMS_CONTEXT_V2
                )
            return bytes(reply["Plaintext"]), DATA_KEY_V2
        except ProviderError:
            pass  # a version 1 wrapping (no context), or a key KMS will not open at all
        try:
            with aws_errors(f"KMS decrypt with {self.key_id}"):
                reply = kms.decrypt(CiphertextBlob=wrapped, KeyId=self.key_id)
            return bytes(reply["Plaintext"]), DATA_KEY_V1
        except ProviderError as exc:
            raise MasterKeyError(f"cannot open the state's data key: {exc}") from None


def kms_iam_statements(key_id: str, provider: Any) -> list[Statement]:
    """What ``KmsKeyStore`` needs: Encrypt (a new state, or switching stores) and
    Decrypt (every run that opens a sealed key), on the one key.

    An alias is no resource of these calls (IAM evaluates the key it points to):
    the statement covers keys of the region requested through that alias
    (``kms:RequestAlias``, the alias name, which certform always sends)."""
    from reconciler.providers.aws.iam import Statement, partition

    region: str = provider.region
    where, account, resource = partition(region), "*", key_id
    if key_id.startswith("arn:"):
        _, where, _, region, account, resource = key_id.split(":", 5)
    if resource.startswith("alias/"):
        key = f"arn:{where}:kms:{region}:{account}:key/*"
        condition = {"StringEquals": {"kms:RequestAlias": resource}}
    else:
        key = key_id if key_id.startswith("arn:") else f"arn:{where}:kms:{region}:*:key/{key_id}"
        condition = None
    return [Statement.of("KmsStateKey", ["kms:Decrypt", "kms:Encrypt"], [key], condition)]


def keystore_from_descriptor(descriptor: dict[str, Any], local: MasterKeySource) -> KeyStore:
    if descriptor.get("type") == "aws-kms":
        return KmsKeyStore(descriptor["key_id"], descriptor["provider"])
    return LocalKeyStore(local)


def dumps(descriptor: dict[str, Any]) -> str:
    return json.dumps(descriptor, sort_keys=True)
