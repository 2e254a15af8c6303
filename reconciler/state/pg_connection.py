"""PostgreSQL for the state: a connection that speaks the SQL dialect the state
core writes, one schema per state name, and the apply lock.

The state core (``sql_store.py``) writes portable SQL with ``?`` placeholders,
as Python's sqlite3 takes them; ``PgConnection`` hands it to psycopg 3 as
``%s``.  Each state name lives in its own schema (``certform_<name>``), so several
states share one database with the very tables a SQLite state has, and never see
each other's rows.

The lock is a session-level advisory lock keyed by the state name: held as long
as the connection lives, so a runner that dies (or loses its network) releases it
with its connection, and two state names never block each other.  Beside it, a
row in ``certform.locks`` names the holder (user@host, pid, operation, time, lock
ID, and the server process of its connection) for the "locked by" message and for
``certform force-unlock``, which ends that server process when a runner's
connection outlived the runner.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from functools import lru_cache
from typing import Any

from reconciler.errors import StateError, StateLockedError
from reconciler.state.store import LockInfo, locked_message

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,47}$")
"""State names: they become part of a schema name (PostgreSQL allows 63 bytes)."""

LOCK_SPACE = "certform"
"""The first half of every advisory lock key certform takes (``hashtext``)."""

_LOCKS_DDL = (
    "CREATE SCHEMA IF NOT EXISTS certform",
    "CREATE TABLE IF NOT EXISTS certform.locks (state TEXT PRIMARY KEY, lock_id TEXT NOT NULL, "
    "holder TEXT NOT NULL, pid INTEGER NOT NULL, host TEXT NOT NULL, operation TEXT NOT NULL, "
    "acquired_at TEXT NOT NULL, backend_pid INTEGER NOT NULL)",
)


def schema_name(state: str) -> str:
    """The schema of the state called ``state`` (validated by the config model)."""
    if not NAME_PATTERN.match(state):
        raise StateError(f"state name {state!r} must be 1-48 lowercase letters, digits, '-' or '_'")
    return f"certform_{state}"


@lru_cache(maxsize=512)
def to_pg(sql: str) -> str:
    """``?`` placeholders as psycopg's ``%s`` (a literal ``%`` doubled).  The state
    core never puts ``?`` inside a string literal."""
    return sql.replace("%", "%%").replace("?", "%s")


class PgConnection:
    """The subset of ``sqlite3.Connection`` the state core uses, over psycopg, in
    autocommit mode: transactions are the core's explicit BEGIN / COMMIT."""

    def __init__(self, connection: Any) -> None:
        self.raw = connection

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        cursor = self.raw.cursor()
        cursor.execute(to_pg(sql), tuple(params))
        return cursor

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> Any:
        cursor = self.raw.cursor()
        cursor.executemany(to_pg(sql), [tuple(row) for row in rows])
        return cursor

    @property
    def in_transaction(self) -> bool:
        from psycopg.pq import TransactionStatus

        return self.raw.info.transaction_status != TransactionStatus.IDLE

    def close(self) -> None:
        self.raw.close()


def connect(dsn: str, state: str, where: str) -> PgConnection:
    """A connection whose ``search_path`` is the state's schema (not created here)."""
    import psycopg

    try:
        raw = psycopg.connect(dsn, autocommit=True, connect_timeout=30, application_name="certform")
    except psycopg.Error as exc:
        raise StateError(f"cannot connect to {where}: {_first_line(exc)}") from None
    connection = PgConnection(raw)
    connection.execute(f'SET search_path TO "{schema_name(state)}"')
    return connection


def _first_line(exc: BaseException) -> str:
    """A libpq error without its DSN echo or context lines."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def acquire(connection: PgConnection, state: str, me: LockInfo, timeout: float, where: str) -> None:
    """Take the state's advisory lock, waiting up to ``timeout`` seconds, and name
    ourselves in ``certform.locks``; StateLockedError naming the holder otherwise."""
    for statement in _LOCKS_DDL:
        _tolerating_races(connection, statement)
    deadline = time.monotonic() + timeout
    while True:
        (got,) = connection.execute(
            "SELECT pg_try_advisory_lock(hashtext(?), hashtext(?))", (LOCK_SPACE, state)
        ).fetchone()
        if got:
            break
        if time.monotonic() >= deadline:
            raise StateLockedError(locked_message(where, holder(connection, state)))
        time.sleep(0.1)
    row = asdict(me)
    connection.execute(
        "INSERT INTO certform.locks (state, lock_id, holder, pid, host, operation, acquired_at, "
        "backend_pid) VALUES (?, ?, ?, ?, ?, ?, ?, pg_backend_pid()) ON CONFLICT (state) DO "
        "UPDATE SET lock_id = excluded.lock_id, holder = excluded.holder, pid = excluded.pid, "
        "host = excluded.host, operation = excluded.operation, "
        "acquired_at = excluded.acquired_at, backend_pid = excluded.backend_pid",
        (state, row["lock_id"], row["holder"], row["pid"], row["host"], row["operation"],
         row["acquired_at"]),
    )  # fmt: skip


def release(connection: PgConnection, state: str) -> None:
    """Drop our holder row and the advisory lock (closing the connection would too)."""
    connection.execute(
        "DELETE FROM certform.locks WHERE state = ? AND backend_pid = pg_backend_pid()", (state,)
    )
    connection.execute(
        "SELECT pg_advisory_unlock(hashtext(?), hashtext(?))", (LOCK_SPACE, state)
    ).fetchone()


def holder(connection: PgConnection, state: str) -> LockInfo | None:
    """Who holds the state's lock now (None: nobody; a nameless LockInfo when the lock
    is held but its row is not written yet)."""
    held = connection.execute(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
        "AND classid = hashtext(?)::oid AND objid = hashtext(?)::oid AND objsubid = 2",
        (LOCK_SPACE, state),
    ).fetchone()[0]
    if not held:
        return None
    row = _lock_row(connection, state)
    if row is None:
        return LockInfo("another certform process", 0, "unknown", "unknown", "")
    return LockInfo(row[1], row[2], row[3], row[4], row[5], row[0])


def _lock_row(connection: PgConnection, state: str) -> tuple[Any, ...] | None:
    try:
        return connection.execute(
            "SELECT lock_id, holder, pid, host, operation, acquired_at, backend_pid "
            "FROM certform.locks WHERE state = ?",
            (state,),
        ).fetchone()
    except _undefined_table():
        return None


def force_release(connection: PgConnection, state: str, lock_id: str, where: str) -> str:
    """End the server process of the connection holding ``lock_id``: PostgreSQL then
    drops its advisory lock (the runner that opened it is gone, or hangs)."""
    current = holder(connection, state)
    if current is None:
        return f"{where} is not locked; nothing to release"
    if current.lock_id != lock_id:
        raise StateError(
            f"{where} is locked under the ID {current.lock_id or 'unknown'}, not {lock_id}; "
            "nothing was released"
        )
    row = _lock_row(connection, state)
    backend = row[6] if row else None
    ended = connection.execute("SELECT pg_terminate_backend(?)", (backend,)).fetchone()[0]
    if not ended:
        raise StateError(
            f"cannot end the connection holding lock {lock_id} (server process {backend}): "
            "this database role may not signal it; ask the database administrator"
        )
    deadline = time.monotonic() + 10
    while holder(connection, state) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    connection.execute(
        "DELETE FROM certform.locks WHERE state = ? AND lock_id = ?", (state, lock_id)
    )
    return f"released lock {lock_id} of {where} (held by {current.describe()})"


def _tolerating_races(connection: PgConnection, statement: str) -> None:
    """``CREATE ... IF NOT EXISTS`` run by two runners at once may still collide on
    the catalog's unique index; the loser finds the object made."""
    import psycopg

    with contextlib.suppress(psycopg.errors.UniqueViolation, psycopg.errors.DuplicateObject):
        connection.execute(statement)


def _undefined_table() -> type[BaseException]:
    import psycopg

    return psycopg.errors.UndefinedTable
