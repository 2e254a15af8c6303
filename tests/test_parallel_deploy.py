"""Bindings deploy in parallel (``apply --parallelism``) and stay correct.

Through the real CLI: post_deploy commands that log when they ran overlap at
``--parallelism 4`` (never more than 4 at once) and never at ``--parallelism 1``;
the output lists the bindings in plan order whatever order they finished in; a
binding that fails among many fails only itself; a SIGKILL while one deploy of a
parallel batch is paused (and the others went on) is recovered by the next apply.
In process: which target kinds share a lane, and the batched flush's syscalls."""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from reconciler import fsutil
from reconciler.progress import message_of
from reconciler.providers.aws.alb import AlbListenerTarget
from reconciler.providers.aws.apigateway import ApiGatewayTarget
from reconciler.providers.aws.cloudfront import CloudFrontTarget
from reconciler.providers.catalog import target_from_settings
from reconciler.providers.haproxy import HaproxyTarget
from reconciler.providers.nginx import NginxTarget
from tests.conftest import Workspace
from tests.test_crash_recovery import (
    HEADER,
    assert_consistent,
    config,
    kill,
    start_apply,
    wait_for,
)

COUNT = 6

STAMP = """\
import os, sys, time
start = time.monotonic()
time.sleep(float(sys.argv[1]))
with open(sys.argv[2], "a") as log:
    log.write(f"{os.environ['CERTFORM_CERTIFICATE']} {start} {time.monotonic()}\\n")
"""


def stamped_config(ws: Workspace, failing: int | None = None) -> None:
    """``COUNT`` certificates, each bound to a files target whose post_deploy sleeps
    (longer for the first ones, so that they finish last) and logs start and end."""
    (ws.root / "stamp.py").write_text(STAMP)
    certs = "".join(
        f"  c{i}:\n    names: [c{i}.example.test]\n    issuer: issuing\n" for i in range(COUNT)
    )
    binds = ""
    for i in range(COUNT):
        delay = 0.25 + 0.05 * (COUNT - i)
        command = f"[{sys.executable}, {ws.root / 'stamp.py'}, '{delay}', {ws.root / 'runs.log'}]"
        if i == failing:
            command = f"[{sys.executable}, -c, 'import sys; sys.exit(3)']"
        binds += (
            f"  - certificate: c{i}\n"
            f"    target: {{type: files, directory: out/c{i}, post_deploy: {command}}}\n"
        )
    ws.write(HEADER + certs + "bindings:\n" + binds)


def most_at_once(log: Path) -> int:
    """The largest number of logged post_deploy runs that overlapped in time."""
    events: list[tuple[float, int]] = []
    for line in log.read_text().splitlines():
        _, start, end = line.split()
        events += [(float(start), 1), (float(end), -1)]
    running = peak = 0
    for _, step in sorted(events):  # an end sorts before a start at the same instant
        running += step
        peak = max(peak, running)
    return peak


def bind_lines(output: str) -> list[str]:
    """The lines about bindings, without the timestamp and count a log line starts with
    when not on a terminal (``2026-01-01T00:00:00Z [3/6] binding.files:...``)."""
    messages = (message_of(line) for line in output.splitlines())
    return [message for message in messages if message.startswith("binding.")]


@pytest.mark.parametrize(("parallelism", "low", "high"), [(1, 1, 1), (4, 2, 4)])
def test_post_deploys_overlap_only_with_parallelism(
    workspace: Workspace, parallelism: int, low: int, high: int
) -> None:
    ws = workspace
    stamped_config(ws)
    applied = ws.ok("apply", "--auto-approve", "--parallelism", str(parallelism))

    assert low <= most_at_once(ws.root / "runs.log") <= high
    # Reported in plan order (c0 first), though c0's post_deploy finished last.
    done = [line for line in bind_lines(applied.out) if " done" in line]
    assert [line.split(":")[1] for line in done] == [f"out/c{i}" for i in range(COUNT)]
    assert all(": bind done (serial " in line for line in done), done
    ws.ok("plan", "--detailed-exitcode")
    assert_consistent(ws, COUNT)


def test_the_same_plan_gives_the_same_output_at_any_parallelism(workspace: Workspace) -> None:
    """Only serials differ between an apply at --parallelism 1 and at 4."""
    outputs = []
    for parallelism in ("1", "4"):
        stamped_config(workspace)
        for leftover in ("out", ".certform"):
            shutil.rmtree(workspace.root / leftover, ignore_errors=True)
        result = workspace.ok("apply", "--auto-approve", "--parallelism", parallelism)
        outputs.append([line.split(" (serial")[0] for line in bind_lines(result.out)])
    assert outputs[0] == outputs[1]
    assert len(outputs[0]) == 2 * COUNT  # "bind…" and "bind done" for each


def test_a_failing_binding_among_many_fails_only_itself(workspace: Workspace) -> None:
    ws = workspace
    stamped_config(ws, failing=2)
    applied = ws.run("apply", "--auto-approve", "--parallelism", "4")

    assert applied.code == 1, applied.text
    failed = [line for line in bind_lines(applied.out) if "FAILED" in line]
    assert failed == [
        f"binding.files:out/c2: bind FAILED: post_deploy {sys.executable} exited with 3"
    ]
    # c2's files were written before its post_deploy failed: recorded as unfinished.
    recorded = {address for (address,) in ws.query("SELECT address FROM bindings")}
    assert recorded == {f"binding.files:out/c{i}" for i in range(COUNT)}
    assert most_at_once(ws.root / "runs.log") >= 2  # the others still ran side by side

    stamped_config(ws)
    plan = ws.run("plan", "--detailed-exitcode")
    assert plan.code == 2 and "Plan: 1 to rebind." in plan.out, plan.text
    assert "the post_deploy command failed at the last apply" in plan.out
    ws.ok("apply", "--auto-approve")
    assert_consistent(ws, COUNT)


def test_sigkill_while_one_deploy_of_a_parallel_batch_is_paused(workspace: Workspace) -> None:
    """The paused deploy holds its batch: the other deploys of the batch go on in their
    threads (their files appear) but nothing is recorded; the next apply recovers.
    The bindings run a post_deploy: a deploy that waits keeps a lane of its own even
    in a forked early deploy, where plain local files are written one after another
    (``Step.waits``)."""
    ws = workspace
    count = 8
    ws.write(config(count).replace("directory: out/c", "post_deploy: ['true'], directory: out/c"))
    marker = ws.root / "paused"
    pause = {
        "CERTFORM_TEST_PAUSE_AT": "binding.files:out/c1:acted",
        "CERTFORM_TEST_PAUSE_MARKER": str(marker),
    }
    proc = start_apply(ws, pause, "--parallelism", "4")
    try:
        wait_for(marker, proc)
        others = [ws.root / f"out/c{i}/key.pem" for i in range(count) if i != 1]
        deadline = time.monotonic() + 60
        while not all(path.exists() for path in others):
            assert time.monotonic() < deadline, "the other deploys did not go on"
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            kill(proc)
    assert proc.returncode == -signal.SIGKILL

    assert ws.query("SELECT address FROM bindings") == []
    journal = ws.query("SELECT address, status FROM journal WHERE address LIKE 'binding.%'")
    assert sorted(journal) == sorted((f"binding.files:out/c{i}", "started") for i in range(count))

    recovered = ws.run("apply", "--auto-approve")
    assert recovered.code == 0, recovered.text
    assert "Recovering from an interrupted apply" in recovered.out
    assert_consistent(ws, count)


# -- in process ---------------------------------------------------------------------------
def test_lanes_files_apart_and_unsafe_kinds_one_per_server(tmp_path: Path) -> None:
    files = [
        target_from_settings({"type": "files", "directory": f"out/c{i}"}, tmp_path)
        for i in range(3)
    ]
    assert len({target.deploy_lane() for target in files}) == 3
    # One runtime socket, one nginx to test and reload, AWS resources changed by
    # read-modify-write: these kinds deploy one at a time.
    for cls in (HaproxyTarget, NginxTarget, AlbListenerTarget, CloudFrontTarget, ApiGatewayTarget):
        assert cls.parallel_deploys is False, cls
    aws = [cls.__new__(cls) for cls in (AlbListenerTarget, CloudFrontTarget, ApiGatewayTarget)]
    assert len({target.deploy_lane() for target in aws}) == 1
    # One lane per server: two bindings on one HAProxy share it, two HAProxies do not.
    local = []
    for cls, provider in [(HaproxyTarget, "a"), (HaproxyTarget, "a"), (HaproxyTarget, "b"),
                          (NginxTarget, "a"), (NginxTarget, "c")]:  # fmt: skip
        target = cls.__new__(cls)
        target.config = SimpleNamespace(provider=provider)  # type: ignore[assignment]
        local.append(target.deploy_lane())
    assert len(set(local)) == 4 and local[0] == local[1]


def test_deferred_flush_syncs_each_file_system_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """20 directories on one disk: one ``syncfs``, no ``open`` per directory; a
    directory removed before the flush is no reason to skip its file system."""
    if not fsutil.USE_SYNCFS:
        pytest.skip("no syncfs here")
    synced: list[int] = []
    monkeypatch.setattr(fsutil, "_SYNCFS", lambda fd: synced.append(fd) or 0)
    opened: list[str] = []
    real_open = os.open

    def counting_open(path: str, *args: object, **kwargs: object) -> int:
        opened.append(os.fspath(path))
        return real_open(path, *args, **kwargs)  # type: ignore[arg-type]

    with fsutil.deferred_sync():
        for i in range(20):
            directory = tmp_path / f"d{i}"
            fsutil.make_dirs(directory, 0o750)
            fsutil.write_atomic(directory / "cert.pem", b"x", 0o644)
            fsutil.fsync_directory(directory)
        (tmp_path / "d0" / "cert.pem").unlink()
        (tmp_path / "d0").rmdir()
        monkeypatch.setattr(os, "open", counting_open)
    assert len(synced) == 1
    assert opened == [str(tmp_path / "d0"), str(tmp_path / "d1")]


def test_write_atomic_chmods_only_what_the_umask_took(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    real_fchmod = os.fchmod
    monkeypatch.setattr(os, "fchmod", lambda fd, mode: calls.append(mode) or real_fchmod(fd, mode))
    old = os.umask(0o022)
    try:
        fsutil.write_atomic(tmp_path / "cert.pem", b"c", 0o644)
        fsutil.write_atomic(tmp_path / "key.pem", b"k", 0o600)
        assert calls == []
        os.umask(0o077)
        fsutil.write_atomic(tmp_path / "cert.pem", b"c2", 0o644)
        assert calls == [0o644]
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "cert.pem").st_mode & 0o777 == 0o644
    assert os.stat(tmp_path / "key.pem").st_mode & 0o777 == 0o600
