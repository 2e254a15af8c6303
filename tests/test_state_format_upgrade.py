"""Row MACs of format 2 (``certform-state/2``): a state of format 1 (what certform wrote
before) opens as it is, is upgraded by the first write, and tampering is refused with
"state tampered: ADDRESS (COLUMN)" before the upgrade, during it and after it, on
SQLite and PostgreSQL.

Format 1 states come from two places: ``tests/data/state-format1`` (written by the
certform of before, see its README) and ``to_format1`` (a state re-sealed with the
format 1 sealer ``row_auth_v1`` kept for this, on either backend)."""

from __future__ import annotations

import base64
import math
import shutil
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import pytest

from reconciler.errors import StateError
from reconciler.state import row_auth
from reconciler.state.row_auth import TABLES, RowAuthenticator, encode_reference, select_list
from reconciler.state.row_auth_v1 import RowAuthenticatorV1
from reconciler.state.sealing import Sealer, unwrap_data_key
from tests.conftest import PG_DSN, Result, Workspace

pytestmark = pytest.mark.state_backends

FIXTURE = Path(__file__).parent / "data" / "state-format1"
FORMAT_1, FORMAT_2 = "certform-state/1", "certform-state/2"


def refused(result: Result, address: str, column: str) -> None:
    assert result.code == 1, result.text
    assert f"state tampered: {address} ({column})" in result.text
    assert "Traceback" not in result.text


def state_format(ws: Workspace) -> str:
    return str(ws.query("SELECT value FROM meta WHERE key = 'format'")[0][0])


def macs(ws: Workspace) -> dict[str, list[tuple[Any, ...]]]:
    return {
        t: ws.query(f"SELECT {s.key}, mac FROM {t} ORDER BY {s.key}") for t, s in TABLES.items()
    }


def to_format1(ws: Workspace, master_key: str) -> None:
    """Re-seal every row with format 1 MACs and call the state format 1: the state as
    the certform of before would have written it."""
    (wrapped,) = ws.query("SELECT value FROM meta WHERE key = 'data_key'")[0]
    data_key, _ = unwrap_data_key(base64.b64decode(master_key), base64.b64decode(wrapped))
    auth = RowAuthenticatorV1(Sealer(data_key).derive(RowAuthenticatorV1.label))
    for table, spec in TABLES.items():
        for row in ws.query(f"SELECT {select_list(table, True)} FROM {table}"):
            mac = auth.seal(table, tuple(row[:-1]))
            ws.query(f"UPDATE {table} SET mac = ? WHERE {spec.key} = ?", (mac, row[spec.key_index]))
    ws.query("UPDATE meta SET value = ? WHERE key = 'format'", (FORMAT_1,))


@pytest.fixture
def format1(workspace: Workspace, master_key: str) -> Workspace:
    workspace.ok("apply", "--auto-approve")
    to_format1(workspace, master_key)
    return workspace


def test_a_format_1_state_is_read_then_upgraded_by_the_first_write(format1: Workspace) -> None:
    ws = format1
    before = macs(ws)
    assert all(not mac.startswith("v2:") for rows in before.values() for _, mac in rows)
    assert ws.run("plan", "--detailed-exitcode").code == 0
    ws.ok("show")
    assert "audit chain intact" in ws.ok("audit", "--verify").out
    assert state_format(ws) == FORMAT_1 and macs(ws) == before  # reading changes nothing

    (ws.root / "out/web/cert.pem").unlink()  # something to apply
    ws.ok("apply", "--auto-approve")
    assert state_format(ws) == FORMAT_2
    after = macs(ws)
    assert [len(rows) for rows in after.values()] == [len(rows) for rows in before.values()]
    assert all(mac.startswith("v2:") for rows in after.values() for _, mac in rows)
    assert "audit chain intact" in ws.ok("audit", "--verify").out
    assert ws.run("plan", "--detailed-exitcode").code == 0
    assert ws.private_key_der("certificate", "web") == ws.deployed_key_der("out/web")


def test_an_edited_row_stops_the_upgrade_and_changes_nothing(format1: Workspace) -> None:
    ws = format1
    ws.query("UPDATE bindings SET target = replace(target, 'out/web', 'out/evil')")
    before = macs(ws)
    refused(ws.run("plan"), "binding.files:out/web", "target")  # format 1 names it too
    (ws.root / "out/api/cert.pem").unlink()
    refused(ws.run("apply", "--auto-approve"), "binding.files:out/web", "target")
    assert state_format(ws) == FORMAT_1 and macs(ws) == before
    assert not (ws.root / "out/api/cert.pem").exists()
    # A row no read looks at (reads skip certificates not active): the upgrade checks
    # every row before it seals any.
    ws.query("UPDATE bindings SET target = replace(target, 'out/evil', 'out/web')")
    ws.query("UPDATE certificates SET status = 'destroyed' WHERE name = 'api'")
    refused(ws.run("apply", "--auto-approve"), "certificate.api", "status")
    assert state_format(ws) == FORMAT_1 and macs(ws) == before


def test_edits_after_the_upgrade_are_refused(format1: Workspace) -> None:
    """Each edit alone (then undone): a column, two rows' values swapped, a row
    renamed, its MAC deleted or replaced by its format 1 MAC, the format rolled back."""
    ws = format1
    v1_mac = ws.query("SELECT mac FROM certificates WHERE name = 'web'")[0][0]
    (ws.root / "out/web/cert.pem").unlink()
    ws.ok("apply", "--auto-approve")  # upgrades
    serials = dict(ws.query("SELECT name, serial FROM certificates"))
    edits: list[tuple[list[tuple[str, tuple[Any, ...]]], str, str]] = [
        ([("UPDATE certificates SET root_pem = 'x' WHERE name = 'web'", ())],
         "certificate.web", "root_pem"),
        ([("UPDATE certificates SET serial = ? WHERE name = ?", (serials["api"], "web")),
          ("UPDATE certificates SET serial = ? WHERE name = ?", (serials["web"], "api"))],
         "certificate.", "serial"),
        ([("UPDATE authorities SET name = 'evil' WHERE name = 'issuing'", ())],
         "authority.evil", "name"),
        ([("UPDATE bindings SET mac = NULL WHERE address = 'binding.files:out/api'", ())],
         "binding.files:out/api", "mac"),
        ([("UPDATE certificates SET mac = ? WHERE name = 'web'", (v1_mac,))],
         "certificate.web", "mac"),
        ([("UPDATE meta SET value = ? WHERE key = 'format'", (FORMAT_1,))],
         "authority.", "mac"),
    ]  # fmt: skip
    for statements, address, column in edits:
        saved = {t: ws.query(f"SELECT * FROM {t}") for t in (*TABLES, "meta")}
        for sql, params in statements:
            ws.query(sql, params)
        result = ws.run("plan")
        assert result.code == 1 and "Traceback" not in result.text, result.text
        assert f"state tampered: {address}" in result.text and f"({column})" in result.text
        for table, rows in saved.items():  # undo
            ws.query(f"DELETE FROM {table}")
            for row in rows:
                ws.query(f"INSERT INTO {table} VALUES ({', '.join('?' * len(row))})", row)
    assert ws.run("plan", "--detailed-exitcode").code == 0


def test_a_format_from_a_later_certform_is_refused_by_name(workspace: Workspace) -> None:
    ws = workspace
    ws.ok("apply", "--auto-approve")
    ws.query("UPDATE meta SET value = 'certform-state/3' WHERE key = 'format'")
    result = ws.run("plan")
    assert result.code == 1, result.text
    assert "has state format 'certform-state/3'" in result.err and "upgrade certform" in result.err


# -- the state written by the certform of before (tests/data/state-format1) ---------------
def fixture_state(ws: Workspace, where: Path) -> str:
    """Copy the fixture's state to ``where`` and its config into ``ws``; its master key."""
    where.parent.mkdir(mode=0o700, exist_ok=True)
    shutil.copyfile(FIXTURE / "state.db", where)
    where.chmod(0o600)
    ws.write((FIXTURE / "certform.yaml").read_text())
    return (FIXTURE / "master.key").read_text().strip()


@pytest.mark.sqlite_only
def test_a_state_written_by_the_previous_certform_opens_and_upgrades(
    workspace: Workspace,
) -> None:
    ws = workspace
    ws.env["CERTFORM_MASTER_KEY"] = fixture_state(ws, ws.state_db)
    assert state_format(ws) == FORMAT_1
    plan = ws.run("plan", "--detailed-exitcode")  # the deployed files are not there
    assert plan.code == 2 and "tampered" not in plan.text, plan.text
    ws.ok("show")
    assert "audit chain intact" in ws.ok("audit", "--verify").out
    # Tampering is refused before the upgrade, and stops it.
    ws.query("UPDATE revocations SET reason = 'unspecified'")
    refused(ws.run("apply", "--auto-approve"), "revocation 1", "reason")
    assert state_format(ws) == FORMAT_1
    ws.query("UPDATE revocations SET reason = 'keyCompromise'")

    ws.ok("apply", "--auto-approve")
    assert state_format(ws) == FORMAT_2
    assert all(mac.startswith("v2:") for rows in macs(ws).values() for _, mac in rows)
    assert "audit chain intact" in ws.ok("audit", "--verify").out
    assert ws.run("plan", "--detailed-exitcode").code == 0
    assert ws.private_key_der("certificate", "web") == ws.deployed_key_der("out/web")
    ws.query("UPDATE crls SET entries = 0")
    refused(ws.run("plan"), "crl of authority.issuing", "entries")


@pytest.mark.sqlite_only
def test_state_migrate_copies_a_state_of_the_previous_certform(
    workspace: Workspace, postgres_dsn: str
) -> None:
    """The copy is checked under format 1 as copied, then upgraded by the migration's
    own audit record: a PostgreSQL state of format 2 that refuses edits."""
    ws = workspace
    (ws.root / "old.key").write_text(fixture_state(ws, ws.state_db) + "\n")
    (ws.root / "old.key").chmod(0o600)
    ws.env[PG_DSN] = postgres_dsn
    name = "up" + uuid.uuid4().hex[:12]
    header = f"state: {{backend: postgres, dsn_env: {PG_DSN}, name: {name}}}\n"
    ws.write(header + (FIXTURE / "certform.yaml").read_text())
    copied = ws.run(
        "state", "migrate", "--from", ".certform/state.db", "--from-master-key-file", "old.key"
    )
    assert copied.code == 0, copied.text
    ws.backend, ws.state_header = "postgres", header
    assert state_format(ws) == FORMAT_2
    assert all(mac.startswith("v2:") for rows in macs(ws).values() for _, mac in rows)
    assert "audit chain intact" in ws.ok("audit", "--verify").out
    ws.ok("apply", "--auto-approve")
    assert ws.run("plan", "--detailed-exitcode").code == 0
    ws.query("UPDATE certificates SET chain_pem = '' WHERE name = 'api'")
    refused(ws.run("plan"), "certificate.api", "chain_pem")


# -- the format itself ------------------------------------------------------------------
KEY = bytes(range(32))
CERTIFICATE = (
    "web", "active", '{"names": ["a.test"]}', "0a1b", "2026-01-01T00:00:00+00:00",
    "2026-04-01T00:00:00+00:00", "kid", "fp", 1, "{}", "PEM\u00e9", "", "",
    b"\x00sealed", None, "now", None,
)  # fmt: skip
BINDING = ("files:out/a", "a", "{}", "0a1b", '{"files": {}}', "2026-01-01T00:00:00+00:00")


def test_format_2_macs_are_pinned() -> None:
    """Known answers: a change to the encoding, the labels or the layout changes every
    MAC a state holds, so it needs a format 3 (and an upgrade), not an edit here."""
    auth = RowAuthenticator(KEY)
    assert auth.seal("bindings", BINDING) == (
        "v2:4d9bfa83b8dd915e64108d2f130f5b68a7273bc7b854ef57604d7a5e7d1306fe"
        "84ea81e6be7e9261f786182287522e413c9ead122369a0234e213b3fc874d5cbcb"
        "7a2e6f7e339812dcf99490f540fefa"
    )
    mac = auth.seal("certificates", CERTIFICATE)
    assert mac.startswith("v2:0c94359b9c4e99e35e311e8d7b08043b760b9e58afdfe93e0f97a5f0aae1674b")
    assert len(mac) == 3 + 64 + 16 * len(CERTIFICATE)
    auth.check("certificates", CERTIFICATE, mac)


@pytest.mark.parametrize(
    "value",
    [
        None, True, False, 0, 1, -1, 2**31 - 1, -(2**31), 2**31, -(2**31) - 1, 2**64, -(10**40),
        0.0, -0.0, 1.5, math.inf, "", "a", "PEM\n-----", "\u00e9\u20ac\U0001f512", "\udc80",
        b"", b"\x00\xff", bytearray(b"ab"), memoryview(b"cd"), (), ("a", 1, None, b"x"),
        CERTIFICATE,
    ],
)  # fmt: skip
def test_the_encoding_is_marshal_version_2_spelled_out(value: object) -> None:
    """``encode_reference`` is the definition; marshal must write the same bytes, or
    row_auth falls back to the reference (see the next test)."""
    import marshal

    assert marshal.dumps(value, 2) == encode_reference(value)


def test_the_reference_encoder_gives_the_same_macs(monkeypatch: pytest.MonkeyPatch) -> None:
    fast = RowAuthenticator(KEY).seal("certificates", CERTIFICATE)
    monkeypatch.setattr(row_auth, "_FAST", False)
    monkeypatch.setattr(row_auth, "encode", encode_reference)
    auth = RowAuthenticator(KEY)
    assert auth.seal("certificates", CERTIFICATE) == fast
    auth.check_rows("certificates", [(*CERTIFICATE, fast)])


def test_a_row_moved_to_another_table_or_name_is_refused() -> None:
    auth = RowAuthenticator(KEY)
    mac = auth.seal("bindings", BINDING)
    with pytest.raises(StateError, match=r"state tampered: crl of authority\.files:out/a \("):
        auth.check_rows("crls", [(*BINDING, mac)])  # same arity, another table
    with pytest.raises(StateError, match=r"state tampered: files:out/b \(address\)"):
        auth.check_rows("bindings", [("files:out/b", *BINDING[1:], mac)])
    with pytest.raises(StateError, match=r"files:out/a \(mac\)"):
        auth.check_rows("bindings", [(*BINDING, RowAuthenticatorV1(KEY).seal("bindings", BINDING))])
    with pytest.raises(StateError, match=r"files:out/a \(facts\)"):
        auth.check_rows("bindings", [(*BINDING[:4], 7, BINDING[5], mac)])  # an int edited in
    with pytest.raises(StateError, match=r"files:out/a \(facts\)"):
        auth.check_rows("bindings", [(*BINDING[:4], 7.5, BINDING[5], mac)])


def test_the_sqlite_fixture_is_a_format_1_state() -> None:
    db = sqlite3.connect(FIXTURE / "state.db")
    try:
        assert db.execute("SELECT value FROM meta WHERE key = 'format'").fetchone() == (FORMAT_1,)
        for table in TABLES:
            assert db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] > 0, table
    finally:
        db.close()
