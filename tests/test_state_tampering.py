"""Issue 10, item 5: state rows are authenticated (row MACs, sealed keys bound to their
row, a keyed audit chain); edits of ``.certform/state.db`` made outside certform are
refused with "state tampered: ADDRESS (FIELD)", exit 1, nothing changed."""

from __future__ import annotations

import base64
import json
import sqlite3
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from reconciler.errors import StateError
from reconciler.state import audit_chain, row_auth
from reconciler.state.sealing import (
    DATA_KEY_V1,
    Sealer,
    key_aad,
    unwrap_data_key,
    wrap_data_key,
)
from tests.conftest import EXAMPLE, Result, Workspace
from tests.selfsigned import self_signed

EXPORTABLE = EXAMPLE.replace(
    "    tags: {team: web}\n", "    tags: {team: web}\n    exportable: true\n"
)
RENAMED = EXPORTABLE.replace(
    "names: [web.example.test, ", "names: [web.example.test, www.example.test, "
)


def sql(ws: Workspace, *statements: str, params: tuple[Any, ...] = ()) -> None:
    db = sqlite3.connect(ws.state_db)
    with db:
        for statement in statements:
            db.execute(statement, params)
    db.close()


def query(ws: Workspace, statement: str) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(ws.state_db)
    try:
        return db.execute(statement).fetchall()
    finally:
        db.close()


def snapshot(ws: Workspace) -> dict[str, Any]:
    """Every row of every table but the lock (which each command takes and drops)."""
    tables = [r[0] for r in query(ws, "SELECT name FROM sqlite_master WHERE type = 'table'")]
    return {t: query(ws, f"SELECT * FROM {t}") for t in sorted(tables) if t != "lock"}


def deployed(ws: Workspace) -> dict[str, bytes]:
    return {
        str(p.relative_to(ws.root)): p.read_bytes()
        for p in (ws.root / "out").rglob("*")
        if p.is_file()
    }


def refused(result: Result, address: str, field: str) -> None:
    assert result.code == 1, result.text
    assert f"state tampered: {address} ({field})" in result.text
    assert "Traceback" not in result.text


@pytest.fixture
def applied(workspace: Workspace) -> Workspace:
    workspace.write(EXPORTABLE)
    workspace.ok("apply", "--auto-approve")
    return workspace


def test_foreign_root_pem_is_refused(applied: Workspace) -> None:
    ws = applied
    foreign, _ = self_signed("evil.example")
    pem = foreign.public_bytes(serialization.Encoding.PEM).decode()
    sql(ws, "UPDATE certificates SET root_pem = ? WHERE name = 'web'", params=(pem,))
    before, files = snapshot(ws), deployed(ws)
    (ws.root / "out/web/ca.pem").unlink()  # a rebind would deploy the foreign root
    files.pop("out/web/ca.pem")
    for command in (["plan"], ["apply", "--auto-approve"], ["show"], ["check"]):
        refused(ws.run(*command), "certificate.web", "root_pem")
    assert snapshot(ws) == before
    assert deployed(ws) == files


def test_restored_older_sealed_key_is_refused(applied: Workspace) -> None:
    ws = applied
    (old_blob,) = query(ws, "SELECT sealed_key FROM certificates WHERE name = 'web'")[0]
    ws.write(RENAMED)
    ws.ok("apply", "--auto-approve")  # replace: a new key and certificate
    sql(ws, "UPDATE certificates SET sealed_key = ? WHERE name = 'web'", params=(old_blob,))
    before, files = snapshot(ws), deployed(ws)
    (ws.root / "pass.txt").write_text("correct horse battery\n")
    refused(ws.run("apply", "--auto-approve"), "certificate.web", "sealed_key")
    export = ws.run("export", "web", "--passphrase-file", "pass.txt", "--out", "exp")
    refused(export, "certificate.web", "sealed_key")
    assert not (ws.root / "exp").exists()
    assert snapshot(ws) == before
    assert deployed(ws) == files


def test_sealed_key_is_bound_to_its_certificate() -> None:
    """Even with a valid row MAC, a key sealed for another certificate does not open."""
    sealer = Sealer(b"k" * 32)
    first, _ = self_signed("one.example")
    second, _ = self_signed("two.example")
    pems = [c.public_bytes(serialization.Encoding.PEM).decode() for c in (first, second)]
    blob = sealer.seal_bound(b"key", key_aad("certificate.web", pems[0]))
    assert sealer.open_bound(blob, key_aad("certificate.web", pems[0]), "x") == b"key"
    with pytest.raises(StateError, match=r"state tampered: certificate\.web \(sealed_key\)"):
        sealer.open_bound(blob, key_aad("certificate.web", pems[1]), "certificate.web")
    with pytest.raises(StateError, match="state tampered"):
        sealer.open_bound(blob, key_aad("certificate.api", pems[0]), "certificate.web")


@pytest.mark.parametrize(
    ("statement", "address", "field"),
    [
        (
            "UPDATE bindings SET target = replace(target, 'out/web', 'out/evil') "
            "WHERE address = 'binding.files:out/web'",
            "binding.files:out/web",
            "target",
        ),
        (
            "UPDATE bindings SET serial = 'ff' WHERE address = 'binding.files:out/api'",
            "binding.files:out/api",
            "serial",
        ),
        (
            "UPDATE certificates SET prevent_destroy = 1 - prevent_destroy WHERE name = 'web'",
            "certificate.web",
            "prevent_destroy",
        ),
        (
            """UPDATE certificates SET tags = '{"team":"evil"}' WHERE name = 'web'""",
            "certificate.web",
            "tags",
        ),
        (
            "UPDATE authorities SET prevent_destroy = 1 WHERE name = 'issuing'",
            "authority.issuing",
            "prevent_destroy",
        ),
        (
            "UPDATE certificates SET name = 'api2' WHERE name = 'api'",
            "certificate.api2",
            "name",
        ),
    ],
)
def test_edited_rows_are_refused(
    applied: Workspace, statement: str, address: str, field: str
) -> None:
    sql(applied, statement)
    before, files = snapshot(applied), deployed(applied)
    refused(applied.run("plan"), address, field)
    refused(applied.run("apply", "--auto-approve"), address, field)
    assert snapshot(applied) == before
    assert deployed(applied) == files


def test_nulled_macs_are_refused(applied: Workspace) -> None:
    sql(applied, "UPDATE certificates SET mac = NULL WHERE name = 'web'")
    refused(applied.run("plan"), "certificate.web", "mac")
    # Nulling every MAC (as if the state predated row MACs) does not downgrade it: the
    # wrapped data key says the state is authenticated.
    sql(
        applied,
        "UPDATE certificates SET mac = NULL",
        "UPDATE authorities SET mac = NULL",
        "UPDATE bindings SET mac = NULL",
    )
    refused(applied.run("plan"), "authority.root", "mac")
    sql(applied, *(f"ALTER TABLE {t} DROP COLUMN mac" for t in ("authorities", "bindings")))
    refused(applied.run("show"), "authority.root", "mac")


def test_rechained_audit_record_is_detected(applied: Workspace) -> None:
    ws = applied
    assert ws.run("audit", "--verify").code == 0
    # An attacker without the data key rewrites record 3 and re-chains the rest with
    # plain SHA-256, head included.
    rows = json.loads(ws.ok("audit", "--json").out)["records"]
    rows[2]["detail"] = "nothing to see"
    previous = rows[2]["previous"]
    for row in rows[2:]:
        row["previous"] = previous
        row["hash"] = previous = audit_chain.record_hash(previous, row)
        sql(
            ws,
            "UPDATE audit SET detail = ?, previous = ?, hash = ? WHERE id = ?",
            params=(row["detail"], row["previous"], row["hash"], row["id"]),
        )
    sql(ws, "UPDATE meta SET value = ? WHERE key = 'audit_head'", params=(f"6:{previous}",))
    result = ws.run("audit", "--verify")
    assert result.code == 1, result.text
    assert "record 3 does not match its hash" in result.out


def downgrade_to_v1(ws: Workspace, master_key: str) -> None:
    """Rewrite a state as certform wrote it before row authentication: the data key
    wrapped as version 1, keys sealed to their address only, no mac columns, a bare
    SHA-256 audit chain."""
    master = base64.b64decode(master_key)
    db = sqlite3.connect(ws.state_db)
    with db:
        (wrapped,) = db.execute("SELECT value FROM meta WHERE key = 'data_key'").fetchone()
        data_key, _ = unwrap_data_key(master, base64.b64decode(wrapped))
        v1 = base64.b64encode(wrap_data_key(master, data_key, DATA_KEY_V1)).decode()
        db.execute("UPDATE meta SET value = ? WHERE key = 'data_key'", (v1,))
        sealer = Sealer(data_key)
        for table, kind in (("certificates", "certificate"), ("authorities", "authority")):
            rows = db.execute(f"SELECT name, certificate_pem, sealed_key FROM {table}").fetchall()
            for name, pem, blob in rows:
                if blob is None:
                    continue
                address = f"{kind}.{name}"
                key_der = sealer.open_bound(blob, key_aad(address, pem), address)
                db.execute(
                    f"UPDATE {table} SET sealed_key = ? WHERE name = ?",
                    (sealer.seal(key_der, address), name),
                )
        for table in row_auth.TABLES:
            if any(r[1] == "mac" for r in db.execute(f"PRAGMA table_info({table})")):
                db.execute(f"ALTER TABLE {table} DROP COLUMN mac")
        previous = audit_chain.GENESIS
        cols = ", ".join(audit_chain.FIELDS)
        for row in db.execute(f"SELECT {cols} FROM audit ORDER BY id").fetchall():
            fields = dict(zip(audit_chain.FIELDS, row, strict=True))
            digest = audit_chain.record_hash(previous, fields)
            db.execute(
                "UPDATE audit SET previous = ?, hash = ? WHERE id = ?", (previous, digest, row[0])
            )
            previous = digest
        db.execute("UPDATE meta SET value = ? WHERE key = 'audit_head'", (f"6:{previous}",))
        db.execute("DELETE FROM meta WHERE key = 'audit_keyed_after'")
    db.close()


def test_old_format_state_opens_and_is_migrated(applied: Workspace, master_key: str) -> None:
    ws = applied
    downgrade_to_v1(ws, master_key)
    assert "mac" not in {r[1] for r in query(ws, "PRAGMA table_info(certificates)")}
    before = ws.run("plan", "--detailed-exitcode")
    assert before.code == 0, before.text
    assert "authenticated (tamper-evident) from the next apply on" in before.err
    ws.ok("show")
    assert "audit chain intact: 6 records" in ws.ok("audit", "--verify").out
    assert "mac" not in {r[1] for r in query(ws, "PRAGMA table_info(certificates)")}  # read only

    ws.write(RENAMED)
    ws.ok("apply", "--auto-approve")  # the first write migrates, then replaces web
    for table in ("certificates", "authorities", "bindings"):
        assert query(ws, f"SELECT COUNT(*) FROM {table} WHERE mac IS NULL") == [(0,)]
    assert query(ws, "SELECT value FROM meta WHERE key = 'audit_keyed_after'")[0][0][:2] == "6:"
    assert "audit chain intact: 8 records" in ws.ok("audit", "--verify").out
    after = ws.run("plan", "--detailed-exitcode")
    assert after.code == 0, after.text
    assert "earlier certform" not in after.err
    # From now on the rows are authenticated, and the api key (migrated) still opens.
    (ws.root / "out/api/key.pem").unlink()
    ws.ok("apply", "--auto-approve")
    sql(ws, "UPDATE certificates SET root_pem = 'x' WHERE name = 'api'")
    refused(ws.run("plan"), "certificate.api", "root_pem")


def test_old_format_state_with_a_restored_key_is_not_blessed(
    applied: Workspace, master_key: str
) -> None:
    """The issue's attack on a state from before the upgrade: the migration checks each
    key against its certificate instead of binding the restored key to the row."""
    ws = applied
    api_key = query(ws, "SELECT sealed_key, certificate_pem FROM certificates WHERE name = 'api'")
    downgrade_to_v1(ws, master_key)
    master = base64.b64decode(master_key)
    (wrapped,) = query(ws, "SELECT value FROM meta WHERE key = 'data_key'")[0]
    sealer = Sealer(unwrap_data_key(master, base64.b64decode(wrapped))[0])
    blob, pem = api_key[0]
    other = sealer.open_bound(blob, key_aad("certificate.api", pem), "certificate.api")
    # The api key sealed for web's address, as an older web blob would be.
    sql(
        ws,
        "UPDATE certificates SET sealed_key = ? WHERE name = 'web'",
        params=(sealer.seal(other, "certificate.web"),),
    )
    before, files = snapshot(ws), deployed(ws)
    ws.write(RENAMED)
    refused(ws.run("apply", "--auto-approve"), "certificate.web", "sealed_key")
    assert snapshot(ws) == before
    assert deployed(ws) == files
