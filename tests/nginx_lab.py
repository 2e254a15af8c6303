"""A real nginx for tests: one foreground master on 127.0.0.1, several SNI servers on one port.

Everything nginx writes (pid, logs, temp directories) lives under the lab's
prefix, so labs run side by side and leave nothing behind.  ``test_command`` and
``reload_command`` are the argv certform is configured with to validate and
reload this nginx, exactly as it would for a system nginx.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509

from reconciler.pki.builder import certificate_to_pem
from reconciler.pki.keys import PrivateKey, private_key_to_pem
from reconciler.providers.tls_probe import probe
from tests.aws_lab import free_port
from tests.selfsigned import self_signed

_START_TIMEOUT = 10.0
_STOP_TIMEOUT = 10.0
_TEMP_PATHS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


def nginx_binary() -> str | None:
    """Path of nginx, or None; Debian installs it in /usr/sbin, which is often not on PATH."""
    found = shutil.which("nginx")
    if found:
        return found
    fallback = Path("/usr/sbin/nginx")
    return str(fallback) if os.access(fallback, os.X_OK) else None


@dataclass(frozen=True)
class ServerSpec:
    """One ``server {}`` block: the SNI name, its certificate and key files, an optional include."""

    server_name: str
    certificate_path: Path
    key_path: Path
    include: Path | None = None


@dataclass
class NginxLab:
    """A running nginx master; use ``start`` to make one and ``stop`` (or ``with``) to end it."""

    port: int
    prefix: Path
    conf: Path
    binary: str
    process: subprocess.Popen[bytes]
    test_command: list[str] = field(default_factory=list)
    reload_command: list[str] = field(default_factory=list)
    _stopped: bool = field(default=False, init=False, repr=False)

    @classmethod
    def start(cls, directory: Path, servers: list[ServerSpec]) -> NginxLab:
        """Write ``nginx.conf`` under ``directory``, start nginx and wait until the port answers.

        The certificate and key files must already exist; include files are created
        empty when absent.  Raises RuntimeError (with nginx's output) if it does not start.
        """
        binary = nginx_binary()
        if binary is None:
            raise RuntimeError("nginx is not installed (apt-get install nginx)")
        if not servers:
            raise ValueError("an nginx lab needs at least one server")
        prefix = directory.resolve()
        prefix.mkdir(parents=True, exist_ok=True)
        _prepare_files(servers)
        port = free_port()
        conf = prefix / "nginx.conf"
        conf.write_text(_render_conf(prefix, port, servers))
        base = [binary, "-c", str(conf), "-p", str(prefix)]
        output = (prefix / "nginx.out").open("wb")
        with output:
            process = subprocess.Popen(
                [*base, "-g", "daemon off;"],
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stop() reaches the workers too
            )
        lab = cls(port, prefix, conf, binary, process, [*base, "-t"], [*base, "-s", "reload"])
        try:
            lab._wait_until_listening()
        except BaseException:
            lab.stop()
            raise
        return lab

    def reload(self) -> None:
        """``nginx -t`` then ``nginx -s reload``, as a deploy does; raises on failure."""
        for command in (self.test_command, self.reload_command):
            subprocess.run(command, check=True, capture_output=True, timeout=30)

    def stop(self) -> None:
        """Stop master and workers (SIGTERM, then SIGKILL after a grace period); idempotent."""
        if self._stopped:
            return
        self._stopped = True
        if self.process.returncode is None:
            _signal_group(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                _signal_group(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=_STOP_TIMEOUT)
        # Workers leave with the master; this only catches an orphan that did not.
        _signal_group(self.process.pid, signal.SIGKILL)

    def output(self) -> str:
        """What nginx printed and logged so far, for assertion messages."""
        parts = [self.prefix / "nginx.out", self.prefix / "logs" / "error.log"]
        return "\n".join(p.read_text(errors="replace") for p in parts if p.exists())

    def __enter__(self) -> NginxLab:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _wait_until_listening(self) -> None:
        deadline = time.monotonic() + _START_TIMEOUT
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"nginx exited with {self.process.returncode}:\n{self.output()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    message = f"nginx did not listen on {self.port}:\n{self.output()}"
                    raise RuntimeError(message) from None
                time.sleep(0.01)


def write_self_signed(cert_path: Path, key_path: Path, name: str) -> x509.Certificate:
    """A throwaway self-signed EC certificate for ``name``, written as PEM files; returns it."""
    cert, key = self_signed(name)
    write_pem_files(cert_path, key_path, [cert], key)
    return cert


def write_pem_files(
    cert_path: Path, key_path: Path, certificates: Sequence[x509.Certificate], key: PrivateKey
) -> None:
    """Write a certificate chain (leaf first) and its key, each replaced atomically; key 0600."""
    _replace(cert_path, "".join(certificate_to_pem(c) for c in certificates).encode(), 0o644)
    _replace(key_path, private_key_to_pem(key), 0o600)


def _replace(path: Path, data: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(temporary, path)


def _prepare_files(servers: Sequence[ServerSpec]) -> None:
    for server in servers:
        for path in (server.certificate_path, server.key_path):
            if not path.is_file():
                raise FileNotFoundError(f"{server.server_name}: {path} must exist before start")
        if server.include is not None and not server.include.exists():
            server.include.parent.mkdir(parents=True, exist_ok=True)
            server.include.touch()


def _render_conf(prefix: Path, port: int, servers: Sequence[ServerSpec]) -> str:
    """The whole nginx.conf: every path nginx writes points under ``prefix``."""
    (prefix / "logs").mkdir(exist_ok=True)
    temp = prefix / "temp"
    lines = [
        # Workers must read 0600 keys written by the (root) test; "user" is an error otherwise.
        *(["user root root;"] if os.geteuid() == 0 else []),
        "worker_processes 1;",
        f"pid {_quote(prefix / 'nginx.pid')};",
        f"error_log {_quote(prefix / 'logs' / 'error.log')} notice;",
        "events { worker_connections 64; }",
        "http {",
        f"    access_log {_quote(prefix / 'logs' / 'access.log')};",
        "    ssl_protocols TLSv1.2 TLSv1.3;",  # nginx 1.22's default lacks TLSv1.3
    ]
    for kind in _TEMP_PATHS:
        (temp / kind).mkdir(parents=True, exist_ok=True)
        lines.append(f"    {kind}_temp_path {_quote(temp / kind)};")
    for index, server in enumerate(servers):
        lines += _server_block(port, server, default=index == 0)
    lines.append("}")
    return "\n".join(lines) + "\n"


def _server_block(port: int, server: ServerSpec, *, default: bool) -> list[str]:
    listen = f"127.0.0.1:{port} ssl" + (" default_server" if default else "")
    block = [
        "    server {",
        f"        listen {listen};",
        f"        server_name {server.server_name};",
        f"        ssl_certificate {_quote(server.certificate_path.resolve())};",
        f"        ssl_certificate_key {_quote(server.key_path.resolve())};",
        '        location / { return 200 "ok"; }',
    ]
    if server.include is not None:
        block.append(f"        include {_quote(server.include.resolve())};")
    return [*block, "    }"]


def _quote(path: Path) -> str:
    text = str(path)
    if any(c in text for c in '"\\'):
        raise ValueError(f"unsupported character in path {text!r}")
    return f'"{text}"'


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def served_serial_once_reloaded(port: int, name: str, expected: str, timeout: float = 5.0) -> str:
    """The serial (hex) nginx presents for ``name``, asked until it is ``expected`` or
    ``timeout`` passes: ``nginx -s reload`` returns once the master is signalled, and
    the old workers answer with the old certificate until the new ones are up."""
    deadline = time.monotonic() + timeout
    while True:
        serial = format(probe("127.0.0.1", port, name, timeout=timeout).leaf.serial_number, "x")
        if serial == expected or time.monotonic() > deadline:
            return serial
        time.sleep(0.1)
