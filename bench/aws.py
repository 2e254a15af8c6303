"""Benchmark of certform against a real AWS API endpoint (moto server; run on demand).

    python bench/aws.py                     # N = 100 and 500
    python bench/aws.py --sizes 50 200      # other sizes
    python bench/aws.py --profile           # also cProfile an in-process no-change plan
    python bench/aws.py --smoke             # N = 3, every phase once (seconds; CI)

For each N: a fresh moto server (``python -m moto.server``) with one ALB that has
ceil(N/24) HTTPS listeners on ports 8443, 8444, ... (each with its own placeholder
default certificate in ACM), and a config with one private root and one issuing CA
(ec-p384) and N certificates ``c{i}`` (ec-p256, 90d, renew_before 30d), each bound
as an SNI certificate (``aws-alb-listener``, ``sni: true``), 24 per listener (the
listener quota is 25 certificates including the default).

The config's ``endpoint_url`` points at a small counting reverse proxy that runs in
this process and forwards every request to moto, counting them by service and
operation (``X-Amz-Target`` for JSON services such as ACM, ``Action`` for query
services such as ELBv2) and timing moto's answers.  Through the real CLI, in child
processes (start-up and imports count):

* ``apply --auto-approve`` from an empty state (run once),
* ``plan --detailed-exitcode`` with nothing to do (must exit 0; it observes every
  binding against moto),
* a plan where exactly one certificate is due: a variant config gives ``c0``
  ``renew_before: 89d`` and the plan runs ``--at +1d`` (the 89d window of a 90d
  certificate opens a day after issuance; everything else renews at +60d); it must
  exit 2 with exactly ``1 to renew, 1 to rebind``.

A phase that fails ends the script with a non-zero exit; ``--smoke`` runs every phase
(profile included) at a tiny N in the test suite (tests/test_bench_smoke.py).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import http.client
import io
import math
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

# ``python bench/aws.py`` puts bench/ first on sys.path, where bench/acme.py would shadow
# the ``acme`` library certform imports: take bench/ off, put the repository root on.
_BENCH = Path(__file__).resolve().parent
for _entry in [p for p in sys.path if Path(p or ".").resolve() == _BENCH]:
    sys.path.remove(_entry)
if str(_BENCH.parent) not in sys.path:
    sys.path.insert(0, str(_BENCH.parent))

# Shared with the files benchmark next to this script: child runs with peak RSS, the
# console script, cProfile tables.
from bench.plan_apply import (  # noqa: E402
    PKI_HEADER,
    ChildRun,
    certform_command,
    cli_plan,
    profile,
    require,
    run_child,
)

MASTER_KEY_ENV = "CERTFORM_MASTER_KEY"
REGION = "eu-west-1"
LOAD_BALANCER = "bench-alb"
FIRST_PORT = 8443
SNI_PER_LISTENER = 24  # + the listener's default certificate = 25, the default quota
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "bench-dummy",
    "AWS_SECRET_ACCESS_KEY": "bench-dummy",
    "AWS_SESSION_TOKEN": "bench-dummy",
}
SUMMARY_RE = re.compile(r"^Plan: (.*)\.", re.MULTILINE)
SMOKE_N = 3  # --smoke: one listener, a few certificates

# ACM's documented default request-rate quotas (requests per second, per account and
# region; ACM quotas page, "API rate quotas").  Used only to print the time a run
# making the same calls would need at least against real ACM.
ACM_RATE_QUOTAS = {
    "AddTagsToCertificate": 5,
    "DescribeCertificate": 10,
    "GetCertificate": 10,
    "ImportCertificate": 1,
    "ListCertificates": 1,
    "ListTagsForCertificate": 10,
}


# -- counting reverse proxy --------------------------------------------------------------
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "content-length",
        "date",
        "server",
    }
)
_SCOPE_RE = re.compile(r"Credential=[^/]+/\d{8}/[^/]+/([^/]+)/aws4_request")
_SERVICE_NAMES = {"elasticloadbalancing": "elbv2"}


def operation_of(headers: Any, path: str, body: bytes) -> str:
    """``service:Operation`` of one AWS API request (SigV4 scope + target or Action)."""
    scope = _SCOPE_RE.search(headers.get("Authorization", ""))
    service = _SERVICE_NAMES.get(scope.group(1), scope.group(1)) if scope else "?"
    target = headers.get("X-Amz-Target")
    if target:
        return f"{service}:{target.rsplit('.', 1)[-1]}"
    for source in (body.decode(errors="replace"), urllib.parse.urlsplit(path).query):
        action = urllib.parse.parse_qs(source).get("Action")
        if action:
            return f"{service}:{action[0]}"
    return f"{service}:{urllib.parse.urlsplit(path).path}"


@dataclass
class Window:
    """What the proxy saw between two ``CountingProxy.take()`` calls."""

    calls: Counter[str] = field(default_factory=Counter)
    upstream_seconds: Counter[str] = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return sum(self.calls.values())

    @property
    def seconds(self) -> float:
        return sum(self.upstream_seconds.values())


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as botocore's connection pool expects
    # Headers and body go out in two writes: without TCP_NODELAY, Nagle's algorithm and
    # the client's delayed ACK add ~40 ms to every call.
    disable_nagle_algorithm = True
    server: _ProxyServer

    def _forward(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        if body:
            headers["Content-Length"] = str(len(body))
        start = time.perf_counter()
        status, reason, reply_headers, data = self.server.upstream(
            self.command, self.path, body, headers
        )
        self.server.record(operation_of(self.headers, self.path, body), time.perf_counter() - start)
        if self.server.observe is not None:
            self.server.observe(Request(self.command, self.path, dict(self.headers), body, status))
        self.send_response(status, reason)
        length = str(len(data))
        for key, value in reply_headers:
            if key.lower() == "content-length" and self.command == "HEAD":
                length = value  # HEAD: the length of the body a GET would get
            elif key.lower() not in _HOP_BY_HOP:
                self.send_header(key, value)
        self.send_header("Content-Length", length)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _forward

    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass(frozen=True)
class Request:
    """One request the proxy forwarded, with moto's status (``CountingProxy(observe=)``)."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, upstream_url: str, observe: Callable[[Request], None] | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.observe = observe
        parts = urllib.parse.urlsplit(upstream_url)
        self._host, self._port = parts.hostname or "127.0.0.1", parts.port or 80
        self._local = threading.local()
        self._lock = threading.Lock()
        self._window = Window()

    def upstream(
        self, method: str, path: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, str, list[tuple[str, str]], bytes]:
        """One request to moto on this thread's kept-alive connection (reconnect once)."""
        for attempt in (1, 2):
            conn = getattr(self._local, "conn", None)
            if conn is None:
                conn = http.client.HTTPConnection(self._host, self._port, timeout=120)
                self._local.conn = conn
            try:
                conn.request(method, path, body=body or None, headers=headers)
                response = conn.getresponse()
                data = response.read()
                return response.status, response.reason, response.getheaders(), data
            except (ConnectionError, http.client.HTTPException):
                conn.close()
                self._local.conn = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def record(self, operation: str, seconds: float) -> None:
        with self._lock:
            self._window.calls[operation] += 1
            self._window.upstream_seconds[operation] += seconds

    def take(self) -> Window:
        with self._lock:
            window, self._window = self._window, Window()
        return window


class CountingProxy:
    """An HTTP reverse proxy to ``upstream_url`` in a background thread of this process;
    ``observe`` (tests/test_aws_iam_policy.py) is given every request it forwarded."""

    def __init__(self, upstream_url: str, observe: Callable[[Request], None] | None = None) -> None:
        self._server = _ProxyServer(upstream_url, observe)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def take(self) -> Window:
        """The calls seen since the last ``take()`` (and start a new window)."""
        return self._server.take()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


# -- moto server and the load balancer ---------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class MotoServer:
    def __init__(self) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{self.url}/moto-api/", timeout=1)
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    sys.exit("bench: moto server did not start (pip install 'moto[server]')")
                time.sleep(0.05)

    def client(self, service: str, endpoint_url: str | None = None) -> Any:
        import boto3

        return boto3.client(
            service,
            region_name=REGION,
            endpoint_url=endpoint_url or self.url,
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def placeholder_certificate(acm: Any, index: int) -> str:
    """A self-signed certificate in ACM for a listener's default (as tests/aws_lab.py)."""
    from reconciler.pki.builder import Subject, build_ca_certificate, certificate_to_pem
    from reconciler.pki.keys import generate_private_key, private_key_to_pem

    key = generate_private_key("ec-p256")
    now = datetime.now(UTC)
    cert = build_ca_certificate(
        public_key=key.public_key(),
        subject=Subject(f"placeholder{index}.bench.test"),
        issuer_cert=None,
        issuer_key=key,
        not_before=now,
        not_after=now + timedelta(days=30),
        path_length=0,
    )
    response = acm.import_certificate(
        Certificate=certificate_to_pem(cert).encode(), PrivateKey=private_key_to_pem(key)
    )
    return str(response["CertificateArn"])


def create_load_balancer(moto: MotoServer, listeners: int) -> list[str]:
    """One ALB with ``listeners`` HTTPS listeners on 8443..; their ARNs."""
    ec2 = moto.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=zone)["Subnet"][
            "SubnetId"
        ]
        for i, zone in enumerate((f"{REGION}a", f"{REGION}b"), start=1)
    ]
    elb = moto.client("elbv2")
    balancer = elb.create_load_balancer(Name=LOAD_BALANCER, Subnets=subnets)["LoadBalancers"][0]
    group = elb.create_target_group(
        Name=f"{LOAD_BALANCER}-tg", Protocol="HTTP", Port=80, VpcId=vpc
    )["TargetGroups"][0]["TargetGroupArn"]
    acm = moto.client("acm")
    arns = []
    for index in range(listeners):
        listener = elb.create_listener(
            LoadBalancerArn=balancer["LoadBalancerArn"],
            Protocol="HTTPS",
            Port=FIRST_PORT + index,
            Certificates=[{"CertificateArn": placeholder_certificate(acm, index)}],
            DefaultActions=[{"Type": "forward", "TargetGroupArn": group}],
        )["Listeners"][0]
        arns.append(str(listener["ListenerArn"]))
    return arns


def sni_counts(moto: MotoServer, listener_arns: list[str]) -> list[int]:
    """SNI certificates on each listener (read directly from moto, not counted)."""
    elb = moto.client("elbv2")
    counts = []
    for arn in listener_arns:
        certificates = elb.describe_listener_certificates(ListenerArn=arn)["Certificates"]
        counts.append(sum(1 for c in certificates if not c.get("IsDefault")))
    return counts


# -- config ------------------------------------------------------------------------------
def listener_count(n: int) -> int:
    return max(1, math.ceil(n / SNI_PER_LISTENER))


def write_config(directory: Path, n: int, endpoint_url: str, c0_renew_before: str = "30d") -> Path:
    lines = list(PKI_HEADER)
    for i in range(n):
        lines += [
            f"  c{i}:",
            f"    names: [c{i}.bench.test]",
            "    issuer: issuing",
            "    key: ec-p256",
            "    validity: 90d",
            f"    renew_before: {c0_renew_before if i == 0 else '30d'}",
        ]
    lines += [
        "",
        "providers:",
        f"  aws: {{type: aws, region: {REGION}, endpoint_url: '{endpoint_url}'}}",
        "",
        "bindings:",
    ]
    for i in range(n):
        port = FIRST_PORT + i // SNI_PER_LISTENER
        lines += [
            f"  - certificate: c{i}",
            "    target: {type: aws-alb-listener, provider: aws, "
            f"load_balancer: {LOAD_BALANCER}, port: {port}, sni: true}}",
        ]
    path = directory / "certform.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


# -- measuring ---------------------------------------------------------------------------
@dataclass
class Measured:
    run: ChildRun
    window: Window
    runs: list[float] = field(default_factory=list)

    @property
    def summary(self) -> str:
        match = SUMMARY_RE.search(self.run.output)
        if match:
            return match.group(1)
        return "no changes" if "No changes." in self.run.output else "?"

    @property
    def spread(self) -> str:
        if len(self.runs) < 2:
            return f"{self.run.seconds:.2f} s"
        return f"{self.run.seconds:.2f} s ({min(self.runs):.2f}-{max(self.runs):.2f})"


def measure(
    argv: list[str],
    cwd: Path,
    env: dict[str, str],
    proxy: CountingProxy,
    expect: int,
    repeat: int = 1,
) -> Measured:
    """Run ``argv`` ``repeat`` times (each must exit ``expect``); the median run."""
    results = []
    for _ in range(repeat):
        proxy.take()
        run = run_child(argv, cwd, env)
        window = proxy.take()
        require(run.returncode == expect, f"{argv[1:]} exited {run.returncode}, not {expect}", run)
        results.append(Measured(run, window))
    results.sort(key=lambda m: m.run.seconds)
    median = results[len(results) // 2]
    median.runs = [m.run.seconds for m in results]
    totals = {m.window.total for m in results}
    require(len(totals) == 1, f"{argv[1:]} made different numbers of calls: {sorted(totals)}")
    return median


def proxy_overhead(moto: MotoServer, proxy: CountingProxy, calls: int = 200) -> dict[str, float]:
    """Median latency (ms) of one cheap ELBv2 call from boto3, direct vs via the proxy."""
    latencies = {}
    for label, url in (("direct", moto.url), ("proxy", proxy.url)):
        elb = moto.client("elbv2", url)
        elb.describe_load_balancers(Names=[LOAD_BALANCER])  # connect, warm
        samples = []
        for _ in range(calls):
            start = time.perf_counter()
            elb.describe_load_balancers(Names=[LOAD_BALANCER])
            samples.append(time.perf_counter() - start)
        latencies[label] = statistics.median(samples) * 1000
    proxy.take()
    return latencies


def acm_quota_floor(window: Window) -> tuple[float, str]:
    """Least seconds real ACM would need for these calls at its default rate quotas."""
    floors = {
        op: window.calls[f"acm:{op}"] / rate
        for op, rate in ACM_RATE_QUOTAS.items()
        if window.calls[f"acm:{op}"]
    }
    if not floors:
        return 0.0, "-"
    op = max(floors, key=floors.__getitem__)
    return floors[op], op


def boto3_import_seconds(env: dict[str, str]) -> float:
    code = "import time; t = time.perf_counter(); import boto3; print(time.perf_counter() - t)"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return float(out.stdout.strip())


def timed(phases: dict[str, float], name: str, fn: Callable[[], Any]) -> Any:
    start = time.perf_counter()
    result = fn()
    phases[name] = time.perf_counter() - start
    return result


def in_process_plan(config: Path, proxy: CountingProxy) -> tuple[dict[str, float], Window]:
    """The no-change plan's steps in this process, timed (same calls as ``cli.plan``)."""
    from reconciler.config.validate import load_and_validate
    from reconciler.engine.planning import plan_from
    from reconciler.engine.refresh import refresh
    from reconciler.engine.workspace import open_store
    from reconciler.plan.diff import diff
    from reconciler.plan.render import render_plan
    from reconciler.providers.aws.session import _client, client

    phases: dict[str, float] = {}
    now = datetime.now(UTC)
    validated = timed(phases, "load+validate", lambda: load_and_validate(config, {}))
    store = open_store(validated.config.state, validated.root)
    store.open()
    store.lock("plan", 0.0)
    try:
        recorded = timed(phases, "state read", store.read)
    finally:
        store.unlock()
    provider = next(iter(validated.config.providers.values()))
    _client.cache_clear()

    def make_clients() -> None:
        client(provider, "elbv2")
        client(provider, "acm")

    timed(phases, "boto3 clients (elbv2, acm)", make_clients)
    desired, root = validated.desired, validated.root
    proxy.take()
    observed = timed(phases, "refresh (AWS observe)", lambda: refresh(desired, recorded, root))
    window = proxy.take()
    phases["  moto+proxy answering"] = window.seconds
    phases["  client side (refresh - answering)"] = phases["refresh (AWS observe)"] - window.seconds
    result = timed(phases, "diff", lambda: diff(desired, recorded, observed, now))
    require(not result.changes, "in-process no-change plan found changes")
    plan = plan_from(validated, recorded, str(store.path.resolve()), now)
    proxy.take()
    timed(phases, "render", lambda: render_plan(plan))
    store.close()
    phases["total (excl. indented)"] = sum(v for k, v in phases.items() if not k.startswith(" "))
    return phases, window


# -- main --------------------------------------------------------------------------------
@dataclass
class Row:
    n: int
    listeners: int
    apply: Measured
    plan: Measured
    renewal: Measured
    version: ChildRun
    overhead: dict[str, float]
    phases: dict[str, float]
    refresh_window: Window
    profile_text: str = ""


def bench_size(
    n: int,
    env: dict[str, str],
    keep: bool,
    repeat: int,
    profile_top: int | None,
    overhead_calls: int = 200,
) -> Row:
    listeners = listener_count(n)
    workdir = Path(tempfile.mkdtemp(prefix=f"certform-bench-aws-{n}-"))
    moto = MotoServer()
    proxy = CountingProxy(moto.url)
    try:
        cli = certform_command()
        print(f"\n[N={n}] workdir {workdir}, moto {moto.url}, proxy {proxy.url}", flush=True)
        start = time.perf_counter()
        listener_arns = create_load_balancer(moto, listeners)
        print(
            f"[N={n}] ALB {LOAD_BALANCER} with {listeners} HTTPS listener(s) "
            f"({time.perf_counter() - start:.2f} s, not counted)",
            flush=True,
        )
        overhead = proxy_overhead(moto, proxy, overhead_calls)
        config = write_config(workdir, n, proxy.url)

        version = run_child([*cli, "--version"], workdir, env)
        require(version.returncode == 0, "certform --version failed", version)

        apply = measure([*cli, "apply", "--auto-approve"], workdir, env, proxy, expect=0)
        require("Apply complete" in apply.run.output, "apply did not complete", apply.run)
        served = sni_counts(moto, listener_arns)
        expected = [min(SNI_PER_LISTENER, n - i * SNI_PER_LISTENER) for i in range(listeners)]
        require(served == expected, f"SNI certificates per listener {served}, not {expected}")
        print(
            f"[N={n}] apply {apply.run.seconds:.2f} s, {apply.window.total} API calls "
            f"({apply.summary})",
            flush=True,
        )
        os.sync()  # write-back of what apply left dirty is not part of the plans

        plan = measure([*cli, "plan", "--detailed-exitcode"], workdir, env, proxy, 0, repeat)
        print(f"[N={n}] no-change plan {plan.spread}, {plan.window.total} API calls", flush=True)

        phases, refresh_window = in_process_plan(config, proxy)
        require(
            refresh_window.calls == plan.window.calls,
            "the in-process refresh made other calls than the CLI plan",
        )
        profile_text = ""
        if profile_top is not None:
            profile_text = profile_plan(config, proxy, n, profile_top)

        write_config(workdir, n, proxy.url, c0_renew_before="89d")
        renewal = measure(
            [*cli, "plan", "--detailed-exitcode", "--at", "+1d"], workdir, env, proxy, 2, repeat
        )
        require(
            renewal.summary == "1 to renew, 1 to rebind",
            f"one-renewal plan summary is {renewal.summary!r}, not '1 to renew, 1 to rebind'",
            renewal.run,
        )
        require("certificate.c0" in renewal.run.output, "the one renewal is not c0", renewal.run)
        print(f"[N={n}] one-renewal plan {renewal.spread} ({renewal.summary})", flush=True)
        write_config(workdir, n, proxy.url)
        return Row(
            n,
            listeners,
            apply,
            plan,
            renewal,
            version,
            overhead,
            phases,
            refresh_window,
            profile_text,
        )
    finally:
        proxy.stop()
        moto.stop()
        if keep:
            print(f"[N={n}] kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def _calls_table(title: str, windows: dict[str, Window], n_by_label: dict[str, int]) -> None:
    print(f"\n{title}")
    operations = sorted({op for w in windows.values() for op in w.calls})
    width = max([len(op) for op in operations] + [len("total")])
    labels = list(windows)
    print("  " + " " * width + "".join(f"{label:>22}" for label in labels))
    print("  " + " " * width + "".join(f"{'calls  /bind  moto ms':>22}" for _ in labels))
    for op in [*operations, "total"]:
        cells = []
        for label in labels:
            w = windows[label]
            calls = w.total if op == "total" else w.calls[op]
            seconds = w.seconds if op == "total" else w.upstream_seconds[op]
            per_binding = calls / n_by_label[label]
            cells.append(f"{calls:>7} {per_binding:>6.2f} {seconds * 1000:>7.0f}")
        print(f"  {op:<{width}}" + "".join(f"{cell:>22}" for cell in cells))


def report(rows: list[Row], boto3_import: float) -> None:
    print("\n== certform AWS (moto server) benchmark ==")
    import reconciler

    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPU(s), CLI {certform_command()[0]}")
    print(f"certform code measured: {Path(reconciler.__file__).parent}")
    header = (
        f"{'N':>5} {'listeners':>9} {'apply s':>9} {'plan s':>7} {'1-renew s':>9} "
        f"{'plan calls':>10} {'calls/binding':>13} {'apply calls':>11}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r.n:>5} {r.listeners:>9} {r.apply.run.seconds:>9.2f} {r.plan.run.seconds:>7.2f} "
            f"{r.renewal.run.seconds:>9.2f} {r.plan.window.total:>10} "
            f"{r.plan.window.total / r.n:>13.2f} {r.apply.window.total:>11}"
        )
    print(f"\nplan runs: median of {len(rows[0].plan.runs)} (min-max):")
    for r in rows:
        print(
            f"  N={r.n}: no-change {r.plan.spread}, one-renewal {r.renewal.spread} "
            f"({r.renewal.summary}, {r.renewal.window.total} calls); "
            f"peak RSS apply {r.apply.run.maxrss_mb:.0f} MB, plan {r.plan.run.maxrss_mb:.0f} MB"
        )
    print("\nwhere the CLI time goes (seconds; 'rest' = start-up, boto3, certform itself):")
    for r in rows:
        for label, m in (("apply", r.apply), ("no-change plan", r.plan)):
            floor, op = acm_quota_floor(m.window)
            print(
                f"  N={r.n} {label}: wall {m.run.seconds:.2f} = moto+proxy answering "
                f"{m.window.seconds:.2f} + rest {m.run.seconds - m.window.seconds:.2f}; "
                f"real ACM at its default rate quotas needs >= {floor:.0f} s ({op})"
            )
    print(
        f"  start-up (`certform --version`): {rows[0].version.seconds:.2f} s; "
        f"`import boto3` alone: {boto3_import:.2f} s (paid by every run with an AWS binding)"
    )
    print("  proxy cost, median per call (ELBv2 DescribeLoadBalancers from boto3):")
    for r in rows:
        o = r.overhead
        print(
            f"    N={r.n}: direct {o['direct']:.2f} ms, via proxy {o['proxy']:.2f} ms "
            f"(+{o['proxy'] - o['direct']:.2f} ms per call)"
        )

    for r in rows:
        _calls_table(
            f"API calls at N={r.n} ({r.listeners} listeners), by operation; /bind = per binding; "
            "moto ms = time to answer (incl. proxy forwarding):",
            {"apply": r.apply.window, "no-change plan": r.plan.window,
             "one-renewal plan": r.renewal.window},
            {"apply": r.n, "no-change plan": r.n, "one-renewal plan": r.n},
        )  # fmt: skip

    print("\nno-change plan, in process (seconds; indented rows are part of the row above):")
    names = list(rows[0].phases)
    width = max(len(name) for name in names)
    print("  " + " " * width + "".join(f"{f'N={r.n}':>11}" for r in rows))
    for name in names:
        print(f"  {name:<{width}}" + "".join(f"{r.phases[name]:>11.3f}" for r in rows))


def profile_plan(config: Path, proxy: CountingProxy, n: int, top: int) -> str:
    """cProfile tables of an in-process no-change plan (warm boto3 clients), as text."""
    cli_plan(config)  # warm: boto3 clients, page cache
    proxy.take()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        profile(f"in-process no-change plan, N={n} (warm clients)", lambda: cli_plan(config), top)
    window = proxy.take()
    out.write(f"\n({window.total} API calls; moto+proxy answering {window.seconds:.2f} s)\n")
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 500])
    parser.add_argument("--keep", action="store_true", help="Keep the temp directories.")
    parser.add_argument(
        "--repeat", type=int, default=3, help="Runs of each plan; the median is reported."
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="Also cProfile an in-process no-change plan at the largest N (printed last).",
    )
    parser.add_argument("--top", type=int, default=30, help="Rows per profile table.")
    parser.add_argument(
        "--no-bytecode-cache",
        action="store_true",
        help="Run the CLI with the inherited environment as is (by default children get a "
        "private PYTHONPYCACHEPREFIX so imports use .pyc files like an installed tool).",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help=f"Every phase once at N = {SMOKE_N}, profile included (seconds): checks that "
        "the benchmark still runs, measures nothing worth reading.",
    )
    args = parser.parse_args()
    overhead_calls = 200
    if args.smoke:
        args.sizes, args.repeat, args.profile, args.top = [SMOKE_N], 1, True, 5
        overhead_calls = 10

    env = dict(os.environ)
    env.update(CREDENTIALS)
    env[MASTER_KEY_ENV] = base64.b64encode(os.urandom(32)).decode()
    # No ~/.aws files, no instance metadata: the dummies above are the only credentials.
    env.update(
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_EC2_METADATA_DISABLED="true",
    )
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "NO_COLOR"):
        env.pop(name, None)
    os.environ.clear()
    os.environ.update(env)  # the in-process plan and profile use the same settings
    # SIGTERM (e.g. a timeout) unwinds through the finally blocks that stop the servers
    # and remove the temp directories.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    cache = None
    if not args.no_bytecode_cache:
        # As in plan_apply.py: a private .pyc prefix instead of compiling every start.
        cache = tempfile.mkdtemp(prefix="certform-bench-pyc-")
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = cache
        run_child([*certform_command(), "--version"], Path(cache), env)
        run_child([sys.executable, "-c", "import boto3.session"], Path(cache), env)
    try:
        boto3_import = boto3_import_seconds(env)
        largest = max(args.sizes)
        rows = [
            bench_size(
                n,
                env,
                args.keep,
                args.repeat,
                args.top if args.profile and n == largest else None,
                overhead_calls,
            )
            for n in args.sizes
        ]
        report(rows, boto3_import)
        for row in rows:
            print(row.profile_text, end="")
    finally:
        if cache:
            shutil.rmtree(cache, ignore_errors=True)


if __name__ == "__main__":
    main()
