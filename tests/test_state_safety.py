"""State safety: sealed keys, master key handling, the lock, lineage and serial, and
no secret in any output, plan, log or state row."""

from __future__ import annotations

import base64
import json
import os
import re
import sqlite3
import stat
import subprocess
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from tests.conftest import Workspace, certform_argv


def private_key_fragments(ws: Workspace) -> list[bytes]:
    """Byte strings that would betray a private key: PEM body lines and raw DER."""
    fragments: list[bytes] = []
    for key_file in (ws.root / "out").glob("*/key.pem"):
        pem = key_file.read_bytes()
        body = [line for line in pem.splitlines() if line and not line.startswith(b"-----")]
        fragments.extend(line for line in body if len(line) >= 40)
        key = serialization.load_pem_private_key(pem, None)
        der = key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        fragments.append(der[-48:])
    assert fragments
    return fragments


def test_state_holds_no_private_key_in_the_clear(workspace: Workspace) -> None:
    ws = workspace
    ws.ok("apply", "--auto-approve")
    assert stat.S_IMODE(ws.state_db.stat().st_mode) == 0o600
    raw = b"".join(p.read_bytes() for p in ws.state_db.parent.glob("state.db*"))
    assert b"PRIVATE KEY" not in raw
    for fragment in private_key_fragments(ws):
        assert fragment not in raw
        assert base64.b64encode(fragment) not in raw


def test_no_secret_in_any_output_plan_or_log(workspace: Workspace, master_key: str) -> None:
    ws = workspace
    outputs = []
    outputs.append(ws.ok("plan", "--out", "saved.plan").text)
    outputs.append(ws.ok("apply", "saved.plan").text)
    outputs.append(ws.run("plan", "--json", "--at", "+70d").text)
    outputs.append(ws.run("plan", "--at", "+70d").text)
    outputs.append(ws.ok("apply", "--auto-approve").text)
    outputs.append(ws.ok("show").text)
    outputs.append(ws.ok("show", "--json").text)
    (ws.root / "out/web/key.pem").unlink()
    outputs.append(ws.run("plan", "--json").text)
    outputs.append(ws.ok("apply", "--auto-approve").text)
    wrong = dict(ws.env, CERTFORM_MASTER_KEY=base64.b64encode(os.urandom(32)).decode())
    proc = subprocess.run(
        [*certform_argv(), "plan"], cwd=ws.root, env=wrong, capture_output=True, text=True
    )
    assert proc.returncode == 1
    outputs.append(proc.stdout + proc.stderr)
    with sqlite3.connect(ws.state_db) as db:
        audit = json.dumps(db.execute("SELECT * FROM audit").fetchall())
        journal = json.dumps(
            db.execute("SELECT id, run_id, address, action, status FROM journal").fetchall()
        )
    haystack = "\n".join([*outputs, (ws.root / "saved.plan").read_text(), audit, journal])
    assert "PRIVATE KEY" not in haystack
    assert master_key not in haystack
    for fragment in private_key_fragments(ws):
        for form in (fragment.hex(), base64.b64encode(fragment).decode()):
            assert form not in haystack
        if fragment.isascii():
            assert fragment.decode() not in haystack
    assert "Traceback" not in haystack


def test_key_file_is_created_0600_and_reused(workspace: Workspace) -> None:
    ws = workspace
    del ws.env["CERTFORM_MASTER_KEY"]
    ws.ok("apply", "--auto-approve")
    key_file = ws.root / ".certform/master.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(base64.b64decode(key_file.read_text())) == 32
    assert ws.run("plan", "--detailed-exitcode").code == 0
    key_file.unlink()
    missing = ws.run("plan")
    assert missing.code == 1
    assert "no master key" in missing.err
    assert not key_file.exists(), "a new key must never be made for an existing state"


def test_wrong_master_key_is_a_clear_error(workspace: Workspace) -> None:
    ws = workspace
    ws.ok("apply", "--auto-approve")
    ws.env["CERTFORM_MASTER_KEY"] = base64.b64encode(os.urandom(32)).decode()
    result = ws.run("apply", "--auto-approve")
    assert result.code == 1
    assert "master key does not open this state" in result.err
    ws.env["CERTFORM_MASTER_KEY"] = "c2hvcnQ="
    short = ws.run("plan")
    assert short.code == 1 and "must be 32 bytes" in short.err


def test_lineage_is_stable_and_serial_grows(workspace: Workspace) -> None:
    ws = workspace
    ws.ok("apply", "--auto-approve")
    first = json.loads(ws.run("plan", "--json").out)
    (ws.root / "out/web/cert.pem").unlink()
    ws.ok("apply", "--auto-approve")
    second = json.loads(ws.run("plan", "--json").out)
    assert first["lineage"] == second["lineage"]
    assert re.fullmatch(r"[0-9a-f-]{36}", first["lineage"])
    assert second["state_serial"] == first["state_serial"] + 1


def _hold_lock(ws: Workspace, seconds: float) -> subprocess.Popen[str]:
    script = (
        "import os, sys, time\n"
        "from pathlib import Path\n"
        "from reconciler.state.sealing import MasterKeySource\n"
        "from reconciler.state.sqlite import SqliteStateStore\n"
        "s = SqliteStateStore(Path(sys.argv[1]), MasterKeySource(Path(sys.argv[2])))\n"
        "s.open(); s.lock('apply'); print('locked', flush=True)\n"
        f"time.sleep({seconds}); s.unlock()\n"
    )
    proc = subprocess.Popen(
        ["python3", "-c", script, str(ws.state_db), str(ws.root / ".certform/master.key")],
        cwd=ws.root,
        env=ws.env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_concurrent_apply_fails_fast_naming_the_holder(workspace: Workspace) -> None:
    ws = workspace
    ws.ok("apply", "--auto-approve")
    holder = _hold_lock(ws, 30)
    try:
        start = time.monotonic()
        result = ws.run("apply", "--auto-approve")
        assert time.monotonic() - start < 10
        assert result.code == 1
        assert f"pid {holder.pid}" in result.err and "locked by" in result.err
        assert "--lock-timeout" in result.err
    finally:
        holder.kill()
        holder.wait()


def test_lock_timeout_waits_for_the_holder(workspace: Workspace) -> None:
    ws = workspace
    ws.ok("apply", "--auto-approve")
    holder = _hold_lock(ws, 1.5)
    try:
        result = ws.run("plan", "--lock-timeout", "20", "--detailed-exitcode")
        assert result.code == 0, result.text
    finally:
        holder.wait()


def test_lock_of_a_dead_process_is_taken_over(workspace: Workspace) -> None:
    ws = workspace
    ws.ok("apply", "--auto-approve")
    holder = _hold_lock(ws, 60)
    holder.kill()
    holder.wait()
    assert ws.run("plan", "--detailed-exitcode").code == 0


def test_foreign_database_is_refused(workspace: Workspace, tmp_path: Path) -> None:
    ws = workspace
    ws.state_db.parent.mkdir()
    with sqlite3.connect(ws.state_db) as db:
        db.execute("CREATE TABLE something (x)")
    result = ws.run("apply", "--auto-approve")
    assert result.code == 1
    assert "not a certform state" in result.err
    assert not (ws.root / "out").exists()
