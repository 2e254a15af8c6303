"""Bindings deploy while certificates are still being signed (``engine/early_deploy.py``).

Through the real CLI: with apply paused in its third batch of certificates, the
bindings of the first two batches are already on disk (and not with
``--parallelism 1``), written by another process than apply's; killing apply alone
(not its process group) takes that process with it, even in the middle of a
post_deploy; the next apply recovers; and the output is the same as without early
deploys.  In process: where early deploys are not used."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from reconciler.engine.context import ApplyContext
from reconciler.engine.early_deploy import early_deploys_supported
from tests.conftest import Workspace
from tests.test_crash_recovery import HEADER, assert_consistent, config, start_apply, wait_for
from tests.test_parallel_deploy import STAMP, most_at_once

pytestmark = pytest.mark.state_backends

COUNT = 12
BATCH = "4"

HOOK = """\
import os, sys, time
from pathlib import Path
root = Path(sys.argv[1])
with open(root / "hooks.log", "a") as log:
    log.write(f"{os.environ['CERTFORM_CERTIFICATE']} {os.getppid()} {os.getpid()}\\n")
if (root / "hold").exists() and os.environ["CERTFORM_CERTIFICATE"] == "c5":
    time.sleep(120)
"""


def hooked_config(ws: Workspace) -> None:
    """``COUNT`` certificates bound to files targets whose post_deploy logs the
    deploying process (its parent) and, while ``hold`` exists, keeps c5's deploy busy."""
    (ws.root / "hook.py").write_text(HOOK)
    certs = "".join(
        f"  c{i}:\n    names: [c{i}.example.test]\n    issuer: issuing\n" for i in range(COUNT)
    )
    command = f"[{sys.executable}, {ws.root / 'hook.py'}, {ws.root}]"
    binds = "".join(
        f"  - certificate: c{i}\n"
        f"    target: {{type: files, directory: out/c{i}, post_deploy: {command}}}\n"
        for i in range(COUNT)
    )
    ws.write(HEADER + certs + "bindings:\n" + binds)


def hook_runs(ws: Workspace) -> dict[str, tuple[int, int]]:
    """Per certificate: (pid of the process that deployed it, pid of the hook)."""
    log = ws.root / "hooks.log"
    if not log.exists():
        return {}
    runs = {}
    for line in log.read_text().splitlines():
        name, deployer, hook = line.split()
        runs[name] = (int(deployer), int(hook))
    return runs


def gone(pid: int) -> bool:
    """True when ``pid`` has exited (a zombie waiting for its reaper counts as gone)."""
    try:
        status = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    return status.rsplit(")", 1)[1].split()[0] == "Z"


def wait_until(predicate: object, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def start_paused_at_c8(ws: Workspace, marker: Path, *args: str) -> subprocess.Popen[bytes]:
    """Apply in batches of 4, paused before signing c8 (its third batch)."""
    pause = {
        "CERTFORM_TEST_BATCH_SIZE": BATCH,
        "CERTFORM_TEST_PAUSE_AT": "certificate.c8:journaled",
        "CERTFORM_TEST_PAUSE_MARKER": str(marker),
    }
    return start_apply(ws, pause, *args)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="early deploys are Linux-only")
def test_bindings_deploy_while_later_certificates_are_signed(workspace: Workspace) -> None:
    ws = workspace
    hooked_config(ws)
    (ws.root / "hold").touch()
    marker = ws.root / "paused"
    proc = start_paused_at_c8(ws, marker)
    hook_pids: list[int] = []
    try:
        wait_for(marker, proc)
        # Paused before signing c8: the bindings of c0-c7 deploy meanwhile.
        wait_until(lambda: len(hook_runs(ws)) == 8, f"early deploys did not run: {hook_runs(ws)}")
        runs = hook_runs(ws)
        assert sorted(runs) == sorted(f"c{i}" for i in range(8))
        assert all((ws.root / f"out/c{i}/key.pem").exists() for i in range(8) if i != 5)
        assert not any((ws.root / f"out/c{i}").exists() for i in range(8, COUNT))
        deployers = {deployer for deployer, _ in runs.values()}
        hook_pids = [hook for _, hook in runs.values()]
        assert proc.pid not in deployers, "deployed by apply itself, not a forked process"
        c5_deployer = runs["c5"][0]
        assert not gone(c5_deployer), "c5's deploy should still be waiting for its hook"
        assert ws.query("SELECT count(*) FROM bindings") == [(0,)]  # recorded in their phase

        # Apply alone dies (not its process group): its deploying process follows.
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        wait_until(lambda: gone(c5_deployer), "the deploying process outlived apply", 10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        for pid in hook_pids:  # the held hook, in a process group of its own
            if not gone(pid):
                os.kill(pid, signal.SIGKILL)

    (ws.root / "hold").unlink()
    recovered = ws.run("apply", "--auto-approve")
    assert recovered.code == 0, recovered.text
    assert "Recovering from an interrupted apply" in recovered.out
    assert_consistent(ws, COUNT)


def test_no_early_deploys_at_parallelism_one(workspace: Workspace) -> None:
    ws = workspace
    hooked_config(ws)
    marker = ws.root / "paused"
    proc = start_paused_at_c8(ws, marker, "--parallelism", "1")
    try:
        wait_for(marker, proc)
        time.sleep(0.5)
        assert hook_runs(ws) == {}
        assert not (ws.root / "out").exists()
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    recovered = ws.run("apply", "--auto-approve", "--parallelism", "1")
    assert recovered.code == 0, recovered.text
    assert_consistent(ws, COUNT)


def test_an_apply_with_early_deploys_ends_like_one_without(workspace: Workspace) -> None:
    """Same addresses, actions and order in the output; consistent files and state."""
    ws = workspace
    ws.env["CERTFORM_TEST_BATCH_SIZE"] = BATCH
    outputs = []
    for parallelism in ("1", "4"):
        for leftover in ("out", ".certform"):
            shutil.rmtree(ws.root / leftover, ignore_errors=True)
        if ws.state_header:  # PostgreSQL: a new state of its own
            ws.state_header = re.sub(
                r"name: \w+", f"name: t{uuid.uuid4().hex[:20]}", ws.state_header
            )
        ws.write(config(COUNT))
        result = ws.ok("apply", "--auto-approve", "--parallelism", parallelism)
        outputs.append([_message(line) for line in result.out.splitlines() if "] " in line])
        ws.ok("plan", "--detailed-exitcode")
        assert_consistent(ws, COUNT)
    assert len(outputs[0]) == 2 + 2 * COUNT  # each step once, when done
    assert outputs[0] == outputs[1]


def _message(line: str) -> str:
    """A progress line without its timestamp, count and serials."""
    text = line.split("] ", 1)[-1]
    return text.split(" (serial")[0]


def test_not_supported_at_parallelism_one(tmp_path: Path) -> None:
    ctx = ApplyContext.__new__(ApplyContext)
    ctx.parallelism = 1
    assert not early_deploys_supported(ctx)
    ctx.parallelism = 2
    assert early_deploys_supported(ctx) == sys.platform.startswith("linux")


def test_forked_deploys_stay_within_parallelism(workspace: Workspace) -> None:
    """Three batches of certificates launch three forked deploys while the first is
    still busy (each post_deploy takes 0.3 s): they take turns, so no more than
    ``--parallelism`` post_deploys ever run at once."""
    ws = workspace
    ws.env["CERTFORM_TEST_BATCH_SIZE"] = BATCH
    (ws.root / "stamp.py").write_text(STAMP)
    command = f"[{sys.executable}, {ws.root / 'stamp.py'}, '0.3', {ws.root / 'runs.log'}]"
    certs = "".join(
        f"  c{i}:\n    names: [c{i}.example.test]\n    issuer: issuing\n" for i in range(COUNT)
    )
    binds = "".join(
        f"  - certificate: c{i}\n"
        f"    target: {{type: files, directory: out/c{i}, post_deploy: {command}}}\n"
        for i in range(COUNT)
    )
    ws.write(HEADER + certs + "bindings:\n" + binds)
    ws.ok("apply", "--auto-approve", "--parallelism", "2")
    assert most_at_once(ws.root / "runs.log") == 2
    assert len((ws.root / "runs.log").read_text().splitlines()) == COUNT
    ws.ok("plan", "--detailed-exitcode")
    assert_consistent(ws, COUNT)


@pytest.mark.parametrize(
    ("extra", "waits"),
    [
        ({}, False),
        ({"post_deploy": ["true"]}, True),
        ({"verify_endpoint": {"host": "127.0.0.1", "port": 8443}}, True),
    ],
)
def test_only_plain_local_files_deploy_without_lanes(
    tmp_path: Path, extra: dict[str, object], waits: bool
) -> None:
    """A ``files`` deploy that runs no command and no handshake waits for nothing: an
    early deploy of such bindings writes them one after another in its process
    (``Step.waits``); any that waits keeps the lanes of ``--parallelism``."""
    from reconciler.providers.catalog import target_from_settings

    target = target_from_settings({"type": "files", "directory": "out/a", **extra}, tmp_path)
    assert target.deploy_waits is waits
