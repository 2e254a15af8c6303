"""The embedded state backend: one SQLite file beside the configuration, WAL.

What is stored and how is the shared core's (``sql_store.py``); here: the file.
A new state is born complete (schema, lineage, wrapped data key) and appears with
``link``, never by a rename over an existing file, so two first runs cannot both
create one.  The lock is an OS lock on ``state.db.lock`` (``lockfile.py``) taken
before the state is created or read; the kernel drops it when its process dies.
WAL with ``synchronous=FULL``: every COMMIT is on disk when it returns (one fsync
of the WAL); a read transaction sees one snapshot while an apply writes.  States
written by older versions are brought up to date on their first write
(``migration.py``).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sqlite3
import uuid
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from reconciler.errors import StateError
from reconciler.fsutil import STATE_DIR_MODE, fsync_directory, make_dirs, too_open
from reconciler.state import migration
from reconciler.state.keystores import KeyStore
from reconciler.state.lockfile import LockFile
from reconciler.state.sealing import MasterKeySource, Sealer
from reconciler.state.sql_store import FORMAT, SqlStateStore
from reconciler.state.store import LockInfo

__all__ = ["FORMAT", "SqliteStateStore"]

_REVOCATIONS_TABLE = (
    "CREATE TABLE IF NOT EXISTS revocations (id INTEGER PRIMARY KEY, address TEXT NOT NULL, "
    "serial TEXT NOT NULL, issuer TEXT NOT NULL, revoked_at TEXT NOT NULL, reason TEXT NOT NULL,"
    " mac TEXT)"
)
_CRLS_TABLE = (
    "CREATE TABLE IF NOT EXISTS crls (authority TEXT PRIMARY KEY, number INTEGER NOT NULL, "
    "this_update TEXT NOT NULL, next_update TEXT NOT NULL, entries INTEGER NOT NULL, "
    "files TEXT NOT NULL, mac TEXT)"
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS authorities (
  name TEXT PRIMARY KEY, status TEXT NOT NULL, spec TEXT NOT NULL, serial TEXT NOT NULL,
  not_before TEXT NOT NULL, not_after TEXT NOT NULL, key_id TEXT NOT NULL,
  issuer_key_id TEXT, prevent_destroy INTEGER NOT NULL, certificate_pem TEXT NOT NULL,
  chain_pem TEXT NOT NULL, root_pem TEXT NOT NULL, sealed_key BLOB, updated_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS certificates (
  name TEXT PRIMARY KEY, status TEXT NOT NULL, spec TEXT NOT NULL, serial TEXT NOT NULL,
  not_before TEXT NOT NULL, not_after TEXT NOT NULL, issuer_key_id TEXT NOT NULL,
  fingerprint TEXT NOT NULL, prevent_destroy INTEGER NOT NULL, tags TEXT NOT NULL,
  certificate_pem TEXT NOT NULL, chain_pem TEXT NOT NULL, root_pem TEXT NOT NULL,
  sealed_key BLOB, revoked_at TEXT, updated_at TEXT NOT NULL, external_id TEXT);
CREATE TABLE IF NOT EXISTS bindings (
  address TEXT PRIMARY KEY, certificate TEXT NOT NULL, target TEXT NOT NULL,
  serial TEXT NOT NULL, facts TEXT NOT NULL, deployed_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS history (
  id INTEGER PRIMARY KEY, address TEXT NOT NULL, serial TEXT NOT NULL, not_after TEXT NOT NULL,
  certificate_pem TEXT NOT NULL, superseded_at TEXT NOT NULL, reason TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS journal (
  id INTEGER PRIMARY KEY, run_id TEXT NOT NULL, address TEXT NOT NULL, action TEXT NOT NULL,
  status TEXT NOT NULL, sealed_key BLOB, started_at TEXT NOT NULL, finished_at TEXT);
CREATE INDEX IF NOT EXISTS journal_by_address ON journal (address);
CREATE INDEX IF NOT EXISTS journal_by_status ON journal (status);
CREATE TABLE IF NOT EXISTS audit (
  id INTEGER PRIMARY KEY, at TEXT NOT NULL, actor TEXT NOT NULL, command TEXT NOT NULL,
  address TEXT NOT NULL, action TEXT NOT NULL, result TEXT NOT NULL, detail TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS lock (
  id INTEGER PRIMARY KEY CHECK (id = 1), holder TEXT NOT NULL, pid INTEGER NOT NULL,
  host TEXT NOT NULL, operation TEXT NOT NULL, acquired_at TEXT NOT NULL);
"""


class SqliteStateStore(SqlStateStore):
    """State in ``path`` (created with its directory on first write)."""

    _BEGIN_WRITE = "BEGIN IMMEDIATE"
    _BEGIN_SNAPSHOT = "BEGIN DEFERRED"  # WAL: the snapshot is taken at its first read

    def __init__(self, path: Path, key_store: KeyStore | MasterKeySource) -> None:
        super().__init__(str(path), key_store)
        self.path = path
        self._lock = LockFile(path.with_name(f"{path.name}.lock"), path)

    # -- connection -------------------------------------------------------------
    @property
    def exists(self) -> bool:
        return self.path.exists()

    def close(self) -> None:
        if self._conn is not None:
            _OPEN.pop(id(self._conn), None)
        super().close()

    def _connect(self, *, create: bool) -> sqlite3.Connection:
        if self._conn is not None:
            return self._conn
        fresh = not self.path.exists()
        if fresh and not create:
            raise StateError(f"no state at {self.path}")
        if fresh:
            self._create_state()
        try:
            # Read-only checks first: a file we refuse must be left byte-for-byte alone.
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=30)
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        except sqlite3.DatabaseError as exc:
            raise StateError(
                f"{self.path} is not a certform state (unreadable database: {exc}); "
                "nothing was changed"
            ) from None
        if not tables:
            conn.close()
            raise StateError(
                f"{self.path} exists but holds no state (empty or truncated file?); "
                "restore it from a backup, or delete it to start a new state "
                "(which forgets every issued certificate); nothing was changed"
            )
        if tables and "meta" not in tables:
            conn.close()
            raise StateError(
                f"{self.path} is not a certform state (foreign database); nothing was changed"
            )
        problem = too_open(self.path)
        if problem is not None:
            conn.close()
            raise StateError(problem)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        self._conn = conn
        _OPEN[id(conn)] = conn
        self._check_format(conn)
        return conn

    def _create_state(self, seed: tuple[dict[str, str], bytes] | None = None) -> None:
        """Create the state complete (schema, lineage, data key wrapped by the key
        store) in a temp file, then ``link`` it into place: a crash never leaves a
        half-made state, and when another run created the state meanwhile the link
        fails and that state is used instead (never replaced).  ``seed`` (meta, data
        key) makes the copy of another state (``state migrate``) instead of a new one."""
        make_dirs(self.path.parent, STATE_DIR_MODE)
        if seed is None:
            data_key = AESGCM.generate_key(bit_length=256)
            meta = self._new_meta(data_key)
        else:
            meta, data_key = seed
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
        # Created 0600 before SQLite opens it (SQLite would honour the umask).
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
        try:
            conn = sqlite3.connect(tmp, isolation_level=None)
            try:
                # One transaction, not synced: nobody sees the file before the fsync
                # and link below (a commit per CREATE, each synced, took 40 ms).
                conn.execute("PRAGMA synchronous=OFF")
                conn.executescript(f"BEGIN;\n{_SCHEMA}")
                conn.executemany("INSERT INTO meta VALUES (?, ?)", meta.items())
                conn.execute("COMMIT")
            finally:
                conn.close()
            with open(tmp, "rb") as handle:
                os.fsync(handle.fileno())
            try:
                os.link(tmp, self.path)
            except FileExistsError:
                if seed is not None:
                    raise StateError(
                        f"{self.path} appeared meanwhile; nothing was copied"
                    ) from None
                return  # another run created it first: open theirs
        finally:
            tmp.unlink(missing_ok=True)
        fsync_directory(self.path.parent)
        self._sealer = Sealer(data_key)

    def _default_master_key(self) -> MasterKeySource:
        return MasterKeySource(self.path.parent / "master.key")

    def _create_from(self, meta: dict[str, str], data_key: bytes) -> None:
        self._create_state((meta, data_key))

    def _columns(self, conn: sqlite3.Connection, table: str) -> set[str]:  # type: ignore[override]
        return {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}

    # -- older layouts ------------------------------------------------------------
    def _mac_tables(self, conn: sqlite3.Connection) -> set[str]:  # type: ignore[override]
        return migration.tables_with_mac(conn)

    def _has_table(self, conn: sqlite3.Connection, name: str) -> bool:  # type: ignore[override]
        return _has_table(conn, name)

    def _audit_columns(self, conn: sqlite3.Connection) -> set[str]:  # type: ignore[override]
        return {r[1] for r in conn.execute("PRAGMA table_info(audit)")}

    def _prepare_for_writes(self, conn: sqlite3.Connection) -> None:  # type: ignore[override]
        """Tables and columns added since the first state format, created on the first
        write (in its transaction), so older states need no separate migration."""
        conn.execute(_REVOCATIONS_TABLE)
        conn.execute(_CRLS_TABLE)
        migration.ensure_mac_columns(conn)
        have = self._audit_columns(conn)
        for column in ("previous", "hash"):
            if column not in have:
                conn.execute(f"ALTER TABLE audit ADD COLUMN {column} TEXT")

    # -- locking ----------------------------------------------------------------
    def lock(self, operation: str, timeout: float = 0.0) -> None:
        """Take the state's OS lock, before anything is created or read: creates the
        state directory (0700) and the lock file (0600) when missing."""
        me = LockInfo.for_this_process(operation)
        try:
            make_dirs(self.path.parent, STATE_DIR_MODE)
            self._lock.acquire(me, timeout)
        except OSError as exc:
            raise StateError(
                f"cannot lock the state {self.path}: {exc.strerror or exc}; nothing was changed"
            ) from None

    def unlock(self) -> None:
        self._lock.release()

    def lock_holder(self) -> LockInfo | None:
        return self._lock.holder()

    def force_unlock(self, lock_id: str) -> str:
        """An OS lock cannot outlive its process, so a held one belongs to a live run:
        say which, rather than pretend to release it."""
        holder = self._lock.holder()
        if holder is None:
            return f"the state {self.path} is not locked; nothing to release"
        if holder.lock_id != lock_id:
            raise StateError(
                f"the state {self.path} is locked under the ID {holder.lock_id or 'unknown'}, "
                f"not {lock_id}; nothing was released"
            )
        raise StateError(
            f"lock {lock_id} is held by {holder.describe()}, which is still running: the "
            "SQLite state's lock is an OS lock that ends with its process, so a dead run "
            f"cannot leave it behind. Stop that process (pid {holder.pid} on {holder.host}) "
            "instead; nothing was released"
        )


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
    ).fetchone()
    return row is not None


_OPEN: dict[int, sqlite3.Connection] = {}
"""Every connection a store opened and did not close, held here until it is closed.

Why not the stores: a ``sqlite3.Connection`` sits in a reference cycle with its own
statement cache, so a store freed without ``close()`` (a plan's) leaves its
connection to the cyclic collector, which the CLI turns off; and the CLI leaves
without the interpreter's teardown (``cli._leave``).  Such a connection would stay
open to the end, and SQLite removes a WAL state's ``-wal`` and ``-shm`` files only
when its last connection closes."""


@atexit.register
def _close_connections() -> None:
    """Close what is still open when certform exits (see ``_OPEN``)."""
    while _OPEN:
        _, conn = _OPEN.popitem()
        with contextlib.suppress(sqlite3.Error):
            conn.close()
