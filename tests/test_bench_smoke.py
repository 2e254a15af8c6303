"""Every benchmark in bench/ runs in CI: ``--smoke`` (tiny N, every phase) as a subprocess.

A benchmark is only run by hand, so one that breaks (bench/haproxy.py stopped when the
change limits refused its renewal of all N) goes unnoticed until someone needs its
figures.  Each script's ``--smoke`` mode runs every phase it measures at a tiny N and
exits non-zero when any phase fails; here each must exit 0 and print every phase's
figure line, with a number in it.  The scripts start their own servers (moto, HAProxy,
Pebble) like the tests do; only a missing server binary skips, and CI installs them all
(tests/run.sh).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.acme_lab import challtestsrv_binary, pebble_binary
from tests.haproxy_lab import haproxy_binary

BENCH = Path(__file__).resolve().parents[1] / "bench"
TIMEOUT = 180  # each takes seconds; this only stops a hung server from hanging CI
S = r"\d+\.\d+"  # a figure: seconds, MB, ms, ...


def run_smoke(script: str, tmp_path: Path) -> str:
    """``python bench/SCRIPT --smoke``; its output, after asserting exit 0."""
    proc = subprocess.Popen(
        [sys.executable, str(BENCH / script), "--smoke"],
        cwd=tmp_path,
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        output, _ = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)  # the scripts stop their servers on SIGTERM
        try:
            output, _ = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            output, _ = proc.communicate()
        pytest.fail(f"bench/{script} --smoke did not finish in {TIMEOUT} s:\n{output}")
    assert proc.returncode == 0, f"bench/{script} --smoke exited {proc.returncode}:\n{output}"
    return output


def assert_lines(output: str, patterns: list[str]) -> None:
    """Every pattern matches a whole line of ``output`` (all missing ones are listed)."""
    missing = [p for p in patterns if not re.search(rf"^{p}$", output, re.MULTILINE)]
    assert not missing, "figure lines missing:\n  " + "\n  ".join(missing) + f"\n\n{output}"


def in_process_rows(names: list[str], columns: int = 1) -> list[str]:
    return [rf"  {re.escape(name)}\s+" + r"\s+".join([r"\d+\.\d+"] * columns) for name in names]


def test_plan_apply_smoke(tmp_path: Path) -> None:
    output = run_smoke("plan_apply.py", tmp_path)
    assert_lines(
        output,
        [
            rf"\[N=12\] apply {S} s \(14 to issue, 12 to bind\)",
            rf"\[N=12\] no-change plan {S} s",
            rf"\[N=12\] one-change plan {S} s \(1 to replace, 1 to rebind\)",
            rf"\[N=12\] file floor {S} s",
            rf"\[N=12\] crypto floor {S} s",
            rf"  N=12: {S} s \({S}-{S}\)",  # apply runs
            rf"\s+12(\s+{S}){{6}}\s+{S}x",  # the table row, apply/floor included
            rf"  N=12: no-change {S} s \({S}-{S}\), one-change .*",
            rf"  N=12: {S} s, {S} MB",  # start-up floor
            rf"  N=12: keygen {S} s \+ sign {S} s",
            rf"  N=12: crypto {S} s \+ files {S} s \+ imports {S} s = {S} s; apply {S} s = {S}x",
            *in_process_rows(
                [
                    "load+validate",
                    "  load_config (YAML, source map)",
                    "  CertformConfig.model_validate",
                    "  semantic.check",
                    "  resolve",
                    "state open+lock",
                    "state read",
                    "refresh (file targets)",
                    "diff",
                    "plan_from (refresh+diff again)",
                    "render",
                    "total (excl. indented, plan_from)",
                ]
            ),
            rf"=== cProfile: in-process apply, N=12 \(wall {S} s .*\), by tottime ===",
            r"=== cProfile: in-process no-change plan, N=12 .*, by tottime ===",
        ],
    )


def test_aws_smoke(tmp_path: Path) -> None:
    output = run_smoke("aws.py", tmp_path)
    assert_lines(
        output,
        [
            r"\[N=3\] ALB bench-alb with 1 HTTPS listener\(s\) .*",
            rf"\[N=3\] apply {S} s, \d+ API calls \(5 to issue, 3 to bind\)",
            rf"\[N=3\] no-change plan {S} s, \d+ API calls",
            rf"\[N=3\] one-renewal plan {S} s \(1 to renew, 1 to rebind\)",
            rf"\s+3\s+1(\s+{S}){{3}}\s+[1-9]\d*\s+{S}\s+[1-9]\d*",  # the table row
            rf"  N=3 apply: wall {S} = moto\+proxy answering {S} \+ rest .*",
            rf"  N=3 no-change plan: wall {S} = moto\+proxy answering {S} \+ rest .*",
            rf"  start-up \(`certform --version`\): {S} s; `import boto3` alone: {S} s .*",
            rf"    N=3: direct {S} ms, via proxy {S} ms .*",
            r"  total(\s+[1-9]\d*\s+\d+\.\d+\s+\d+){3}",  # API calls by phase
            *in_process_rows(
                [
                    "load+validate",
                    "state read",
                    "boto3 clients (elbv2, acm)",
                    "refresh (AWS observe)",
                    "  moto+proxy answering",
                    "  client side (refresh - answering)",
                    "diff",
                    "render",
                    "total (excl. indented)",
                ]
            ),
            r"=== cProfile: in-process no-change plan, N=3 \(warm clients\) .*, by tottime ===",
            rf"\(\d+ API calls; moto\+proxy answering {S} s\)",
        ],
    )


RUNS = {
    "apply, files target": "14 to issue, 12 to bind",
    "renew, files target": "12 to replace, 12 to rebind",
    "renew back, files target": "12 to replace, 12 to rebind",
    "apply, haproxy target": "14 to issue, 12 to bind",
    "no-change plan": "no changes",
    "renew, haproxy, TLS load": "12 to replace, 12 to rebind",
    "plan after renewal": "no changes",
    "plan after reloads": "no changes",
    "renew back, haproxy": "12 to replace, 12 to rebind",
    "plan after renewal back": "no changes",
}


def test_haproxy_smoke(tmp_path: Path) -> None:
    if haproxy_binary() is None:
        pytest.skip("haproxy is not installed (apt-get install haproxy)")
    output = run_smoke("haproxy.py", tmp_path)
    assert_lines(
        output,
        [
            *(
                rf"\[N=12\] {re.escape(what)}: {S} s \({re.escape(summary)}, exit 0\)"
                for what, summary in RUNS.items()
            ),
            rf"\[N=12\] empty crt-list: reload median {S} s",
            rf"relay cost: show ssl cert PATH {S} ms direct, {S} ms relayed .*",
            *(rf"{re.escape(what)}\s+{S}\s+-?{S}\s+{S}\s+({S}|-)" for what in RUNS),
            # Each load window saw handshakes (count >= 1), none failed, none wrong.
            *(
                rf"{re.escape(window)}\s+{S}\s+[1-9]\d*\s+0\s+0(\s+{S}){{3}}"
                for window in ("idle, no change", "renewal (runtime API)", "1 full reloads")
            ),
            rf"  median {S} -> {S}: re-reading 12 certificates adds -?{S} s",
            rf"  haproxy -c -f \(parse \+ load, no listeners\): {S} s -> {S} s .*",
            r"  crt-list file \d+ bytes; one PEM file \d+ bytes",
            *(rf"  {re.escape(what)}: [1-9]\d* calls .*" for what in RUNS if "files" not in what),
            r"  ok  after renewal: 12/12 names serve the serial in crt_dir/NAME.pem",
            r"  ok  after 1 reloads: 12/12 names serve the renewed serial",
            r"  ok  after the renewal back: 12/12 names serve the new serial",
            r"  ok  no failed or wrong handshake in any window",
        ],
    )


ACME_PHASES = [
    "start-up, load, plan",
    "account registration",
    "keys + journal (main thread)",
    "ACME orders",
    "record certificates",
    "files targets",
    "finish + exit",
]


def test_acme_smoke(tmp_path: Path) -> None:
    if pebble_binary() is None or challtestsrv_binary() is None:
        pytest.skip("pebble and pebble-challtestsrv are not installed (apt-get install pebble)")
    output = run_smoke("acme.py", tmp_path)
    assert_lines(
        output,
        [
            rf"\[bare\] {S} s, {S} certs/s",
            rf"\[P=1\] apply {S} s, {S} certs/s \(cli CPU {S} s\)",
            rf"\[P=2\] apply {S} s, {S} certs/s \(cli CPU {S} s\)",
            rf"\[sample, as is\] 2 orders in {S} s",
            rf"\[sample, pinned\] 2 orders in {S} s",
            rf"\[in-process apply P=1, pinned\] {S} s",
            *(rf"\s+{p}(\s+{S}){{4}}" for p in (1, 2)),  # orders s is a number, not nan
            rf"\s+bare acme\s+{S}\s+{S}   \(sequential, in process; .*",
            rf"certform P=1 vs bare: {S} vs {S} certs/s, .*",
            r"what-if, in-process apply P=1 with the http-01 responder pinned .*",
            *(
                rf"  {name}\s+{S} ms\s+\d+%\s+{S} ms\s+\d+%\s+{S} ms\s+\d+%"
                for name in (
                    "in sleep",
                    "in http",
                    "in responder stop",
                    "rest \\(CPU, engine, disk\\)",
                )
            ),
            *in_process_rows(ACME_PHASES, columns=3),  # P=1, P=2 and P=1 pinned: no nan
            rf"per certificate at P=1: orders {S} ms \(pinned {S} ms\), .*",
            r"=== cProfile: in-process apply, N=2, parallelism 1, .*, by tottime ===",
        ],
    )


def test_state_backends_smoke(tmp_path: Path) -> None:
    from tests.postgres_lab import postgres_bin_dir

    if postgres_bin_dir() is None:
        pytest.skip("PostgreSQL is not installed (Debian package postgresql)")
    output = run_smoke("state_backends.py", tmp_path)
    assert_lines(
        output,
        [
            rf"\[N=12\] apply on sqlite {S} s",
            rf"\[N=12\] apply on postgres {S} s",
            rf"\[N=12\] no-change plan on sqlite {S} s",
            rf"\[N=12\] no-change plan on postgres {S} s",
            rf"\[N=12\] 8 plan/check runs during an apply holding the lock: slowest {S} s, "
            rf"median {S} s",
            rf"\[N=12\] 4 states in one database: one after the other {S} s, in parallel {S} s",
            rf"  (PASS|MISS)  no-change plan on PostgreSQL within 1\.5x of SQLite: {S}x",
            rf"  PASS  8 reads during an apply, none waited for the lock: slowest {S} s",
        ],
    )


def test_ssh_smoke(tmp_path: Path) -> None:
    from tests.ssh_lab import sshd_binary

    if sshd_binary() is None:
        pytest.skip("sshd is not installed (apt-get install openssh-server)")
    output = run_smoke("ssh.py", tmp_path)
    label = r"\[N=12, hosts=5\]"
    cpu = rf"{S} s, cli CPU {S} s"
    assert_lines(
        output,
        [
            rf"{label} 5 sshd started in {S} s",
            rf"{label} apply {cpu} \(14 to issue, 12 to bind, exit 0\)",
            rf"{label} no-change plan {cpu} \(no changes, exit 0\), remote commands per host: "
            r"h0=1 h1=1 h2=1 h3=1 h4=1 \(total 5\), connections 5",
            r"  files stamped per host: h0=15 h1=15 h2=10 h3=10 h4=10 "
            r"\(5 per binding, 12 bindings\)",
            rf"{label} renewal of all {cpu} \(12 to replace, 12 to rebind, exit 0\)",
            r"  ok  12/12 bindings hold the renewed certificate",
            rf"{label} plan after renewal {cpu} \(no changes, exit 0\)",
        ],
    )
