"""The CI workflow of the design, run as two CI runners would, on a real PostgreSQL.

Two separate clones of one config repository, in different directories, share
one state in PostgreSQL.  Runner A plans a pull request with ``--var stage=prod``
and saves the plan; runner B applies that plan without ``--var``.  While B's
apply holds the lock, a ``check`` and a ``plan`` finish without waiting, and a
second apply fails fast naming the holder.  B is then killed (SIGKILL) in the
middle of its apply; the next apply, on runner A, recovers through the journal
kept in PostgreSQL.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import EXAMPLE, PG_DSN, certform_argv
from tests.test_crash_recovery import wait_for

STAGED = EXAMPLE.replace("tags: {team: web}", "tags: {team: web, stage: '{{ stage }}'}")


def run(clone: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*certform_argv(), *args], cwd=clone, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def runners(tmp_path: Path, master_key: str, postgres_dsn: str):  # type: ignore[no-untyped-def]
    """(clone A, clone B, the runners' environment): the repository and two checkouts."""
    repo = tmp_path / "repo"
    repo.mkdir()
    name = "ci-" + uuid.uuid4().hex[:12]
    (repo / "certform.yaml").write_text(
        f"state: {{backend: postgres, dsn_env: {PG_DSN}, name: {name}}}\n" + STAGED
    )
    clones = []
    for runner in ("runner-a", "runner-b"):
        clone = tmp_path / runner / "builds" / "checkout"
        shutil.copytree(repo, clone)
        clones.append(clone)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CERTFORM_")}
    env.update({"CERTFORM_MASTER_KEY": master_key, PG_DSN: postgres_dsn})
    return clones[0], clones[1], env


def test_plan_on_one_runner_apply_on_another_with_a_crash_in_between(runners) -> None:  # type: ignore[no-untyped-def]
    clone_a, clone_b, env = runners
    planned = run(clone_a, env, "plan", "--var", "stage=prod", "--out", "pr.plan")
    assert planned.returncode == 0, planned.stderr
    shutil.copy(clone_a / "pr.plan", clone_b / "pr.plan")  # the CI artifact

    marker = clone_b / "paused"
    apply_b = subprocess.Popen(
        [*certform_argv(), "apply", "pr.plan"],
        cwd=clone_b,
        env=dict(
            env,
            CERTFORM_TEST_PAUSE_AT="certificate.web:acted",
            CERTFORM_TEST_PAUSE_MARKER=str(marker),
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for(marker, apply_b)  # B holds the lock, mid-apply
        for command in (("check", "--var", "stage=prod"), ("plan", "--var", "stage=prod")):
            start = time.monotonic()
            result = run(clone_a, env, *command)
            assert time.monotonic() - start < 15, f"{command} waited for the lock"
            assert result.returncode in (0, 2), result.stderr
        start = time.monotonic()
        second = run(clone_a, env, "apply", "--auto-approve", "--var", "stage=prod")
        assert time.monotonic() - start < 15
        assert second.returncode == 1
        assert "locked by " in second.stderr and f"pid {apply_b.pid}, apply" in second.stderr
    finally:
        os.killpg(apply_b.pid, signal.SIGKILL)  # runner B dies mid-apply
        apply_b.wait(timeout=10)

    recovered = run(clone_a, env, "apply", "--auto-approve", "--var", "stage=prod")
    assert recovered.returncode == 0, recovered.stdout + recovered.stderr
    assert "Recovering from an interrupted apply" in recovered.stdout
    after = run(clone_a, env, "plan", "--var", "stage=prod", "--detailed-exitcode")
    assert after.returncode == 0, after.stdout
    verified = run(clone_a, env, "audit", "--verify", "--var", "stage=prod")
    assert verified.returncode == 0 and "audit chain intact" in verified.stdout
    shown = run(clone_b, env, "state", "show", "certificate.web", "--json", "--var", "stage=prod")
    assert '"stage": "prod"' in shown.stdout  # B's clone reads the state A finished


def test_a_saved_plan_applies_on_another_runner_without_vars(runners) -> None:  # type: ignore[no-untyped-def]
    clone_a, clone_b, env = runners
    assert run(clone_a, env, "plan", "--var", "stage=prod", "--out", "pr.plan").returncode == 0
    markdown = run(clone_a, env, "plan", "--var", "stage=prod", "--format", "markdown")
    assert markdown.stdout.startswith("## certform plan\n\n**Plan: 4 to issue, 2 to bind.**")
    shutil.copy(clone_a / "pr.plan", clone_b / "pr.plan")
    applied = run(clone_b, env, "apply", "pr.plan")
    assert applied.returncode == 0, applied.stderr
    assert (clone_b / "out/web/cert.pem").exists() and not (clone_a / "out").exists()
    again = run(clone_b, env, "apply", "pr.plan")  # a re-run of the job
    assert again.returncode == 1 and "the state changed since this plan was made" in again.stderr
