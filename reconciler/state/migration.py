"""One-time migrations of a state: to authenticated rows (data key version 2, SQLite
states only: PostgreSQL states were born with it), and from format 1 row MACs to
format 2 (``certform-state/1`` to ``/2``, both backends: ``upgrade_row_macs``).

Row MAC format 2 (``row_auth.py``) replaced format 1 (``row_auth_v1.py``) to make
reading the state cheaper; both are keyed, neither is weaker.  A format 1 state is
read as it is (reading commands never write) and upgraded by the first write, in one
transaction under the lock: every row is checked under format 1 first, so that an
edited row stops the upgrade ("state tampered: ...", nothing changed) instead of
being sealed anew, then sealed under format 2, and the meta ``format`` set.  The
format is not authenticated and need not be: a row checked under the other format
fails, so setting it back or forth is caught as tampering (and a certform that knows
only format 1 refuses format 2 by name).

The migration to authenticated rows (state version 2):

When: in its own transaction, just before the first write of a certform that knows
row authentication (``apply``, ``export``, ``revoke``, anything that journals,
audits or records; all of them hold the state lock).  Reading commands (``plan``,
``show``, ``check``) never migrate: an unmigrated state reads as before, its rows
unauthenticated, until the first write.

What, all in that one transaction, so a crash leaves the state either wholly
version 1 or wholly version 2:

* a ``mac`` column is added to every authenticated table (``row_auth.TABLES``);
* every sealed private key is opened with its version 1 associated data (the
  address) and, after checking that it is the key of the row's certificate (an
  older blob restored onto the row before the upgrade is caught here rather than
  blessed), sealed again bound to its row (``sealing.key_aad``); journaled keys are
  bound to their journal entry (``sealing.journal_aad``);
* every row gets its MAC (format 2, and the meta ``format`` says so);
* the audit chain's switch point is recorded (records so far stay SHA-256, later
  ones are keyed; see ``audit_chain.format_switch``);
* the data key is re-wrapped as version 2 (the caller passes the new wrapping).

Downgrade: the version lives in the associated data of the wrapped data key (or
its KMS encryption context), which only the master key (or KMS) can produce.  An
attacker who NULLs every ``mac`` still faces a version 2 data key, so NULL MACs are
tampering; only someone holding a copy of the wrapped data key from before the
upgrade could present the state as version 1 again, and then every sealed key
(bound as version 2) fails to open.
"""

from __future__ import annotations

import base64
import sqlite3

from reconciler.state import audit_chain
from reconciler.state.row_auth import TABLES, RowAuthenticator, RowChecker, select_list, tampered
from reconciler.state.sealing import Sealer, journal_aad, key_aad

_KINDS = {"certificates": "certificate", "authorities": "authority"}


def existing_tables(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def tables_with_mac(conn: sqlite3.Connection) -> set[str]:
    """The authenticated tables that have a ``mac`` column (all of them once written)."""
    have = set()
    for table in TABLES.keys() & existing_tables(conn):
        if any(r[1] == "mac" for r in conn.execute(f"PRAGMA table_info({table})")):
            have.add(table)
    return have


def ensure_mac_columns(conn: sqlite3.Connection) -> None:
    """Add the ``mac`` column where an existing table lacks it (inside the caller's
    transaction; tables created later get it from their CREATE statement)."""
    for table in (TABLES.keys() & existing_tables(conn)) - tables_with_mac(conn):
        conn.execute(f"ALTER TABLE {table} ADD COLUMN mac TEXT")


def mac_row(conn: sqlite3.Connection, auth: RowAuthenticator, table: str, key: object) -> None:
    """Recompute the MAC of one row from what the database now holds."""
    spec = TABLES[table]
    row = conn.execute(
        f"SELECT {', '.join(spec.columns)} FROM {table} WHERE {spec.key} = ?", (key,)
    ).fetchone()
    if row is not None:
        conn.execute(
            f"UPDATE {table} SET mac = ? WHERE {spec.key} = ?", (auth.seal(table, row), key)
        )


def upgrade_row_macs(
    conn: sqlite3.Connection, tables: list[str], old: RowChecker, new: RowAuthenticator
) -> None:
    """Re-seal every row of ``tables`` under ``new`` after checking it under ``old``,
    inside the caller's transaction (see the module docstring)."""
    for table in tables:
        spec = TABLES[table]
        rows = conn.execute(f"SELECT {select_list(table, True)} FROM {table}").fetchall()
        old.check_rows(table, rows)
        conn.executemany(
            f"UPDATE {table} SET mac = ? WHERE {spec.key} = ?",
            [(new.seal(table, row[:-1]), row[spec.key_index]) for row in rows],
        )


def migrate(
    conn: sqlite3.Connection,
    sealer: Sealer,
    auth: RowAuthenticator,
    audit_key: bytes,
    wrapped_v2: bytes,
) -> None:
    """Turn a version 1 state into version 2 inside the caller's transaction (see the
    module docstring); raises StateError, changing nothing, on a key that does not
    open or does not match its certificate."""
    ensure_mac_columns(conn)
    tables = existing_tables(conn)
    for table, kind in _KINDS.items():
        rows = conn.execute(
            f"SELECT name, certificate_pem, sealed_key FROM {table} WHERE sealed_key IS NOT NULL"
        ).fetchall()
        for name, certificate_pem, blob in rows:
            address = f"{kind}.{name}"
            key_der = sealer.open(blob, address)
            if not _key_fits(key_der, certificate_pem):
                raise tampered(address, ["sealed_key"])
            conn.execute(
                f"UPDATE {table} SET sealed_key = ? WHERE name = ?",
                (sealer.seal_bound(key_der, key_aad(address, certificate_pem)), name),
            )
    journal = conn.execute(
        "SELECT id, run_id, address, sealed_key FROM journal WHERE sealed_key IS NOT NULL"
    ).fetchall()
    for entry, run_id, address, blob in journal:
        key_der = sealer.open(blob, f"journal:{address}")
        conn.execute(
            "UPDATE journal SET sealed_key = ? WHERE id = ?",
            (sealer.seal_bound(key_der, journal_aad(address, run_id, entry)), entry),
        )
    for table, spec in TABLES.items():
        if table in tables:
            for (key,) in conn.execute(f"SELECT {spec.key} FROM {table}").fetchall():
                mac_row(conn, auth, table, key)
    last = conn.execute("SELECT MAX(id) FROM audit").fetchone()[0] or 0
    conn.executemany(
        "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
        [
            ("audit_keyed_after", audit_chain.format_switch(int(last), audit_key)),
            ("data_key", base64.b64encode(wrapped_v2).decode()),
        ],
    )


def _key_fits(key_der: bytes, certificate_pem: str) -> bool:
    """Whether the sealed key is the one the row's certificate certifies (True when
    there is no certificate to compare with, or it cannot be parsed)."""
    if not certificate_pem.strip():
        return True
    from cryptography import x509
    from cryptography.exceptions import UnsupportedAlgorithm

    from reconciler.pki.keys import private_key_from_der, public_key_matches

    try:
        certificate = x509.load_pem_x509_certificate(certificate_pem.encode())
        key = private_key_from_der(key_der)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return True  # an algorithm this build cannot load: no verdict
    return public_key_matches(key, certificate)
