"""Where a configuration keeps its state: resolves the state path and master key."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel

from reconciler.config.models import StateConfig
from reconciler.state.keystores import KeyStore, KmsKeyStore, LocalKeyStore
from reconciler.state.sealing import MasterKeySource
from reconciler.state.sqlite import SqliteStateStore


def open_store(
    state: StateConfig, root: Path, providers: Mapping[str, BaseModel] | None = None
) -> SqliteStateStore:
    """The state store for a config rooted at ``root`` (not created until written)."""
    path = Path(state.path)
    path = path if path.is_absolute() else root / path
    if state.master_key_file:
        key_file = Path(state.master_key_file)
        key_file = key_file if key_file.is_absolute() else root / key_file
        source = MasterKeySource(key_file, explicit_file=True)
    else:
        source = MasterKeySource(path.parent / "master.key")
    key_store: KeyStore = LocalKeyStore(source)
    if state.key_store.type == "aws-kms":
        provider = (providers or {})[state.key_store.provider]
        key_store = KmsKeyStore(
            state.key_store.key_id, provider.model_dump(mode="json", exclude_none=True)
        )
    return SqliteStateStore(path, key_store)
