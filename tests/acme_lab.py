"""A real ACME CA for tests: Debian's Pebble (and pebble-challtestsrv) on 127.0.0.1.

``PebbleLab.start(directory)`` generates a small CA and a server certificate for
Pebble's own HTTPS listeners (Debian ships none), writes a Pebble config and runs
``pebble`` in its own process group.  Clients trust ``lab.ca_bundle`` exactly as
certform's ``ca_bundle`` setting would.  Pebble's issuing roots are regenerated
at every start: read them from the management API with ``lab.roots()``.

``ChallTestSrv`` is a programmable DNS (and http-01) server: by default it answers
127.0.0.1 to every A query, so pointing Pebble's ``dns_server`` at it makes any
name resolve to the lab.  ``WebrootServer`` serves a directory over plain HTTP,
for http-01 webroot tests on ``lab.http_port``.

Every process runs in its own session; ``stop()`` kills the whole group, and an
``atexit`` hook does the same if a test run dies first.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import functools
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.aws_lab import free_port

_START_TIMEOUT = 10.0
_START_ATTEMPTS = 3  # a free port can be taken by someone else before the server binds it


def pebble_binary() -> str | None:
    """Path of the ``pebble`` executable, or None when it is not installed."""
    return _find("pebble")


def challtestsrv_binary() -> str | None:
    """Path of the ``pebble-challtestsrv`` executable, or None when it is not installed."""
    return _find("pebble-challtestsrv")


def _find(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for prefix in ("/usr/bin", "/usr/local/bin", "/usr/sbin"):
        candidate = f"{prefix}/{name}"
        if os.access(candidate, os.X_OK):
            return candidate
    return None


# --------------------------------------------------------------------------- TLS material


def write_lab_tls(directory: Path) -> tuple[Path, Path, Path]:
    """Write a lab CA and a server cert for ``localhost``/``127.0.0.1``; return their paths.

    Returns ``(ca_pem, server_cert_pem, server_key_pem)``.  EC P-256 keeps this
    at well under a millisecond.
    """
    now = datetime.now(UTC) - timedelta(minutes=5)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "certform test lab CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=7))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=7))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_path = directory / "lab-ca.pem"
    cert_path = directory / "pebble-listener.pem"
    key_path = directory / "pebble-listener.key"
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return ca_path, cert_path, key_path


# --------------------------------------------------------------------------- processes


def _stop_group(process: subprocess.Popen[bytes] | None) -> None:
    """Terminate ``process`` and everything in its process group; idempotent."""
    if process is None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)
    # The leader is gone; make sure nothing it forked survives in the group.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _spawn(argv: list[str], log: Path, env: Mapping[str, str]) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(env),
            start_new_session=True,  # own process group: stop() kills exactly this tree
        )


# --------------------------------------------------------------------------- Pebble


@dataclass
class PebbleLab:
    """A running Pebble; see the module docstring.

    ``directory_url`` is the ACME directory, ``ca_bundle`` the PEM CA that signed
    Pebble's HTTPS certificate, ``http_port`` the port Pebble dials for http-01,
    ``tls_port`` the one it dials for tls-alpn-01, ``management_url`` its
    management API (``/roots/0``, ``/cert-status-by-serial/<hex>``...).
    """

    directory: Path
    directory_url: str
    management_url: str
    ca_bundle: str
    http_port: int
    tls_port: int
    config_path: Path
    log: Path
    binary: str
    dns_server: str | None = None
    process: subprocess.Popen[bytes] | None = None
    _env: dict[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def start(
        cls,
        directory: Path,
        *,
        dns_server: str | None = None,
        eab_keys: Mapping[str, str] | None = None,
        validity_seconds: int | None = None,
        http_port: int | None = None,
        extra_env: Mapping[str, str] | None = None,
    ) -> PebbleLab:
        """Write the TLS material and config into ``directory``, start Pebble, wait for it.

        ``dns_server`` (``"127.0.0.1:PORT"``) is where Pebble resolves names for
        validation (without it, the system resolver).  ``eab_keys`` maps kid to a
        base64url HMAC key and makes external account binding mandatory.
        ``validity_seconds`` sets the lifetime of issued certificates (Pebble's
        default is five years).  ``extra_env`` adds Pebble environment variables
        (e.g. ``PEBBLE_ALTERNATE_ROOTS``, ``PEBBLE_CHAIN_LENGTH``).
        Raises ``RuntimeError`` when Pebble is absent or does not come up.
        """
        binary = pebble_binary()
        if binary is None:
            raise RuntimeError("pebble is not installed (apt-get install pebble)")
        directory = Path(directory).resolve()
        directory.mkdir(parents=True, exist_ok=True)
        ca_path, cert_path, key_path = write_lab_tls(directory)
        env = dict(os.environ)
        env.pop("PEBBLE_WFE_NONCEREJECT", None)  # keep Pebble's default 5 % badNonce
        env.update({"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_AUTHZREUSE": "0"})
        env.update(extra_env or {})
        last_error: RuntimeError | None = None
        for _ in range(_START_ATTEMPTS):
            lab = cls._configure(
                directory,
                binary=binary,
                ca_path=ca_path,
                cert_path=cert_path,
                key_path=key_path,
                dns_server=dns_server,
                eab_keys=eab_keys,
                validity_seconds=validity_seconds,
                http_port=http_port if http_port is not None else free_port(),
                env=env,
            )
            atexit.register(lab.stop)
            try:
                lab._launch()
                lab._wait_ready()
                return lab
            except RuntimeError as error:
                lab.stop()
                last_error = error
            except BaseException:
                lab.stop()
                raise
        assert last_error is not None
        raise last_error

    @classmethod
    def _configure(
        cls,
        directory: Path,
        *,
        binary: str,
        ca_path: Path,
        cert_path: Path,
        key_path: Path,
        dns_server: str | None,
        eab_keys: Mapping[str, str] | None,
        validity_seconds: int | None,
        http_port: int,
        env: dict[str, str],
    ) -> PebbleLab:
        acme_port, management_port, tls_port = free_port(), free_port(), free_port()
        settings: dict[str, Any] = {
            "listenAddress": f"127.0.0.1:{acme_port}",
            "managementListenAddress": f"127.0.0.1:{management_port}",
            "certificate": str(cert_path),
            "privateKey": str(key_path),
            "httpPort": http_port,
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": bool(eab_keys),
        }
        if eab_keys:
            settings["externalAccountMACKeys"] = dict(eab_keys)
        if validity_seconds is not None:
            settings["certificateValidityPeriod"] = int(validity_seconds)
        config_path = directory / "pebble-config.json"
        config_path.write_text(json.dumps({"pebble": settings}, indent=2) + "\n")
        return cls(
            directory=directory,
            directory_url=f"https://127.0.0.1:{acme_port}/dir",
            management_url=f"https://127.0.0.1:{management_port}",
            ca_bundle=str(ca_path),
            http_port=http_port,
            tls_port=tls_port,
            config_path=config_path,
            log=directory / "pebble.log",
            binary=binary,
            dns_server=dns_server,
            _env=env,
        )

    def _launch(self) -> None:
        argv = [self.binary, "-config", str(self.config_path)]
        if self.dns_server:
            argv += ["-dnsserver", self.dns_server]
        self.process = _spawn(argv, self.log, self._env)

    def _wait_ready(self, timeout: float = _START_TIMEOUT) -> None:
        """Block until both the ACME directory and the management API answer over HTTPS."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._get(self.directory_url, timeout=1.0)
                self._get(f"{self.management_url}/roots/0", timeout=1.0)
                return
            except (OSError, urllib.error.URLError):
                if self.process is None or self.process.poll() is not None:
                    raise RuntimeError(f"pebble exited: {_tail(self.log)}") from None
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"pebble not ready after {timeout:g} s: {_tail(self.log)}"
                    ) from None
                time.sleep(0.02)

    def stop(self) -> None:
        """Stop Pebble and its process group; safe to call twice."""
        _stop_group(self.process)
        self.process = None
        atexit.unregister(self.stop)

    def __enter__(self) -> PebbleLab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ----------------------------------------------------------------- management API

    def ssl_context(self) -> ssl.SSLContext:
        """A client context trusting only the lab CA (what ``ca_bundle`` configures)."""
        return ssl.create_default_context(cafile=self.ca_bundle)

    def _get(self, url: str, timeout: float = 5.0) -> tuple[int, bytes]:
        with urllib.request.urlopen(url, timeout=timeout, context=self.ssl_context()) as reply:
            return int(reply.status), reply.read()

    def _numbered_pems(self, kind: str) -> list[x509.Certificate]:
        """``/<kind>/0``, ``/<kind>/1``... until the first index Pebble does not know."""
        found: list[x509.Certificate] = []
        for index in range(64):
            try:
                _, body = self._get(f"{self.management_url}/{kind}/{index}")
            except urllib.error.HTTPError as error:
                if index == 0:
                    raise RuntimeError(f"pebble /{kind}/0 answered {error.code}") from None
                break
            found.extend(x509.load_pem_x509_certificates(body))
        return found

    def roots(self) -> list[x509.Certificate]:
        """The issuing roots of this Pebble run: ``/roots/0`` first, then alternates."""
        return self._numbered_pems("roots")

    def intermediates(self) -> list[x509.Certificate]:
        """The intermediates under each root, in the same order as ``roots()``."""
        return self._numbered_pems("intermediates")

    def cert_status(self, serial_hex: str) -> dict[str, Any]:
        """Pebble's record for a serial: ``Status`` ("Valid"/"Revoked"), ``Certificate``...

        Pebble parses ``<hex>`` as a number (case and leading zeros do not matter)
        but answers 400 to colons; ``serial_hex`` may use any of these spellings,
        it is normalized to lowercase hex without leading zeros first.  Raises
        ``LookupError`` for a serial Pebble never issued (404), ``ValueError``
        for text that is not hex.
        """
        serial = format(int(serial_hex.replace(":", "").strip(), 16), "x")
        try:
            _, body = self._get(f"{self.management_url}/cert-status-by-serial/{serial}")
        except urllib.error.HTTPError as error:
            if error.code == 404:
                raise LookupError(f"pebble issued no certificate with serial {serial}") from None
            raise
        return dict(json.loads(body))

    def is_revoked(self, serial_hex: str) -> bool:
        """Whether Pebble has recorded a revocation for ``serial_hex``."""
        return self.cert_status(serial_hex).get("Status") == "Revoked"


# --------------------------------------------------------------------------- challtestsrv


@dataclass
class ChallTestSrv:
    """A running pebble-challtestsrv: mock DNS (A/TXT) and http-01 responder.

    ``dns_address`` (``"127.0.0.1:PORT"``) is what Pebble's ``dns_server`` takes.
    Names are fully qualified by the wrappers (a trailing dot is added).
    """

    directory: Path
    dns_address: str
    dns_port: int
    http01_port: int
    tlsalpn01_port: int
    management_url: str
    log: Path
    binary: str
    process: subprocess.Popen[bytes] | None = None

    @classmethod
    def start(cls, directory: Path, *, default_ipv4: str = "127.0.0.1") -> ChallTestSrv:
        """Start pebble-challtestsrv on free ports; ``default_ipv4`` answers every A query."""
        binary = challtestsrv_binary()
        if binary is None:
            raise RuntimeError("pebble-challtestsrv is not installed (apt-get install pebble)")
        directory = Path(directory).resolve()
        directory.mkdir(parents=True, exist_ok=True)
        last_error: RuntimeError | None = None
        for _ in range(_START_ATTEMPTS):
            dns_port, http_port, alpn_port, mgmt_port = (free_port() for _ in range(4))
            srv = cls(
                directory=directory,
                dns_address=f"127.0.0.1:{dns_port}",
                dns_port=dns_port,
                http01_port=http_port,
                tlsalpn01_port=alpn_port,
                management_url=f"http://127.0.0.1:{mgmt_port}",
                log=directory / "challtestsrv.log",
                binary=binary,
            )
            atexit.register(srv.stop)
            argv = [
                binary,
                "-defaultIPv6",
                "",
                "-defaultIPv4",
                default_ipv4,
                "-dns01",
                srv.dns_address,
                "-http01",
                f"127.0.0.1:{http_port}",
                "-https01",
                "",
                "-tlsalpn01",
                f"127.0.0.1:{alpn_port}",
                "-management",
                f"127.0.0.1:{mgmt_port}",
            ]
            try:
                srv.process = _spawn(argv, srv.log, os.environ)
                srv._wait_ready()
                return srv
            except RuntimeError as error:
                srv.stop()
                last_error = error
            except BaseException:
                srv.stop()
                raise
        assert last_error is not None
        raise last_error

    def _wait_ready(self, timeout: float = _START_TIMEOUT) -> None:
        ports = (self.dns_port, self.http01_port, int(self.management_url.rsplit(":", 1)[1]))
        deadline = time.monotonic() + timeout
        while True:
            try:
                for port in ports:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return
            except OSError:
                if self.process is None or self.process.poll() is not None:
                    raise RuntimeError(f"challtestsrv exited: {_tail(self.log)}") from None
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"challtestsrv not ready after {timeout:g} s: {_tail(self.log)}"
                    ) from None
                time.sleep(0.02)

    def stop(self) -> None:
        """Stop the server and its process group; safe to call twice."""
        _stop_group(self.process)
        self.process = None
        atexit.unregister(self.stop)

    def __enter__(self) -> ChallTestSrv:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _post(self, path: str, payload: Mapping[str, Any]) -> None:
        request = urllib.request.Request(
            f"{self.management_url}{path}",
            data=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=5) as reply:
            reply.read()

    def add_a(self, host: str, ip: str) -> None:
        """Answer A queries for ``host`` with ``ip`` (instead of the default address)."""
        self._post("/add-a", {"host": _fqdn(host), "addresses": [ip]})

    def clear_a(self, host: str) -> None:
        """Forget ``host``'s A records; it falls back to the default address."""
        self._post("/clear-a", {"host": _fqdn(host)})

    def set_txt(self, host: str, value: str) -> None:
        """Add a TXT record (e.g. ``_acme-challenge.example.test``) for dns-01."""
        self._post("/set-txt", {"host": _fqdn(host), "value": value})

    def clear_txt(self, host: str) -> None:
        """Remove every TXT record of ``host``."""
        self._post("/clear-txt", {"host": _fqdn(host)})

    def add_http01(self, token: str, content: str) -> None:
        """Serve ``content`` at ``/.well-known/acme-challenge/<token>`` on ``http01_port``."""
        self._post("/add-http01", {"token": token, "content": content})

    def del_http01(self, token: str) -> None:
        """Stop serving the http-01 ``token``."""
        self._post("/del-http01", {"token": token})


def _fqdn(host: str) -> str:
    return host if host.endswith(".") else f"{host}."


# --------------------------------------------------------------------------- webroot


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class WebrootServer:
    """A threaded static HTTP server on 127.0.0.1 serving ``root`` (http-01 webroot)."""

    root: Path
    port: int
    server: ThreadingHTTPServer
    thread: threading.Thread
    requests: list[str] = field(default_factory=list)

    @classmethod
    def start(cls, root: Path, port: int) -> WebrootServer:
        """Serve ``root`` on ``127.0.0.1:port`` until ``stop()``; paths requested are recorded."""
        root = Path(root).resolve()
        root.mkdir(parents=True, exist_ok=True)
        seen: list[str] = []

        class Handler(_QuietHandler):
            def do_GET(self) -> None:
                seen.append(self.path)
                super().do_GET()

        server = ThreadingHTTPServer(
            ("127.0.0.1", port), functools.partial(Handler, directory=str(root))
        )
        server.daemon_threads = True
        thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.02}, name="webroot", daemon=True
        )
        thread.start()
        web = cls(root=root, port=port, server=server, thread=thread, requests=seen)
        atexit.register(web.stop)
        return web

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def publish(self, token: str, content: str) -> Path:
        """Write an http-01 key authorization where Pebble will fetch it."""
        path = self.root / ".well-known" / "acme-challenge" / token
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
        return path

    def stop(self) -> None:
        """Stop serving and close the socket; safe to call twice."""
        if self.thread.is_alive():
            self.server.shutdown()
            self.thread.join(timeout=5)
        self.server.server_close()
        atexit.unregister(self.stop)

    def __enter__(self) -> WebrootServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def b64url(data: bytes) -> str:
    """Unpadded base64url, the form Pebble expects for EAB MAC keys."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
