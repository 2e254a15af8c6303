"""Benchmark of certform's ``haproxy`` target against a real HAProxy (run on demand).

    python bench/haproxy.py                  # N = 500
    python bench/haproxy.py --count 50       # quick run
    python bench/haproxy.py --direct         # certform talks to HAProxy without the counter
    python bench/haproxy.py --smoke          # N = 12, every phase once, short windows (CI)

One HAProxy 2.6 (``tests/haproxy_lab.py``: master-worker, one ``bind ... ssl crt-list``
on a free 127.0.0.1 port) and, in a temp directory, a config with one private root and
one issuing CA (as ``bench/plan_apply.py``, permitted ``example.test``) and N
certificates ``c0000``... (ec-p256, 90d, one name ``cNNNN.example.test``), each bound
to the ``haproxy`` target with ``sni: [cNNNN.example.test]`` in the lab's crt-list.
Through the real CLI, in child processes:

* ``apply --auto-approve`` from an empty state (issue N, deploy N through the runtime API),
* ``plan --detailed-exitcode`` with nothing to do (observes every binding; must exit 0),
* a renewal of all N (``key: ec-p384`` forces re-issuance) while a load process makes
  TLS handshakes with random SNI names and checks every served serial,
* then, with the same load, K full reloads (SIGUSR2 to the master, as ``-sf``),
* and a second renewal of all N without the load (back to ``key: ec-p256``).

After each renewal and after the reloads every name is handshaken once and must serve
the serial of its ``crt_dir/NAME.pem``; every plan afterwards must find nothing to do.

For comparison the same issuance is applied to a ``files`` target (what issuing and
writing PEM files cost without HAProxy), and reloads and ``haproxy -c`` are timed
with the empty crt-list before the first apply (what re-reading N certificates costs).

Unless ``--direct``, the provider's socket is a counting relay in this process that
forwards each runtime API connection to HAProxy and records the command, HAProxy's
answer time and the reply size (its own cost per call is printed).

The renewals replace every certificate, which the change limits (``policy.change_limit``,
30% of at least 10 certificates) refuse without ``--force``: they are intended here, so
they run with ``--force``.  Any phase that fails (a run's exit code, a wrong serial, a
failed or wrong handshake, a load window without handshakes) ends the script with a
non-zero exit; ``--smoke`` runs them all at a tiny N in the test suite
(tests/test_bench_smoke.py).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import itertools
import math
import multiprocessing
import os
import random
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509

# ``python bench/haproxy.py`` puts bench/ first on sys.path, where bench/acme.py would
# shadow the ``acme`` library certform imports: take bench/ off, put the repository root
# on (bench.plan_apply, and the lab helper in tests/).
_BENCH = Path(__file__).resolve().parent
for _entry in [p for p in sys.path if Path(p or ".").resolve() == _BENCH]:
    sys.path.remove(_entry)
if str(_BENCH.parent) not in sys.path:
    sys.path.insert(0, str(_BENCH.parent))

from bench.plan_apply import PKI_HEADER, certform_command  # noqa: E402

MASTER_KEY_ENV = "CERTFORM_MASTER_KEY"
DOMAIN = "example.test"
SEVERITY_PREFIX = "set severity-output number; "

# --smoke: N at least policy.change_limit's minimum_certificates (10), so that the
# renewals meet the change limits as they do at full size.
SMOKE_N = 12

RENEW_FILES = "renew, files target"
BACK_FILES = "renew back, files target"
RENEW_HAPROXY = "renew, haproxy, TLS load"
BACK_HAPROXY = "renew back, haproxy"

# (t0 monotonic, seconds, name index, served serial or "", error or "")
Handshake = tuple[float, float, int, str, str]


# -- config ------------------------------------------------------------------------------
def cert_name(i: int, n: int) -> str:
    return f"c{i:0{max(4, len(str(n - 1)))}d}"


def write_config(directory: Path, n: int, key: str, provider: dict[str, str] | None) -> Path:
    """``certform.yaml``: N certificates bound to HAProxy (``provider``) or to files."""
    header = [line.replace("[bench.test]", f"[{DOMAIN}]") for line in PKI_HEADER]
    assert header[-1] == "certificates:" and f"[{DOMAIN}]" in "".join(header)
    lines = header[:-1]
    if provider:
        inner = ", ".join(f"{k}: {v}" for k, v in provider.items())
        lines += ["providers:", f"  edge: {{{inner}}}", ""]
    lines.append("certificates:")
    for i in range(n):
        name = cert_name(i, n)
        lines += [
            f"  {name}:",
            f"    names: [{name}.{DOMAIN}]",
            "    issuer: issuing",
            f"    key: {key}",
            "    validity: 90d",
            "    renew_before: 30d",
        ]
    lines += ["", "bindings:"]
    for i in range(n):
        name = cert_name(i, n)
        if provider:
            target = f"{{type: haproxy, provider: edge, sni: [{name}.{DOMAIN}]}}"
        else:
            target = f"{{type: files, directory: out/{name}}}"
        lines += [f"  - certificate: {name}", f"    target: {target}"]
    path = directory / "certform.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


# -- child processes ---------------------------------------------------------------------
@dataclass
class Run:
    what: str
    seconds: float
    cpu: float
    returncode: int
    output: str = field(repr=False)
    haproxy_cpu: float | None = None
    calls: list[Call] = field(default_factory=list, repr=False)
    spread: tuple[float, float] | None = None

    @property
    def summary(self) -> str:
        for line in self.output.splitlines():
            if line.startswith("Plan: "):
                return line.removeprefix("Plan: ").rstrip(".")
        return "no changes" if "No changes." in self.output else "?"


def run_cli(argv: list[str], cwd: Path, env: dict[str, str], what: str) -> Run:
    """Run ``argv``: wall time and the child's own CPU time (user + sys)."""
    with tempfile.TemporaryFile() as sink:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=sink, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        sink.seek(0)
        output = sink.read().decode(errors="replace")
    return Run(what, seconds, usage.ru_utime + usage.ru_stime, proc.returncode, output)


class BenchError(Exception):
    pass


def check(condition: bool, message: str, run: Run | None = None) -> None:
    if not condition:
        tail = "\n".join(run.output.splitlines()[-25:]) if run else ""
        raise BenchError(f"{message}\n{tail}".rstrip())


def group_cpu(pgid: int) -> float:
    """CPU seconds (user + sys, including reaped children) of a process group (Linux)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        if int(fields[2]) == pgid:  # fields[0] is the state: pgrp is field 5 of stat(5)
            total += sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
    return total / ticks


# -- counting relay for the runtime API --------------------------------------------------
@dataclass(frozen=True)
class Call:
    at: float  # monotonic, when HAProxy answered
    command: str
    seconds: float  # HAProxy's answer time, seen from the relay
    sent: int
    received: int


def classify(request: bytes) -> str:
    line = request.split(b"\n", 1)[0].decode(errors="replace").removeprefix(SEVERITY_PREFIX)
    words = line.removesuffix(" <<").split()
    if words[:3] == ["show", "ssl", "cert"]:
        return "show ssl cert PATH" if len(words) > 3 else "show ssl cert (list all)"
    return " ".join(words[:3]) or "?"


def read_to_eof(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


class CountingRelay:
    """A unix socket that forwards each connection to HAProxy's runtime API and counts.

    certform sends one command per connection and shuts down its writing side, so a
    connection is: read the request to EOF, forward, read HAProxy's reply to EOF, answer.
    """

    def __init__(self, upstream: str, path: str) -> None:
        self.upstream = upstream
        self.path = path
        self.calls: list[Call] = []
        self.errors = 0
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(path)
        self._server.listen(64)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            with client:
                try:
                    self._relay(client)
                except OSError:
                    self.errors += 1

    def _relay(self, client: socket.socket) -> None:
        client.settimeout(30)
        request = read_to_eof(client)
        start = time.perf_counter()
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as up:
            up.settimeout(30)
            up.connect(self.upstream)
            up.sendall(request)
            up.shutdown(socket.SHUT_WR)
            reply = read_to_eof(up)
        seconds = time.perf_counter() - start
        client.sendall(reply)
        call = Call(time.monotonic(), classify(request), seconds, len(request), len(reply))
        self.calls.append(call)

    def close(self) -> None:
        # close() alone does not wake a thread blocked in accept() (Linux): the join
        # used to wait out its 5 s timeout; shutdown() makes accept() fail at once.
        with contextlib.suppress(OSError):
            self._server.shutdown(socket.SHUT_RDWR)
        self._server.close()
        self._thread.join(timeout=5)
        if self._thread.is_alive():
            raise BenchError("counting relay did not stop")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


def relay_cost(direct: str, relayed: str, path: str, rounds: int) -> tuple[float, float]:
    """Median seconds of ``show ssl cert PATH`` direct and through the relay."""
    from reconciler.providers.haproxy_runtime import HaproxyRuntime

    result = []
    for address in (direct, relayed):
        runtime = HaproxyRuntime(address)
        times = []
        for _ in range(rounds):
            start = time.perf_counter()
            runtime.show_cert(path)
            times.append(time.perf_counter() - start)
        result.append(statistics.median(times))
    return result[0], result[1]


# -- TLS load ----------------------------------------------------------------------------
def client_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def handshake(context: ssl.SSLContext, port: int, server_name: str, timeout: float) -> str:
    """A full TLS handshake; the served leaf's serial (lowercase hex)."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw,
        context.wrap_socket(raw, server_hostname=server_name) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    if der is None:
        raise RuntimeError("no certificate served")
    return format(x509.load_der_x509_certificate(der).serial_number, "x")


def load_process(
    port: int, names: list[str], clients: int, rate: float, stop: Any, conn: Any
) -> None:
    """Load generator (own process): ``clients`` threads, ``rate`` handshakes/s in total
    (0: as fast as they go); sends every handshake as a ``Handshake`` tuple when stopped."""
    results: list[Handshake] = []
    interval = clients / rate if rate > 0 else 0.0

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        context = client_context()
        next_at = time.monotonic() + rng.random() * interval
        while not stop.is_set():
            if interval:
                now = time.monotonic()
                if next_at > now:
                    time.sleep(next_at - now)
                next_at = max(next_at + interval, now - interval)
            index = rng.randrange(len(names))
            start = time.monotonic()
            try:
                serial = handshake(context, port, names[index], timeout=5.0)
                results.append((start, time.monotonic() - start, index, serial, ""))
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
                results.append((start, time.monotonic() - start, index, "", error))

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(clients)]
    for thread in threads:
        thread.start()
    conn.send("ready")
    stop.wait()
    for thread in threads:
        thread.join()
    conn.send(results)
    conn.close()


class Load:
    """The load process, started and stopped from the benchmark."""

    def __init__(self, port: int, names: list[str], clients: int, rate: float) -> None:
        context = multiprocessing.get_context("spawn")
        self._stop = context.Event()
        self._conn, child = context.Pipe()
        args = (port, names, clients, rate, self._stop, child)
        self._process = context.Process(target=load_process, args=args, daemon=True)
        self._process.start()
        if not self._conn.poll(60) or self._conn.recv() != "ready":
            raise BenchError("load process did not start")
        self.results: list[Handshake] = []

    def stop(self) -> list[Handshake]:
        """Stop the threads and collect their handshakes; safe to call twice."""
        if not self._stop.is_set():
            self._stop.set()
            with contextlib.suppress(EOFError):
                if self._conn.poll(60):
                    self.results = self._conn.recv()
        self._process.join(timeout=10)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        return self.results


@dataclass
class Window:
    label: str
    start: float
    end: float
    expected: list[set[str]]  # per name index: the serials that count as correct

    def stats(self, results: list[Handshake]) -> dict[str, Any]:
        inside = [r for r in results if self.start <= r[0] < self.end]
        failed = [r for r in inside if r[4]]
        wrong = [r for r in inside if not r[4] and r[3] not in self.expected[r[2]]]
        latencies = sorted(r[1] for r in inside if not r[4])
        errors: dict[str, int] = defaultdict(int)
        for r in failed:
            errors[r[4][:120]] += 1
        return {
            "label": self.label,
            "seconds": self.end - self.start,
            "count": len(inside),
            "failed": len(failed),
            "wrong": len(wrong),
            "p50": percentile(latencies, 0.50),
            "p99": percentile(latencies, 0.99),
            "max": latencies[-1] if latencies else float("nan"),
            "errors": dict(errors),
            "wrong_examples": wrong[:3],
        }


def percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not ordered:
        return float("nan")
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


# -- HAProxy helpers ---------------------------------------------------------------------
def file_serial(path: Path) -> str:
    return format(x509.load_pem_x509_certificate(path.read_bytes()).serial_number, "x")


def file_serials(crt_dir: Path, n: int) -> list[str]:
    return [file_serial(crt_dir / f"{cert_name(i, n)}.pem") for i in range(n)]


def served_serials(port: int, n: int) -> list[str]:
    context = client_context()
    return [handshake(context, port, f"{cert_name(i, n)}.{DOMAIN}", 5.0) for i in range(n)]


def check_served(port: int, n: int, wanted: list[str], when: str) -> None:
    served = served_serials(port, n)
    bad = [i for i in range(n) if served[i] != wanted[i]]
    check(not bad, f"{when}: {len(bad)} of {n} names serve another serial (e.g. c{bad[:3]})")


def haproxy_check_seconds(lab: Any, repeat: int) -> float:
    """Median wall time of ``haproxy -c -f CFG`` (parse the config, load every certificate)."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        proc = subprocess.run(
            [lab.binary, "-c", "-q", "-f", str(lab.cfg)], capture_output=True, text=True
        )
        times.append(time.perf_counter() - start)
        check(proc.returncode == 0, f"haproxy -c failed: {proc.stdout}{proc.stderr}")
    return statistics.median(times)


def timed_reloads(lab: Any, k: int, gap: float) -> list[float]:
    times = []
    for _ in range(k):
        start = time.perf_counter()
        lab.reload()
        times.append(time.perf_counter() - start)
        time.sleep(gap)
    return times


# -- the benchmark -----------------------------------------------------------------------
@dataclass
class Results:
    n: int
    runs: dict[str, Run] = field(default_factory=dict)
    windows: list[dict[str, Any]] = field(default_factory=list)
    reloads_empty: list[float] = field(default_factory=list)
    reloads_full: list[float] = field(default_factory=list)
    check_empty: float = 0.0
    check_full: float = 0.0
    relay: tuple[float, float] | None = None
    relay_errors: int = 0
    crt_list_bytes: int = 0
    pem_bytes: int = 0
    verified: list[str] = field(default_factory=list)


class Bench:
    def __init__(self, args: argparse.Namespace, env: dict[str, str], workdir: Path) -> None:
        self.args = args
        self.n = args.count
        self.env = env
        self.workdir = workdir
        self.cli = certform_command()
        self.results = Results(self.n)
        self.relay: CountingRelay | None = None

    def log(self, message: str) -> None:
        print(f"[N={self.n}] {message}", flush=True)

    def cli_run(self, what: str, cwd: Path, *argv: str, lab: Any = None, repeat: int = 1) -> Run:
        runs = []
        for _ in range(repeat):
            before = len(self.relay.calls) if self.relay else 0
            cpu_before = group_cpu(lab.process.pid) if lab else 0.0
            run = run_cli([*self.cli, *argv], cwd, self.env, what)
            if lab:
                run.haproxy_cpu = group_cpu(lab.process.pid) - cpu_before
            if self.relay:
                run.calls = self.relay.calls[before:]
            runs.append(run)
            logs = self.workdir / "logs"
            logs.mkdir(exist_ok=True)
            (logs / f"{what.replace(' ', '_').replace(',', '')}.txt").write_text(run.output)
        runs.sort(key=lambda r: r.seconds)
        median = runs[len(runs) // 2]
        median.spread = (runs[0].seconds, runs[-1].seconds)
        self.results.runs[what] = median
        self.log(f"{what}: {median.seconds:.2f} s ({median.summary}, exit {median.returncode})")
        return median

    def apply(self, what: str, cwd: Path, lab: Any = None, force: bool = False) -> Run:
        """``apply --auto-approve``; ``force`` for the renewals of all N, which the change
        limits refuse without ``--force`` (every certificate replaced)."""
        argv = ["apply", "--auto-approve", *(["--force"] if force else [])]
        run = self.cli_run(what, cwd, *argv, lab=lab)
        check(run.returncode == 0, f"{what}: exited {run.returncode}", run)
        check("Apply complete" in run.output, f"{what}: did not complete", run)
        return run

    def plan(self, what: str, cwd: Path, lab: Any, repeat: int) -> Run:
        run = self.cli_run(what, cwd, "plan", "--detailed-exitcode", lab=lab, repeat=repeat)
        check(run.returncode == 0, f"{what}: exited {run.returncode}, expected 0", run)
        return run

    def files_comparison(self) -> None:
        """Issuance plus a files target: what apply costs without HAProxy."""
        directory = self.workdir / "files"
        directory.mkdir()
        write_config(directory, self.n, "ec-p256", None)
        self.apply("apply, files target", directory)
        write_config(directory, self.n, "ec-p384", None)
        self.apply(RENEW_FILES, directory, force=True)
        write_config(directory, self.n, "ec-p256", None)
        self.apply(BACK_FILES, directory, force=True)

    def run(self) -> Results:
        from tests.haproxy_lab import HaproxyLab

        self.files_comparison()
        os.sync()
        lab = HaproxyLab.start(self.workdir / "haproxy")
        with contextlib.ExitStack() as stack:
            stack.callback(lab.stop)
            self.log(f"HAProxy on 127.0.0.1:{lab.port}, worker pid {lab.worker_pid()}")
            self.with_lab(lab, stack)
        return self.results

    def with_lab(self, lab: Any, stack: contextlib.ExitStack) -> None:
        r, n, args = self.results, self.n, self.args
        r.check_empty = haproxy_check_seconds(lab, args.check_repeat)
        r.reloads_empty = timed_reloads(lab, args.reloads, 0.2)
        self.log(f"empty crt-list: reload median {statistics.median(r.reloads_empty):.3f} s")

        socket_path = lab.socket
        if not args.direct:
            relay_path = str(Path(lab.socket).parent / "relay.sock")
            self.relay = CountingRelay(lab.socket, relay_path)
            stack.callback(self.relay.close)
            socket_path = relay_path
            default_pem = str(lab.crt_dir / "default.pem")
            r.relay = relay_cost(lab.socket, relay_path, default_pem, args.relay_rounds)
            self.relay.calls.clear()
        provider = {
            "type": "haproxy",
            "socket": socket_path,
            "crt_dir": str(lab.crt_dir),
            "crt_list": str(lab.crt_list),
            "timeout": "5s",
        }
        cwd = self.workdir / "certform"
        cwd.mkdir()
        write_config(cwd, n, "ec-p256", provider)

        self.apply("apply, haproxy target", cwd, lab)
        old = file_serials(lab.crt_dir, n)
        check_served(lab.port, n, old, "after the first apply")
        r.crt_list_bytes = lab.crt_list.stat().st_size
        r.pem_bytes = (lab.crt_dir / f"{cert_name(0, n)}.pem").stat().st_size
        os.sync()
        self.plan("no-change plan", cwd, lab, args.repeat)

        names = [f"{cert_name(i, n)}.{DOMAIN}" for i in range(n)]
        load = Load(lab.port, names, args.clients, args.rate)
        stack.callback(load.stop)
        windows: list[Window] = []
        start = time.monotonic()
        time.sleep(args.idle)
        windows.append(Window("idle, no change", start, time.monotonic(), [{s} for s in old]))

        write_config(cwd, n, "ec-p384", provider)
        start = time.monotonic()
        self.apply(RENEW_HAPROXY, cwd, lab, force=True)
        end = time.monotonic()
        new = file_serials(lab.crt_dir, n)
        check(all(a != b for a, b in zip(old, new, strict=True)), "not every serial changed")
        windows.append(
            Window(
                "renewal (runtime API)", start, end, [{a, b} for a, b in zip(old, new, strict=True)]
            )
        )
        check_served(lab.port, n, new, "after the renewal")
        r.verified.append(f"after renewal: {n}/{n} names serve the serial in crt_dir/NAME.pem")
        self.plan("plan after renewal", cwd, lab, 1)

        time.sleep(args.reload_gap)  # the renewal's window and the reloads' stay apart
        start = time.monotonic()
        r.reloads_full = timed_reloads(lab, args.reloads, args.reload_gap)
        windows.append(
            Window(f"{args.reloads} full reloads", start, time.monotonic(), [{s} for s in new])
        )
        results = load.stop()
        r.windows = [w.stats(results) for w in windows]
        check_served(lab.port, n, new, "after the reloads")
        r.verified.append(f"after {args.reloads} reloads: {n}/{n} names serve the renewed serial")
        self.plan("plan after reloads", cwd, lab, 1)
        # The same renewal once more without the TLS load (back to ec-p256).
        write_config(cwd, n, "ec-p256", provider)
        self.apply(BACK_HAPROXY, cwd, lab, force=True)
        check_served(lab.port, n, file_serials(lab.crt_dir, n), "after the renewal back")
        r.verified.append(f"after the renewal back: {n}/{n} names serve the new serial")
        self.plan("plan after renewal back", cwd, lab, 1)
        r.check_full = haproxy_check_seconds(lab, args.check_repeat)
        if self.relay:
            r.relay_errors = self.relay.errors


# -- report ------------------------------------------------------------------------------
def haproxy_version(binary: str) -> str:
    out = subprocess.run([binary, "-v"], capture_output=True, text=True).stdout
    return out.split()[2] if out.startswith("HAProxy version") else "?"


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "?"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def report(r: Results, args: argparse.Namespace, binary: str) -> list[str]:
    """Print the figures; the failed checks (empty when all passed)."""
    n = r.n
    print(f"\n== certform haproxy target, N={n} ==")
    print(
        f"python {sys.version.split()[0]}, HAProxy {haproxy_version(binary)}, "
        f"{os.cpu_count()} CPU(s) {cpu_model()}, CLI {certform_command()[0]}"
    )
    relay = "direct to the stats socket" if args.direct else "through the counting relay"
    print(f"runtime API: {relay}")
    if r.relay:
        direct, relayed = r.relay
        print(
            f"relay cost: show ssl cert PATH {direct * 1e3:.3f} ms direct, "
            f"{relayed * 1e3:.3f} ms relayed (+{(relayed - direct) * 1e3:.3f} ms per call)"
        )

    header = (
        f"{'certform run':<26} {'wall s':>8} {'ms/cert':>8} {'cli CPU s':>9} {'HAProxy CPU s':>13}"
    )
    print("\n" + header)
    print("-" * len(header))
    for run in r.runs.values():
        haproxy = f"{run.haproxy_cpu:.2f}" if run.haproxy_cpu is not None else "-"
        print(
            f"{run.what:<26} {run.seconds:>8.2f} {run.seconds / n * 1000:>8.2f} "
            f"{run.cpu:>9.2f} {haproxy:>13}"
        )
    print("(HAProxy CPU: master and workers; it includes the TLS load's handshakes in that run)")
    plan = r.runs["no-change plan"]
    if plan.spread:
        low, high = plan.spread
        print(f"no-change plan: median of {args.repeat} ({low:.2f}-{high:.2f} s)")
    print("renew: ec-p256 -> ec-p384 (every certificate re-issued); back: ec-p384 -> ec-p256")
    pairs = (
        ("apply, haproxy target", "apply, files target"),
        (RENEW_HAPROXY, RENEW_FILES),
        (BACK_HAPROXY, BACK_FILES),
    )
    for haproxy, files in pairs:
        extra = r.runs[haproxy].seconds - r.runs[files].seconds
        print(f"{haproxy} minus {files}: {extra:.2f} s ({extra / n * 1000:.2f} ms/cert)")

    print(
        f"\nTLS load: {args.clients} client threads in their own process, "
        f"{args.rate:g} handshakes/s target (random SNI of the N names, full handshakes)"
    )
    header = (
        f"{'window':<24} {'s':>6} {'handshakes':>10} {'failed':>6} {'wrong':>5} "
        f"{'p50 ms':>7} {'p99 ms':>7} {'max ms':>7}"
    )
    print(header)
    print("-" * len(header))
    for w in r.windows:
        print(
            f"{w['label']:<24} {w['seconds']:>6.2f} {w['count']:>10} {w['failed']:>6} "
            f"{w['wrong']:>5} {ms(w['p50']):>7} {ms(w['p99']):>7} {ms(w['max']):>7}"
        )
        for error, count in w["errors"].items():
            print(f"    {count} x {error}")
        for example in w["wrong_examples"]:
            print(f"    wrong certificate: {example}")
    print("(wrong: a serial other than the name's current one; during the renewal old or new)")

    empty, full = statistics.median(r.reloads_empty), statistics.median(r.reloads_full)
    print("\nfull reload (SIGUSR2 to the master until the new worker serves), seconds:")
    for label, times in (
        ("1 certificate (empty crt-list)", r.reloads_empty),
        (f"{n + 1} certificates", r.reloads_full),
    ):
        print(f"  {label + ':':<32} {' '.join(f'{t:.3f}' for t in times)}")
    print(
        f"  median {empty:.3f} -> {full:.3f}: re-reading {n} certificates adds {full - empty:.3f} s"
    )
    print(
        f"  haproxy -c -f (parse + load, no listeners): {r.check_empty:.3f} s -> "
        f"{r.check_full:.3f} s (+{r.check_full - r.check_empty:.3f} s)"
    )
    print(f"  crt-list file {r.crt_list_bytes} bytes; one PEM file {r.pem_bytes} bytes")

    if r.runs["apply, haproxy target"].calls:
        report_calls(r)
    print("\nchecks:")
    for line in r.verified:
        print(f"  ok  {line}")
    failures = []
    for w in r.windows:
        if w["failed"] or w["wrong"]:
            failures.append(f"{w['label']}: {w['failed']} failed, {w['wrong']} wrong handshakes")
        if not w["count"]:
            failures.append(f"{w['label']}: no handshakes (the TLS load did not run)")
    if r.relay_errors:
        failures.append(f"relay: {r.relay_errors} connections failed")
    for line in failures:
        print(f"  FAIL {line}")
    if not failures:
        print("  ok  no failed or wrong handshake in any window")
    return failures


def report_calls(r: Results) -> None:
    n = r.n
    print("\nruntime API calls (counting relay; ms = HAProxy's answer, median):")
    for what, run in r.runs.items():
        if not run.calls:
            continue
        answer = sum(c.seconds for c in run.calls)
        received = sum(c.received for c in run.calls)
        print(
            f"  {what}: {len(run.calls)} calls ({len(run.calls) / n:.1f}/cert), HAProxy "
            f"answering {answer:.2f} s of {run.seconds:.2f} s, {received / 1e6:.1f} MB received"
        )
    for what in ("apply, haproxy target", RENEW_HAPROXY, BACK_HAPROXY):
        calls = r.runs[what].calls
        print(f"\n  {what}, by command (first tenth of the run vs last tenth):")
        header = (
            f"    {'command':<26} {'calls':>6} {'/cert':>5} {'ms first':>8} {'ms last':>8} "
            f"{'KB first':>8} {'KB last':>8}"
        )
        print(header)
        by: dict[str, list[Call]] = defaultdict(list)
        for call in calls:
            by[call.command].append(call)
        for command, group in sorted(by.items(), key=lambda kv: -len(kv[1])):
            tenth = max(1, len(group) // 10)
            first, last = group[:tenth], group[-tenth:]
            print(
                f"    {command:<26} {len(group):>6} {len(group) / n:>5.1f} "
                f"{ms(statistics.median(c.seconds for c in first)):>8} "
                f"{ms(statistics.median(c.seconds for c in last)):>8} "
                f"{statistics.median(c.received for c in first) / 1000:>8.1f} "
                f"{statistics.median(c.received for c in last) / 1000:>8.1f}"
            )
        commits = [c.at for c in calls if c.command == "commit ssl cert"]
        if len(commits) > 20:
            gaps = [b - a for a, b in itertools.pairwise(commits)]
            tenth = max(1, len(gaps) // 10)
            # certform issues every certificate first, then deploys the bindings one by
            # one: the time from one commit to the next is one binding's deploy.
            print(
                f"    deploys (first to last commit): {commits[-1] - commits[0]:.2f} s, "
                f"{ms((commits[-1] - commits[0]) / len(gaps))} ms/binding; median per binding "
                f"first tenth {ms(statistics.median(gaps[:tenth]))} ms, "
                f"last tenth {ms(statistics.median(gaps[-tenth:]))} ms"
            )


# -- main --------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=500, help="Certificates (N).")
    parser.add_argument("--clients", type=int, default=4, help="Handshake threads.")
    parser.add_argument(
        "--rate", type=float, default=200, help="Handshakes per second, all threads (0: no limit)."
    )
    parser.add_argument("--idle", type=float, default=3.0, help="Seconds of load before renewal.")
    parser.add_argument("--reloads", type=int, default=5, help="Full reloads (K).")
    parser.add_argument("--reload-gap", type=float, default=1.0, help="Seconds after each reload.")
    parser.add_argument("--repeat", type=int, default=3, help="Runs of the no-change plan.")
    parser.add_argument(
        "--direct", action="store_true", help="No counting relay: certform uses the socket."
    )
    parser.add_argument("--keep", action="store_true", help="Keep the temp directory.")
    parser.add_argument(
        "--no-bytecode-cache",
        action="store_true",
        help="Run the CLI with the inherited environment (see bench/plan_apply.py).",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help=f"Every phase once at N = {SMOKE_N} with short windows (seconds): checks that "
        "the benchmark still runs, measures nothing worth reading.",
    )
    args = parser.parse_args()
    args.relay_rounds, args.check_repeat = 200, 3
    if args.smoke:
        args.count, args.clients, args.rate, args.idle = SMOKE_N, 2, 100.0, 0.5
        args.reloads, args.reload_gap, args.repeat = 1, 0.2, 1
        args.relay_rounds, args.check_repeat = 10, 1

    from tests.haproxy_lab import haproxy_binary

    binary = haproxy_binary()
    if binary is None:
        sys.exit("bench: haproxy is not installed (apt-get install haproxy)")

    env = dict(os.environ)
    env[MASTER_KEY_ENV] = base64.b64encode(os.urandom(32)).decode()
    env.pop("NO_COLOR", None)
    workdir = Path(tempfile.mkdtemp(prefix="certform-bench-haproxy-"))
    if not args.no_bytecode_cache:
        # As plan_apply.py: children import from .pyc files in a private prefix.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(workdir / "pycache")
        run_cli([*certform_command(), "--version"], workdir, env, "warm")
    # SIGTERM (e.g. a timeout) should unwind through the finally blocks that stop HAProxy.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    print(f"workdir {workdir}", flush=True)
    try:
        results = Bench(args, env, workdir).run()
        failures = report(results, args, binary)
    except BenchError as exc:
        sys.exit(f"bench: {exc}")
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    if failures:
        sys.exit(1)


if __name__ == "__main__":
    main()
