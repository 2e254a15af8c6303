"""The embedded state backend: one SQLite file, WAL, one transaction per step.

Contract shared by every backend (see ``StateStore`` in ``store.py``): ``read``
returns public records only; private keys are sealed with the state's data key
before they are written and opened only on demand; every transaction that
changes records bumps the serial; the lock (an OS lock on ``state.db.lock``, see
``lockfile.py``) names its holder and dies with its process.  A new state is born
complete (schema, lineage, wrapped data key) and appears with ``link``, never by a
rename over an existing file, so two first runs cannot both create one.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import sqlite3
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from reconciler.errors import StateError
from reconciler.fsutil import STATE_DIR_MODE, fsync_directory, make_dirs, too_open
from reconciler.state import keystores
from reconciler.state.keystores import KeyStore, LocalKeyStore
from reconciler.state.lockfile import LockFile
from reconciler.state.records import (
    AuthorityRecord,
    BindingRecord,
    CertificateRecord,
    CrlRecord,
    InterruptedStep,
    IssuedMaterial,
    RecordedState,
    RevocationRecord,
)
from reconciler.state.sealing import MasterKeySource, Sealer
from reconciler.state.store import LockInfo, StateStore, StateWriter

FORMAT = "certform-state/1"

_REVOCATIONS_TABLE = (
    "CREATE TABLE IF NOT EXISTS revocations (id INTEGER PRIMARY KEY, address TEXT NOT NULL, "
    "serial TEXT NOT NULL, issuer TEXT NOT NULL, revoked_at TEXT NOT NULL, reason TEXT NOT NULL)"
)
_CRLS_TABLE = (
    "CREATE TABLE IF NOT EXISTS crls (authority TEXT PRIMARY KEY, number INTEGER NOT NULL, "
    "this_update TEXT NOT NULL, next_update TEXT NOT NULL, entries INTEGER NOT NULL, "
    "files TEXT NOT NULL)"
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


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _dt(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


class SqliteStateStore(StateStore):
    """State in ``path`` (created with its directory on first write)."""

    def __init__(self, path: Path, key_store: KeyStore | MasterKeySource) -> None:
        self.path = path
        if isinstance(key_store, MasterKeySource):
            key_store = LocalKeyStore(key_store)
        self.key_store = key_store
        self._local = key_store.source if isinstance(key_store, LocalKeyStore) else None
        self._key_store_change: tuple[dict[str, Any], dict[str, Any]] | None = None
        self._conn: sqlite3.Connection | None = None
        self._sealer: Sealer | None = None
        self._lock = LockFile(path.with_name(f"{path.name}.lock"), path)

    # -- connection -------------------------------------------------------------
    @property
    def exists(self) -> bool:
        return self.path.exists()

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
        self._check_format(conn)
        return conn

    def _create_state(self) -> None:
        """Create the state complete (schema, lineage, data key wrapped by the key
        store) in a temp file, then ``link`` it into place: a crash never leaves a
        half-made state, and when another run created the state meanwhile the link
        fails and that state is used instead (never replaced)."""
        make_dirs(self.path.parent, STATE_DIR_MODE)
        data_key = AESGCM.generate_key(bit_length=256)
        meta = self._new_meta(data_key)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
        # Created 0600 before SQLite opens it (SQLite would honour the umask).
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
        try:
            conn = sqlite3.connect(tmp, isolation_level=None)
            try:
                conn.executescript(_SCHEMA)
                conn.execute("BEGIN")
                conn.executemany("INSERT INTO meta VALUES (?, ?)", meta.items())
                conn.execute("COMMIT")
            finally:
                conn.close()
            with open(tmp, "rb") as handle:
                os.fsync(handle.fileno())
            try:
                os.link(tmp, self.path)
            except FileExistsError:
                return  # another run created it first: open theirs
        finally:
            tmp.unlink(missing_ok=True)
        fsync_directory(self.path.parent)
        self._sealer = Sealer(data_key)

    def _new_meta(self, data_key: bytes) -> dict[str, str]:
        wrapped = self.key_store.wrap(data_key, creating=True)
        return {
            "format": FORMAT,
            "lineage": str(uuid.uuid4()),
            "serial": "0",
            "data_key": base64.b64encode(wrapped).decode(),
            "key_store": keystores.dumps(self.key_store.descriptor()),
        }

    def _check_format(self, conn: sqlite3.Connection) -> None:
        meta = dict(conn.execute("SELECT key, value FROM meta"))
        if not meta:
            return
        if meta.get("format") != FORMAT:
            raise StateError(
                f"{self.path} has state format {meta.get('format')!r}; this certform "
                f"reads {FORMAT!r}"
            )

    def _meta(self) -> dict[str, str]:
        conn = self._connect(create=True)
        meta = dict(conn.execute("SELECT key, value FROM meta"))
        if meta:
            return meta
        # A state with an empty meta table (made by an earlier version that crashed
        # before its first write): initialise it once, re-checked inside the
        # transaction so that two runs cannot both do it.
        data_key = AESGCM.generate_key(bit_length=256)
        fresh = self._new_meta(data_key)
        with self._txn(conn):
            meta = dict(conn.execute("SELECT key, value FROM meta"))
            if not meta:
                conn.executemany("INSERT INTO meta VALUES (?, ?)", fresh.items())
        if meta:
            return meta
        self._sealer = Sealer(data_key)
        return fresh

    def _sealer_for(self) -> Sealer:
        if self._sealer is None:
            meta = self._meta()
            if self._sealer is None:
                self._sealer = Sealer(self._open_data_key(meta))
        return self._sealer

    def _open_data_key(self, meta: dict[str, str]) -> bytes:
        """Unwrap with the store that wrapped it; note a pending switch of key store."""
        recorded = json.loads(meta.get("key_store", '{"type": "local"}'))
        wanted = self.key_store.descriptor()
        wrapped = base64.b64decode(meta["data_key"])
        if recorded == wanted:
            return self.key_store.unwrap(wrapped)
        local = self._local or MasterKeySource(self.path.parent / "master.key")
        previous = keystores.keystore_from_descriptor(recorded, local)
        data_key = previous.unwrap(wrapped)
        self._key_store_change = (recorded, wanted)
        return data_key

    def derived_key(self, label: bytes) -> bytes:
        """A purpose-bound key derived from the state's data key (see ``Sealer.derive``);
        creates the state's data key when the state is new."""
        return self._sealer_for().derive(label)

    @property
    def key_store_change(self) -> tuple[str, str] | None:
        """(recorded, configured) key store labels when the config switched stores."""
        self._sealer_for()
        if self._key_store_change is None:
            return None
        before, after = self._key_store_change
        return keystores.describe(before), keystores.describe(after)

    def rewrap_data_key(self) -> None:
        """Switch key store: re-wrap the data key under the configured store, in one
        transaction (the sealed private keys stay as they are)."""
        sealer = self._sealer_for()
        if self._key_store_change is None:
            return
        wrapped = self.key_store.wrap(sealer.data_key)
        conn = self._connect(create=False)
        with self._txn(conn):
            conn.executemany(
                "INSERT OR REPLACE INTO meta VALUES (?, ?)",
                [
                    ("data_key", base64.b64encode(wrapped).decode()),
                    ("key_store", keystores.dumps(self.key_store.descriptor())),
                ],
            )
            conn.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'serial'")
        self._key_store_change = None

    def open(self) -> None:
        """Create or open the state and check that the master key opens it."""
        self._sealer_for()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    @contextlib.contextmanager
    def _txn(self, conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    # -- reading ----------------------------------------------------------------
    def read(self) -> RecordedState:
        if not self.path.exists():
            return RecordedState(lineage="", serial=0)
        self._sealer_for()
        conn = self._connect(create=False)
        meta = self._meta()
        return RecordedState(
            lineage=meta["lineage"],
            serial=int(meta["serial"]),
            authorities=self._read_authorities(conn),
            certificates=self._read_certificates(conn),
            bindings=self._read_bindings(conn),
            interrupted=self._read_interrupted(conn),
            revocations=self._read_revocations(conn),
            crls=self._read_crls(conn),
        )

    def _read_revocations(self, conn: sqlite3.Connection) -> tuple[RevocationRecord, ...]:
        if not _has_table(conn, "revocations"):
            return ()
        rows = conn.execute(
            "SELECT address, serial, issuer, revoked_at, reason FROM revocations ORDER BY id"
        )
        return tuple(
            RevocationRecord(r[0], r[1], r[2], datetime.fromisoformat(r[3]), r[4]) for r in rows
        )

    def _read_crls(self, conn: sqlite3.Connection) -> dict[str, CrlRecord]:
        if not _has_table(conn, "crls"):
            return {}
        rows = conn.execute(
            "SELECT authority, number, this_update, next_update, entries, files FROM crls"
        )
        return {
            r[0]: CrlRecord(
                r[0],
                int(r[1]),
                datetime.fromisoformat(r[2]),
                datetime.fromisoformat(r[3]),
                int(r[4]),
                json.loads(r[5]),
            )
            for r in rows
        }

    def _read_authorities(self, conn: sqlite3.Connection) -> dict[str, AuthorityRecord]:
        rows = conn.execute(
            "SELECT name, spec, serial, not_before, not_after, key_id, issuer_key_id, "
            "prevent_destroy, status FROM authorities WHERE status = 'active'"
        )
        return {
            r[0]: AuthorityRecord(
                name=r[0],
                spec=json.loads(r[1]),
                serial=r[2],
                not_before=datetime.fromisoformat(r[3]),
                not_after=datetime.fromisoformat(r[4]),
                key_id=r[5],
                issuer_key_id=r[6],
                prevent_destroy=bool(r[7]),
                status=r[8],
            )
            for r in rows
        }

    def _read_certificates(self, conn: sqlite3.Connection) -> dict[str, CertificateRecord]:
        rows = conn.execute(
            "SELECT name, spec, serial, not_before, not_after, issuer_key_id, fingerprint, "
            "prevent_destroy, tags, sealed_key IS NOT NULL, status, revoked_at, external_id "
            "FROM certificates WHERE status = 'active'"
        )
        loads, parse = json.loads, datetime.fromisoformat
        return {
            r[0]: CertificateRecord(
                name=r[0],
                spec=loads(r[1]),
                serial=r[2],
                not_before=parse(r[3]),
                not_after=parse(r[4]),
                issuer_key_id=r[5],
                fingerprint=r[6],
                prevent_destroy=bool(r[7]),
                tags=loads(r[8]),
                has_key=bool(r[9]),
                status=r[10],
                revoked_at=_dt(r[11]),
                external_id=r[12],
            )
            for r in rows
        }

    def _read_bindings(self, conn: sqlite3.Connection) -> dict[str, BindingRecord]:
        rows = conn.execute(
            "SELECT address, certificate, target, serial, facts, deployed_at FROM bindings"
        )
        loads = json.loads
        return {
            r[0]: BindingRecord(
                address=r[0],
                certificate=r[1],
                target=loads(r[2]),
                serial=r[3],
                facts=loads(r[4]),
                deployed_at=datetime.fromisoformat(r[5]),
            )
            for r in rows
        }

    def _read_interrupted(self, conn: sqlite3.Connection) -> tuple[InterruptedStep, ...]:
        rows = conn.execute(
            "SELECT id, run_id, address, action, started_at, sealed_key IS NOT NULL "
            "FROM journal WHERE status = 'started' ORDER BY id"
        )
        return tuple(
            InterruptedStep(r[0], r[1], r[2], r[3], datetime.fromisoformat(r[4]), bool(r[5]))
            for r in rows
        )

    def material(self, kind: str, name: str) -> IssuedMaterial:
        table = _table(kind)
        row = (
            self._connect(create=False)
            .execute(
                f"SELECT certificate_pem, chain_pem, root_pem FROM {table} WHERE name = ?",
                (name,),
            )
            .fetchone()
        )
        if row is None:
            raise StateError(f"{kind}.{name} is not in the state")
        return IssuedMaterial(*row)

    def private_key(self, kind: str, name: str) -> bytes:
        table = _table(kind)
        row = (
            self._connect(create=False)
            .execute(f"SELECT sealed_key FROM {table} WHERE name = ?", (name,))
            .fetchone()
        )
        if row is None or row[0] is None:
            raise StateError(f"the private key of {kind}.{name} is not in the state")
        return self._sealer_for().open(row[0], f"{kind}.{name}")

    def journaled_key(self, address: str) -> bytes | None:
        row = (
            self._connect(create=False)
            .execute(
                "SELECT sealed_key FROM journal WHERE address = ? AND sealed_key IS NOT NULL "
                "AND status IN ('started', 'interrupted', 'failed') ORDER BY id DESC LIMIT 1",
                (address,),
            )
            .fetchone()
        )
        return self._sealer_for().open(row[0], f"journal:{address}") if row else None

    # -- journal, audit ---------------------------------------------------------
    def journal_start(self, run_id: str, address: str, action: str, key_der: bytes | None) -> int:
        sealed = self._sealer_for().seal(key_der, f"journal:{address}") if key_der else None
        conn = self._connect(create=True)
        with self._txn(conn):
            cur = conn.execute(
                "INSERT INTO journal (run_id, address, action, status, sealed_key, started_at) "
                "VALUES (?, ?, ?, 'started', ?, ?)",
                (run_id, address, action, sealed, _now()),
            )
        return int(cur.lastrowid or 0)

    def journal_finish(self, entry: int, status: str) -> None:
        conn = self._connect(create=False)
        with self._txn(conn):
            self._finish(conn, entry, status)

    def _finish(self, conn: sqlite3.Connection, entry: int, status: str) -> None:
        # A failed step keeps its key so that the retry issues with the same key.
        conn.execute(
            "UPDATE journal SET status = ?, finished_at = ?, "
            "sealed_key = CASE WHEN ? = 'done' THEN NULL ELSE sealed_key END WHERE id = ?",
            (status, _now(), status, entry),
        )

    def prune_journal(self) -> None:
        """Forget finished steps; the audit log keeps the history, the journal only
        what a crash could leave behind (and keys of failed steps for their retry)."""
        conn = self._connect(create=False)
        with self._txn(conn):
            conn.execute("DELETE FROM journal WHERE status IN ('done', 'recovered')")

    def mark_interrupted(self) -> None:
        """Keep interrupted steps' keys for reuse but stop reporting them as running."""
        conn = self._connect(create=False)
        with self._txn(conn):
            conn.execute("UPDATE journal SET status = 'interrupted' WHERE status = 'started'")

    def audit(self, actor: str, command: str, address: str, action: str, result: str,
              detail: str = "") -> None:  # fmt: skip
        sealer = self._sealer_for()  # an initialised state, as for any transaction
        conn = self._connect(create=True)
        with self._txn(conn):
            _SqliteWriter(conn, sealer).audit(actor, command, address, action, result, detail)

    def audit_log(self) -> list[dict[str, Any]]:
        conn = self._connect(create=False)
        have = {r[1] for r in conn.execute("PRAGMA table_info(audit)")}
        cols = ["id", "at", "actor", "command", "address", "action", "result", "detail"]
        cols += ["previous", "hash"]  # NULL in a state never written since chaining began
        select = ", ".join(c if c in have else f"NULL AS {c}" for c in cols)
        rows = conn.execute(f"SELECT {select} FROM audit ORDER BY id")
        return [dict(zip(cols, r, strict=True)) for r in rows]

    # -- writing ----------------------------------------------------------------
    @contextlib.contextmanager
    def transaction(self, journal_entry: int | None = None) -> Iterator[StateWriter]:
        sealer = self._sealer_for()
        conn = self._connect(create=True)
        with self._txn(conn):
            yield _SqliteWriter(conn, sealer)
            conn.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'serial'")
            if journal_entry is not None:
                self._finish(conn, journal_entry, "done")
                conn.execute(
                    "UPDATE journal SET status = 'recovered', sealed_key = NULL "
                    "WHERE status IN ('interrupted', 'failed') AND address = "
                    "(SELECT address FROM journal WHERE id = ?)",
                    (journal_entry,),
                )

    # -- locking ----------------------------------------------------------------
    def lock(self, operation: str, timeout: float = 0.0) -> None:
        """Take the state's OS lock, before anything is created or read: creates the
        state directory (0700) and the lock file (0600) when missing."""
        host = socket.gethostname()
        me = LockInfo(
            holder=f"{os.environ.get('USER', 'unknown')}@{host}",
            pid=os.getpid(),
            host=host,
            operation=operation,
            acquired_at=_now(),
        )
        try:
            make_dirs(self.path.parent, STATE_DIR_MODE)
            self._lock.acquire(me, timeout)
        except OSError as exc:
            raise StateError(
                f"cannot lock the state {self.path}: {exc.strerror or exc}; nothing was changed"
            ) from None

    def unlock(self) -> None:
        self._lock.release()


def _table(kind: str) -> str:
    if kind == "authority":
        return "authorities"
    if kind == "certificate":
        return "certificates"
    raise ValueError(kind)


class _SqliteWriter(StateWriter):
    """Writes inside one open transaction; the store commits or rolls back."""

    def __init__(self, conn: sqlite3.Connection, sealer: Sealer) -> None:
        self._conn = conn
        self._sealer = sealer

    def put_authority(self, record: AuthorityRecord, material: IssuedMaterial,
                      key_der: bytes | None) -> None:  # fmt: skip
        self._supersede("authorities", record.name, "authority")
        sealed = self._sealer.seal(key_der, record.address) if key_der is not None else None
        self._conn.execute(
            "INSERT INTO authorities VALUES (?, 'active', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(name) DO UPDATE SET status = 'active', spec = excluded.spec, "
            "serial = excluded.serial, not_before = excluded.not_before, "
            "not_after = excluded.not_after, key_id = excluded.key_id, "
            "issuer_key_id = excluded.issuer_key_id, prevent_destroy = excluded.prevent_destroy,"
            " certificate_pem = excluded.certificate_pem, chain_pem = excluded.chain_pem, "
            "root_pem = excluded.root_pem, "
            "sealed_key = COALESCE(excluded.sealed_key, authorities.sealed_key), "
            "updated_at = excluded.updated_at",
            (
                record.name,
                json.dumps(record.spec, sort_keys=True),
                record.serial,
                record.not_before.isoformat(),
                record.not_after.isoformat(),
                record.key_id,
                record.issuer_key_id,
                int(record.prevent_destroy),
                material.certificate_pem,
                material.chain_pem,
                material.root_pem,
                sealed,
                _now(),
            ),
        )

    def put_certificate(self, record: CertificateRecord, material: IssuedMaterial,
                        key_der: bytes | None) -> None:  # fmt: skip
        self._supersede("certificates", record.name, "certificate")
        sealed = self._sealer.seal(key_der, record.address) if key_der is not None else None
        self._conn.execute(
            "INSERT OR REPLACE INTO certificates VALUES "
            "(?, 'active', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?)",
            (
                record.name,
                json.dumps(record.spec, sort_keys=True),
                record.serial,
                record.not_before.isoformat(),
                record.not_after.isoformat(),
                record.issuer_key_id,
                record.fingerprint,
                int(record.prevent_destroy),
                json.dumps(record.tags, sort_keys=True),
                material.certificate_pem,
                material.chain_pem,
                material.root_pem,
                sealed,
                _now(),
                record.external_id,
            ),
        )

    def set_guard(self, kind: str, name: str, prevent_destroy: bool,
                  tags: dict[str, str] | None) -> None:  # fmt: skip
        table = _table(kind)
        self._conn.execute(
            f"UPDATE {table} SET prevent_destroy = ? WHERE name = ?", (int(prevent_destroy), name)
        )
        if tags is not None and kind == "certificate":
            self._conn.execute(
                "UPDATE certificates SET tags = ? WHERE name = ?",
                (json.dumps(tags, sort_keys=True), name),
            )

    def destroy(self, kind: str, name: str) -> None:
        table = _table(kind)
        self._supersede(table, name, kind, reason="destroyed")
        self._conn.execute(
            f"UPDATE {table} SET status = 'destroyed', sealed_key = NULL, updated_at = ? "
            "WHERE name = ?",
            (_now(), name),
        )

    def mark_revoked(
        self,
        name: str,
        serial: str,
        when: datetime,
        reason: str,
        issuer: str,
        kind: str = "certificate",
    ) -> None:
        # Created on first use, so states made before revocations existed need no migration.
        self._conn.execute(_REVOCATIONS_TABLE)
        self._conn.execute(
            "INSERT INTO revocations (address, serial, issuer, revoked_at, reason) "
            "VALUES (?, ?, ?, ?, ?)",
            (f"{kind}.{name}", serial, issuer, when.isoformat(), reason),
        )
        if kind == "certificate":
            self._conn.execute(
                "UPDATE certificates SET revoked_at = ? WHERE name = ? AND serial = ?",
                (when.isoformat(), name, serial),
            )

    def put_crl(self, record: CrlRecord) -> None:
        self._conn.execute(_CRLS_TABLE)
        self._conn.execute(
            "INSERT OR REPLACE INTO crls VALUES (?, ?, ?, ?, ?, ?)",
            (
                record.authority,
                record.number,
                record.this_update.isoformat(),
                record.next_update.isoformat(),
                record.entries,
                json.dumps(record.files, sort_keys=True),
            ),
        )

    def put_binding(self, record: BindingRecord) -> None:
        self._conn.execute(
            "INSERT OR REPLACE INTO bindings VALUES (?, ?, ?, ?, ?, ?)",
            (
                record.address,
                record.certificate,
                json.dumps(record.target, sort_keys=True),
                record.serial,
                json.dumps(record.facts, sort_keys=True),
                record.deployed_at.isoformat(),
            ),
        )

    def delete_binding(self, address: str) -> None:
        self._conn.execute("DELETE FROM bindings WHERE address = ?", (address,))

    def audit(self, actor: str, command: str, address: str, action: str, result: str,
              detail: str = "") -> None:  # fmt: skip
        """Append a hash-chained record and move the chain head (see ``audit_chain``)."""
        from reconciler.state import audit_chain as chain

        conn, last_row = self._conn, "SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1"
        try:
            last = conn.execute(last_row).fetchone()
        except sqlite3.OperationalError:
            # A state made before chaining: add the columns once (in this transaction).
            have = {r[1] for r in conn.execute("PRAGMA table_info(audit)")}
            missing = [c for c in ("previous", "hash") if c not in have]
            if not missing:
                raise
            for column in missing:
                conn.execute(f"ALTER TABLE audit ADD COLUMN {column} TEXT")
            last = conn.execute(last_row).fetchone()
        head = conn.execute("SELECT value FROM meta WHERE key = 'audit_head'").fetchone()
        record_id, previous = chain.next_link(last, chain.parse_head(head[0] if head else None))
        values = (record_id, _now(), actor, command, address, action, result, detail)
        digest = chain.record_hash(previous, dict(zip(chain.FIELDS, values, strict=True)))
        conn.execute(
            "INSERT INTO audit (id, at, actor, command, address, action, result, detail, "
            "previous, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (*values, previous, digest),
        )
        conn.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('audit_head', ?)",
            (chain.format_head(record_id, digest),),
        )

    def _supersede(self, table: str, name: str, kind: str, reason: str = "superseded") -> None:
        self._conn.execute(
            f"INSERT INTO history (address, serial, not_after, certificate_pem, superseded_at, "
            f"reason) SELECT ?, serial, not_after, certificate_pem, ?, ? FROM {table} "
            "WHERE name = ? AND status = 'active'",
            (f"{kind}.{name}", _now(), reason, name),
        )


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
    ).fetchone()
    return row is not None
