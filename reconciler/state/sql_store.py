"""The state core shared by the SQL backends (SQLite and PostgreSQL): what is
stored, how rows are authenticated and keys sealed, the journal, the audit chain
and the serial.  A backend (``sqlite.py``, ``postgres.py``) adds where the state
lives: connecting and creating it, its transactions' isolation, and the lock.

Contract shared by every backend (see ``StateStore`` in ``store.py``): ``read``
returns public records only; private keys are sealed with the state's data key
before they are written and opened only on demand; every transaction that
changes records bumps the serial; the lock names its holder and dies with its
holder.  The SQL here is the dialect both backends speak (``?`` placeholders,
``INSERT ... ON CONFLICT``, ``RETURNING``); ``pg_connection.PgConnection``
carries it to psycopg.

Durability: two commits per batch of apply steps, not two per step:
``journal_start_many`` commits a batch's journal entries (keys sealed and bound to
their entry) before any of its steps acts, and ``transaction(*entries)`` commits
the batch's records with the closing of those entries.  A crash in between leaves
``started`` entries (``read`` reports them as interrupted; ``journaled_key`` hands
their keys back); a crash inside a commit leaves the last committed state.
"""

from __future__ import annotations

import base64
import contextlib
import json
import operator
import uuid
from abc import abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from reconciler.errors import StateError
from reconciler.model.material import IssuedMaterial
from reconciler.model.records import (
    AuthorityRecord,
    BindingRecord,
    CertificateRecord,
    CrlRecord,
    InterruptedStep,
    RecordedState,
    RevocationRecord,
    assemble,
    decode_json,
)
from reconciler.state import audit_chain, keystores, migration, row_auth
from reconciler.state.keystores import KeyStore, LocalKeyStore
from reconciler.state.row_auth import RowAuthenticator, RowChecker
from reconciler.state.row_auth_v1 import RowAuthenticatorV1
from reconciler.state.sealing import (
    DATA_KEY_V2,
    MasterKeySource,
    Sealer,
    journal_aad,
    key_aad,
)
from reconciler.state.store import StateStore, StateWriter

FORMAT = "certform-state/2"
"""The format this certform writes: row MACs of format 2 (``row_auth.py``)."""
FORMAT_V1 = "certform-state/1"
"""Row MACs of format 1 (``row_auth_v1.py``): read as they are, upgraded to ``FORMAT``
by the first write (``migration.upgrade_row_macs``).  A certform that knows only
format 1 refuses a state of format 2 by this name instead of calling it tampered."""
_ROW_FORMATS = {FORMAT_V1: 1, FORMAT: 2}
_CHUNK_ROWS = 256
"""Rows fetched, checked and turned into records at a time (``_checked_chunks``)."""


class Connection(Protocol):
    """What the core needs of a database connection: ``Connection`` as is,
    ``pg_connection.PgConnection`` for PostgreSQL."""

    def execute(self, sql: str, params: Sequence[Any] = ..., /) -> Any: ...

    def executemany(self, sql: str, rows: Any, /) -> Any: ...

    @property
    def in_transaction(self) -> bool: ...

    def close(self) -> None: ...


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _flat(chunks: Iterable[list[tuple[Any, ...]]]) -> list[tuple[Any, ...]]:
    """Every row of ``SqlStateStore._checked_chunks``, in one list."""
    return [row for chunk in chunks for row in chunk]


def _dt(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


_json_text = json.JSONEncoder(sort_keys=True).encode
"""``json.dumps(value, sort_keys=True)``, the same text, without making an encoder
per call (a recorded step writes two to four JSON columns)."""


def _tags(text: str) -> dict[str, str]:
    """Decoded tags; most certificates have none (and ``{}`` needs no parser)."""
    return {} if text == "{}" else decode_json(text)


def _json_tags(tags: dict[str, str]) -> str:
    return "{}" if not tags else _json_text(tags)


StateRows = dict[str, list[tuple[Any, ...]]]
StateExport = tuple[dict[str, str], bytes, StateRows]
"""A state's meta, data key and rows, for ``state migrate``."""


class SqlStateStore(StateStore):
    """A state in a SQL database; ``where`` names it in messages (a path, or a
    PostgreSQL state's name).  Subclasses connect, create and lock."""

    _BEGIN_WRITE = "BEGIN"
    """Starts a write transaction (SQLite takes its write lock up front)."""
    _BEGIN_SNAPSHOT = "BEGIN"
    """Starts a read transaction that sees one consistent state (see ``snapshot``)."""

    def __init__(self, where: str, key_store: KeyStore | MasterKeySource) -> None:
        self.where = where
        if isinstance(key_store, MasterKeySource):
            key_store = LocalKeyStore(key_store)
        self.key_store = key_store
        self._local = key_store.source if isinstance(key_store, LocalKeyStore) else None
        self._key_store_change: tuple[dict[str, Any], dict[str, Any]] | None = None
        self._conn: Connection | None = None
        self._sealer: Sealer | None = None
        # Row authentication (row_auth.py, migration.py): the data key's wrapping
        # version, the store that unwrapped it, and the row MAC checker.
        self._data_key_version: int | None = None
        self._wrapping_store: KeyStore | None = None
        self._auth: RowChecker | None = None
        self._row_format = 2
        """The row MAC format of the state as last read from its meta (1 or 2)."""
        self._writes_prepared = False

    # -- what a backend provides -------------------------------------------------
    @property
    @abstractmethod
    def exists(self) -> bool:
        """Whether the state has been created (reading never creates it)."""

    @abstractmethod
    def _connect(self, *, create: bool) -> Connection:
        """The open connection (made once, kept in ``self._conn``); with ``create``
        a missing state is created complete first (``_new_meta``), else StateError."""

    @abstractmethod
    def _default_master_key(self) -> MasterKeySource:
        """Where a local master key is found when the recorded key store is local but
        the configured one is not (a switch of key store)."""

    def _mac_tables(self, conn: Connection) -> set[str]:
        """The authenticated tables that have a ``mac`` column."""
        return set(row_auth.TABLES)

    def _has_table(self, conn: Connection, name: str) -> bool:
        return True

    def _audit_columns(self, conn: Connection) -> set[str]:
        return {"previous", "hash"}

    def _columns(self, conn: Connection, table: str) -> set[str] | None:
        """The columns ``table`` has (None: all that this version creates)."""
        return None

    @abstractmethod
    def _create_from(self, meta: dict[str, str], data_key: bytes) -> None:
        """Create this (absent) state with ``meta`` and ``data_key`` (already wrapped
        in ``meta``) instead of new ones: the target of ``state migrate``."""

    def _prepare_for_writes(self, conn: Connection) -> None:
        """Inside the first write transaction of this store: bring an older layout up
        to what the writer expects (nothing for a backend created complete)."""

    def _new_meta(self, data_key: bytes) -> dict[str, str]:
        wrapped = self.key_store.wrap(data_key, creating=True)
        return {
            "format": FORMAT,
            "lineage": str(uuid.uuid4()),
            "serial": "0",
            "data_key": base64.b64encode(wrapped).decode(),
            "key_store": keystores.dumps(self.key_store.descriptor()),
        }

    def _check_format(self, conn: Connection) -> None:
        meta = dict(conn.execute("SELECT key, value FROM meta"))
        if meta:
            self._note_format(meta)

    def _note_format(self, meta: dict[str, str]) -> None:
        """Remember the row MAC format ``meta`` names; StateError for a format this
        certform does not know (a later certform's)."""
        found = _ROW_FORMATS.get(meta.get("format", ""))
        if found is None:
            raise StateError(
                f"{self.where} has state format {meta.get('format')!r}; this certform "
                f"reads {FORMAT!r} and {FORMAT_V1!r}: upgrade certform; nothing was changed"
            )
        self._row_format = found

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
            elif self._data_key_version is None:
                # _meta just created the state: its data key is wrapped as version 2.
                self._data_key_version = DATA_KEY_V2
                self._wrapping_store = self.key_store
        return self._sealer

    def _open_data_key(self, meta: dict[str, str]) -> bytes:
        """Unwrap with the store that wrapped it; note a pending switch of key store."""
        recorded = json.loads(meta.get("key_store", '{"type": "local"}'))
        wanted = self.key_store.descriptor()
        wrapped = base64.b64decode(meta["data_key"])
        if recorded == wanted:
            data_key, self._data_key_version = self.key_store.unwrap_versioned(wrapped)
            self._wrapping_store = self.key_store
            return data_key
        local = self._local or self._default_master_key()
        previous = keystores.keystore_from_descriptor(recorded, local)
        data_key, self._data_key_version = previous.unwrap_versioned(wrapped)
        self._wrapping_store = previous
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
        self._ensure_migrated()
        wrapped = self.key_store.wrap(sealer.data_key)
        conn = self._connect(create=False)
        with self._txn(conn):
            conn.executemany(
                _META_UPSERT,
                [
                    ("data_key", base64.b64encode(wrapped).decode()),
                    ("key_store", keystores.dumps(self.key_store.descriptor())),
                ],
            )
            conn.execute(_BUMP_SERIAL)
        self._key_store_change = None
        self._wrapping_store = self.key_store

    @property
    def upgrade_pending(self) -> bool:
        """True for a state written before rows were authenticated: its rows are not
        checked until the next writing command upgrades it (see migration.py)."""
        self._sealer_for()
        return self._data_key_version != DATA_KEY_V2

    # -- row authentication ------------------------------------------------------
    def _row_auth(self) -> RowChecker:
        """The row MAC checker of the state's format (one HKDF per store, not per row)."""
        sealer = self._sealer_for()
        required = self._data_key_version == DATA_KEY_V2
        kind = RowAuthenticator if self._row_format == 2 else RowAuthenticatorV1
        if type(self._auth) is not kind or self._auth.required != required:
            self._auth = kind(sealer.derive(kind.label), required)
        return self._auth

    def _current_row_auth(self, conn: Connection) -> RowChecker:
        """``_row_auth`` for the format the state has now: a read without the lock may
        follow an upgrade another run committed since this store connected (a format
        2 state stays format 2)."""
        if self._row_format != 2:
            self._note_format(dict(conn.execute("SELECT key, value FROM meta")))
        return self._row_auth()

    def _ensure_migrated(self) -> None:
        """Migrate a version 1 state, or upgrade format 1 row MACs, before the first
        write (see migration.py)."""
        sealer = self._sealer_for()
        if self._data_key_version == DATA_KEY_V2:
            if self._row_format != 2:
                self._upgrade_row_macs(sealer)
            return
        store = self._wrapping_store or self.key_store
        wrapped_v2 = store.wrap(sealer.data_key, version=DATA_KEY_V2)
        conn = self._connect(create=False)
        seen = self._meta()["data_key"]
        with self._txn(conn):
            now = conn.execute("SELECT value FROM meta WHERE key = 'data_key'").fetchone()
            if now is None or now[0] != seen:
                raise StateError(
                    f"the state {self.where} changed while it was being upgraded; run the "
                    "command again"
                )
            auth = RowAuthenticator(sealer.derive(RowAuthenticator.label))
            audit_key = sealer.derive(audit_chain.AUDIT_KEY_LABEL)
            migration.migrate(conn, sealer, auth, audit_key, wrapped_v2)
            conn.execute(_META_UPSERT, ("format", FORMAT))
        self._data_key_version = DATA_KEY_V2
        self._row_format = 2

    def _upgrade_row_macs(self, sealer: Sealer) -> None:
        """Format 1 row MACs to format 2, in one transaction: every row checked under
        format 1 first (a tampered row stops the upgrade, nothing changed)."""
        conn = self._connect(create=False)
        with self._txn(conn):
            meta = dict(conn.execute("SELECT key, value FROM meta"))
            self._note_format(meta)
            if self._row_format == 2:  # upgraded by another run meanwhile
                return
            old = RowAuthenticatorV1(sealer.derive(RowAuthenticatorV1.label))
            new = RowAuthenticator(sealer.derive(RowAuthenticator.label))
            migration.upgrade_row_macs(conn, sorted(self._mac_tables(conn)), old, new)
            conn.execute(_META_UPSERT, ("format", FORMAT))
        self._row_format = 2

    def _writer(self, conn: Connection) -> _SqlWriter:
        """A writer for one open transaction of a version 2 state."""
        if not self._writes_prepared:
            self._prepare_for_writes(conn)
            self._writes_prepared = True
        sealer = self._sealer_for()
        return _SqlWriter(
            conn, sealer, self._row_auth(), sealer.derive(audit_chain.AUDIT_KEY_LABEL)
        )

    def audit_chain_key(self) -> tuple[bytes | None, int | None]:
        """(key, last SHA-256 record id) for ``audit --verify``: (None, 0) for a
        version 1 state (all SHA-256); the id is None when the stored switch point
        was edited (then every chained record must be keyed, and the caller reports it)."""
        sealer = self._sealer_for()
        if self._data_key_version != DATA_KEY_V2:
            return None, 0
        key = sealer.derive(audit_chain.AUDIT_KEY_LABEL)
        found = (
            self._connect(create=False)
            .execute("SELECT value FROM meta WHERE key = 'audit_keyed_after'")
            .fetchone()
        )
        return key, audit_chain.parse_switch(found[0] if found else None, key)

    def open(self) -> None:
        """Create or open the state and check that the master key opens it."""
        self._sealer_for()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    @contextlib.contextmanager
    def _txn(self, conn: Connection) -> Iterator[Connection]:
        conn.execute(self._BEGIN_WRITE)
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        """A read transaction that sees the last commit before it began, never a
        later one, and neither takes nor waits for any lock."""
        conn = self._connect(create=False)
        if conn.in_transaction:  # already inside one (apply reading under its lock)
            yield
            return
        conn.execute(self._BEGIN_SNAPSHOT)
        try:
            yield
        finally:
            if conn.in_transaction:
                conn.execute("COMMIT")

    # -- copying (state migrate) ------------------------------------------------
    def export_state(self, tables: dict[str, tuple[str, ...]]) -> StateExport:
        """(meta, data key, rows of each table in ``tables``' column order) for a copy;
        a column or table this state does not have yet reads as NULL / no rows."""
        sealer = self._sealer_for()
        if self._data_key_version != DATA_KEY_V2:
            self._ensure_migrated()  # a copy is always of an authenticated state
        conn = self._connect(create=False)
        meta = dict(conn.execute("SELECT key, value FROM meta"))
        rows: StateRows = {}
        for table, columns in tables.items():
            if not self._has_table(conn, table):
                rows[table] = []
                continue
            have = self._columns(conn, table)
            select = ", ".join(c if have is None or c in have else f"NULL AS {c}" for c in columns)
            rows[table] = [tuple(r) for r in conn.execute(f"SELECT {select} FROM {table}")]
        return meta, sealer.data_key, rows

    def import_state(
        self,
        meta: dict[str, str],
        data_key: bytes,
        rows: StateRows,
        tables: dict[str, tuple[str, ...]],
    ) -> None:
        """Create this state as a copy: the same data key (so every row MAC, sealed
        key and audit hash stays valid) wrapped under this store's key store, the same
        lineage, serial and rows, in one transaction after the creation."""
        meta = dict(meta)
        meta["data_key"] = base64.b64encode(self.key_store.wrap(data_key, creating=True)).decode()
        meta["key_store"] = keystores.dumps(self.key_store.descriptor())
        self._create_from(meta, data_key)
        conn = self._connect(create=False)
        with self._txn(conn):
            self._prepare_for_writes(conn)
            self._writes_prepared = True
            for table, columns in tables.items():
                if rows[table]:
                    names, marks = ", ".join(columns), ", ".join("?" * len(columns))
                    conn.executemany(f"INSERT INTO {table} ({names}) VALUES ({marks})", rows[table])
        self._sealer = Sealer(data_key)
        self._data_key_version = DATA_KEY_V2
        self._wrapping_store = self.key_store

    # -- reading ----------------------------------------------------------------
    def read(self) -> RecordedState:
        if not self.exists:
            return RecordedState(lineage="", serial=0)
        self._sealer_for()
        conn = self._connect(create=False)
        meta = self._meta()
        self._note_format(meta)  # the format of this snapshot, should another run upgrade
        auth = self._row_auth()
        macs = self._mac_tables(conn)
        return RecordedState(
            lineage=meta["lineage"],
            serial=int(meta["serial"]),
            authorities=self._read_authorities(conn, auth, macs),
            certificates=self._read_certificates(conn, auth, macs),
            bindings=self._read_bindings(conn, auth, macs),
            interrupted=self._read_interrupted(conn),
            revocations=self._read_revocations(conn, auth, macs),
            crls=self._read_crls(conn, auth, macs),
        )

    @staticmethod
    def _checked_chunks(
        conn: Connection,
        auth: RowChecker,
        macs: set[str],
        table: str,
        where: str = "",
        params: tuple[Any, ...] = (),
    ) -> Iterator[list[tuple[Any, ...]]]:
        """Rows of ``table`` (``row_auth.TABLES`` column order) a chunk at a time, each
        row checked against its MAC before its chunk is yielded; raises StateError
        "state tampered: ..." on the first that fails.  Why chunks: a certificate row is
        some 4 KB of PEM that only its MAC needs; 10,000 of them fetched at once are
        40 MB of fresh memory, in chunks the same few hundred kilobytes, still in
        the CPU's cache when hashed, and let go once the records are built."""
        select = row_auth.select_list(table, table in macs)
        cursor = conn.execute(f"SELECT {select} FROM {table} {where}", params)
        try:
            while chunk := cursor.fetchmany(_CHUNK_ROWS):
                auth.check_rows(table, chunk)
                yield chunk
        finally:
            cursor.close()  # a refused row ends the read: no statement left open

    def _read_revocations(
        self, conn: Connection, auth: RowChecker, macs: set[str]
    ) -> tuple[RevocationRecord, ...]:
        if not self._has_table(conn, "revocations"):
            return ()
        rows = _flat(self._checked_chunks(conn, auth, macs, "revocations", "ORDER BY id"))
        return tuple(
            RevocationRecord(r[1], r[2], r[3], datetime.fromisoformat(r[4]), r[5]) for r in rows
        )

    def _read_crls(
        self, conn: Connection, auth: RowChecker, macs: set[str]
    ) -> dict[str, CrlRecord]:
        if not self._has_table(conn, "crls"):
            return {}
        rows = _flat(self._checked_chunks(conn, auth, macs, "crls"))
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

    def _read_authorities(
        self, conn: Connection, auth: RowChecker, macs: set[str]
    ) -> dict[str, AuthorityRecord]:
        # Columns: row_auth.TABLES["authorities"].
        rows = _flat(
            self._checked_chunks(conn, auth, macs, "authorities", "WHERE status = 'active'")
        )
        return {
            r[0]: AuthorityRecord(
                name=r[0],
                spec=json.loads(r[2]),
                serial=r[3],
                not_before=datetime.fromisoformat(r[4]),
                not_after=datetime.fromisoformat(r[5]),
                key_id=r[6],
                issuer_key_id=r[7],
                prevent_destroy=bool(r[8]),
                status=r[1],
            )
            for r in rows
        }

    def _read_certificates(
        self, conn: Connection, auth: RowChecker, macs: set[str]
    ) -> dict[str, CertificateRecord]:
        # Columns: row_auth.TABLES["certificates"].
        chunks = self._checked_chunks(conn, auth, macs, "certificates", "WHERE status = 'active'")
        parse, make = datetime.fromisoformat, CertificateRecord
        return {
            r[0]: assemble(
                make,
                {
                    "name": r[0],
                    "_spec_value": r[2],  # JSON, decoded when used (see records.JsonField)
                    "serial": r[3],
                    "not_before": parse(r[4]),
                    "not_after": parse(r[5]),
                    "issuer_key_id": r[6],
                    "fingerprint": r[7],
                    "prevent_destroy": bool(r[8]),
                    "tags": _tags(r[9]),
                    "has_key": r[13] is not None,
                    "status": r[1],
                    "revoked_at": _dt(r[14]),
                    "external_id": r[16],
                },
            )
            for rows in chunks
            for r in rows
        }

    def _read_bindings(
        self, conn: Connection, auth: RowChecker, macs: set[str]
    ) -> dict[str, BindingRecord]:
        chunks = self._checked_chunks(conn, auth, macs, "bindings")
        parse, make = datetime.fromisoformat, BindingRecord
        return {
            r[0]: assemble(
                make,
                {
                    "address": r[0],
                    "certificate": r[1],
                    "target": decode_json(r[2]),
                    "serial": r[3],
                    "_facts_value": r[4],  # JSON, decoded when used (see records.JsonField)
                    "deployed_at": parse(r[5]),
                },
            )
            for rows in chunks
            for r in rows
        }

    def _read_interrupted(self, conn: Connection) -> tuple[InterruptedStep, ...]:
        rows = conn.execute(
            "SELECT id, run_id, address, action, started_at, sealed_key IS NOT NULL "
            "FROM journal WHERE status = 'started' ORDER BY id"
        )
        return tuple(
            InterruptedStep(r[0], r[1], r[2], r[3], datetime.fromisoformat(r[4]), bool(r[5]))
            for r in rows
        )

    def _checked_row(self, kind: str, name: str) -> dict[str, Any] | None:
        """The row of ``kind``.``name`` by column name, checked against its MAC."""
        table = _table(kind)
        conn = self._connect(create=False)
        self._sealer_for()
        # Format 1: the format and the row from one snapshot (see _current_row_auth).
        with self.snapshot() if self._row_format != 2 else contextlib.nullcontext():
            auth = self._current_row_auth(conn)
            macs = self._mac_tables(conn)
            rows = _flat(self._checked_chunks(conn, auth, macs, table, "WHERE name = ?", (name,)))
        if not rows:
            return None
        return dict(zip(row_auth.TABLES[table].columns, rows[0], strict=False))

    def material(self, kind: str, name: str) -> IssuedMaterial:
        row = self._checked_row(kind, name)
        if row is None:
            raise StateError(f"{kind}.{name} is not in the state")
        return IssuedMaterial(row["certificate_pem"], row["chain_pem"], row["root_pem"])

    def private_key(self, kind: str, name: str) -> bytes:
        """Open the sealed key of a row whose MAC holds, bound (version 2) to the
        public key of the row's certificate: an older blob restored onto the row
        fails here even where the row MAC would not say why."""
        row = self._checked_row(kind, name)
        address = f"{kind}.{name}"
        if row is None or row["sealed_key"] is None:
            raise StateError(f"the private key of {address} is not in the state")
        sealer = self._sealer_for()
        if self._data_key_version != DATA_KEY_V2:
            return sealer.open(row["sealed_key"], address)
        aad = key_aad(address, row["certificate_pem"])
        return sealer.open_bound(row["sealed_key"], aad, address)

    def journaled_key(self, address: str) -> bytes | None:
        row = (
            self._connect(create=False)
            .execute(
                "SELECT id, run_id, sealed_key FROM journal WHERE address = ? "
                "AND sealed_key IS NOT NULL AND status IN ('started', 'interrupted', 'failed') "
                "ORDER BY id DESC LIMIT 1",
                (address,),
            )
            .fetchone()
        )
        if row is None:
            return None
        sealer = self._sealer_for()
        if self._data_key_version != DATA_KEY_V2:
            return sealer.open(row[2], f"journal:{address}")
        return sealer.open_bound(row[2], journal_aad(address, row[1], row[0]), address)

    # -- journal, audit ---------------------------------------------------------
    def journal_start(self, run_id: str, address: str, action: str, key_der: bytes | None) -> int:
        (entry,) = self.journal_start_many(run_id, [(address, action, key_der)])
        return entry

    def journal_start_many(
        self, run_id: str, steps: Sequence[tuple[str, str, bytes | None]]
    ) -> list[int]:
        """One commit (one WAL fsync) for a batch of entries.  Ids are taken under
        the write lock (``BEGIN IMMEDIATE``) as SQLite would pick them, so that each
        key is sealed bound to its own entry (``journal_aad``) in the same INSERT."""
        if not steps:
            return []
        self._ensure_migrated()
        sealer = self._sealer_for()
        conn = self._connect(create=True)
        now = _now()
        with self._txn(conn):
            (last,) = conn.execute("SELECT COALESCE(MAX(id), 0) FROM journal").fetchone()
            entries = list(range(int(last) + 1, int(last) + 1 + len(steps)))
            rows = [
                (
                    entry,
                    run_id,
                    address,
                    action,
                    sealer.seal_bound(key_der, journal_aad(address, run_id, entry))
                    if key_der
                    else None,
                    now,
                )
                for entry, (address, action, key_der) in zip(entries, steps, strict=True)
            ]
            conn.executemany(
                "INSERT INTO journal (id, run_id, address, action, status, sealed_key, "
                "started_at) VALUES (?, ?, ?, ?, 'started', ?, ?)",
                rows,
            )
        return entries

    def journal_finish(self, entry: int, status: str) -> None:
        conn = self._connect(create=False)
        with self._txn(conn):
            self._finish(conn, entry, status)

    def _finish(self, conn: Connection, entry: int, status: str) -> None:
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
        self._ensure_migrated()  # an initialised, version 2 state, as for any transaction
        conn = self._connect(create=True)
        with self._txn(conn):
            writer = self._writer(conn)
            writer.audit(actor, command, address, action, result, detail)
            writer.flush()

    def audit_log(self) -> list[dict[str, Any]]:
        conn = self._connect(create=False)
        have = {"id", "at", "actor", "command", "address", "action", "result", "detail"}
        have |= self._audit_columns(conn)
        cols = ["id", "at", "actor", "command", "address", "action", "result", "detail"]
        cols += ["previous", "hash"]  # NULL in a state never written since chaining began
        select = ", ".join(c if c in have else f"NULL AS {c}" for c in cols)
        rows = conn.execute(f"SELECT {select} FROM audit ORDER BY id")
        return [dict(zip(cols, r, strict=True)) for r in rows]

    def audit_head(self) -> str | None:
        found = (
            self._connect(create=False)
            .execute("SELECT value FROM meta WHERE key = 'audit_head'")
            .fetchone()
        )
        return found[0] if found else None

    # -- writing ----------------------------------------------------------------
    @contextlib.contextmanager
    def transaction(self, *journal_entries: int) -> Iterator[StateWriter]:
        self._ensure_migrated()
        conn = self._connect(create=True)
        with self._txn(conn):
            writer = self._writer(conn)
            yield writer
            writer.flush()
            conn.execute(_BUMP_SERIAL)
            if journal_entries:
                self._close_entries(conn, journal_entries)

    @staticmethod
    def _close_entries(conn: Connection, entries: Sequence[int]) -> None:
        """Mark ``entries`` done (their keys are in the records now) and the interrupted
        or failed entries of the same addresses recovered (their keys were reused)."""
        now = _now()
        conn.executemany(
            "UPDATE journal SET status = 'done', finished_at = ?, sealed_key = NULL WHERE id = ?",
            [(now, entry) for entry in entries],
        )
        for start in range(0, len(entries), 500):  # SQLite's bound-parameter limit
            chunk = entries[start : start + 500]
            marks = ", ".join("?" * len(chunk))
            conn.execute(
                "UPDATE journal SET status = 'recovered', sealed_key = NULL "
                "WHERE status IN ('interrupted', 'failed') AND address IN "
                f"(SELECT address FROM journal WHERE id IN ({marks}))",
                chunk,
            )


def _table(kind: str) -> str:
    if kind == "authority":
        return "authorities"
    if kind == "certificate":
        return "certificates"
    raise ValueError(kind)


_META_UPSERT = (
    "INSERT INTO meta (key, value) VALUES (?, ?) "
    "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
)
_BUMP_SERIAL = (
    "UPDATE meta SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT) WHERE key = 'serial'"
)


def _upsert(table: str, columns: Sequence[str], key: str) -> str:
    """Insert a whole row, or replace every given column of the row with its key
    (``INSERT OR REPLACE`` as both SQLite and PostgreSQL spell it)."""
    names = ", ".join(columns)
    marks = ", ".join("?" * len(columns))
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c != key)
    return (
        f"INSERT INTO {table} ({names}) VALUES ({marks}) "
        f"ON CONFLICT ({key}) DO UPDATE SET {updates}"
    )


class _SqlWriter(StateWriter):
    """Writes inside one open transaction of a version 2 state; the store commits or
    rolls back.

    Every row written gets its MAC recomputed from what the database then holds
    (``_seal``), and every existing row is checked before it is changed (``_check``),
    so a write never launders a row that was edited outside certform.  Sealed keys
    are bound to their row (``sealing.key_aad``).

    Whole rows put by apply's steps (``put_certificate``, ``put_binding``) and audit
    records are held until ``flush`` (which the store calls before it commits, and
    every other change calls first, so statements keep their order): then each
    table's rows are checked with one SELECT and written with one ``executemany``,
    instead of two statements a step.  A row put twice is flushed in between."""

    def __init__(
        self,
        conn: Connection,
        sealer: Sealer,
        auth: RowChecker,
        audit_key: bytes,
    ) -> None:
        self._conn = conn
        self._sealer = sealer
        self._auth = auth
        self._audit_key = audit_key
        self._chain: tuple[int, str] | None = None
        """The audit record this writer appended last (id, hash): within its
        transaction (which holds the write lock) that is the chain's newest record
        and head, so the next append needs no lookup."""
        self._audit_rows: list[tuple[Any, ...]] = []
        """Audit records appended but not yet inserted (``flush``)."""
        self._rows: dict[str, dict[Any, tuple[Any, ...]]] = {}
        """Whole rows put but not yet written, by table and key (``flush``)."""

    def flush(self) -> None:
        """Write the rows and audit records held so far (see the class docstring)."""
        self._flush_rows()
        if not self._audit_rows:
            return
        self._conn.executemany(
            "INSERT INTO audit (id, at, actor, command, address, action, result, detail, "
            "previous, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            self._audit_rows,
        )
        self._audit_rows = []
        assert self._chain is not None
        self._conn.execute(_META_UPSERT, ("audit_head", audit_chain.format_head(*self._chain)))

    def _hold(self, table: str, values: tuple[Any, ...]) -> None:
        """Put a whole row (``TABLES`` columns) at the next ``flush``."""
        key = values[row_auth.TABLES[table].key_index]
        held = self._rows.setdefault(table, {})
        if key in held:  # its second version supersedes the first: write that first
            self._flush_rows()
            held = self._rows.setdefault(table, {})
        held[key] = values

    def _flush_rows(self) -> None:
        """Check the rows held rows replace (one SELECT a table), keep replaced
        certificates in the history, write the held rows (``_insert_sealed``)."""
        held, self._rows = self._rows, {}
        for table, rows in held.items():
            spec, keys = row_auth.TABLES[table], list(rows)
            before: dict[Any, tuple[Any, ...]] = {}
            for start in range(0, len(keys), 500):  # SQLite's bound-parameter limit
                chunk = keys[start : start + 500]
                found = self._conn.execute(
                    f"{_SELECT_ROWS[table]} ({', '.join('?' * len(chunk))})", chunk
                ).fetchall()
                self._auth.check_rows(table, found)
                before.update((row[spec.key_index], row) for row in found)
            if table in _HISTORY_TABLES:
                history = [_history_row(table, before.get(key), "superseded") for key in keys]
                self._conn.executemany(_INSERT_HISTORY, [h for h in history if h is not None])
            self._insert_sealed(table, list(rows.values()))

    def _check(self, table: str, key: object) -> tuple[Any, ...] | None:
        """Refuse to change a row whose MAC does not hold; the row (``TABLES``
        columns, then mac), None when there is none.  Writes what is held first."""
        self._flush_rows()
        row = self._conn.execute(_SELECT_ROW[table], (key,)).fetchone()
        if row is not None:
            self._auth.check(table, row[:-1], row[-1])
        return row

    def _seal(self, table: str, key: object) -> None:
        migration.mac_row(self._conn, self._auth, table, key)

    def _insert_sealed(self, table: str, rows: Sequence[tuple[Any, ...]]) -> None:
        """Insert or replace whole rows (every column of ``row_auth.TABLES``, in
        order) with their MACs in the same statement, when each value is stored
        exactly as given (str in a TEXT column, int, bytes or NULL): then the MAC of
        the values is the MAC of what a read returns, without reading the row back.
        Otherwise the row is written, then sealed from what the database holds
        (``_seal``)."""
        spec, seal = row_auth.TABLES[table], self._auth.seal
        exact: list[tuple[Any, ...]] = []
        for values in rows:
            if _stored_as_given(table, values):
                exact.append((*values, seal(table, values)))
            else:
                self._conn.execute(_upsert(table, spec.columns, spec.key), values)
                self._seal(table, values[spec.key_index])
        self._conn.executemany(_UPSERT_SEALED[table], exact)

    def _seal_key(
        self, key_der: bytes | None, address: str, material: IssuedMaterial
    ) -> bytes | None:
        if key_der is None:
            return None
        return self._sealer.seal_bound(key_der, key_aad(address, material.certificate_pem))

    def put_authority(self, record: AuthorityRecord, material: IssuedMaterial,
                      key_der: bytes | None) -> None:  # fmt: skip
        before = self._check("authorities", record.name)
        self._supersede("authorities", before)
        sealed = self._seal_key(key_der, record.address, material)
        self._conn.execute(
            "INSERT INTO authorities (name, status, spec, serial, not_before, not_after, "
            "key_id, issuer_key_id, prevent_destroy, certificate_pem, chain_pem, root_pem, "
            "sealed_key, updated_at) VALUES (?, 'active', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
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
                _json_text(record.spec),
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
        # A kept key (renewal, key_der None) stays bound: its public key, and so its
        # associated data, is that of the renewed certificate too.
        self._seal("authorities", record.name)

    def put_certificate(self, record: CertificateRecord, material: IssuedMaterial,
                        key_der: bytes | None) -> None:  # fmt: skip
        sealed = self._seal_key(key_der, record.address, material)
        self._hold(
            "certificates",
            (
                record.name,
                "active",
                _json_text(record.spec),
                record.serial,
                record.not_before.isoformat(),
                record.not_after.isoformat(),
                record.issuer_key_id,
                record.fingerprint,
                int(record.prevent_destroy),
                _json_tags(record.tags),
                material.certificate_pem,
                material.chain_pem,
                material.root_pem,
                sealed,
                None,
                _now(),
                record.external_id,
            ),
        )

    def set_guard(self, kind: str, name: str, prevent_destroy: bool,
                  tags: dict[str, str] | None) -> None:  # fmt: skip
        table = _table(kind)
        self._check(table, name)
        self._conn.execute(
            f"UPDATE {table} SET prevent_destroy = ? WHERE name = ?", (int(prevent_destroy), name)
        )
        if tags is not None and kind == "certificate":
            self._conn.execute(
                "UPDATE certificates SET tags = ? WHERE name = ?",
                (_json_tags(tags), name),
            )
        self._seal(table, name)

    def destroy(self, kind: str, name: str) -> None:
        table = _table(kind)
        self._supersede(table, self._check(table, name), reason="destroyed")
        self._conn.execute(
            f"UPDATE {table} SET status = 'destroyed', sealed_key = NULL, updated_at = ? "
            "WHERE name = ?",
            (_now(), name),
        )
        self._seal(table, name)

    def mark_revoked(
        self,
        name: str,
        serial: str,
        when: datetime,
        reason: str,
        issuer: str,
        kind: str = "certificate",
    ) -> None:
        (entry,) = self._conn.execute(
            "INSERT INTO revocations (address, serial, issuer, revoked_at, reason) "
            "VALUES (?, ?, ?, ?, ?) RETURNING id",
            (f"{kind}.{name}", serial, issuer, when.isoformat(), reason),
        ).fetchone()
        self._seal("revocations", int(entry))
        if kind == "certificate":
            self._check("certificates", name)
            self._conn.execute(
                "UPDATE certificates SET revoked_at = ? WHERE name = ? AND serial = ?",
                (when.isoformat(), name, serial),
            )
            self._seal("certificates", name)

    def put_crl(self, record: CrlRecord) -> None:
        self._check("crls", record.authority)
        self._conn.execute(
            _upsert("crls", row_auth.TABLES["crls"].columns, "authority"),
            (
                record.authority,
                record.number,
                record.this_update.isoformat(),
                record.next_update.isoformat(),
                record.entries,
                _json_text(record.files),
            ),
        )
        self._seal("crls", record.authority)

    def put_binding(self, record: BindingRecord) -> None:
        self._hold(
            "bindings",
            (
                record.address,
                record.certificate,
                _json_text(record.target),
                record.serial,
                _json_text(record.facts),
                record.deployed_at.isoformat(),
            ),
        )

    def delete_binding(self, address: str) -> None:
        self._flush_rows()
        self._conn.execute("DELETE FROM bindings WHERE address = ?", (address,))

    def rename_certificate(self, old: str, new: str) -> None:
        conn, before, after = self._conn, f"certificate.{old}", f"certificate.{new}"
        self._check("certificates", old)
        taken = conn.execute("SELECT status FROM certificates WHERE name = ?", (new,)).fetchone()
        if taken is not None and taken[0] == "active":
            raise StateError(f"{after} is already in the state; nothing was moved")
        row = conn.execute(
            "SELECT sealed_key, certificate_pem FROM certificates WHERE name = ? "
            "AND status = 'active'",
            (old,),
        ).fetchone()
        if row is None:
            raise StateError(f"{before} is not in the state; nothing was moved")
        sealed, certificate_pem = row
        if sealed is not None:  # bound to its address: bind it to the new one
            key_der = self._sealer.open_bound(sealed, key_aad(before, certificate_pem), before)
            sealed = self._sealer.seal_bound(key_der, key_aad(after, certificate_pem))
        if taken is not None:  # a destroyed record of the new name: its history stays
            conn.execute("DELETE FROM certificates WHERE name = ?", (new,))
        conn.execute(
            "UPDATE certificates SET name = ?, sealed_key = ?, updated_at = ? WHERE name = ?",
            (new, sealed, _now(), old),
        )
        self._seal("certificates", new)
        bound = conn.execute(
            "SELECT address FROM bindings WHERE certificate = ?", (old,)
        ).fetchall()
        for (address,) in bound:
            self._check("bindings", address)
            conn.execute("UPDATE bindings SET certificate = ? WHERE address = ?", (new, address))
            self._seal("bindings", address)
        conn.execute("UPDATE history SET address = ? WHERE address = ?", (after, before))
        revoked = conn.execute("SELECT id FROM revocations WHERE address = ?", (before,)).fetchall()
        for (entry,) in revoked:
            self._check("revocations", entry)
            conn.execute("UPDATE revocations SET address = ? WHERE id = ?", (after, entry))
            self._seal("revocations", entry)

    def forget(self, kind: str, name: str) -> None:
        table = _table(kind)
        self._supersede(table, self._check(table, name), reason="forgotten (state rm)")
        self._conn.execute(f"DELETE FROM {table} WHERE name = ?", (name,))

    def audit(self, actor: str, command: str, address: str, action: str, result: str,
              detail: str = "") -> None:  # fmt: skip
        """Append a keyed hash-chained record and move the chain head (see ``audit_chain``)."""
        chain = audit_chain
        conn, last_row = self._conn, "SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1"
        if self._chain is not None:
            self._append_audit(self._chain, actor, command, address, action, result, detail)
            return
        last = conn.execute(last_row).fetchone()
        head = conn.execute("SELECT value FROM meta WHERE key = 'audit_head'").fetchone()
        link = chain.next_link(last, chain.parse_head(head[0] if head else None))
        self._append_audit(link, actor, command, address, action, result, detail, linked=True)

    def _append_audit(self, link: tuple[int, str], actor: str, command: str, address: str,
                      action: str, result: str, detail: str, *,
                      linked: bool = False) -> None:  # fmt: skip
        """Append the record after ``link``: the (id, previous hash) to use when
        ``linked``, else this writer's last record (id, hash).  Inserted by ``flush``."""
        chain = audit_chain
        record_id, previous = link if linked else (link[0] + 1, link[1])
        values = (record_id, _now(), actor, command, address, action, result, detail)
        fields = dict(zip(chain.FIELDS, values, strict=True))
        digest = chain.record_hash(previous, fields, self._audit_key)
        self._audit_rows.append((*values, previous, digest))
        self._chain = (record_id, digest)

    def _supersede(
        self, table: str, row: tuple[Any, ...] | None, reason: str = "superseded"
    ) -> None:
        """Keep the certificate of ``row`` (as ``_check`` returned it) in the history,
        when there is an active one."""
        history = _history_row(table, row, reason)
        if history is not None:
            self._conn.execute(_INSERT_HISTORY, history)


_INSERT_HISTORY = (
    "INSERT INTO history (address, serial, not_after, certificate_pem, superseded_at, reason) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)


def _history_row(table: str, row: tuple[Any, ...] | None, reason: str) -> tuple[Any, ...] | None:
    """The history row keeping the certificate of an authorities' or certificates' row
    (``TABLES`` columns, as ``_check`` returns it); None unless it is active."""
    spec = row_auth.TABLES[table]
    if row is None or row[spec.columns.index("status")] != "active":
        return None
    kept = (row[spec.columns.index(c)] for c in ("serial", "not_after", "certificate_pem"))
    return (spec.name(row[spec.key_index]), *kept, _now(), reason)


_SELECT_ROW = {
    table: f"SELECT {row_auth.select_list(table, True)} FROM {table} WHERE {spec.key} = ?"
    for table, spec in row_auth.TABLES.items()
}
_SELECT_ROWS = {
    table: f"SELECT {row_auth.select_list(table, True)} FROM {table} WHERE {spec.key} IN"
    for table, spec in row_auth.TABLES.items()
}
_HISTORY_TABLES = frozenset({"authorities", "certificates"})
"""The tables whose replaced rows are kept in ``history`` (``_supersede``)."""
_UPSERT_SEALED = {
    table: _upsert(table, (*spec.columns, "mac"), spec.key)
    for table, spec in row_auth.TABLES.items()
}
_INTEGER_COLUMNS = frozenset({"prevent_destroy"})
_BLOB_COLUMNS = frozenset({"sealed_key"})
_AS_GIVEN = {
    table: tuple(
        frozenset({int if c in _INTEGER_COLUMNS else bytes if c in _BLOB_COLUMNS else str,
                   type(None)})
        for c in spec.columns
    )
    for table, spec in row_auth.TABLES.items()
}  # fmt: skip


def _stored_as_given(table: str, values: Sequence[Any]) -> bool:
    """Whether SQLite returns every value of a row of ``table`` (the certificates or
    bindings) unchanged: NULL, an int in an INTEGER column, bytes in the BLOB one, a
    str in the TEXT ones (an int given to a TEXT column would come back as text, a
    numeric str given to an INTEGER one as an int, a bool or a bytearray as another
    type).  Checked in C: a row has up to 17 values."""
    return all(map(operator.contains, _AS_GIVEN[table], map(type, values)))
