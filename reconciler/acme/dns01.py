"""dns-01 record writers: put the ACME TXT value in DNS, prove it is served, take it away.

A writer does four things for the ACME client (``DnsChallengeWriter``):

* ``record_name(domain)`` — where the TXT goes.  ``_acme-challenge.<domain>``, unless
  that name is a CNAME (possibly a chain) into another zone: then the final target,
  exactly as a CA's resolver would follow it.  This is how a zone certform may not
  write to delegates validation to one it may (the same idea as ACM's validation
  CNAMEs).
* ``present(record, value)`` — add one TXT value.  Other values at the same name
  stay: a wildcard and its apex need two values at one name at the same time.
* ``cleanup(record, value)`` — delete exactly that value.  Idempotent: a value that
  is already gone is success, so cleanup can always undo a partial ``present``.
* ``wait_visible(record, value, timeout)`` — poll the zone's authoritative servers
  directly (a recursive resolver would cache the "not there yet" answer and delay
  the CA) until the value is served, or raise with what was seen.

Every failure is a ``DnsChallengeError`` whose one-line message names the server,
the zone and the record.  The TSIG secret never appears in a message, a repr or a
log line: it is held in a wrapper whose repr hides it.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import ipaddress
import logging
import socket
import time
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import dns.rrset
import dns.tsig
import dns.update

from reconciler.childenv import ChildTimeout, run_child
from reconciler.errors import ProviderError

log = logging.getLogger(__name__)

CHALLENGE_PREFIX = "_acme-challenge"
CHALLENGE_TTL = 60  # seconds; short, so a stale value does not linger in caches
MAX_CNAME_CHAIN = 8
POLL_INTERVAL = 0.05  # seconds between polls of an authoritative server
_QUERY_TIMEOUT_CAP = 1.0  # one unanswered poll must not eat the whole wait

_TSIG_ALGORITHMS: dict[str, dns.name.Name] = {
    "hmac-md5": dns.tsig.HMAC_MD5,
    "hmac-sha1": dns.tsig.HMAC_SHA1,
    "hmac-sha224": dns.tsig.HMAC_SHA224,
    "hmac-sha256": dns.tsig.HMAC_SHA256,
    "hmac-sha384": dns.tsig.HMAC_SHA384,
    "hmac-sha512": dns.tsig.HMAC_SHA512,
}
_TSIG_REFUSED = "the server refused the TSIG-signed update (wrong key name or secret?)"
_NETWORK_ERRORS = (OSError, EOFError, dns.exception.Timeout)


class DnsChallengeError(ProviderError):
    """A dns-01 record could not be found, written, removed or seen.

    ``server``, ``zone`` and ``record`` are kept as attributes (None when unknown)
    so callers can act on them; the message is one line and never holds a secret.
    """

    def __init__(
        self,
        detail: str,
        *,
        server: str | None = None,
        zone: str | None = None,
        record: str | None = None,
    ) -> None:
        self.detail = detail
        self.server = server
        self.zone = zone
        self.record = record
        context = []
        if record:
            context.append(f"record {record}")
        if zone:
            context.append(f"zone {zone}")
        if server:
            context.append(f"server {server}")
        prefix = f"dns-01 {', '.join(context)}: " if context else ""
        super().__init__(prefix + " ".join(detail.split()))


@runtime_checkable
class DnsChallengeWriter(Protocol):
    """What the ACME client needs from a DNS provider for dns-01.

    Methods may be called from several threads at once (one per authorization);
    implementations keep no per-call state on ``self`` beyond caches.
    """

    def record_name(self, domain: str) -> str:
        """FQDN (no trailing dot) where the TXT for ``domain`` goes; ``*.`` is ignored.

        Follows CNAMEs from ``_acme-challenge.<domain>`` where the writer can see
        them.  Raises DnsChallengeError on a CNAME loop, a chain longer than
        ``MAX_CNAME_CHAIN`` or an unreachable server.
        """
        ...

    def present(self, record: str, value: str) -> None:
        """Add ``value`` to the TXT RRset at ``record``; other values stay.

        Idempotent (adding a value twice leaves one).  Raises DnsChallengeError.
        """
        ...

    def cleanup(self, record: str, value: str) -> None:
        """Delete exactly ``value`` from ``record``; a value already gone is success.

        Raises DnsChallengeError only when the server cannot be reached or refuses.
        """
        ...

    def wait_visible(self, record: str, value: str, timeout: float) -> None:
        """Block until the zone's authoritative server(s) serve ``value`` at ``record``.

        Polls every ``POLL_INTERVAL`` seconds; raises DnsChallengeError at the
        deadline saying what each server answered last.
        """
        ...


# --- names and addresses ---------------------------------------------------------------


def challenge_name(domain: str) -> str:
    """``_acme-challenge.<domain>`` for an identifier (``*.`` stripped, lowercase, no dot)."""
    bare = domain.strip().rstrip(".").lower()
    bare = bare.removeprefix("*.")
    if not bare:
        raise DnsChallengeError(f"empty domain name {domain!r}")
    return f"{CHALLENGE_PREFIX}.{bare}"


def _absolute(name: str) -> dns.name.Name:
    try:
        return dns.name.from_text(name.strip())
    except dns.exception.DNSException as exc:
        raise DnsChallengeError(f"invalid DNS name {name!r}: {exc}") from None


def _text(name: dns.name.Name) -> str:
    return name.to_text(omit_final_dot=True)


def parse_server(text: str, default_port: int = 53) -> tuple[str, int]:
    """Split ``host``, ``host:port``, ``[v6]:port`` or a bare IPv6 address into host and port."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest.removeprefix(":")
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    else:
        host, port_text = text, ""
    if not host:
        raise DnsChallengeError(f"no host in DNS server address {text!r}")
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise DnsChallengeError(f"invalid port in DNS server address {text!r}")
    return host, int(port_text)


def _server_label(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _resolve_host(host: str, port: int) -> str:
    """The IP address to send to: dnspython's query functions take addresses, not names."""
    with contextlib.suppress(ValueError):
        return str(ipaddress.ip_address(host))
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise DnsChallengeError(
            f"cannot resolve the DNS server name {host!r}: {exc}",
            server=_server_label(host, port),
        ) from None
    return str(infos[0][4][0])


def _txt_rdata(value: str) -> dns.rdtypes.ANY.TXT.TXT:
    """One TXT rdata for ``value``, split into 255-byte strings (built, not parsed: no quoting)."""
    data = value.encode()
    chunks = tuple(data[i : i + 255] for i in range(0, len(data), 255)) or (b"",)
    return dns.rdtypes.ANY.TXT.TXT(dns.rdataclass.IN, dns.rdatatype.TXT, chunks)


def _txt_values(response: dns.message.Message, owner: dns.name.Name) -> list[str]:
    values: list[str] = []
    for rrset in response.answer:
        if rrset.name == owner and rrset.rdtype == dns.rdatatype.TXT:
            values.extend(b"".join(r.strings).decode(errors="replace") for r in rrset)
    return values


# --- polling, shared by every writer ----------------------------------------------------


def _describe_answer(response: dns.message.Message, owner: dns.name.Name) -> str:
    rcode = dns.rcode.to_text(response.rcode())
    if response.rcode() != dns.rcode.NOERROR:
        return rcode
    if not response.flags & dns.flags.AA:
        return "a non-authoritative answer"
    values = _txt_values(response, owner)
    if values:
        return f"TXT {sorted(values)}"
    for rrset in response.answer:
        if rrset.name == owner and rrset.rdtype == dns.rdatatype.CNAME:
            return f"a CNAME to {_text(rrset[0].target)}"
    return "no TXT record"


def wait_for_txt(
    servers: Sequence[tuple[str, int]],
    record: str,
    value: str,
    timeout: float,
    *,
    zone: str | None = None,
) -> None:
    """Poll each server (UDP, TCP on truncation) until all serve ``value`` at ``record``.

    Servers are polled directly, never through a resolver, every POLL_INTERVAL.
    Raises DnsChallengeError at the deadline naming each server still lacking the
    value and what it answered last.
    """
    owner = _absolute(record)
    deadline = time.monotonic() + timeout
    pending = {_server_label(h, p): (h, p) for h, p in servers}
    seen = dict.fromkeys(pending, "nothing yet")
    while True:
        for label, (host, port) in list(pending.items()):
            remaining = max(deadline - time.monotonic(), 0.01)
            try:
                address = _resolve_host(host, port)
                # RD off: ask the server what it holds, never make it resolve for us.
                query = dns.message.make_query(owner, dns.rdatatype.TXT, flags=0)
                response, _ = dns.query.udp_with_fallback(
                    query, address, timeout=min(remaining, _QUERY_TIMEOUT_CAP), port=port
                )
            except DnsChallengeError as exc:
                seen[label] = exc.detail
                continue
            except (*_NETWORK_ERRORS, dns.exception.DNSException) as exc:
                seen[label] = _network_detail(exc)
                continue
            if response.flags & dns.flags.AA and value in _txt_values(response, owner):
                del pending[label]
            else:
                seen[label] = _describe_answer(response, owner)
        if not pending:
            return
        if time.monotonic() >= deadline:
            answers = "; ".join(f"last seen at {label}: {seen[label]}" for label in pending)
            raise DnsChallengeError(
                f"TXT value {value!r} not visible after {timeout:g} s: {answers}",
                server=", ".join(pending),
                zone=zone,
                record=_text(owner),
            )
        time.sleep(min(POLL_INTERVAL, max(deadline - time.monotonic(), 0)))


def _network_detail(exc: BaseException) -> str:
    if isinstance(exc, dns.exception.Timeout):
        return "no answer (timeout)"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is the server running?)"
    if isinstance(exc, EOFError):
        return "the server closed the connection"
    if isinstance(exc, OSError):
        return f"unreachable ({exc.strerror or exc})"
    return f"a bad answer ({type(exc).__name__}: {exc})"


# --- RFC 2136 ---------------------------------------------------------------------------


class _HiddenKey:
    """Holds the TSIG key; its repr never shows the secret (dnspython's Key repr does)."""

    __slots__ = ("key",)

    def __init__(self, key: dns.tsig.Key) -> None:
        self.key = key

    def __repr__(self) -> str:
        return f"<TSIG key {self.key.name} (secret hidden)>"


class Rfc2136Writer:
    """Dynamic DNS updates (RFC 2136) signed with TSIG, sent over TCP to the primary.

    Works with any server that takes TSIG-signed updates (BIND, Knot, PowerDNS).
    The zone of a record is ``zone`` when the record is inside it; otherwise it is
    found by asking the server for the SOA of the record and its parents, which is
    also how a CNAME target in another zone finds its zone.  CNAMEs are followed
    by asking the same server, which is authoritative for the zones it updates.
    """

    def __init__(
        self,
        server: str,
        port: int = 53,
        zone: str | None = None,
        *,
        tsig_key_name: str,
        tsig_algorithm: str = "hmac-sha256",
        tsig_secret: str,
        timeout: float = 10.0,
        check_servers: Sequence[str] = (),
    ) -> None:
        """``check_servers`` (``host[:port]``) are further authoritative servers, e.g.
        secondaries, that ``wait_visible`` must also see the value on."""
        self.server = server
        self.port = port
        self.zone = _text(_absolute(zone)) if zone else None
        self.timeout = timeout
        self.check_servers = tuple(parse_server(s) for s in check_servers)
        self.tsig_key_name = tsig_key_name
        self.tsig_algorithm = tsig_algorithm.lower().rstrip(".")
        self._key = _HiddenKey(self._make_key(tsig_key_name, self.tsig_algorithm, tsig_secret))
        self._zones: dict[dns.name.Name, dns.name.Name] = {}

    def __repr__(self) -> str:
        return (
            f"Rfc2136Writer(server={self.server!r}, port={self.port}, zone={self.zone!r}, "
            f"tsig_key_name={self.tsig_key_name!r}, tsig_algorithm={self.tsig_algorithm!r})"
        )

    @property
    def label(self) -> str:
        """``host:port`` of the primary, as error messages name it."""
        return _server_label(self.server, self.port)

    def _make_key(self, name: str, algorithm: str, secret: str) -> dns.tsig.Key:
        if algorithm not in _TSIG_ALGORITHMS:
            supported = ", ".join(_TSIG_ALGORITHMS)
            raise DnsChallengeError(
                f"unsupported TSIG algorithm {algorithm!r} for key {name!r} (use {supported})",
                server=self.label,
            )
        try:
            raw = base64.b64decode(secret.strip(), validate=True)
        except (binascii.Error, ValueError):
            raw = b""
        if not raw:
            raise DnsChallengeError(
                f"the TSIG secret of key {name!r} is not valid base64 "
                "(paste the secret as tsig-keygen prints it)",
                server=self.label,
            )
        try:
            return dns.tsig.Key(name, raw, _TSIG_ALGORITHMS[algorithm])
        except dns.exception.DNSException as exc:
            raise DnsChallengeError(
                f"invalid TSIG key name {name!r}: {type(exc).__name__}", server=self.label
            ) from None

    # -- the interface

    def record_name(self, domain: str) -> str:
        """``_acme-challenge.<domain>``, or the end of the CNAME chain starting there."""
        start = _absolute(challenge_name(domain))
        current = start
        chain = [current]
        for _ in range(MAX_CNAME_CHAIN + 1):
            target = self._cname_target(current)
            if target is None:
                return _text(current)
            if target in chain:
                path = " -> ".join(_text(n) for n in [*chain, target])
                raise DnsChallengeError(
                    f"CNAME loop: {path}", server=self.label, record=_text(start)
                )
            chain.append(target)
            current = target
        raise DnsChallengeError(
            f"CNAME chain longer than {MAX_CNAME_CHAIN} links",
            server=self.label,
            record=_text(start),
        )

    def present(self, record: str, value: str) -> None:
        """Add one TXT value; refuses (YXRRSET) rather than silently ignore a CNAME there."""
        name = _absolute(record)
        zone = self._zone_for(name)
        update = self._update(zone)
        update.absent(name, dns.rdatatype.CNAME)  # TXT beside a CNAME would be dropped silently
        update.add(name, CHALLENGE_TTL, _txt_rdata(value))
        self._send(update, zone, name, "add")
        log.debug("dns-01: added TXT %r at %s in zone %s on %s", value, name, zone, self.label)

    def cleanup(self, record: str, value: str) -> None:
        """Delete exactly this TXT value; deleting a missing value is a no-op on the server."""
        name = _absolute(record)
        zone = self._zone_for(name)
        update = self._update(zone)
        update.delete(name, _txt_rdata(value))
        self._send(update, zone, name, "delete")
        log.debug("dns-01: deleted TXT %r at %s in zone %s on %s", value, name, zone, self.label)

    def wait_visible(self, record: str, value: str, timeout: float) -> None:
        """Poll the primary (and ``check_servers``) until the value is served."""
        name = _absolute(record)
        zone = self._zones.get(name)
        wait_for_txt(
            [(self.server, self.port), *self.check_servers],
            _text(name),
            value,
            timeout,
            zone=_text(zone) if zone else self.zone,
        )

    # -- lookups at the server

    def _query(self, name: dns.name.Name, rdtype: dns.rdatatype.RdataType) -> dns.message.Message:
        """One query to the primary over TCP (a refused connection fails at once, unlike UDP)."""
        query = dns.message.make_query(name, rdtype, flags=0)  # RD off: authoritative data only
        try:
            address = _resolve_host(self.server, self.port)
            return dns.query.tcp(query, address, timeout=self.timeout, port=self.port)
        except DnsChallengeError:
            raise
        except (*_NETWORK_ERRORS, dns.exception.DNSException) as exc:
            raise DnsChallengeError(
                f"{dns.rdatatype.to_text(rdtype)} query failed: {_network_detail(exc)}",
                server=self.label,
                record=_text(name),
            ) from None

    def _cname_target(self, name: dns.name.Name) -> dns.name.Name | None:
        response = self._query(name, dns.rdatatype.CNAME)
        if response.rcode() not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
            return None  # not served here: the update will say "zone not found" clearly
        for rrset in response.answer:
            if rrset.name == name and rrset.rdtype == dns.rdatatype.CNAME:
                return rrset[0].target
        return None

    def _zone_for(self, name: dns.name.Name) -> dns.name.Name:
        """The zone that holds ``name``: configured, cached, or found by SOA queries."""
        if self.zone and name.is_subdomain(_absolute(self.zone)):
            return _absolute(self.zone)
        cached = self._zones.get(name)
        if cached is not None:
            return cached
        zone = self._discover_zone(name)
        self._zones[name] = zone
        return zone

    def _discover_zone(self, name: dns.name.Name) -> dns.name.Name:
        """Walk up from ``name`` asking the server for SOA until it answers authoritatively.

        An authoritative NODATA/NXDOMAIN carries the zone's SOA in the authority
        section, so the first query usually settles it; REFUSED means "not my zone".
        """
        candidate = name
        while True:
            response = self._query(candidate, dns.rdatatype.SOA)
            authoritative = bool(response.flags & dns.flags.AA)
            if response.rcode() in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN) and authoritative:
                for rrset in (*response.answer, *response.authority):
                    if rrset.rdtype == dns.rdatatype.SOA and name.is_subdomain(rrset.name):
                        return rrset.name
            elif response.rcode() == dns.rcode.NOERROR and any(
                rrset.rdtype == dns.rdatatype.NS and rrset.name != dns.name.root
                for rrset in response.authority
            ):
                # (A referral to the root is a server that also resolves: not a
                # delegation of ours; the walk goes on and ends in "zone not found".)
                child = next(r.name for r in response.authority if r.rdtype == dns.rdatatype.NS)
                raise DnsChallengeError(
                    f"the server delegates {_text(child)} to other name servers; "
                    "point certform at that zone's primary",
                    server=self.label,
                    record=_text(name),
                )
            if candidate == dns.name.root:
                raise DnsChallengeError(
                    "zone not found: the server is not authoritative for any zone holding "
                    "this record (set the zone, or check the CNAME target)",
                    server=self.label,
                    record=_text(name),
                )
            candidate = candidate.parent()

    # -- updates

    def _update(self, zone: dns.name.Name) -> dns.update.UpdateMessage:
        key = self._key.key
        return dns.update.UpdateMessage(
            zone, keyring=key, keyname=key.name, keyalgorithm=key.algorithm
        )

    def _send(
        self, update: dns.update.UpdateMessage, zone: dns.name.Name, name: dns.name.Name, verb: str
    ) -> None:
        """Send a signed update over TCP and turn every failure into one clear error."""

        def fail(detail: str) -> DnsChallengeError:
            return DnsChallengeError(
                f"TXT {verb} failed: {detail}",
                server=self.label,
                zone=_text(zone),
                record=_text(name),
            )

        try:
            address = _resolve_host(self.server, self.port)
            response = dns.query.tcp(update, address, timeout=self.timeout, port=self.port)
        except DnsChallengeError:
            raise
        except dns.tsig.PeerBadTime:
            raise fail("the server rejected the TSIG time (BADTIME): check both clocks") from None
        except (dns.tsig.PeerBadKey, dns.tsig.PeerBadSignature, dns.tsig.PeerError) as exc:
            raise fail(f"{_TSIG_REFUSED} [{type(exc).__name__}]") from None
        except (dns.message.BadTSIG, dns.message.UnknownTSIGKey, dns.tsig.BadSignature) as exc:
            raise fail(
                f"the server's reply failed TSIG verification [{type(exc).__name__}]"
            ) from None
        except (*_NETWORK_ERRORS, dns.exception.DNSException) as exc:
            raise fail(f"server unreachable: {_network_detail(exc)}") from None
        rcode = response.rcode()
        if rcode == dns.rcode.NOERROR:
            return
        if rcode == dns.rcode.REFUSED:
            raise fail(f"{_TSIG_REFUSED} [REFUSED: or the key may not update this zone]")
        if rcode == dns.rcode.NOTAUTH:
            raise fail(
                "the server answered NOTAUTH: it does not serve this zone, or "
                + _TSIG_REFUSED.removeprefix("the server ")
            )
        if rcode == dns.rcode.YXRRSET:
            raise fail("a CNAME exists at this name; write at its target (see record_name)")
        if rcode == dns.rcode.NOTZONE:
            raise fail("the record is not inside the zone (NOTZONE)")
        raise fail(f"the server answered {dns.rcode.to_text(rcode)}")


# --- hook commands ----------------------------------------------------------------------


class CommandWriter:
    """A hook: user commands add and remove the record (for DNS APIs certform lacks).

    The argv lists run without a shell, with ``CERTFORM_ACME_DOMAIN``,
    ``CERTFORM_ACME_RECORD`` and ``CERTFORM_ACME_VALUE`` in the environment, which
    holds none of certform's secrets except those named in ``pass_env``
    (``childenv``); a timeout kills the hook's whole process group.  The
    cleanup command must succeed when the value is already gone.  CNAMEs are not
    followed: the hook owns the DNS layout.  ``wait_visible`` polls ``check_server``
    (``host:port`` of an authoritative server) when given, else trusts the hook.
    """

    def __init__(
        self,
        present_command: Sequence[str],
        cleanup_command: Sequence[str],
        timeout: float = 60.0,
        check_server: str | None = None,
        pass_env: Sequence[str] = (),
    ) -> None:
        if not present_command or not cleanup_command:
            raise DnsChallengeError("the present and cleanup commands must not be empty")
        self.present_command = list(present_command)
        self.cleanup_command = list(cleanup_command)
        self.timeout = timeout
        self.check_server = parse_server(check_server) if check_server else None
        self.pass_env = tuple(pass_env)

    def __repr__(self) -> str:
        # Arguments may carry tokens: show only the programs.
        return (
            f"CommandWriter(present={self.present_command[0]!r}, "
            f"cleanup={self.cleanup_command[0]!r}, timeout={self.timeout:g})"
        )

    def record_name(self, domain: str) -> str:
        """``_acme-challenge.<domain>``; no CNAME following."""
        return challenge_name(domain)

    def present(self, record: str, value: str) -> None:
        """Run the present command; a non-zero exit or a timeout raises DnsChallengeError."""
        self._run("present", self.present_command, record, value)

    def cleanup(self, record: str, value: str) -> None:
        """Run the cleanup command (which must treat "already gone" as success)."""
        self._run("cleanup", self.cleanup_command, record, value)

    def wait_visible(self, record: str, value: str, timeout: float) -> None:
        """Poll ``check_server`` if configured; otherwise the hook's word is taken."""
        if self.check_server is not None:
            wait_for_txt([self.check_server], record, value, timeout)

    def _run(self, step: str, argv: list[str], record: str, value: str) -> None:
        record = record.rstrip(".")
        domain = record.removeprefix(f"{CHALLENGE_PREFIX}.")
        variables = {
            "CERTFORM_ACME_DOMAIN": domain,
            "CERTFORM_ACME_RECORD": record,
            "CERTFORM_ACME_VALUE": value,
        }
        program = argv[0]
        try:
            process = run_child(
                argv, timeout=self.timeout, pass_env=self.pass_env, variables=variables
            )
        except OSError as exc:
            raise DnsChallengeError(
                f"cannot run the {step} hook {program!r}: {exc.strerror or exc}", record=record
            ) from None
        except ChildTimeout:
            raise DnsChallengeError(
                f"the {step} hook {program!r} timed out after {self.timeout:g} s", record=record
            ) from None
        if process.returncode != 0:
            raise DnsChallengeError(
                f"the {step} hook {program!r} exited with code {process.returncode}: "
                f"{_tail(process.stderr)}",
                record=record,
            )
        log.debug("dns-01: %s hook %r done for %s", step, program, record)


def _tail(output: bytes, lines: int = 5, limit: int = 500) -> str:
    """The last lines of a hook's stderr, on one line."""
    text = output.decode(errors="replace").strip()
    if not text:
        return "(no stderr)"
    joined = " | ".join(line.strip() for line in text.splitlines()[-lines:] if line.strip())
    return joined if len(joined) <= limit else "…" + joined[-limit:]
