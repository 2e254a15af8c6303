"""Benchmark of the state backends, SQLite against PostgreSQL (run on demand).

    python bench/state_backends.py            # N = 10000 for plans, 1000 for apply
    python bench/state_backends.py --smoke    # tiny N, every phase once (CI)

Through the real CLI in child processes, against a real PostgreSQL started here
(tests/postgres_lab.py; fsync off, as in the tests) and the embedded SQLite:

* apply of ``--apply-n`` certificates with files bindings, on each backend;
* a no-change plan over ``--plan-n`` certificates on each backend (median of
  ``--repeat``), and their ratio (target: PostgreSQL within 1.5x of SQLite);
* 8 concurrent ``plan``/``check`` runs started while an apply holds the lock
  (paused at a step through the test fault point): each must finish without
  waiting for the lock; their wall times are printed;
* 4 states applied in parallel in one database (``--apply-n`` certificates each)
  against the same 4 one after the other.

Every phase that fails exits non-zero: tests/test_bench_smoke.py runs ``--smoke``.
"""

from __future__ import annotations

import argparse
import base64
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

_BENCH = Path(__file__).resolve().parent
for _entry in [p for p in sys.path if Path(p or ".").resolve() == _BENCH]:
    sys.path.remove(_entry)
if str(_BENCH.parent) not in sys.path:
    sys.path.insert(0, str(_BENCH.parent))

from bench.plan_apply import (  # noqa: E402
    ChildRun,
    certform_command,
    require,
    run_child,
    write_config,
)
from tests.postgres_lab import PostgresLab  # noqa: E402

DSN_ENV = "CERTFORM_PG_DSN"
RATIO_TARGET = 1.5
READERS = 8
PARALLEL_STATES = 4


def workspace(root: Path, label: str, n: int, backend: str) -> Path:
    """A directory with the bench config for ``n`` certificates on ``backend``."""
    directory = root / label
    directory.mkdir()
    config = write_config(directory, n)
    if backend == "postgres":
        name = f"{label}-{uuid.uuid4().hex[:8]}"
        header = f"state: {{backend: postgres, dsn_env: {DSN_ENV}, name: {name}}}\n"
        config.write_text(header + config.read_text())
    return directory


def apply(directory: Path, env: dict[str, str]) -> ChildRun:
    run = run_child([*certform_command(), "apply", "--auto-approve"], directory, env)
    require(run.returncode == 0, f"apply in {directory.name} failed", run)
    return run


def no_change_plan(directory: Path, env: dict[str, str], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        run = run_child([*certform_command(), "plan", "--detailed-exitcode"], directory, env)
        require(
            run.returncode == 0, f"no-change plan in {directory.name} exited {run.returncode}", run
        )
        times.append(run.seconds)
    return times


def readers_during_apply(directory: Path, env: dict[str, str]) -> list[tuple[str, float]]:
    """Start an apply that renews everything and pause it holding the lock, then run
    READERS plans/checks at once; each must finish (exit 0 or 2) while it waits."""
    config = directory / "certform.yaml"
    config.write_text(config.read_text().replace("validity: 90d", "validity: 60d"))
    marker = directory / "paused"
    holder = subprocess.Popen(
        [*certform_command(), "apply", "--auto-approve", "--force"],
        cwd=directory,
        env=dict(env, CERTFORM_TEST_PAUSE_AT="certificate.c0:acted",
                 CERTFORM_TEST_PAUSE_MARKER=str(marker)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 600
        while not marker.exists():
            require(holder.poll() is None, "the apply holding the lock ended early")
            require(time.monotonic() < deadline, "the apply never reached its pause")
            time.sleep(0.05)
        commands = [["plan"] if i % 2 == 0 else ["check"] for i in range(READERS)]

        def read(command: list[str]) -> tuple[str, float]:
            run = run_child([*certform_command(), *command], directory, env)
            require(run.returncode in (0, 2), f"{command[0]} during the apply failed", run)
            require("locked" not in run.output, f"{command[0]} waited for the lock", run)
            return command[0], run.seconds

        with ThreadPoolExecutor(READERS) as pool:
            results = list(pool.map(read, commands))
        require(holder.poll() is None, "the apply stopped holding the lock meanwhile")
        return results
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait()


def parallel_states(root: Path, n: int, env: dict[str, str]) -> tuple[float, float]:
    """(wall time of PARALLEL_STATES applies one after the other, all at once)."""
    serial_dirs = [workspace(root, f"serial{i}", n, "postgres") for i in range(PARALLEL_STATES)]
    start = time.perf_counter()
    for directory in serial_dirs:
        apply(directory, env)
    one_by_one = time.perf_counter() - start
    dirs = [workspace(root, f"parallel{i}", n, "postgres") for i in range(PARALLEL_STATES)]
    start = time.perf_counter()
    with ThreadPoolExecutor(PARALLEL_STATES) as pool:
        list(pool.map(lambda d: apply(d, env), dirs))
    return one_by_one, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--plan-n", type=int, default=10_000)
    parser.add_argument("--apply-n", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="N = 12, every phase once.")
    args = parser.parse_args()
    if args.smoke:
        args.plan_n, args.apply_n, args.repeat = 12, 12, 1
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    root = Path(tempfile.mkdtemp(prefix="certform-bench-backends-"))
    lab = PostgresLab().start()
    try:
        env = dict(os.environ)
        env["CERTFORM_MASTER_KEY"] = base64.b64encode(os.urandom(32)).decode()
        env[DSN_ENV] = lab.database()
        env.pop("NO_COLOR", None)

        applies = {}
        for backend in ("sqlite", "postgres"):
            directory = workspace(root, f"apply-{backend}", args.apply_n, backend)
            applies[backend] = apply(directory, env).seconds
            print(f"[N={args.apply_n}] apply on {backend} {applies[backend]:.3f} s", flush=True)

        plans = {}
        for backend in ("sqlite", "postgres"):
            directory = workspace(root, f"plan-{backend}", args.plan_n, backend)
            apply(directory, env)
            plans[backend] = statistics.median(no_change_plan(directory, env, args.repeat))
            print(
                f"[N={args.plan_n}] no-change plan on {backend} {plans[backend]:.3f} s", flush=True
            )
        ratio = plans["postgres"] / plans["sqlite"]

        readers_dir = workspace(root, "readers", args.apply_n, "postgres")
        apply(readers_dir, env)
        readers = readers_during_apply(readers_dir, env)
        slowest = max(seconds for _, seconds in readers)
        print(
            f"[N={args.apply_n}] {READERS} plan/check runs during an apply holding the lock: "
            f"slowest {slowest:.3f} s, median {statistics.median(s for _, s in readers):.3f} s",
            flush=True,
        )

        one_by_one, together = parallel_states(root, args.apply_n, env)
        print(
            f"[N={args.apply_n}] {PARALLEL_STATES} states in one database: one after the other "
            f"{one_by_one:.3f} s, in parallel {together:.3f} s",
            flush=True,
        )

        print("\ntargets:")
        verdict = "PASS" if ratio <= RATIO_TARGET else "MISS"
        print(
            f"  {verdict}  no-change plan on PostgreSQL within {RATIO_TARGET}x of SQLite: "
            f"{ratio:.2f}x"
        )
        print(
            f"  PASS  {READERS} reads during an apply, none waited for the lock: "
            f"slowest {slowest:.3f} s"
        )
    finally:
        lab.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
