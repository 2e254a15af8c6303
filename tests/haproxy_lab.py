"""A real HAProxy for tests: master-worker, foreground, on 127.0.0.1 free ports.

``HaproxyLab.start(directory)`` writes a config, a crt-list and a self-signed
default certificate into ``directory`` and runs ``haproxy -db -W -f CFG`` in its
own process group.  Tests talk to it exactly as certform does: over the runtime
API socket and with real TLS handshakes (``served_serial``).  ``stop()`` kills
the whole group; an ``atexit`` hook does the same if a test run dies first.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509

from reconciler.pki.builder import certificate_to_pem
from reconciler.pki.keys import private_key_to_pem
from reconciler.providers.haproxy_runtime import HaproxyError, HaproxyRuntime
from tests.aws_lab import free_port
from tests.selfsigned import self_signed

DEFAULT_NAME = "default.invalid"
_MAX_UNIX_PATH = 100  # sun_path is 108 bytes; keep a margin
_START_TIMEOUT = 10.0

_CONFIG = """\
global
    stats socket {socket} level admin expose-fd listeners
    stats socket ipv4@{tcp_address} level admin
    maxconn 256

defaults
    mode http
    timeout connect 2s
    timeout client 10s
    timeout server 10s

frontend https
    bind 127.0.0.1:{port} ssl crt-list {crt_list}
    http-request return status 200
"""


def haproxy_binary() -> str | None:
    """Path of the haproxy executable, or None when it is not installed."""
    found = shutil.which("haproxy")
    if found:
        return found
    for candidate in ("/usr/sbin/haproxy", "/usr/local/sbin/haproxy"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def served_serial(port: int, server_name: str, timeout: float = 3.0) -> str:
    """Serial (lowercase hex, no leading zeros) of the leaf served for SNI ``server_name``."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw,
        context.wrap_socket(raw, server_hostname=server_name) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    if der is None:
        raise RuntimeError(f"no certificate served on port {port} for {server_name}")
    return format(x509.load_der_x509_certificate(der).serial_number, "x")


@dataclass
class Handshakes:
    """What a handshake loop saw: served serials in order, and the failures."""

    seen: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def assert_swapped(self, old: str, new: str) -> None:
        """No handshake failed, many were made, ``old`` was served first and ``new``
        last, and once ``new`` appeared ``old`` never came back."""
        assert new != old
        assert self.failures == []
        assert len(self.seen) > 50, len(self.seen)
        assert self.seen[0] == old and self.seen[-1] == new
        assert old not in self.seen[self.seen.index(new) :]


@contextlib.contextmanager
def handshake_loop(port: int, server_name: str) -> Iterator[Handshakes]:
    """Handshakes with ``server_name`` back to back in a thread while the block runs
    (0.2 s before and after it too), recording every served serial and failure."""
    result = Handshakes()
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            try:
                result.seen.append(served_serial(port, server_name, timeout=2))
            except Exception as exc:
                result.failures.append(repr(exc))

    thread = threading.Thread(target=client)
    thread.start()
    try:
        time.sleep(0.2)
        yield result
        time.sleep(0.2)
    finally:
        stop.set()
        thread.join()


@dataclass
class HaproxyLab:
    """A running HAProxy; see the module docstring."""

    directory: Path
    cfg: Path
    socket: str
    tcp_address: str
    port: int
    crt_dir: Path
    crt_list: Path
    default_serial: str
    binary: str
    log: Path
    process: subprocess.Popen[bytes] | None = None
    _scratch: Path | None = field(default=None, repr=False)

    @classmethod
    def start(cls, directory: Path) -> HaproxyLab:
        """Write the config into ``directory``, start HAProxy and wait until it serves."""
        binary = haproxy_binary()
        if binary is None:
            raise RuntimeError("haproxy is not installed")
        lab = cls._prepare(Path(directory).resolve(), binary)
        atexit.register(lab.stop)
        try:
            lab._launch()
            lab.wait_ready()
        except BaseException:
            lab.stop()
            raise
        return lab

    @classmethod
    def _prepare(cls, directory: Path, binary: str) -> HaproxyLab:
        crt_dir = directory / "certs"
        crt_dir.mkdir(parents=True, exist_ok=True)
        default_pem, default_serial = _self_signed_default()
        default_path = crt_dir / "default.pem"
        default_path.write_text(default_pem)
        crt_list = directory / "crt-list.txt"
        crt_list.write_text(f"{default_path}\n")
        sock, scratch = _socket_path(directory)
        lab = cls(
            directory=directory,
            cfg=directory / "haproxy.cfg",
            socket=sock,
            tcp_address=f"127.0.0.1:{free_port()}",
            port=free_port(),
            crt_dir=crt_dir,
            crt_list=crt_list,
            default_serial=default_serial,
            binary=binary,
            log=directory / "haproxy.log",
            _scratch=scratch,
        )
        lab.cfg.write_text(
            _CONFIG.format(
                socket=lab.socket, tcp_address=lab.tcp_address, port=lab.port, crt_list=crt_list
            )
        )
        return lab

    def _launch(self) -> None:
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [self.binary, "-db", "-W", "-f", str(self.cfg)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: stop() kills master and workers
            )

    def runtime(self, timeout: float = 5.0) -> HaproxyRuntime:
        """A runtime API client on the lab's unix socket."""
        return HaproxyRuntime(self.socket, timeout=timeout)

    def worker_pid(self) -> int:
        """Pid of the worker answering the stats socket (changes on reload)."""
        for line in self.runtime(timeout=1.0).execute("show info").splitlines():
            if line.startswith("Pid:"):
                return int(line.split(":", 1)[1])
        raise RuntimeError("HAProxy 'show info' reported no Pid")

    def wait_ready(self, timeout: float = _START_TIMEOUT) -> None:
        """Block until HAProxy serves HTTPS, answers the runtime API and can be reloaded.

        The master (re-executed on every reload) ignores SIGUSR2 for a few
        milliseconds after the worker is up; a reload sent then would be lost.
        """
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.worker_pid()
                served_serial(self.port, DEFAULT_NAME, timeout=1.0)
                if not self._master_catches_sigusr2():
                    raise RuntimeError("master not yet handling SIGUSR2")
                return
            except (OSError, HaproxyError, RuntimeError, ssl.SSLError):
                self._check_alive()
                if time.monotonic() > deadline:
                    message = f"HAProxy not ready after {timeout:g} s: {self._tail()}"
                    raise RuntimeError(message) from None
                time.sleep(0.01)

    def reload(self, timeout: float = _START_TIMEOUT) -> None:
        """Reload like ``haproxy -sf``: SIGUSR2 to the master, wait for the new worker.

        Runtime API changes are lost: the new worker reads the files again.
        """
        if self.process is None:
            raise RuntimeError("HAProxy lab is not running")
        old_worker = self.worker_pid()
        os.kill(self.process.pid, signal.SIGUSR2)
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(OSError, HaproxyError, RuntimeError):
                if self.worker_pid() != old_worker:
                    break
            self._check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"HAProxy did not reload within {timeout:g} s: {self._tail()}")
            time.sleep(0.01)
        self.wait_ready(max(deadline - time.monotonic(), 1.0))

    def stop(self) -> None:
        """Terminate master and workers (the whole process group); safe to call twice."""
        atexit.unregister(self.stop)
        process, self.process = self.process, None
        if process is not None:
            _stop_group(process)
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    def _master_catches_sigusr2(self) -> bool:
        """Whether the master has its SIGUSR2 handler installed (Linux /proc; else assume so)."""
        if self.process is None:
            return False
        try:
            status = Path(f"/proc/{self.process.pid}/status").read_text()
        except OSError:
            return True
        masks = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        bit = 1 << (signal.SIGUSR2 - 1)
        caught = int(masks.get("SigCgt", "0").strip(), 16) & bit
        ignored = int(masks.get("SigIgn", "0").strip(), 16) & bit
        return bool(caught) and not ignored

    def _check_alive(self) -> None:
        if self.process is None or self.process.poll() is not None:
            raise RuntimeError(f"HAProxy exited: {self._tail()}")

    def _tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-2000:].strip() or "(no output)"
        except OSError:
            return "(no log)"


def running_haproxy(directory: Path) -> Iterator[HaproxyLab]:
    """A fixture's body: one HAProxy in ``directory`` (skips without haproxy)."""
    import pytest

    if haproxy_binary() is None:
        pytest.skip("haproxy is not installed (apt-get install haproxy)")
    lab = HaproxyLab.start(directory)
    yield lab
    lab.stop()


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the group, SIGKILL what is left, then reap the master.

    The master is reaped last: until then its pid (the group id) cannot be reused,
    so the signals can only reach processes this lab started.
    """
    group = process.pid
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGTERM)
    deadline = time.monotonic() + 5.0
    while not _exited(group) and time.monotonic() < deadline:
        time.sleep(0.01)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGKILL)
    process.wait(timeout=10)


def _exited(pid: int) -> bool:
    """True once ``pid`` (our child) has exited, without reaping it."""
    try:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True
    return info is not None


def _socket_path(directory: Path) -> tuple[str, Path | None]:
    """The stats socket path; in a short scratch directory when ``directory`` is too deep."""
    preferred = directory / "admin.sock"
    if len(str(preferred)) <= _MAX_UNIX_PATH:
        return str(preferred), None
    scratch = Path(tempfile.mkdtemp(prefix="haproxy-lab-"))
    return str(scratch / "admin.sock"), scratch


def _self_signed_default() -> tuple[str, str]:
    """PEM (certificate + key) and serial of an EC certificate for ``default.invalid``."""
    cert, key = self_signed(DEFAULT_NAME)
    pem = certificate_to_pem(cert) + private_key_to_pem(key).decode("ascii")
    return pem, format(cert.serial_number, "x")
