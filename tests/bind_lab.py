"""A real BIND 9 for tests: an authoritative server on 127.0.0.1 that takes RFC 2136 updates.

``BindLab.start(directory)`` writes ``named.conf``, a TSIG key from ``tsig-keygen`` and
one zone file per zone into ``directory`` (fresh per test: updates persist in the zones'
``.jnl`` files), then runs ``named -g`` in the foreground on a free port (UDP and TCP)
and waits until it answers a SOA query.  Every zone has a wildcard ``* A 127.0.0.1``
so any name resolves to the loopback address (Pebble resolves http-01 names through
this server).  ``stop()`` terminates named; an ``atexit`` hook does the same if a test
run dies first.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype

from tests.aws_lab import free_port

_START_TIMEOUT = 10.0
_KEY_NAME = "certform"
_KEY_ALGORITHM = "hmac-sha256"

_NAMED_CONF = """\
options {{
    directory "{directory}";
    pid-file "{directory}/named.pid";
    session-keyfile "{directory}/session.key";
    listen-on port {port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    // Recursion for 127.0.0.1 only, so that Pebble (which asks this server like a
    // resolver) gets a CNAME into another local zone followed, as a real resolver
    // would; nothing outside the lab's zones is ever asked for.
    recursion yes;
    allow-recursion {{ 127.0.0.1; }};
    dnssec-validation no;
    notify no;
}};

controls {{ }};

{key}
{zones}"""

_ZONE_STANZA = """\
zone "{zone}" {{
    type primary;
    file "{file}";
    allow-update {{ key "{key_name}"; }};
}};
"""

_ZONE_FILE = """\
$ORIGIN {zone}.
$TTL 60
@   IN SOA ns.{zone}. hostmaster.{zone}. ( 1 3600 600 86400 60 )
@   IN NS  ns.{zone}.
ns  IN A   127.0.0.1
*   IN A   127.0.0.1
{extra}"""


def bind_binary() -> str | None:
    """Path of the named executable, or None when BIND is not installed."""
    found = shutil.which("named")
    if found:
        return found
    for candidate in ("/usr/sbin/named", "/usr/local/sbin/named"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def _tsig_keygen_binary() -> str | None:
    found = shutil.which("tsig-keygen")
    if found:
        return found
    for candidate in ("/usr/sbin/tsig-keygen", "/usr/local/sbin/tsig-keygen"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def _free_udp_and_tcp_port() -> int:
    """A port free for both TCP and UDP on 127.0.0.1 (named listens on both)."""
    for _ in range(50):
        port = free_port()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            try:
                udp.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no port free for both TCP and UDP on 127.0.0.1")


def _make_key(directory: Path) -> tuple[str, str, str, str]:
    """Run tsig-keygen; return (name, algorithm, secret, key stanza as printed)."""
    keygen = _tsig_keygen_binary()
    if keygen is None:
        raise RuntimeError("tsig-keygen is not installed (apt-get install bind9-utils)")
    stanza = subprocess.run(
        [keygen, "-a", _KEY_ALGORITHM, _KEY_NAME],
        check=True,
        capture_output=True,
        text=True,
        cwd=directory,
    ).stdout
    match = re.search(
        r'key\s+"(?P<name>[^"]+)"\s*\{\s*algorithm\s+(?P<alg>[\w-]+);\s*secret\s+"(?P<secret>[^"]+)";',
        stanza,
    )
    if match is None:
        raise RuntimeError("could not parse the output of tsig-keygen")
    return match["name"], match["alg"], match["secret"], stanza


@dataclass
class BindLab:
    """A running named; see the module docstring."""

    directory: Path
    port: int
    zones: tuple[str, ...]
    tsig_key_name: str
    tsig_algorithm: str
    tsig_secret: str = field(repr=False)
    binary: str
    log: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT``, the form hooks and ``check_server`` options take."""
        return f"127.0.0.1:{self.port}"

    @classmethod
    def start(
        cls,
        directory: Path,
        zones: Sequence[str] = ("example.test", "validation.test"),
        records: Mapping[str, Sequence[str]] | None = None,
    ) -> BindLab:
        """Write the configuration into ``directory``, start named, wait until it answers.

        ``records`` maps a zone to extra zone-file lines (relative names are inside
        that zone), e.g. ``{"example.test": ["_acme-challenge.d CNAME x.validation.test."]}``.
        """
        binary = bind_binary()
        if binary is None:
            raise RuntimeError("named is not installed (apt-get install bind9)")
        lab = cls._prepare(Path(directory).resolve(), binary, tuple(zones), records or {})
        atexit.register(lab.stop)
        try:
            lab._launch()
            lab.wait_ready()
        except BaseException:
            lab.stop()
            raise
        return lab

    @classmethod
    def _prepare(
        cls,
        directory: Path,
        binary: str,
        zones: tuple[str, ...],
        records: Mapping[str, Sequence[str]],
    ) -> BindLab:
        unknown = set(records) - set(zones)
        if unknown:
            raise ValueError(f"records given for zones the lab does not serve: {sorted(unknown)}")
        directory.mkdir(parents=True, exist_ok=True)
        name, algorithm, secret, key_stanza = _make_key(directory)
        stanzas = []
        for zone in zones:
            zone_file = directory / f"{zone}.zone"
            extra = "".join(f"{line}\n" for line in records.get(zone, ()))
            zone_file.write_text(_ZONE_FILE.format(zone=zone, extra=extra))
            stanzas.append(_ZONE_STANZA.format(zone=zone, file=zone_file, key_name=name))
        port = _free_udp_and_tcp_port()
        conf = directory / "named.conf"
        conf.write_text(
            _NAMED_CONF.format(
                directory=directory, port=port, key=key_stanza, zones="\n".join(stanzas)
            )
        )
        return cls(
            directory=directory,
            port=port,
            zones=zones,
            tsig_key_name=name,
            tsig_algorithm=algorithm,
            tsig_secret=secret,
            binary=binary,
            log=directory / "named.log",
        )

    def _launch(self) -> None:
        argv = [self.binary, "-g", "-c", str(self.directory / "named.conf")]
        if os.geteuid() == 0:
            argv += ["-u", "root"]  # named drops to user "bind" otherwise: it could not write here
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
                start_new_session=True,
            )

    def wait_ready(self, timeout: float = _START_TIMEOUT) -> None:
        """Block until named answers a SOA query for every zone, over TCP and over UDP.

        TCP first: before named listens, a TCP connect is refused at once, while a
        UDP query would sit out its whole timeout.
        """
        deadline = time.monotonic() + timeout
        pending = [(zone, query) for zone in self.zones for query in (dns.query.tcp, dns.query.udp)]
        while pending:
            zone, send = pending[0]
            try:
                query = dns.message.make_query(zone, dns.rdatatype.SOA)
                response = send(query, "127.0.0.1", port=self.port, timeout=0.5)
                if response.rcode() == dns.rcode.NOERROR and response.answer:
                    pending.pop(0)
                    continue
            except (OSError, dns.exception.DNSException):
                pass
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(
                    f"named exited with code {self.process.returncode}: {self._tail()}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(f"named not ready after {timeout:g} s: {self._tail()}")
            time.sleep(0.02)

    def txt(self, name: str) -> list[str]:
        """The TXT values at ``name`` as the lab serves them now (each value's strings joined)."""
        query = dns.message.make_query(name, dns.rdatatype.TXT)
        response = dns.query.tcp(query, "127.0.0.1", port=self.port, timeout=2.0)
        owner = dns.name.from_text(name)
        values: list[str] = []
        for rrset in response.answer:
            if rrset.name == owner and rrset.rdtype == dns.rdatatype.TXT:
                values.extend(b"".join(rdata.strings).decode() for rdata in rrset)
        return sorted(values)

    def stop(self) -> None:
        """Terminate named and wait for it; safe to call twice."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    def _tail(self, lines: int = 15) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return " | ".join(text.strip().splitlines()[-lines:])
