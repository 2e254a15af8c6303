"""Apply in batches: a batch of steps is journaled in one commit, its files made
durable in one flush and its records written in one transaction, and none of that
gives up crash safety.  A SIGKILL at random moments of a many-batch apply loses no
key and records nothing twice; a record that fails fails its own step only; the
batched flush makes every written file and directory durable."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from reconciler import fsutil
from reconciler.errors import StateError
from reconciler.progress import message_of
from tests.conftest import Workspace, certform_argv
from tests.test_crash_recovery import config

# SQLite only: this logic lives in the SQL core both backends share; PostgreSQL runs
# the lifecycle, crash recovery, state commands and its own tests (tests/test_postgres_state.py).


def _spki(public_key: Any) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _apply_killed_after(ws: Workspace, lines: int, delay: float, batch: int) -> bool:
    """Start an apply, SIGKILL it ``delay`` s after its ``lines``-th progress line
    ("certificate.c3: issue…", "... done"); True when it was killed (False: it
    finished first)."""
    env = dict(ws.env, CERTFORM_TEST_BATCH_SIZE=str(batch), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [*certform_argv(), "apply", "--auto-approve"],
        cwd=ws.root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    assert proc.stdout is not None
    seen = 0
    while seen < lines:
        line = proc.stdout.readline()
        if not line:
            break
        if message_of(line.decode()).startswith(("authority.", "certificate.", "binding.")):
            seen += 1
    time.sleep(delay)
    killed = proc.poll() is None
    if killed:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.stdout.close()
    proc.wait(timeout=30)
    return killed


def test_sigkill_at_random_moments_of_a_batched_apply(workspace: Workspace) -> None:
    ws = workspace
    count = 60
    ws.write(config(count))
    rng = random.Random(20261129)
    kills = 0
    for _ in range(6):
        # 122 steps in batches of 7: a kill lands before a batch is journaled, between
        # its journal and its records, mid-act or mid-record, depending on the draw.
        if _apply_killed_after(ws, rng.randint(1, 120), rng.uniform(0.0, 0.05), batch=7):
            kills += 1
    assert kills >= 3, "the apply finished before most kills: the test lost its point"

    final = ws.run("apply", "--auto-approve", timeout=300)
    assert final.code == 0, final.text
    plan = ws.run("plan", "--detailed-exitcode")
    assert plan.code == 0, plan.text
    assert ws.run("audit", "--verify").code == 0

    serials = dict(ws.query("SELECT name, serial FROM certificates WHERE status='active'"))
    # Every certificate was recorded once: a re-run after a kill re-issued with the
    # journaled key what had not been recorded yet, never on top of a record.
    history = ws.query("SELECT address, reason FROM history")
    ((left,),) = ws.query(
        "SELECT count(*) FROM journal WHERE status IN ('started', 'interrupted') "
        "OR sealed_key IS NOT NULL"
    )
    assert history == []
    assert left == 0
    assert len(serials) == count

    keys: set[bytes] = set()
    first = ws.root / "out/c0"
    for i in range(count):
        directory = ws.root / f"out/c{i}"
        cert = x509.load_pem_x509_certificate((directory / "cert.pem").read_bytes())
        key = serialization.load_pem_private_key((directory / "key.pem").read_bytes(), None)
        assert _spki(key.public_key()) == _spki(cert.public_key()), directory
        assert format(cert.serial_number, "x") == serials[f"c{i}"], directory
        for name in ("ca.pem", "chain.pem"):
            assert (directory / name).read_bytes() == (first / name).read_bytes()
        keys.add(_spki(cert.public_key()))
    assert len(keys) == count, "two certificates share a key"
    verified = subprocess.run(
        ["openssl", "verify", "-CAfile", str(first / "ca.pem"), "-untrusted",
         str(first / "chain.pem"), *(str(ws.root / f"out/c{i}/cert.pem") for i in range(count))],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.count(": OK") == count


# -- in process ---------------------------------------------------------------------------
@pytest.fixture
def planned(workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Plan ``config(6)`` in this process, with batches of 4 steps."""
    from datetime import UTC, datetime

    from reconciler.config.validate import load_and_validate
    from reconciler.engine.planning import plan_from
    from reconciler.engine.workspace import open_store

    monkeypatch.setenv("CERTFORM_MASTER_KEY", workspace.env["CERTFORM_MASTER_KEY"])
    monkeypatch.setenv("CERTFORM_TEST_BATCH_SIZE", "4")
    for name in ("CERTFORM_PG_DSN",):
        if name in workspace.env:
            monkeypatch.setenv(name, workspace.env[name])
    monkeypatch.chdir(workspace.root)
    validated = load_and_validate(workspace.write(config(6)), {})
    store = open_store(validated.config.state, validated.root)
    store.open()
    store.lock("apply", 0.0)
    recorded = store.read()
    plan = plan_from(validated, recorded, store.where, datetime.now(UTC))
    try:
        yield store, plan, recorded, validated.root
    finally:
        store.unlock()
        store.close()


def _rows(store: Any, sql: str) -> list[tuple[Any, ...]]:
    """Rows read through the store's own connection (either backend)."""
    return [tuple(r) for r in store._connect(create=False).execute(sql).fetchall()]


def test_a_batch_is_journaled_before_it_acts_and_recorded_after(
    planned: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from reconciler.engine import runner

    store, plan, recorded, root = planned
    at: dict[str, Any] = {}

    def probe(address: str, phase: str) -> None:
        if (address, phase) == ("certificate.c0", "journaled"):
            at["journaled"] = _rows(store, "SELECT address, status FROM journal ORDER BY id")
        if (address, phase) == ("certificate.c3", "acted"):
            at["acted"] = _rows(store, "SELECT name FROM certificates")

    monkeypatch.setattr(runner, "fault_point", probe)
    before = int(_rows(store, "SELECT value FROM meta WHERE key = 'serial'")[0][0])
    result = runner.run_apply(store, plan, recorded, lambda _line: None, root=root)
    assert result.ok, result.failed
    # c0..c3 form the first batch of certificates: all journaled before c0 acts...
    started = [a for a, status in at["journaled"] if status == "started"]
    assert started == [f"certificate.c{i}" for i in range(4)]
    # ...and none recorded before the last of them acted.
    assert at["acted"] == []
    # One record transaction per batch: root, issuing (its own batch: it depends on
    # root), certificates 4 + 2, bindings 4 + 2.
    after = int(_rows(store, "SELECT value FROM meta WHERE key = 'serial'")[0][0])
    assert after - before == 6


def test_a_record_that_fails_fails_only_its_own_step(
    planned: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from reconciler.engine import runner
    from reconciler.engine.certificate_steps import IssueCertificate

    store, plan, recorded, root = planned
    original = IssueCertificate.record

    def record(self: Any, ctx: Any, change: Any, *rest: Any) -> Any:
        if change.address == "certificate.c2":
            raise StateError("state tampered: certificate.c2 (spec)")
        return original(self, ctx, change, *rest)

    monkeypatch.setattr(IssueCertificate, "record", record)
    lines: list[str] = []
    result = runner.run_apply(store, plan, recorded, lines.append, root=root)
    assert result.failed == {"certificate.c2": "state tampered: certificate.c2 (spec)"}
    assert result.skipped == {"binding.files:out/c2": "certificate.c2 failed"}
    names = {name for (name,) in _rows(store, "SELECT name FROM certificates")}
    assert names == {"c0", "c1", "c3", "c4", "c5"}
    journal = dict(_rows(store, "SELECT address, status FROM journal"))
    assert journal["certificate.c2"] == "failed"  # its key kept for the retry
    assert "certificate.c2: issue FAILED: state tampered: certificate.c2 (spec)" in lines
    audit = _rows(store, "SELECT address, result FROM audit WHERE address LIKE 'certificate.%'")
    assert sorted(audit) == sorted(
        [(f"certificate.c{i}", "ok") for i in (0, 1, 3, 4, 5)] + [("certificate.c2", "failed")]
    )


# -- fsutil -------------------------------------------------------------------------------
@pytest.mark.parametrize("use_syncfs", [True, False])
def test_deferred_sync_makes_every_write_durable_at_flush(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, use_syncfs: bool
) -> None:
    if use_syncfs and fsutil._SYNCFS is None:
        pytest.skip("no syncfs here")
    synced: list[str] = []
    fsynced: list[int] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        fsynced.append(fd)
        real_fsync(fd)

    def syncfs(fd: int) -> int:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        return 0

    monkeypatch.setattr(fsutil, "USE_SYNCFS", use_syncfs)
    monkeypatch.setattr(fsutil, "_SYNCFS", syncfs if use_syncfs else fsutil._SYNCFS)
    monkeypatch.setattr(os, "fsync", fsync)
    with fsutil.deferred_sync() as batch:
        for name in ("a", "b"):
            (tmp_path / name).mkdir()
            fsutil.write_atomic(tmp_path / name / "cert.pem", b"x")
            fsutil.write_atomic(tmp_path / name / "key.pem", b"k", 0o600)
            fsutil.fsync_directory(tmp_path / name)
        fsutil.write_atomic(tmp_path / "a" / "scratch", b"", durable=False)
        assert fsynced == [] and synced == []  # nothing yet: one flush for the batch
        assert len(batch) == 4 + 2  # four files, two directories
        batch.flush()
    if use_syncfs:
        assert len(synced) == 1 and fsynced == []  # one file system, one syncfs
    else:
        assert len(fsynced) == 6 and synced == []
    assert (tmp_path / "a" / "key.pem").stat().st_mode & 0o777 == 0o600
    fsynced.clear()
    fsutil.write_atomic(tmp_path / "c", b"y")  # outside a batch: fsynced at once
    assert len(fsynced) == 1


def test_row_macs_are_unchanged_by_the_faster_sealing() -> None:
    """``seal`` encodes each value once now: the MACs must be byte for byte those
    of states written before (known answers computed with the previous code).  Format
    1 MACs (``row_auth_v1``) are what states written before format 2 hold: they must
    keep checking for those states to open and upgrade."""
    from reconciler.state.row_auth_v1 import RowAuthenticatorV1

    auth = RowAuthenticatorV1(bytes(range(32)))
    certificate = (
        "web", "active", '{"names": ["a.test"]}', "0a1b", "2026-01-01T00:00:00+00:00",
        "2026-04-01T00:00:00+00:00", "kid", "fp", 1, "{}", "PEM\u00e9", "", "",
        b"\x00sealed", None, "now", None,
    )  # fmt: skip
    mac = auth.seal("certificates", certificate)
    assert mac.startswith("0d7fcebedf0b5f5e0a7225c8046527663bd373723eed125aa4dfe1c3bcbec701")
    assert '"root_pem":"5a395287e0e4c481"' in mac and '"external_id":"16341666ede58354"' in mac
    auth.check("certificates", certificate, mac)
    binding = ("files:out/a", "a", "{}", "0a1b", '{"files": {}}', "2026-01-01T00:00:00+00:00")
    assert auth.seal("bindings", binding) == (
        "b72d4fb970db17b3d30f31dd23d97b52551adb0b11f58921c991e48a32ce7b0d"
        '{"address":"bf7d8893ae744633","certificate":"8f7e767102b23c8f",'
        '"target":"732bf4bba8219208","serial":"72a24a62d6d320c7",'
        '"facts":"18d689bb41414529","deployed_at":"e9016f81afb905e8"}'
    )
