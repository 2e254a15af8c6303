"""Benchmark of ACME issuance against Pebble (run on demand, not a test).

    python bench/acme.py                            # N = 200, parallelism 1, 4, 10
    python bench/acme.py --count 20                 # quick run
    python bench/acme.py --parallelism 1,2,4,10,20  # other parallelism values
    python bench/acme.py --profile                  # plus cProfile of an in-process apply
    python bench/acme.py --smoke                    # N = 3, P = 1,2: every phase (CI)

One pebble-challtestsrv (Pebble's DNS: every A query answers 127.0.0.1) and one Pebble
(``PEBBLE_VA_NOSLEEP=1``, 5% of nonces rejected, authorization reuse off) serve the
whole run.  Then, in this order:

* a bare ``acme``-library client issues N certificates sequentially (one account; per
  name a fresh ec-p256 key and CSR, new_order, http-01 answered by a tiny responder on
  Pebble's http port, authorization and order polled every 10 ms, finalize, download;
  badNonce retried), timed in this process;
* for each parallelism P, a fresh temp directory with an ``acme`` authority (http-01
  ``standalone`` on 127.0.0.1:<Pebble http port>) and N certificates ``cNNNN``
  (``cNNNN.example.test``, ec-p256) bound to ``files`` targets; ``certform apply
  --auto-approve --parallelism P`` through the real console script, wall time and
  certificates per second, and the phases of the run from the time each output line
  arrived;
* in process, ``--sample`` orders placed one after the other with
  ``AcmeAccount.issue`` (certform's client, without the engine), with ``time.sleep``
  in the client, its HTTP requests and the http-01 responder's start/stop timed: the
  share of the time spent waiting.  Once as certform runs, once with the standalone
  responder "pinned" (one extra user holds it open, so it is not stopped and started
  again between sequential orders);
* a what-if: an in-process apply at parallelism 1 with the responder pinned, phased
  like the CLI runs and with the same clocks.

``--profile`` adds cProfile tables of an in-process apply (parallelism 1,
``--profile-count`` certificates, the orders run in the main thread so that the
profiler sees them).  Nothing in certform is changed; the clocks wrap functions for
the duration of a sample and put them back.

Any phase that fails (an apply's exit code, a missing certificate, an apply whose
progress lines no longer show every phase, a clock that never ran) ends the script
with a non-zero exit; ``--smoke`` runs them all at a tiny N in the test suite
(tests/test_bench_smoke.py).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

# ``python bench/acme.py`` puts bench/ first on sys.path, where this file would shadow the
# ``acme`` library certform is built on: take bench/ off, put the repository root on (for
# bench.plan_apply and the lab helper in tests/).
_BENCH = Path(__file__).resolve().parent
for _entry in [p for p in sys.path if Path(p or ".").resolve() == _BENCH]:
    sys.path.remove(_entry)
sys.path.insert(0, str(_BENCH.parent))

from reconciler.progress import message_of  # noqa: E402  (after the path fix above)

MASTER_KEY_ENV = "CERTFORM_MASTER_KEY"
DOMAIN = "example.test"
AUTHORITY = "pebble"
BARE_POLL = 0.01
GOAL_FACTOR = 2.0
SMOKE_COUNT, SMOKE_PARALLELISM = 3, [1, 2]
PROGRESS_RE = re.compile(r"^(authority|certificate|binding)\.(\S+?): (\w+)(…| done| FAILED)")


def cert_name(i: int) -> str:
    return f"c{i:04d}"


# -- config ------------------------------------------------------------------------------
def write_config(directory: Path, n: int, directory_url: str, ca_bundle: str, port: int) -> Path:
    lines = [
        "authorities:",
        f"  {AUTHORITY}:",
        "    type: acme",
        f"    directory: {directory_url}",
        f"    contact: [mailto:ops@{DOMAIN}]",
        "    terms_of_service_agreed: true",
        f"    ca_bundle: {ca_bundle}",
        "    solvers:",
        f"      - http01: {{standalone: {{address: '127.0.0.1:{port}'}}}}",
        "",
        "certificates:",
    ]
    for i in range(n):
        name = cert_name(i)
        lines.append(f"  {name}: {{names: [{name}.{DOMAIN}], issuer: {AUTHORITY}, key: ec-p256}}")
    lines += ["", "bindings:"]
    for i in range(n):
        name = cert_name(i)
        lines.append(f"  - {{certificate: {name}, target: {{type: files, directory: out/{name}}}}}")
    path = directory / "certform.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


# -- certform through the CLI ------------------------------------------------------------
@dataclass
class TimedRun:
    """A child run with the arrival time of each output line (seconds since start)."""

    seconds: float
    returncode: int
    cpu: float
    lines: list[tuple[float, str]] = field(repr=False)

    @property
    def output(self) -> str:
        return "\n".join(text for _, text in self.lines)


def run_timed(argv: list[str], cwd: Path, env: dict[str, str]) -> TimedRun:
    """Run ``argv``, stamping each line as it arrives (click flushes every echo)."""
    lines: list[tuple[float, str]] = []
    start = time.perf_counter()
    proc = subprocess.Popen(
        argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    assert proc.stdout is not None
    for raw in proc.stdout:
        lines.append((time.perf_counter() - start, raw.decode(errors="replace").rstrip("\n")))
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    cpu = usage.ru_utime + usage.ru_stime
    return TimedRun(seconds, proc.returncode, cpu, lines)


def apply_phases(run: TimedRun) -> dict[str, float]:
    """Phases of an apply from its progress lines (the ACME orders of a run are one
    batch: every certificate is journaled and announced, then the orders run, then
    each is recorded, see ``engine/runner.run_batch``)."""
    marks: dict[str, float] = {}
    for stamp, line in run.lines:
        text = message_of(line)
        if text.startswith("Placing ") and "ACME order" in text:
            marks.setdefault("placing", stamp)
            continue
        match = PROGRESS_RE.match(text)
        if not match:
            continue
        kind = match.group(1)
        if kind == "certificate" and match.group(4) == "…":
            continue  # announced before the orders are placed
        marks.setdefault(f"{kind} first", stamp)
        marks[f"{kind} last"] = stamp
    phases: dict[str, float] = {}
    bounds = [
        ("start-up, load, plan", 0.0, marks.get("authority first")),
        ("account registration", marks.get("authority first"), marks.get("authority last")),
        ("keys + journal (main thread)", marks.get("authority last"), marks.get("placing")),
        ("ACME orders", marks.get("placing"), marks.get("certificate first")),
        ("record certificates", marks.get("certificate first"), marks.get("certificate last")),
        ("files targets", marks.get("certificate last"), marks.get("binding last")),
        ("finish + exit", marks.get("binding last"), run.seconds),
    ]
    for name, low, high in bounds:
        if low is not None and high is not None:
            phases[name] = high - low
    return phases


APPLY_PHASES = (
    "start-up, load, plan",
    "account registration",
    "keys + journal (main thread)",
    "ACME orders",
    "record certificates",
    "files targets",
    "finish + exit",
)


def require_phases(what: str, phases: dict[str, float], output: str) -> None:
    """Every phase must be found in the progress lines: when certform's messages change,
    the split must fail loudly rather than print a table with holes."""
    missing = [name for name in APPLY_PHASES if name not in phases]
    if missing:
        tail = "\n".join(output.splitlines()[-20:])
        sys.exit(f"bench: {what}: phases not found in the progress lines: {missing}\n{tail}")


@dataclass
class ApplyRow:
    parallelism: int
    run: TimedRun
    phases: dict[str, float]
    n: int

    @property
    def rate(self) -> float:
        return self.n / self.run.seconds


def certform_command() -> list[str]:
    from bench.plan_apply import certform_command as command

    return command()


def bench_apply(n: int, parallelism: int, pebble: Any, env: dict[str, str], keep: bool) -> ApplyRow:
    workdir = Path(tempfile.mkdtemp(prefix=f"certform-bench-acme-p{parallelism}-"))
    try:
        write_config(workdir, n, pebble.directory_url, pebble.ca_bundle, pebble.http_port)
        argv = [*certform_command(), "apply", "--auto-approve", "--parallelism", str(parallelism)]
        run = run_timed(argv, workdir, env)
        tail = "\n".join(run.output.splitlines()[-20:])
        if run.returncode != 0 or "Apply complete" not in run.output:
            sys.exit(f"bench: apply --parallelism {parallelism} exited {run.returncode}\n{tail}")
        written = sum(1 for i in range(n) if (workdir / "out" / cert_name(i) / "cert.pem").exists())
        if written != n:
            sys.exit(f"bench: P={parallelism}: {written} of {n} cert.pem files written\n{tail}")
        phases = apply_phases(run)
        require_phases(f"apply --parallelism {parallelism}", phases, run.output)
        print(
            f"[P={parallelism}] apply {run.seconds:.2f} s, {n / run.seconds:.1f} certs/s "
            f"(cli CPU {run.cpu:.2f} s)",
            flush=True,
        )
        return ApplyRow(parallelism, run, phases, n)
    finally:
        if keep:
            print(f"[P={parallelism}] kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


# -- the bare acme library ---------------------------------------------------------------
class _Tokens(BaseHTTPRequestHandler):
    tokens: dict[str, str] = {}
    prefix = "/.well-known/acme-challenge/"

    def do_GET(self) -> None:
        token = self.path[len(self.prefix) :] if self.path.startswith(self.prefix) else ""
        body = self.tokens.get(token)
        if body is None:
            self.send_error(404)
            return
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        return None


@contextlib.contextmanager
def responder(port: int) -> Iterator[dict[str, str]]:
    """A tiny http-01 responder on 127.0.0.1:port for the whole bare run."""
    tokens: dict[str, str] = {}
    handler = type("Handler", (_Tokens,), {"tokens": tokens})
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield tokens
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@dataclass
class BareResult:
    n: int
    seconds: float
    sleep: float
    nonce_retries: int

    @property
    def rate(self) -> float:
        return self.n / self.seconds


def bare_issue(names: list[str], pebble: Any) -> BareResult:
    """Sequential issuance with nothing but the ``acme`` library (see the docstring)."""
    import josepy as jose
    from acme import challenges, crypto_util, messages
    from acme.client import ClientNetwork, ClientV2
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    retries = 0
    slept = 0.0

    def call(action: Callable[[], Any]) -> Any:
        nonlocal retries
        while True:
            try:
                return action()
            except messages.Error as exc:
                if exc.code != "badNonce" or retries > 10_000:
                    raise
                retries += 1

    def sleep(seconds: float) -> None:
        nonlocal slept
        start = time.perf_counter()
        time.sleep(seconds)
        slept += time.perf_counter() - start

    start = time.perf_counter()
    with responder(pebble.http_port) as tokens:
        account_key = jose.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
        net = ClientNetwork(
            account_key, alg=jose.ES256, verify_ssl=pebble.ca_bundle, user_agent="bench-bare"
        )
        directory = call(lambda: ClientV2.get_directory(pebble.directory_url, net))
        client = ClientV2(directory, net)
        registration = messages.NewRegistration.from_data(
            email=f"ops@{DOMAIN}", terms_of_service_agreed=True
        )
        net.account = call(lambda: client.new_account(registration))
        for name in names:
            key = ec.generate_private_key(ec.SECP256R1())
            key_pem = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            csr = crypto_util.make_csr(key_pem, [name])
            orderr = call(lambda c=csr: client.new_order(c))
            for authzr in orderr.authorizations:
                challb = next(
                    c for c in authzr.body.challenges if isinstance(c.chall, challenges.HTTP01)
                )
                response, validation = challb.response_and_validation(account_key)
                token = challb.chall.encode("token")
                tokens[token] = validation
                call(lambda c=challb, r=response: client.answer_challenge(c, r))
                while True:
                    authzr, _ = call(lambda a=authzr: client.poll(a))
                    if authzr.body.status == messages.STATUS_VALID:
                        break
                    if authzr.body.status == messages.STATUS_INVALID:
                        sys.exit(f"bench: bare client: validation of {name} failed")
                    sleep(BARE_POLL)
                tokens.pop(token, None)
            orderr = call(lambda o=orderr: client.begin_finalization(o))
            while True:
                reply = call(lambda o=orderr: client._post_as_get(o.uri))
                body = messages.Order.from_json(reply.json())
                if body.status == messages.STATUS_VALID and body.certificate:
                    break
                if body.status == messages.STATUS_INVALID:
                    sys.exit(f"bench: bare client: the order for {name} failed")
                sleep(BARE_POLL)
            pem = call(lambda b=body: client._post_as_get(b.certificate)).text
            if not x509.load_pem_x509_certificates(pem.encode()):
                sys.exit(f"bench: bare client: no certificate for {name}")
    return BareResult(len(names), time.perf_counter() - start, slept, retries)


# -- certform's client in process, instrumented ------------------------------------------
class _Clock:
    """Seconds and calls accumulated by wrapped functions."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.calls = 0

    def wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start
                self.calls += 1

        return timed


class _TimeModule:
    """Stands in for the ``time`` module inside ``reconciler.acme.client``: ``sleep`` is
    timed, everything else is the real module's."""

    def __init__(self, clock: _Clock) -> None:
        self.sleep = clock.wrap(time.sleep)

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


@dataclass
class WaitShare:
    n: int
    seconds: float
    clocks: dict[str, _Clock]

    def share(self, name: str) -> float:
        return self.clocks[name].seconds / self.seconds if self.seconds else float("nan")


@contextlib.contextmanager
def pinned_responder(port: int, pin: bool) -> Iterator[None]:
    """With ``pin``, one extra user of certform's standalone responder for the block, so
    that it is not shut down and started again between sequential orders."""
    from reconciler.acme import http01

    extra = http01.Standalone(f"127.0.0.1:{port}") if pin else None
    try:
        yield
    finally:
        if extra is not None:
            extra.close()


def client_sample(names: list[str], pebble: Any, root: Path, pin: bool = False) -> WaitShare:
    """``AcmeAccount.issue`` for each name, one after the other, with time.sleep, the
    HTTP requests and the standalone responder's start/stop timed (``pin``: see
    ``pinned_responder``)."""
    from reconciler.acme import client as acme_client

    spec = {
        "directory": pebble.directory_url,
        "contact": [f"mailto:ops@{DOMAIN}"],
        "terms_of_service_agreed": True,
        "ca_bundle": pebble.ca_bundle,
        "solvers": [{"http01": {"standalone": {"address": f"127.0.0.1:{pebble.http_port}"}}}],
    }
    account = acme_client.AcmeAccount(AUTHORITY, spec, root, acme_client.new_account_key_der())
    account.register()
    with pinned_responder(pebble.http_port, pin):  # opened and closed outside the clocks
        sample = _timed_orders(account, names)
    # As certform runs, every order starts and stops the responder; pinned, none does.
    wanted = ("http",) if pin else ("http", "responder start", "responder stop")
    require_clocks(f"sample{', pinned' if pin else ''}", sample.clocks, wanted)
    return sample


def _timed_orders(account: Any, names: list[str]) -> WaitShare:
    from reconciler.pki.keys import generate_private_key, private_key_to_pem

    keys = [private_key_to_pem(generate_private_key("ec-p256")) for _ in names]
    with instrumented() as clocks:
        start = time.perf_counter()
        for name, key_pem in zip(names, keys, strict=True):
            account.issue([name], key_pem, lambda _message: None)
        seconds = time.perf_counter() - start
    return WaitShare(len(names), seconds, clocks)


def require_clocks(what: str, clocks: dict[str, _Clock], names: tuple[str, ...]) -> None:
    """The wrapped functions must have run: a clock that never ran means certform no
    longer calls what it wraps, and its share would read as a silent 0%."""
    idle = [name for name in names if not clocks[name].calls]
    if idle:
        sys.exit(f"bench: {what}: these clocks never ran (renamed in certform?): {idle}")


@contextlib.contextmanager
def instrumented() -> Iterator[dict[str, _Clock]]:
    """Time ``time.sleep`` in certform's ACME client, its HTTP requests (``_Network``)
    and the http-01 standalone responder's start and stop, for the block."""
    from reconciler.acme import client as acme_client
    from reconciler.acme import http01

    clocks = {name: _Clock() for name in ("sleep", "http", "responder start", "responder stop")}
    saved = (
        acme_client.time,
        acme_client._Network._send_request,
        http01.Standalone.__init__,
        http01.Standalone.close,
    )
    acme_client.time = _TimeModule(clocks["sleep"])  # type: ignore[assignment]
    acme_client._Network._send_request = clocks["http"].wrap(saved[1])  # type: ignore[method-assign]
    http01.Standalone.__init__ = clocks["responder start"].wrap(saved[2])  # type: ignore[method-assign]
    http01.Standalone.close = clocks["responder stop"].wrap(saved[3])  # type: ignore[method-assign]
    try:
        yield clocks
    finally:
        acme_client.time = saved[0]  # type: ignore[assignment]
        acme_client._Network._send_request = saved[1]  # type: ignore[method-assign]
        http01.Standalone.__init__ = saved[2]  # type: ignore[method-assign]
        http01.Standalone.close = saved[3]  # type: ignore[method-assign]


# -- in-process apply (for --profile) ----------------------------------------------------
def in_process_apply(
    config: Path, parallelism: int, progress: Callable[[str], None] | None = None
) -> Any:
    """The CLI's ``apply --auto-approve --parallelism P`` in this process."""
    from reconciler.config.validate import load_and_validate
    from reconciler.engine.apply import run_apply
    from reconciler.engine.planning import plan_from
    from reconciler.engine.workspace import open_store
    from reconciler.plan.render import render_plan

    validated = load_and_validate(config, {})
    store = open_store(validated.config.state, validated.root, validated.config.providers)
    store.open()
    store.lock("apply", 0.0)
    try:
        recorded = store.read()
        plan = plan_from(validated, recorded, str(store.path.resolve()), datetime.now(UTC))
        render_plan(plan)
        report = progress or (lambda _message: None)
        result = run_apply(store, plan, recorded, report, parallelism)
    finally:
        store.unlock()
        store.close()
    if not result.ok:
        sys.exit(f"bench: in-process apply failed: {result.failed}")
    return result


class _InlineExecutor:
    """``ThreadPoolExecutor`` stand-in running ``map`` in the calling thread: cProfile
    (Python 3.11) only sees the thread it was enabled in."""

    def __init__(self, max_workers: int | None = None) -> None:
        self.max_workers = max_workers

    def __enter__(self) -> _InlineExecutor:
        return self

    def __exit__(self, *_exc: object) -> None:
        return None

    def map(self, fn: Callable[[Any], Any], items: Any) -> Iterator[Any]:
        return iter([fn(item) for item in items])


def run_profile(n: int, pebble: Any, top: int) -> None:
    from bench.plan_apply import profile
    from reconciler.issuers import acme_orders

    workdir = Path(tempfile.mkdtemp(prefix="certform-bench-acme-profile-"))
    saved = acme_orders.ThreadPoolExecutor
    acme_orders.ThreadPoolExecutor = _InlineExecutor  # type: ignore[misc, assignment]
    try:
        config = write_config(workdir, n, pebble.directory_url, pebble.ca_bundle, pebble.http_port)
        label = f"in-process apply, N={n}, parallelism 1, orders in the main thread"
        profile(label, lambda: in_process_apply(config, 1), top)
    finally:
        acme_orders.ThreadPoolExecutor = saved  # type: ignore[misc]
        shutil.rmtree(workdir, ignore_errors=True)


@dataclass
class PinnedApply:
    n: int
    seconds: float
    phases: dict[str, float]
    clocks: dict[str, _Clock]

    @property
    def rate(self) -> float:
        return self.n / self.seconds


def pinned_apply(n: int, pebble: Any) -> PinnedApply:
    """An in-process apply (parallelism 1) with the responder pinned: what the CLI's
    sequential apply would cost without the per-order responder restart; phased like
    the CLI runs (from the progress messages) and with the client's clocks."""
    workdir = Path(tempfile.mkdtemp(prefix="certform-bench-acme-pinned-"))
    lines: list[tuple[float, str]] = []
    try:
        config = write_config(workdir, n, pebble.directory_url, pebble.ca_bundle, pebble.http_port)
        with pinned_responder(pebble.http_port, True), instrumented() as clocks:
            start = time.perf_counter()

            def progress(message: str) -> None:
                lines.append((time.perf_counter() - start, message))

            in_process_apply(config, 1, progress)
            seconds = time.perf_counter() - start
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    timed_run = TimedRun(seconds, 0, 0.0, lines)
    phases = apply_phases(timed_run)
    require_phases("in-process apply, pinned", phases, timed_run.output)
    require_clocks("in-process apply, pinned", clocks, ("http",))
    return PinnedApply(n, seconds, phases, clocks)


# -- report ------------------------------------------------------------------------------
def report(
    n: int,
    rows: list[ApplyRow],
    bare: BareResult,
    samples: tuple[WaitShare, WaitShare],
    pinned: PinnedApply,
    cli: list[str],
) -> None:
    print(f"\n== certform ACME benchmark: Pebble, http-01 standalone, N={n} ==")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPU(s), CLI {cli[0]}")
    header = f"{'parallelism':>11} {'wall s':>8} {'certs/s':>8} {'cli CPU s':>10} {'orders s':>9}"
    print(header)
    print("-" * len(header))
    for row in rows:
        orders = row.phases.get("ACME orders", float("nan"))
        print(
            f"{row.parallelism:>11} {row.run.seconds:>8.2f} {row.rate:>8.1f} "
            f"{row.run.cpu:>10.2f} {orders:>9.2f}"
        )
    print(
        f"{'bare acme':>11} {bare.seconds:>8.2f} {bare.rate:>8.1f}"
        f"   (sequential, in process; {bare.nonce_retries} badNonce retried; "
        f"{bare.sleep:.2f} s = {bare.sleep / bare.seconds:.0%} in its 10 ms polls)"
    )
    sequential = next((row for row in rows if row.parallelism == 1), None)
    if sequential is not None:
        slowdown = bare.rate / sequential.rate
        verdict = "PASS" if slowdown <= GOAL_FACTOR else "MISS"
        print(
            f"\ncertform P=1 vs bare: {sequential.rate:.1f} vs {bare.rate:.1f} certs/s, "
            f"{sequential.rate / bare.rate:.2f}x the bare rate (bare/certform = {slowdown:.2f}); "
            f"{verdict} goal: within a factor {GOAL_FACTOR:g}"
        )
    print(
        "what-if, in-process apply P=1 with the http-01 responder pinned (no per-order "
        f"restart; no interpreter start-up): {pinned.seconds:.2f} s, {pinned.rate:.1f} certs/s, "
        f"{pinned.rate / bare.rate:.2f}x the bare rate (bare/certform = "
        f"{bare.rate / pinned.rate:.2f})"
    )

    plain, pin = samples
    columns = [
        ("sample as is", plain),
        ("sample pinned", pin),
        ("apply P=1 pinned", WaitShare(pinned.n, pinned.seconds, pinned.clocks)),
    ]
    print(
        f"\nwait share: certform's client in process; samples: {plain.n} sequential "
        f"AcmeAccount.issue; apply: the what-if above (all {pinned.n} certificates, whole "
        "apply). Per certificate, and share of the column's wall time:"
    )
    label = "  {:<26}" + "{:>20}" * len(columns)
    print(label.format("", *(title for title, _ in columns)))
    print(label.format("total", *(f"{s.seconds / s.n * 1000:.1f} ms" for _, s in columns)))
    for name in plain.clocks:
        cells = [
            f"{s.clocks[name].seconds / s.n * 1000:.1f} ms {s.share(name):>4.0%}"
            for _, s in columns
        ]
        print(label.format(f"in {name}", *cells))
    cells = []
    for _, s in columns:
        rest = s.seconds - sum(c.seconds for c in s.clocks.values())
        cells.append(f"{rest / s.n * 1000:.1f} ms {rest / s.seconds:>4.0%}")
    print(label.format("rest (CPU, engine, disk)", *cells))
    waits = [s.share("sleep") + s.share("responder stop") for _, s in columns]
    print(label.format("waiting (sleep + stop)", *(f"{w:.0%}" for w in waits)))

    print("\napply phases (seconds, from the arrival of progress lines; 'pinned': the what-if,")
    print("in process, so no interpreter start-up):")
    table = [(f"P={row.parallelism}", row.phases) for row in rows]
    table.append(("P=1 pinned", pinned.phases))
    names = list(dict.fromkeys(name for _, phases in table for name in phases))
    width = max(len(name) for name in names)
    print("  " + " " * width + "".join(f"{title:>12}" for title, _ in table))
    for name in names:
        cells = "".join(f"{phases.get(name, float('nan')):>12.2f}" for _, phases in table)
        print(f"  {name:<{width}}{cells}")
    if sequential is not None:
        orders = sequential.phases.get("ACME orders", float("nan"))
        rest = sequential.run.seconds - orders
        pinned_orders = pinned.phases.get("ACME orders", float("nan"))
        print(
            f"\nper certificate at P=1: orders {orders / n * 1000:.1f} ms (pinned "
            f"{pinned_orders / n * 1000:.1f} ms), everything else {rest / n * 1000:.1f} ms "
            f"(start-up, keys + journal, recording, files); bare client "
            f"{bare.seconds / n * 1000:.1f} ms."
        )


# -- main --------------------------------------------------------------------------------
def parse_parallelism(text: str) -> list[int]:
    values = [int(part) for part in text.split(",") if part.strip()]
    if not values or any(v < 1 or v > 100 for v in values):
        raise argparse.ArgumentTypeError("a comma-separated list of 1..100")
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=200, help="Certificates per run.")
    parser.add_argument(
        "--parallelism",
        type=parse_parallelism,
        default=[1, 4, 10],
        help="Comma-separated values for apply --parallelism (default 1,4,10).",
    )
    parser.add_argument(
        "--sample", type=int, default=20, help="Orders in each in-process wait-share sample."
    )
    parser.add_argument("--keep", action="store_true", help="Keep the temp directories.")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="Also cProfile an in-process apply (parallelism 1) of --profile-count certificates.",
    )
    parser.add_argument("--profile-count", type=int, default=20)
    parser.add_argument("--top", type=int, default=30, help="Rows per profile table.")
    parser.add_argument(
        "--no-bytecode-cache",
        action="store_true",
        help="Run the CLI with the inherited environment as is (see bench/plan_apply.py).",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help=f"Every phase once, N = {SMOKE_COUNT}, parallelism "
        f"{','.join(map(str, SMOKE_PARALLELISM))}, profile included (seconds): checks that "
        "the benchmark still runs, measures nothing worth reading.",
    )
    args = parser.parse_args()
    if args.smoke:
        args.count, args.parallelism, args.sample = SMOKE_COUNT, SMOKE_PARALLELISM, 2
        args.profile, args.profile_count, args.top = True, 2, 5

    from tests.acme_lab import ChallTestSrv, PebbleLab, challtestsrv_binary, pebble_binary

    if pebble_binary() is None or challtestsrv_binary() is None:
        sys.exit("bench: pebble and pebble-challtestsrv are needed (apt-get install pebble)")

    env = dict(os.environ)
    env[MASTER_KEY_ENV] = base64.b64encode(os.urandom(32)).decode()
    # SIGTERM (e.g. a timeout) unwinds through the finally blocks that stop the servers
    # and remove the temp directories.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    env.pop("NO_COLOR", None)
    os.environ[MASTER_KEY_ENV] = env[MASTER_KEY_ENV]  # for the in-process applies
    cli = certform_command()
    lab_dir = Path(tempfile.mkdtemp(prefix="certform-bench-acme-lab-"))
    cache = None
    if not args.no_bytecode_cache:
        # As in plan_apply.py: .pyc files in a private prefix, like an installed tool.
        cache = tempfile.mkdtemp(prefix="certform-bench-pyc-")
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = cache
        run_timed([*cli, "--version"], Path(cache), env)  # fill the cache
    dns = pebble = None
    try:
        dns = ChallTestSrv.start(lab_dir / "challtestsrv")
        runs = iter(range(1000))

        def fresh_pebble() -> PebbleLab:
            """A new Pebble per phase: Pebble 2.4 was seen to stop answering new-order
            after about a thousand orders in one process."""
            nonlocal pebble
            if pebble is not None:
                pebble.stop()
            pebble = PebbleLab.start(lab_dir / f"pebble-{next(runs)}", dns_server=dns.dns_address)
            return pebble

        first = fresh_pebble()
        print(f"pebble {first.directory_url}, http-01 on port {first.http_port}", flush=True)
        names = [f"{cert_name(i)}.{DOMAIN}" for i in range(args.count)]

        bare = bare_issue(names, first)
        print(f"[bare] {bare.seconds:.2f} s, {bare.rate:.1f} certs/s", flush=True)
        rows = [
            bench_apply(args.count, p, fresh_pebble(), env, args.keep) for p in args.parallelism
        ]
        sample_lab = fresh_pebble()
        samples = (
            client_sample(names[: args.sample], sample_lab, lab_dir),
            client_sample(names[: args.sample], sample_lab, lab_dir, pin=True),
        )
        for label, sample in zip(("as is", "pinned"), samples, strict=True):
            print(f"[sample, {label}] {sample.n} orders in {sample.seconds:.2f} s", flush=True)
        pinned = pinned_apply(args.count, fresh_pebble())
        print(f"[in-process apply P=1, pinned] {pinned.seconds:.2f} s", flush=True)
        report(args.count, rows, bare, samples, pinned, cli)
        if args.profile:
            run_profile(args.profile_count, fresh_pebble(), args.top)
    finally:
        if pebble is not None:
            pebble.stop()
        if dns is not None:
            dns.stop()
        shutil.rmtree(lab_dir, ignore_errors=True)
        if cache:
            shutil.rmtree(cache, ignore_errors=True)


if __name__ == "__main__":
    main()
