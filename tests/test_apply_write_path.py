"""The cheaper apply write path keeps what the slower one guaranteed.

Files: ``write_atomic`` returns the stat the binding's stamp is made of (no second
lookup), keys are created 0600 whatever the umask, a directory made by the deploy is
reported as new (so no stale-temp scan), and the snapshot of a first deploy reads
nothing.  State: a row inserted with its MAC in the same statement carries exactly
the MAC that sealing it from the database would give, and audit records appended
in one transaction chain as if each had looked the head up."""

from __future__ import annotations

import itertools
import os
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from reconciler import fsutil
from reconciler.model.records import BindingRecord
from reconciler.state import migration, row_auth
from reconciler.state.row_auth import RowAuthenticator
from tests.conftest import Workspace

ONE_CERT = """
authorities:
  root:
    type: private-root
    subject: {common_name: Test Root}
    key: ec-p256
    validity: 3650d
certificates:
  a:
    names: [a.test]
    issuer: root
    key: ec-p256
    validity: 90d
  b:
    names: [b.test]
    issuer: root
    key: ec-p256
    validity: 90d
bindings:
  - certificate: a
    target: {type: files, directory: out/a}
  - certificate: b
    target: {type: files, directory: out/deep/b}
"""


def test_write_atomic_returns_the_stat_of_what_is_on_disk(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        public = fsutil.write_atomic(tmp_path / "cert.pem", b"certificate", 0o644)
        private = fsutil.write_atomic(str(tmp_path / "key.pem"), b"key", 0o600)
    finally:
        os.umask(old)
    for name, written in (("cert.pem", public), ("key.pem", private)):
        on_disk = os.stat(tmp_path / name)
        assert (written.st_size, written.st_mtime_ns) == (on_disk.st_size, on_disk.st_mtime_ns)
    assert os.stat(tmp_path / "cert.pem").st_mode & 0o777 == 0o644  # mode despite umask
    assert os.stat(tmp_path / "key.pem").st_mode & 0o777 == 0o600
    assert sorted(os.listdir(tmp_path)) == ["cert.pem", "key.pem"]  # no temp left


def test_temp_names_stay_recognisable_and_distinct(tmp_path: Path) -> None:
    names = {fsutil._temp_path(str(tmp_path / "key.pem")) for _ in range(1000)}
    assert len(names) == 1000
    for name in names:
        match = fsutil._TEMP.match(os.path.basename(name))
        assert match and match["name"] == "key.pem" and int(match["pid"]) == os.getpid()


def test_make_dirs_says_whether_it_made_the_directory(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        assert fsutil.make_dirs(tmp_path / "a", 0o750) is True
        assert fsutil.make_dirs(tmp_path / "a", 0o750) is False
        assert fsutil.make_dirs(str(tmp_path / "x" / "y" / "z"), 0o750) is True
    finally:
        os.umask(old)
    for path in ("a", "x", "x/y", "x/y/z"):
        assert os.stat(tmp_path / path).st_mode & 0o777 == 0o750
    (tmp_path / "file").write_text("")
    with pytest.raises(FileExistsError):
        fsutil.make_dirs(tmp_path / "file", 0o750)


def test_deploy_stamps_match_the_disk_and_the_state_verifies(workspace: Workspace) -> None:
    ws = workspace
    ws.write(ONE_CERT)
    ws.ok("apply", "--auto-approve")
    for directory in ("out/a", "out/deep/b"):
        path = ws.root / directory
        assert os.stat(path).st_mode & 0o777 == 0o750
        assert os.stat(path / "key.pem").st_mode & 0o777 == 0o600
        assert sorted(os.listdir(path)) == [
            "ca.pem", "cert.pem", "chain.pem", "fullchain.pem", "key.pem",
        ]  # fmt: skip
    # Stamps recorded = what is on disk; every row MAC holds (the read checks them).
    ws.ok("plan", "--detailed-exitcode")
    ws.ok("audit", "--verify")
    conn = sqlite3.connect(ws.state_db)
    try:
        rows = conn.execute("SELECT id, previous, hash FROM audit ORDER BY id").fetchall()
        for before, after in itertools.pairwise(rows):
            assert after[0] == before[0] + 1 and after[1] == before[2]
        head = conn.execute("SELECT value FROM meta WHERE key = 'audit_head'").fetchone()
        assert head[0] == f"{rows[-1][0]}:{rows[-1][2]}"
    finally:
        conn.close()


@pytest.mark.parametrize("serial", ["0a1b", "12345", 12345])
def test_insert_with_mac_equals_sealing_from_the_database(serial: object) -> None:
    """The MAC written with the row is the one ``mac_row`` computes from what SQLite
    returns; a value SQLite would store otherwise than given (an int in a TEXT
    column) takes the read-back path, so its MAC still matches what a read sees."""
    from reconciler.state.sql_store import _SqlWriter
    from reconciler.state.sqlite import _SCHEMA

    conn = sqlite3.connect(":memory:")
    conn.executescript(_SCHEMA)
    migration.ensure_mac_columns(conn)
    auth = RowAuthenticator(bytes(range(32)))
    writer = _SqlWriter(conn, None, auth, bytes(32))  # type: ignore[arg-type]
    record = BindingRecord(
        address="files:out/a",
        certificate="a",
        target={"type": "files", "directory": "out/a"},
        serial=serial,  # type: ignore[arg-type]
        facts={"files": {"key.pem": [3, 1, "ab"]}},
        deployed_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    writer.put_binding(record)
    writer.flush()  # what the store does before it commits
    (written,) = conn.execute("SELECT mac FROM bindings").fetchone()
    migration.mac_row(conn, auth, "bindings", "files:out/a")
    (resealed,) = conn.execute("SELECT mac FROM bindings").fetchone()
    assert written == resealed
    columns = ", ".join(row_auth.TABLES["bindings"].columns)
    values, mac = conn.execute(f"SELECT {columns}, mac FROM bindings").fetchone()[:6], written
    auth.check("bindings", values, mac)
