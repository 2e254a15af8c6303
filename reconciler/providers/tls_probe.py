"""Read-only probing of TLS endpoints: what a server presents, over the network.

Used by the ``tls-endpoint`` target (refresh reads the served certificate), by
verification after a deploy (``wait_for_serial``) and by ``certform check``
(which judges the result with ``pki.inspect.assess``).  Probing never verifies
the peer: the point is to see what is served even when it is expired,
self-signed or for another name, and to report that as findings rather than
as a failed connection.

Gathering (``probe``, ``wait_for_serial``: network, clock) lives here; deciding
(``assess``, ``days_left``: pure, clock injected) lives in ``pki/inspect.py``,
like the policies.  Nothing here touches private keys.
"""

from __future__ import annotations

import socket
import ssl
import time

from cryptography import x509

from reconciler.errors import ProviderError
from reconciler.pki.inspect import Presented, describe_leaf

_RETRY_INTERVAL = 0.02  # between handshakes in wait_for_serial
_MIN_PROBE_TIMEOUT = 0.05  # a probe near the deadline still gets a fair chance to finish
_MAX_PROBE_TIMEOUT = 5.0


class EndpointUnreachable(ProviderError):
    """No TLS session could be made: DNS failure, refused, timeout or handshake failure."""

    def __init__(self, host: str, port: int, server_name: str | None, reason: str) -> None:
        self.host = host
        self.port = port
        self.server_name = server_name
        self.reason = reason
        super().__init__(f"{_where(host, port, server_name)}: {reason}")


class EndpointMismatch(ProviderError):
    """The endpoint answered, but not with the expected certificate before the deadline."""

    def __init__(self, message: str, expected_serial: str, presented: Presented) -> None:
        self.expected_serial = expected_serial
        self.presented = presented
        super().__init__(message)


def probe(host: str, port: int, server_name: str | None, timeout: float = 5.0) -> Presented:
    """One TLS handshake to ``host:port`` with SNI ``server_name``; what the server presented.

    Peer verification is off on purpose (see the module docstring).  ``timeout``
    bounds each of connecting and the handshake.  Raises ``EndpointUnreachable``,
    also when a presented certificate cannot be parsed (there is nothing to judge).
    """
    context = _probe_context()
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=server_name or None) as tls,
        ):
            leaf_der = tls.getpeercert(binary_form=True)
            if not leaf_der:
                raise EndpointUnreachable(host, port, server_name, "no certificate presented")
            ders = _unverified_chain(tls) or [leaf_der]
            protocol = tls.version() or "unknown"
    except OSError as error:
        raise EndpointUnreachable(host, port, server_name, _reason(error, timeout)) from None
    if ders[0] == leaf_der:
        ders = ders[1:]
    try:
        leaf = x509.load_der_x509_certificate(leaf_der)
        chain = tuple(x509.load_der_x509_certificate(der) for der in ders)
    except ValueError as error:
        reason = f"presented certificate cannot be parsed: {error}"
        raise EndpointUnreachable(host, port, server_name, reason) from None
    return Presented(leaf=leaf, chain=chain, protocol=protocol)


def wait_for_serial(
    host: str,
    port: int,
    server_name: str | None,
    serial: str,
    timeout: float = 10.0,
    confirmations: int = 3,
    settle: float = 0.25,
) -> Presented:
    """Handshake until the leaf has ``serial`` steadily; returns the last such handshake.

    Steadily means at least ``confirmations`` consecutive matching handshakes
    spanning at least ``settle`` seconds.  A count alone is not enough: after
    ``nginx -s reload`` the master waits 100 ms before telling the old workers to
    stop, so for ~100-125 ms handshakes alternate between the new and the old
    certificate (measured: up to 50 new in a row, then an old one).  Any other
    certificate or a failed connection restarts the count.  ``serial`` is hex in
    any case, colons, ``0x`` and leading zeros allowed.  At the deadline raises
    ``EndpointMismatch`` (naming what was served) if any handshake succeeded,
    else the last ``EndpointUnreachable``.
    """
    if confirmations < 1:
        raise ValueError("confirmations must be at least 1")
    wanted = _normalise_serial(serial)
    deadline = time.monotonic() + timeout
    streak, streak_start, last, failure = 0, 0.0, None, None
    while True:
        started = time.monotonic()
        try:
            last = probe(host, port, server_name, timeout=_probe_timeout(deadline - started))
        except EndpointUnreachable as error:
            streak, failure = 0, error
        else:
            streak = streak + 1 if last.serial == wanted else 0
            streak_start = started if streak == 1 else streak_start
            if streak >= confirmations and time.monotonic() - streak_start >= settle:
                return last
        if time.monotonic() + _RETRY_INTERVAL > deadline:
            break
        time.sleep(_RETRY_INTERVAL)
    if last is None:
        raise failure or EndpointUnreachable(host, port, server_name, "no handshake attempted")
    raise _mismatch(_where(host, port, server_name), wanted, last, streak)


def _probe_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _unverified_chain(tls: ssl.SSLSocket) -> list[bytes]:
    """DER certificates as sent, leaf first; [] when this Python cannot tell.

    Python 3.13 has a public ``get_unverified_chain`` returning bytes; 3.10-3.12
    only have it on the private ``_sslobj``, returning objects with ``public_bytes``.
    """
    public = getattr(tls, "get_unverified_chain", None)
    if public is not None:
        return [bytes(der) for der in public() or ()]
    private = getattr(getattr(tls, "_sslobj", None), "get_unverified_chain", None)
    if private is None:
        return []
    return [item.public_bytes(ssl._ssl.ENCODING_DER) for item in private() or ()]  # type: ignore[attr-defined]


def _reason(error: OSError, timeout: float) -> str:
    """A short cause for ``EndpointUnreachable``, most specific first."""
    if isinstance(error, socket.gaierror):
        return f"DNS lookup failed: {error.strerror or error}"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, TimeoutError):
        return f"timed out after {timeout:g}s"
    if isinstance(error, ssl.SSLError):
        return f"TLS handshake failed: {error.reason or error}"
    if isinstance(error, ConnectionError):
        return f"TLS handshake failed: connection closed by peer ({error.strerror or error})"
    return error.strerror or str(error)


def _where(host: str, port: int, server_name: str | None) -> str:
    address = f"[{host}]" if ":" in host else host
    return f"{address}:{port} (sni {server_name or 'none'})"


def _probe_timeout(remaining: float) -> float:
    return min(max(remaining, _MIN_PROBE_TIMEOUT), _MAX_PROBE_TIMEOUT)


def _normalise_serial(serial: str) -> str:
    digits = serial.strip().lower().replace(":", "").removeprefix("0x")
    int(digits, 16)  # ValueError for something that is not a hex serial
    return digits.lstrip("0") or "0"


def _mismatch(where: str, wanted: str, last: Presented, streak: int) -> EndpointMismatch:
    if last.serial == wanted:
        message = (
            f"{where}: serial {wanted} not served steadily before the deadline "
            f"(last run: {streak} consecutive matching handshakes)"
        )
    else:
        message = f"{where}: expected serial {wanted}, server presents {describe_leaf(last.leaf)}"
    return EndpointMismatch(message, wanted, last)
