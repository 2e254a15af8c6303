"""Where a configuration keeps its state: resolves the state path and master key."""

from __future__ import annotations

from pathlib import Path

from reconciler.config.models import StateConfig
from reconciler.state.sealing import MasterKeySource
from reconciler.state.sqlite import SqliteStateStore


def open_store(state: StateConfig, root: Path) -> SqliteStateStore:
    """The state store for a config rooted at ``root`` (not created until written)."""
    path = Path(state.path)
    path = path if path.is_absolute() else root / path
    if state.master_key_file:
        key_file = Path(state.master_key_file)
        key_file = key_file if key_file.is_absolute() else root / key_file
        source = MasterKeySource(key_file, explicit_file=True)
    else:
        source = MasterKeySource(path.parent / "master.key")
    return SqliteStateStore(path, source)
