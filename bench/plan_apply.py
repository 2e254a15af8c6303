"""Benchmark of certform plan/apply at scale (run on demand, not a test).

    python bench/plan_apply.py                   # N = 1000 and 10000
    python bench/plan_apply.py --sizes 200 2000  # other sizes
    python bench/plan_apply.py --profile         # also cProfile the in-process runs
    python bench/plan_apply.py --smoke           # N = 12, every phase once (seconds; CI)

For each N a fresh temp directory gets a config with one private root (ec-p384),
one subordinate issuing CA (path_length 0, permitted [bench.test]) and N
certificates ``c{i}`` (ec-p256, 90d, renew_before 30d), each bound to a
``files`` target ``out/c{i}``.  Then, through the real CLI in child processes
(so interpreter start-up and imports count):

* ``apply --auto-approve`` from an empty state,
* ``plan --detailed-exitcode`` with nothing to do (must exit 0),
* the same plan after changing one certificate's names (must exit 2 with
  exactly 1 replace and 1 rebind).

Peak memory is each child's own ``ru_maxrss`` from ``os.wait4``.  The no-change
plan is also run in process, phase by phase, and floors are measured to put the
apply time in proportion:

* the "crypto floor" (N ec-p256 keys generated and N leaves signed with
  ``build_leaf_certificate`` under an ec-p384 CA, nothing else), which the
  issue's ratio divides by;
* the "file floor": N directories holding the five files a ``files`` binding
  writes, each through a temp file and a rename, then one ``sync``: what any
  crash-safe writer of those files pays this disk, with no certform code in it;
* the "import floor": a Python that imports only the libraries an apply needs
  (cryptography, pydantic, PyYAML, sqlite3, typer).

Apply at N <= 1,000 runs ``--repeat`` times, each from an empty state and an
empty cache, in a directory of its own (the median is reported); larger N once.
Nothing is removed before the last figure: an apply right after the removal of
thousands of files measures that removal too (``fresh_apply``).

Every phase that fails (a wrong exit code, an unexpected plan, an in-process run
that did not complete) ends the script with a non-zero exit: ``--smoke`` runs all
of them at a tiny N in the test suite (tests/test_bench_smoke.py), so a benchmark
that no longer runs fails CI.
"""

from __future__ import annotations

import argparse
import base64
import cProfile
import gc
import io
import os
import pstats
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

# ``python bench/plan_apply.py`` puts bench/ first on sys.path, where bench/acme.py would
# shadow the ``acme`` library certform imports: take bench/ off, put the repository root
# on (``bench.plan_apply`` for the other scripts, the lab helpers in tests/).
_BENCH = Path(__file__).resolve().parent
for _entry in [p for p in sys.path if Path(p or ".").resolve() == _BENCH]:
    sys.path.remove(_entry)
if str(_BENCH.parent) not in sys.path:
    sys.path.insert(0, str(_BENCH.parent))

MASTER_KEY_ENV = "CERTFORM_MASTER_KEY"
CACHE_ENV = "CERTFORM_CACHE_DIR"

# Targets (seconds / MB / ratio); the size each applies to is in the label.
PLAN_TARGET_N, PLAN_TARGET_S = 10_000, 1.0
APPLY_TARGET_N, APPLY_TARGET_S = 1_000, 10.0
APPLY_FLOOR_TARGET_N, APPLY_FLOOR_TARGET_X = 1_000, 5.0
MEMORY_TARGET_N, MEMORY_TARGET_MB = 10_000, 500.0

# --smoke: N at least policy.change_limit's default minimum_certificates (10), so that
# the change limits apply as they would at full size.
SMOKE_N = 12

SUMMARY_RE = re.compile(r"^Plan: (.*)\.", re.MULTILINE)


# -- config ------------------------------------------------------------------------------
PKI_HEADER = (
    "authorities:",
    "  root:",
    "    type: private-root",
    "    subject: {common_name: Bench Root CA, organization: Bench}",
    "    key: ec-p384",
    "    validity: 3650d",
    "  issuing:",
    "    type: private-subordinate",
    "    parent: root",
    "    subject: {common_name: Bench Issuing CA, organization: Bench}",
    "    key: ec-p384",
    "    validity: 1825d",
    "    path_length: 0",
    "    name_constraints: {permitted: [bench.test]}",
    "",
    "certificates:",
)
"""The CA hierarchy every benchmark config starts with (bench/aws.py too)."""


def write_config(directory: Path, n: int, changed: int | None = None) -> Path:
    """Write ``certform.yaml`` for ``n`` certificates; ``changed`` gets an extra name."""
    lines = list(PKI_HEADER)
    for i in range(n):
        names = f"c{i}.bench.test"
        if i == changed:
            names += f", alt{i}.bench.test"
        lines += [
            f"  c{i}:",
            f"    names: [{names}]",
            "    issuer: issuing",
            "    key: ec-p256",
            "    validity: 90d",
            "    renew_before: 30d",
        ]
    lines += ["", "bindings:"]
    for i in range(n):
        lines += [
            f"  - certificate: c{i}",
            f"    target: {{type: files, directory: out/c{i}}}",
        ]
    path = directory / "certform.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


# -- child processes ---------------------------------------------------------------------
@dataclass
class ChildRun:
    argv: list[str]
    seconds: float
    returncode: int
    maxrss_mb: float
    output: str = field(repr=False)
    spread: tuple[float, float] | None = None

    @property
    def summary(self) -> str:
        match = SUMMARY_RE.search(self.output)
        if match:
            return match.group(1)
        return "no changes" if "No changes." in self.output else "?"


def certform_command() -> list[str]:
    """The installed console script next to this interpreter (no pyenv shim in between)."""
    script = Path(sys.executable).parent / "certform"
    if script.exists():
        return [str(script)]
    found = shutil.which("certform")
    if found:
        return [found]
    return [sys.executable, "-c", "from reconciler.cli import main; main()"]


def run_child(argv: list[str], cwd: Path, env: dict[str, str]) -> ChildRun:
    """Run ``argv``; wall time and the child's own peak RSS (Linux: ru_maxrss in KiB)."""
    with tempfile.TemporaryFile() as sink:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=sink, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        sink.seek(0)
        output = sink.read().decode(errors="replace")
    scale = 1024 * 1024 if sys.platform == "darwin" else 1024
    return ChildRun(argv, seconds, proc.returncode, usage.ru_maxrss / scale, output)


def run_best(argv: list[str], cwd: Path, env: dict[str, str], repeat: int) -> ChildRun:
    """Run ``argv`` ``repeat`` times; the median run (by wall time), with the spread noted."""
    return median_run([run_child(argv, cwd, env) for _ in range(repeat)])


def median_run(runs: list[ChildRun]) -> ChildRun:
    """The median of ``runs`` by wall time, with the spread (fastest, slowest) noted."""
    runs = sorted(runs, key=lambda r: r.seconds)
    median = runs[len(runs) // 2]
    median.spread = (runs[0].seconds, runs[-1].seconds)
    return median


def require(condition: bool, message: str, run: ChildRun | None = None) -> None:
    if condition:
        return
    tail = "\n".join(run.output.splitlines()[-20:]) if run else ""
    sys.exit(f"bench: {message}\n{tail}")


# -- in-process phases -------------------------------------------------------------------
def timed(phases: dict[str, float], name: str, fn: Callable[[], Any]) -> Any:
    start = time.perf_counter()
    result = fn()
    phases[name] = time.perf_counter() - start
    return result


class GcClock:
    """Seconds spent in the cyclic garbage collector while the block runs."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._started = 0.0

    def _callback(self, phase: str, _info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started

    def __enter__(self) -> GcClock:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *_exc: object) -> None:
        gc.callbacks.remove(self._callback)


def in_process_plan(config: Path) -> tuple[dict[str, float], Any]:
    """The CLI's plan sequence, timed phase by phase (same calls as ``cli.plan``)."""
    from reconciler.config.validate import load_and_validate
    from reconciler.engine.planning import plan_from
    from reconciler.engine.refresh import refresh
    from reconciler.engine.workspace import open_store
    from reconciler.plan.diff import diff
    from reconciler.plan.render import render_plan

    phases: dict[str, float] = {}
    now = datetime.now(UTC)
    with GcClock() as gc_clock:
        validated = timed(phases, "load+validate", lambda: load_and_validate(config, {}))
    phases["  gc within load+validate"] = gc_clock.seconds
    _load_and_validate_split(config, phases)

    store = open_store(validated.config.state, validated.root)

    def open_and_lock() -> None:
        store.open()
        store.lock("plan", 0.0)

    timed(phases, "state open+lock", open_and_lock)
    try:
        with GcClock() as gc_clock:
            recorded = timed(phases, "state read", store.read)
        phases["  gc within state read"] = gc_clock.seconds
    finally:
        store.unlock()
    desired, root = validated.desired, validated.root
    with GcClock() as gc_clock:
        observed = timed(phases, "refresh (file targets)", lambda: refresh(desired, recorded, root))
        timed(phases, "diff", lambda: diff(validated.desired, recorded, observed, now))
    phases["  gc within refresh+diff"] = gc_clock.seconds
    plan = timed(
        phases,
        "plan_from (refresh+diff again)",
        lambda: plan_from(validated, recorded, str(store.path.resolve()), now),
    )
    text = timed(phases, "render", lambda: render_plan(plan))
    store.close()
    phases["total (excl. indented, plan_from)"] = sum(
        v for k, v in phases.items() if not k.startswith(("plan_from", " "))
    )
    return phases, (plan, text)


def _load_and_validate_split(config: Path, phases: dict[str, float]) -> None:
    """``load_and_validate`` again, step by step (indented rows in the report)."""
    from reconciler.config import semantic
    from reconciler.config.loader import load_config
    from reconciler.config.models import CertformConfig
    from reconciler.config.resolve import resolve

    loaded = timed(phases, "  load_config (YAML, source map)", lambda: load_config(config, {}))
    validate = CertformConfig.model_validate
    model = timed(phases, "  CertformConfig.model_validate", lambda: validate(loaded.data))
    timed(phases, "  semantic.check", lambda: semantic.check(model, loaded.root))
    timed(phases, "  resolve", lambda: resolve(model, loaded.root))


def cli_plan(config: Path) -> Any:
    """Exactly the calls ``certform plan`` makes, in this process (for profiling)."""
    from reconciler.config.validate import load_and_validate
    from reconciler.engine.planning import plan_from
    from reconciler.engine.workspace import open_store
    from reconciler.plan.render import render_plan

    validated = load_and_validate(config, {})
    store = open_store(validated.config.state, validated.root)
    store.open()
    store.lock("plan", 0.0)
    try:
        recorded = store.read()
    finally:
        store.unlock()
    plan = plan_from(validated, recorded, str(store.path.resolve()), datetime.now(UTC))
    text = render_plan(plan)
    store.close()
    require(not plan.has_changes, "in-process no-change plan found changes")
    return plan, text


def in_process_apply(config: Path) -> Any:
    """The CLI's ``apply --auto-approve`` sequence in this process (for profiling)."""
    from reconciler.config.validate import load_and_validate
    from reconciler.engine.apply import run_apply
    from reconciler.engine.planning import plan_from
    from reconciler.engine.workspace import open_store
    from reconciler.plan.render import render_plan

    validated = load_and_validate(config, {})
    store = open_store(validated.config.state, validated.root)
    store.open()
    store.lock("apply", 0.0)
    try:
        recorded = store.read()
        plan = plan_from(validated, recorded, str(store.path.resolve()), datetime.now(UTC))
        render_plan(plan)
        result = run_apply(store, plan, recorded, lambda _message: None)
    finally:
        store.unlock()
        store.close()
    require(result.ok, f"in-process apply failed: {result.failed or result.skipped}")
    return result


# -- crypto floor ------------------------------------------------------------------------
def crypto_floor(n: int) -> dict[str, float]:
    """N ec-p256 keys and N leaves signed by an ec-p384 issuing CA: nothing but crypto."""
    from reconciler.pki.builder import Subject, build_ca_certificate, build_leaf_certificate
    from reconciler.pki.keys import generate_private_key

    now = datetime.now(UTC).replace(microsecond=0)
    root_key = generate_private_key("ec-p384")
    root = build_ca_certificate(
        public_key=root_key.public_key(),
        subject=Subject("Floor Root"),
        issuer_cert=None,
        issuer_key=root_key,
        not_before=now,
        not_after=now + timedelta(days=3650),
        path_length=None,
    )
    ca_key = generate_private_key("ec-p384")
    ca = build_ca_certificate(
        public_key=ca_key.public_key(),
        subject=Subject("Floor Issuing"),
        issuer_cert=root,
        issuer_key=root_key,
        not_before=now,
        not_after=now + timedelta(days=1825),
        path_length=0,
        permitted=["bench.test"],
    )
    start = time.perf_counter()
    keys = [generate_private_key("ec-p256") for _ in range(n)]
    keygen = time.perf_counter() - start
    start = time.perf_counter()
    for i, key in enumerate(keys):
        build_leaf_certificate(
            public_key=key.public_key(),
            names=[f"c{i}.bench.test"],
            issuer_cert=ca,
            issuer_key=ca_key,
            not_before=now,
            not_after=now + timedelta(days=90),
        )
    sign = time.perf_counter() - start
    return {"keygen": keygen, "sign": sign, "total": keygen + sign}


IMPORT_FLOOR_CODE = "import cryptography.x509, pydantic, sqlite3, typer, yaml"
"""The libraries an apply cannot run without: their import is start-up no code of
certform's can remove."""


def file_floor(n: int, workdir: Path, sample: Path) -> float:
    """Seconds to create ``n`` directories with the five files of a ``files`` binding
    (the bytes of the deployed ``sample`` directory, so the sizes are real), each file
    written to a temp name and renamed, then one ``sync``: the kernel's share of a
    crash-safe deploy on the disk the apply ran on."""
    from reconciler.providers.files import FILE_MODES  # what a binding writes, and modes

    payloads = [((sample / name).read_bytes(), name, mode) for name, mode in FILE_MODES.items()]
    root = workdir / "file-floor"
    root.mkdir()
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    os.sync()  # what earlier phases left dirty is not this floor's to write
    start = time.perf_counter()
    for i in range(n):
        directory = root / f"c{i}"
        os.mkdir(directory, 0o750)
        for data, name, mode in payloads:
            temp = directory / f".{name}.tmp"
            fd = os.open(temp, flags, mode)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
            os.replace(temp, directory / name)
    os.sync()
    return time.perf_counter() - start


def import_floor(env: dict[str, str], cwd: Path, repeat: int) -> ChildRun:
    """A Python importing only what an apply needs (``IMPORT_FLOOR_CODE``)."""
    return run_best([sys.executable, "-c", IMPORT_FLOOR_CODE], cwd, env, repeat)


def fresh_apply(cli: list[str], workdir: Path, env: dict[str, str], runs: int) -> ChildRun:
    """``apply --auto-approve`` from an empty state, deployments and cache, ``runs``
    times (the median by wall time, the spread noted), each in a directory of its own
    holding only the config; the last in ``workdir``, which the plans then use.

    No run follows the removal of another's files: ext4 does not reuse an inode freed
    in the last minute (five when its table block is still dirty), and scans past each
    one when it allocates (``recently_deleted``), so an apply right after removing a
    previous apply's 6,000 files measured that removal.  Four rounds of removing and
    re-applying in one directory took 1.6, 2.2, 2.5 and 2.7 s (kernel time 1.1 to
    2.7 s); the same applies in fresh directories 1.3-1.4 s.  Nothing the benchmark
    writes is removed before its last figure (``main``)."""
    results = []
    for left in reversed(range(runs)):
        # The last run fills the shared cache the plans measured next use, as one apply
        # did before repeats were measured.
        place, cache = workdir, env[CACHE_ENV]
        if left:
            place = Path(tempfile.mkdtemp(prefix="apply-", dir=workdir.parent))
            shutil.copy(workdir / "certform.yaml", place / "certform.yaml")
            cache = tempfile.mkdtemp(prefix="cache-", dir=workdir.parent)
        os.sync()
        run = run_child([*cli, "apply", "--auto-approve"], place, {**env, CACHE_ENV: cache})
        require(run.returncode == 0, f"apply exited {run.returncode}", run)
        require("Apply complete" in run.output, "apply did not complete", run)
        results.append(run)
    return median_run(results)


# -- profiling ---------------------------------------------------------------------------
def profile(label: str, fn: Callable[[], Any], top: int) -> None:
    profiler = cProfile.Profile()
    start = time.perf_counter()
    profiler.enable()
    fn()
    profiler.disable()
    wall = time.perf_counter() - start
    for sort in ("cumulative", "tottime"):
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out).strip_dirs().sort_stats(sort)
        stats.print_stats(top)
        body = out.getvalue()
        body = body[body.find("   ncalls") :] if "   ncalls" in body else body
        print(f"\n=== cProfile: {label} (wall {wall:.2f} s under the profiler), by {sort} ===")
        print(body.rstrip())


# -- main --------------------------------------------------------------------------------
@dataclass
class Row:
    n: int
    apply: ChildRun
    plan: ChildRun
    one_change: ChildRun
    version: ChildRun
    floor: dict[str, float]
    phases: dict[str, float]
    plan_repeats: int = 1
    cold_plan: ChildRun | None = None
    """The no-change plan without the parse and validation caches (a fresh CI runner)."""


def bench_size(n: int, env: dict[str, str], root: Path, repeat: int) -> Row:
    """Every measurement at ``n``, in a directory of ``root`` (``main`` removes it)."""
    workdir = root / str(n) / "work"
    workdir.mkdir(parents=True)
    config = write_config(workdir, n)
    cli = certform_command()
    print(f"\n[N={n}] workdir {workdir}", flush=True)

    version = run_best([*cli, "--version"], workdir, env, repeat)
    require(version.returncode == 0, "certform --version failed", version)

    apply = fresh_apply(cli, workdir, env, repeat if n <= APPLY_FLOOR_TARGET_N else 1)
    print(f"[N={n}] apply {apply.seconds:.2f} s ({apply.summary})", flush=True)
    files = file_floor(n, workdir, workdir / "out" / "c0")
    print(f"[N={n}] file floor {files:.2f} s", flush=True)
    imports = import_floor(env, workdir, repeat)
    require(imports.returncode == 0, "the import floor's python failed", imports)
    # Let the kernel write back what apply left dirty, so that write-back does not
    # slow the plans measured next (it is not part of any of them).
    start = time.perf_counter()
    os.sync()
    settle = time.perf_counter() - start
    print(f"[N={n}] sync after apply {settle:.2f} s (not counted)", flush=True)

    plan = run_best([*cli, "plan", "--detailed-exitcode"], workdir, env, repeat)
    require(plan.returncode == 0, f"no-change plan exited {plan.returncode}", plan)
    print(f"[N={n}] no-change plan {plan.seconds:.2f} s", flush=True)
    # A fresh CI runner has no caches (config/parse_cache.py, validated_cache.py):
    # the same plan, parsing and validating every file.
    cold_env = {**env, "CERTFORM_CACHE": "off"}
    cold = run_best([*cli, "plan", "--detailed-exitcode"], workdir, cold_env, repeat)
    require(cold.returncode == 0, f"cold no-change plan exited {cold.returncode}", cold)
    print(f"[N={n}] no-change plan, no caches {cold.seconds:.2f} s", flush=True)

    # Same state, same files: the in-process phases of the no-change plan.
    phases, (in_plan, _) = in_process_plan(config)
    require(not in_plan.has_changes, "in-process plan found changes")

    write_config(workdir, n, changed=0)
    one = run_best([*cli, "plan", "--detailed-exitcode"], workdir, env, repeat)
    require(one.returncode == 2, f"one-change plan exited {one.returncode}, not 2", one)
    require(
        one.summary == "1 to replace, 1 to rebind",
        f"one-change plan summary is {one.summary!r}, not '1 to replace, 1 to rebind'",
        one,
    )
    print(f"[N={n}] one-change plan {one.seconds:.2f} s ({one.summary})", flush=True)
    write_config(workdir, n)

    floor = crypto_floor(n)
    print(f"[N={n}] crypto floor {floor['total']:.2f} s", flush=True)
    floor.update(files=files, imports=imports.seconds)
    return Row(n, apply, plan, one, version, floor, phases, repeat, cold)


def _spread(run: ChildRun) -> str:
    low, high = run.spread or (run.seconds, run.seconds)
    return f"{run.seconds:.2f} s ({low:.2f}-{high:.2f})"


def floors_sum(row: Row) -> float:
    """Crypto, file and import floors together (see the module docstring)."""
    return row.floor["total"] + row.floor["files"] + row.floor["imports"]


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def report(rows: list[Row]) -> None:
    print("\n== certform plan/apply benchmark ==")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPU(s), CLI {certform_command()[0]}")
    header = (
        f"{'N':>6} {'apply s':>9} {'apply MB':>9} {'plan s':>8} {'plan MB':>8} "
        f"{'1-chg s':>8} {'floor s':>8} {'apply/floor':>11}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        ratio = r.apply.seconds / r.floor["total"] if r.floor["total"] else float("nan")
        print(
            f"{r.n:>6} {r.apply.seconds:>9.2f} {r.apply.maxrss_mb:>9.1f} "
            f"{r.plan.seconds:>8.2f} {r.plan.maxrss_mb:>8.1f} {r.one_change.seconds:>8.2f} "
            f"{r.floor['total']:>8.2f} {ratio:>10.1f}x"
        )
    print("\napply runs (from an empty state and cache): median (min-max):")
    for r in rows:
        print(f"  N={r.n}: {_spread(r.apply)}")
    print(f"\nplan runs: median of {rows[0].plan_repeats} (min-max):")
    for r in rows:
        print(
            f"  N={r.n}: no-change {_spread(r.plan)}, one-change {_spread(r.one_change)}; "
            f"one-change plan: {r.one_change.summary}"
        )
        if r.cold_plan is not None:
            print(f"  N={r.n}: no-change without the caches {_spread(r.cold_plan)}")
    print("\nstart-up floor (`certform --version`):")
    for r in rows:
        print(f"  N={r.n}: {r.version.seconds:.3f} s, {r.version.maxrss_mb:.1f} MB")
    print("crypto floor split (keygen + sign):")
    for r in rows:
        print(f"  N={r.n}: keygen {r.floor['keygen']:.2f} s + sign {r.floor['sign']:.2f} s")
    print(
        "floors an apply cannot go below on this machine (crypto + file I/O on this disk\n"
        "+ importing the libraries it needs), and apply in proportion to their sum:"
    )
    for r in rows:
        total = floors_sum(r)
        print(
            f"  N={r.n}: crypto {r.floor['total']:.2f} s + files {r.floor['files']:.2f} s "
            f"+ imports {r.floor['imports']:.2f} s = {total:.2f} s; "
            f"apply {r.apply.seconds:.2f} s = {r.apply.seconds / total:.1f}x"
        )

    print("\nno-change plan, in process (seconds; indented rows re-run or are part of the row")
    print("above; 'gc within' is this process's cyclic collector, which a CLI with gc off skips):")
    names = list(rows[0].phases)
    width = max(len(name) for name in names)
    print("  " + " " * width + "".join(f"{f'N={r.n}':>11}" for r in rows))
    for name in names:
        print(f"  {name:<{width}}" + "".join(f"{r.phases[name]:>11.3f}" for r in rows))

    print("\ntargets:")
    by_n = {r.n: r for r in rows}
    checks = [
        (
            PLAN_TARGET_N,
            f"no-change plan @ {PLAN_TARGET_N} < {PLAN_TARGET_S:g} s",
            lambda r: (
                r.plan.seconds < PLAN_TARGET_S,
                f"{r.plan.seconds:.2f} s"
                + (f" (no caches: {r.cold_plan.seconds:.2f} s)" if r.cold_plan else ""),
            ),
        ),
        (
            APPLY_TARGET_N,
            f"apply @ {APPLY_TARGET_N} < {APPLY_TARGET_S:g} s",
            lambda r: (r.apply.seconds < APPLY_TARGET_S, f"{r.apply.seconds:.2f} s"),
        ),
        (
            APPLY_FLOOR_TARGET_N,
            f"apply @ {APPLY_FLOOR_TARGET_N} <= {APPLY_FLOOR_TARGET_X:g}x the crypto floor",
            lambda r: (
                r.apply.seconds <= APPLY_FLOOR_TARGET_X * r.floor["total"],
                f"{r.apply.seconds / r.floor['total']:.1f}x",
            ),
        ),
        (
            MEMORY_TARGET_N,
            f"peak RSS @ {MEMORY_TARGET_N} < {MEMORY_TARGET_MB:g} MB",
            lambda r: (
                max(r.apply.maxrss_mb, r.plan.maxrss_mb) < MEMORY_TARGET_MB,
                f"apply {r.apply.maxrss_mb:.0f} MB, plan {r.plan.maxrss_mb:.0f} MB",
            ),
        ),
    ]
    for n, label, check in checks:
        if n not in by_n:
            print(f"  ----  {label}: not measured (add {n} to --sizes)")
            continue
        ok, figure = check(by_n[n])
        print(f"  {verdict(ok)}  {label}: {figure}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--keep", action="store_true", help="Keep the temp directories.")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="Also cProfile an in-process no-change plan at the largest N and an "
        "in-process apply at the smallest N.",
    )
    parser.add_argument("--top", type=int, default=30, help="Rows per profile table.")
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="Runs of each plan (and --version, and apply at N <= 1000); the median is reported.",
    )
    parser.add_argument(
        "--no-bytecode-cache",
        action="store_true",
        help="Run the CLI with the inherited environment as is (by default children get a "
        "private PYTHONPYCACHEPREFIX so imports use .pyc files like an installed tool).",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help=f"Every phase once at N = {SMOKE_N}, profiles included (a few seconds): "
        "checks that the benchmark still runs, measures nothing worth reading.",
    )
    args = parser.parse_args()
    if args.smoke:
        args.sizes, args.repeat, args.profile, args.top = [SMOKE_N], 1, True, 5

    # Everything the benchmark writes goes under one directory, removed only after the
    # last figure: removing files just before an apply slows it (see ``fresh_apply``).
    root = Path(tempfile.mkdtemp(prefix="certform-bench-"))
    env = dict(os.environ)
    env[MASTER_KEY_ENV] = base64.b64encode(os.urandom(32)).decode()
    # Private caches: the first command of each N fills them, the plans use them.
    env[CACHE_ENV] = tempfile.mkdtemp(prefix="cache-", dir=root)
    env.pop("CERTFORM_CACHE", None)
    # SIGTERM (e.g. a timeout) unwinds through the finally blocks that stop the servers
    # and remove the temp directories.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    env.pop("NO_COLOR", None)
    os.environ[MASTER_KEY_ENV] = env[MASTER_KEY_ENV]  # for the in-process phases
    os.environ[CACHE_ENV] = env[CACHE_ENV]

    try:
        if not args.no_bytecode_cache:
            # PYTHONDONTWRITEBYTECODE (set in some sandboxes) would make every child
            # compile the package from source; an installed certform has its .pyc files.
            # Keep them in a private prefix so the benchmark writes nothing into the
            # source tree.
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = tempfile.mkdtemp(prefix="pyc-", dir=root)
            warm_bytecode(env, root)
        rows = [bench_size(n, env, root, args.repeat) for n in args.sizes]
        report(rows)
        if args.profile:
            run_profiles(min(args.sizes), max(args.sizes), env, args.top, root)
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
            # ext4 skips the inodes just freed for minutes (see ``fresh_apply``).
            print("\n(removed what this run wrote: a run started in the next five minutes")
            print(" creates files more slowly, and its apply figures are higher)")


def warm_bytecode(env: dict[str, str], root: Path) -> None:
    """Fill the private bytecode prefix with what apply and plan import (an apply and
    a plan of two certificates, in a directory of their own), so that no measured run
    compiles modules: ``--version`` alone imports almost nothing."""
    workdir = Path(tempfile.mkdtemp(prefix="warm-", dir=root))
    write_config(workdir, 2)
    for command in (["apply", "--auto-approve"], ["plan"]):
        run = run_child([*certform_command(), *command], workdir, env)
        require(run.returncode == 0, f"warm-up {command[0]} failed", run)


def run_profiles(apply_n: int, plan_n: int, env: dict[str, str], top: int, root: Path) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="profile-", dir=root))
    (workdir / "apply").mkdir()
    config = write_config(workdir / "apply", apply_n)
    profile(f"in-process apply, N={apply_n}", lambda: in_process_apply(config), top)

    plan_dir = workdir / "plan"
    plan_dir.mkdir()
    plan_config = write_config(plan_dir, plan_n)
    apply = run_child([*certform_command(), "apply", "--auto-approve"], plan_dir, env)
    require(apply.returncode == 0, "apply for the plan profile failed", apply)
    cli_plan(plan_config)  # warm the page cache, as a second plan would find it
    profile(f"in-process no-change plan, N={plan_n}", lambda: cli_plan(plan_config), top)


if __name__ == "__main__":
    main()
