"""Reads never wait for the apply lock; ``force-unlock`` and the lock ID, through the CLI.

A real ``certform apply`` is paused in the middle of a step (the fault point) and
holds the lock: a drift or expiry job (``plan``, ``show``, ``check``, ``audit``, ``report``)
must finish meanwhile, a second apply must fail fast naming the holder and its
lock ID, and a snapshot must not see what the apply commits while it is open.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from reconciler.state.sealing import MASTER_KEY_ENV, MasterKeySource
from reconciler.state.sqlite import SqliteStateStore
from tests.conftest import EXAMPLE, Workspace
from tests.test_crash_recovery import kill, start_apply, wait_for

RENEWED = EXAMPLE.replace("validity: 90d\n    renew_before", "validity: 60d\n    renew_before")


@pytest.fixture
def paused_apply(workspace: Workspace):  # type: ignore[no-untyped-def]
    """An applied workspace whose second apply is paused holding the lock."""
    ws = workspace
    ws.ok("apply", "--auto-approve")
    ws.write(RENEWED)
    marker = ws.root / "paused"
    proc = start_apply(
        ws,
        {
            "CERTFORM_TEST_PAUSE_AT": "certificate.web:acted",
            "CERTFORM_TEST_PAUSE_MARKER": str(marker),
        },
    )
    wait_for(marker, proc)
    yield ws, proc
    if proc.poll() is None:
        kill(proc)


@pytest.mark.parametrize(
    "command",
    [
        ("plan",),
        ("show",),
        ("show", "--json"),
        ("check",),
        ("audit",),
        ("audit", "--verify"),
        ("report", "--out", "-"),
    ],
    ids=lambda c: " ".join(c),
)
def test_reads_finish_while_an_apply_holds_the_lock(paused_apply, command: tuple[str, ...]) -> None:  # type: ignore[no-untyped-def]
    ws, _ = paused_apply
    start = time.monotonic()
    result = ws.run(*command)
    assert time.monotonic() - start < 10
    assert result.code in (0, 2), result.text  # check exits 2 on findings
    assert "locked" not in result.text


def test_second_apply_names_the_holder_and_its_lock_id(paused_apply) -> None:  # type: ignore[no-untyped-def]
    ws, proc = paused_apply
    result = ws.run("apply", "--auto-approve")
    assert result.code == 1
    assert f"pid {proc.pid}, apply" in result.err
    lock_id = re.search(r"lock ID ([0-9a-f-]{36})\)", result.err).group(1)  # type: ignore[union-attr]
    assert f"release it with: certform force-unlock {lock_id}" in result.err

    # The SQLite lock is an OS lock held by a live process: force-unlock says so.
    refused = ws.run("force-unlock", lock_id)
    assert refused.code == 1 and "still running" in refused.err and str(proc.pid) in refused.err
    other = ws.run("force-unlock", "00000000-0000-0000-0000-000000000000")
    assert other.code == 1 and f"locked under the ID {lock_id}" in other.err
    assert proc.poll() is None  # neither touched the running apply

    kill(proc)  # the kernel drops the lock with its process
    assert "is not locked; nothing to release" in ws.ok("force-unlock", lock_id).out
    recovered = ws.ok("apply", "--auto-approve")
    assert "Recovering from an interrupted apply" in recovered.out


def test_a_snapshot_does_not_see_a_commit_made_while_it_is_open(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = workspace
    ws.ok("apply", "--auto-approve")
    before = json.loads(ws.ok("plan", "--json").out)["state_serial"]
    monkeypatch.setenv(MASTER_KEY_ENV, ws.env[MASTER_KEY_ENV])
    reader = SqliteStateStore(ws.state_db, MasterKeySource(ws.root / ".certform/master.key"))
    reader.open()
    with reader.snapshot():
        assert reader.read().serial == before
        ws.write(RENEWED)
        ws.ok("apply", "--auto-approve")  # commits while the snapshot is open
        inside = reader.read()
        assert inside.serial == before
        web = inside.certificates["web"]
    after = reader.read()
    assert after.serial > before and after.certificates["web"].serial != web.serial
    reader.close()
    assert Path(ws.root / "out/web/cert.pem").exists()


def test_a_plan_during_an_apply_says_it_is_running_not_interrupted(paused_apply) -> None:  # type: ignore[no-untyped-def]
    ws, proc = paused_apply
    during = ws.run("plan")
    assert during.code == 0, during.text
    assert "Warning: an apply is running (" in during.out and f"pid {proc.pid}, apply" in during.out
    assert "certificate.web (renew) in progress" in during.out
    assert "was interrupted" not in during.out
    kill(proc)
    after = ws.run("plan")
    assert "a previous apply was interrupted during certificate.web (renew)" in after.out
