"""Where a configuration keeps its state: resolves the state path and master key."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel

from reconciler.config.models import StateConfig
from reconciler.state.keystores import KeyStore, KmsKeyStore, LocalKeyStore
from reconciler.state.sealing import MasterKeySource
from reconciler.state.sqlite import SqliteStateStore
from reconciler.state.store import StateStore


def open_store(
    state: StateConfig, root: Path, providers: Mapping[str, BaseModel] | None = None
) -> StateStore:
    """The state store for a config rooted at ``root`` (not created until written)."""
    path = Path(state.path)
    path = path if path.is_absolute() else root / path
    key_file = None
    if state.master_key_file:
        key_file = Path(state.master_key_file)
        key_file = key_file if key_file.is_absolute() else root / key_file
    if state.backend == "postgres":
        from reconciler.state.postgres import PostgresStateStore, master_key_source

        local = master_key_source(key_file, root)
        assert state.dsn_env is not None  # the config model requires it for postgres
        return PostgresStateStore(
            state.dsn_env, state.name, _key_store(state, local, providers), local
        )
    if key_file is not None:
        source = MasterKeySource(key_file, explicit_file=True)
    else:
        source = MasterKeySource(path.parent / "master.key")
    return SqliteStateStore(path, _key_store(state, source, providers))


def _key_store(
    state: StateConfig, source: MasterKeySource, providers: Mapping[str, BaseModel] | None
) -> KeyStore:
    """What wraps the state's data key: the master key, or KMS."""
    key_store: KeyStore = LocalKeyStore(source)
    if state.key_store.type == "aws-kms":
        provider = (providers or {})[state.key_store.provider]
        key_store = KmsKeyStore(
            state.key_store.key_id, provider.model_dump(mode="json", exclude_none=True)
        )
    return key_store
