"""A small typed client for HAProxy's runtime API (the stats socket).

Certificates change in a running HAProxy without a reload: ``set ssl cert`` opens
a transaction, ``commit ssl cert`` swaps it in (``abort ssl cert`` drops it), and
``add``/``del ssl crt-list`` attach or detach a certificate for an SNI.  This module
speaks that protocol and nothing else; deciding what to change is the target's job.

Protocol facts this client relies on (checked against HAProxy 2.6):

* One command per connection: connect, send, shut down writing, read to EOF.
* A payload goes as ``cmd <<\\n<payload>\\n\\n``; an empty line ends it, so a payload
  may not contain one.  A request larger than ``tune.bufsize`` (16 KB by default)
  is dropped with an empty reply, which counts as an error here.
* HAProxy never returns a status code.  Every command is therefore prefixed with
  ``set severity-output number;`` so that messages come back as ``[3]: ...``
  (syslog levels, 3 and below are errors).  ``commit ssl cert`` and ``add ssl
  crt-list`` finish in an I/O handler that prints no severity, so they must print
  ``Success!`` to count as done.
* ``add ssl crt-list LIST PATH sni`` on the command line silently drops the SNI
  filter; the line has to be sent as a payload.
* HAProxy keeps a single certificate transaction.  In 2.6, ``set ssl cert X``
  while a transaction for Y is open replaces *Y's* pending payload with X's and
  answers "Transaction updated for certificate Y!"; ``set_cert`` refuses to start
  in that situation and cleans up if it happens anyway (a race).
* Runtime changes live in memory only: a reload reads the files again.

Error messages never carry the PEM payload: HAProxy does not echo it today, and
``_redact`` strips anything that looks like one in case a future version does.
"""

from __future__ import annotations

import contextlib
import re
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from reconciler.errors import ProviderError

_SEVERITY_PREFIX = "set severity-output number; "
_SEVERITY = re.compile(r"^\[(\d)\]: ?")
_LAST_ERROR_LEVEL = 3  # syslog LOG_ERR: 0-3 are errors, 4-7 warning/notice/info/debug
_PEM_BLOCK = re.compile(r"-----BEGIN [^-\n]*-----.*?(?:-----END [^-\n]*-----|\Z)", re.DOTALL)
_MIN_SECRET_LINE = 16  # payload lines this long are never echoed back in an error
_TCP_ADDRESS = re.compile(r"^(?P<host>[^/:\s]+|\[[0-9A-Fa-f:.]+\]):(?P<port>\d{1,5})$")
_UNSAFE_ARGUMENT = re.compile(r"[\s;\\\x00-\x1f]")
_MONTHS = {
    name: number
    for number, name in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"),
        start=1,
    )
}


class HaproxyError(ProviderError):
    """HAProxy refused a command; the message quotes HAProxy's own reply.

    ``command`` is the command line without its payload and ``reply`` HAProxy's
    answer with anything PEM-like removed, so both are safe to log.
    """

    def __init__(self, message: str, *, command: str = "", reply: str = "") -> None:
        super().__init__(message)
        self.command = command
        self.reply = reply


class HaproxyUnreachable(HaproxyError):
    """The runtime API could not be reached: no socket, refused, no permission, timeout."""


@dataclass(frozen=True)
class CertInfo:
    """A committed certificate as HAProxy holds it in memory (``show ssl cert PATH``).

    ``serial`` is lowercase hex without leading zeros, equal to
    ``format(cert.serial_number, "x")``.  HAProxy 2.6 prints only DNS names in the
    SAN line (IP addresses come out empty), so ``sans`` holds DNS names only.
    ``status`` is "Used" when a bind line serves it, else "Unused".
    """

    path: str
    status: str
    serial: str
    not_before: datetime
    not_after: datetime
    sans: tuple[str, ...]
    subject: str
    issuer: str
    sha1_fingerprint: str


@dataclass(frozen=True)
class CrtListEntry:
    """One line of a crt-list as HAProxy holds it (``show ssl crt-list -n LIST``).

    ``line`` is HAProxy's line number, which keeps growing as lines are added at
    runtime; ``ref`` ("PATH:LINE") names exactly this entry for ``del_crt_list``
    when the same certificate appears on several lines.
    """

    path: str
    options: str
    sni: tuple[str, ...]
    line: int

    @property
    def ref(self) -> str:
        return f"{self.path}:{self.line}"


@dataclass(frozen=True)
class _Reply:
    """One command's answer, with the severity prefix split off."""

    severity: int | None
    text: str

    def failed(self, success_marker: str | None) -> bool:
        if self.severity is not None and self.severity <= _LAST_ERROR_LEVEL:
            return True
        if self.text.startswith("Unknown command"):
            return True
        return success_marker is not None and success_marker not in self.text.splitlines()


class HaproxyRuntime:
    """Client for one HAProxy runtime API socket.

    ``address`` is a unix socket path (``/run/haproxy/admin.sock``,
    ``unix@/run/haproxy/admin.sock``) or TCP (``127.0.0.1:9999``,
    ``ipv4@127.0.0.1:9999``, ``ipv6@[::1]:9999``).  Certificate commands need a
    socket declared with ``level admin``.  The client keeps no connection open,
    so it is safe to share; HAProxy itself serialises transactions.
    """

    def __init__(self, address: str, timeout: float = 5.0) -> None:
        self.address = address
        self.timeout = timeout
        self._family, self._target = _parse_address(address)

    # --- transport ---------------------------------------------------------

    def execute(
        self, command: str, payload: str | None = None, *, until: bytes | None = None
    ) -> str:
        """Send one command (and optional payload) on a fresh connection; the raw reply.

        Does not interpret the reply: HAProxy reports errors as text.  Raises
        ``HaproxyUnreachable`` when the socket cannot be used and ``ValueError``
        when ``command`` or ``payload`` would be read by HAProxy as more than one
        command (a newline in the command, an empty line inside the payload).
        """
        request = _encode_request(command, payload)
        try:
            return self._exchange(request, until).decode("utf-8", errors="replace")
        except TimeoutError:
            raise HaproxyUnreachable(
                f"HAProxy runtime API at {self.address}: no answer within {self.timeout:g} s"
            ) from None
        except OSError as exc:
            reason = exc.strerror or str(exc) or type(exc).__name__
            raise HaproxyUnreachable(
                f"cannot reach HAProxy runtime API at {self.address}: {reason}"
            ) from None

    def _exchange(self, request: bytes, until: bytes | None) -> bytes:
        """One connection: send ``request``, shut down writing, read the reply to EOF
        (or up to ``until``).  Raises OSError / TimeoutError.  The transport a
        subclass replaces (``providers/ssh/haproxy.py``: through an SSH connection)."""
        with socket.socket(self._family, socket.SOCK_STREAM) as sock:
            sock.settimeout(self.timeout)
            sock.connect(self._target)
            sock.sendall(request)
            sock.shutdown(socket.SHUT_WR)
            return _read_to_eof(sock, until)

    def _reply(self, command: str, payload: str | None = None) -> _Reply:
        raw = self.execute(_SEVERITY_PREFIX + command, payload)
        # ``set severity-output`` answers with an empty line before the real reply.
        text = raw.strip("\n")
        match = _SEVERITY.match(text)
        if match is None:
            return _Reply(None, text)
        return _Reply(int(match.group(1)), text[match.end() :])

    def call(
        self, command: str, payload: str | None = None, *, success_marker: str | None = None
    ) -> str:
        """Run a command that must succeed; its reply text without the severity prefix.

        Raises ``HaproxyError`` with HAProxy's text when the reply is an error
        (severity 0-3, "Unknown command"), is empty (HAProxy drops a request larger
        than ``tune.bufsize`` without a word), or lacks the line ``success_marker``
        for commands that report success only that way.
        """
        reply = self._reply(command, payload)
        if not reply.text:
            raise _silent(command, payload)
        if reply.failed(success_marker):
            raise _refused(command, reply.text, payload)
        return reply.text

    # --- reading -----------------------------------------------------------

    def show_cert(self, path: str) -> CertInfo | None:
        """The committed certificate HAProxy holds for ``path``.

        None when HAProxy does not know ``path`` or knows it only as an empty store
        (``new ssl cert`` without a commit): either way it serves nothing from it.
        ``cert_paths()`` tells those two apart.  Pending transactions are ignored.
        """
        command = f"show ssl cert {_argument(path)}"
        reply = self._reply(command)
        if not reply.text:
            raise _silent(command, None)
        if reply.failed(None):
            if "Not found" in reply.text:
                return None
            raise _refused(command, reply.text, None)
        fields = _parse_fields(reply.text)
        if fields.get("Status") == "Empty" or "Serial" not in fields:
            return None
        return _cert_info(path, fields)

    def cert_paths(self) -> set[str]:
        """Paths of every certificate store HAProxy has (committed, including empty ones)."""
        return _cert_sections(self.call("show ssl cert"))["filename"]

    def pending_transaction(self) -> str | None:
        """Path of the open ``set ssl cert`` transaction, if any (HAProxy keeps one).

        ``show ssl cert`` lists the transaction first, then every certificate: only
        the head is read, so the check does not grow with the number of certificates."""
        head = self.execute(_SEVERITY_PREFIX + "show ssl cert", until=b"# filename")
        pending = _cert_sections(head.strip("\n"))["transaction"]
        return next(iter(pending), None)

    def crt_list_entries(self, crt_list: str) -> list[CrtListEntry]:
        """The lines of ``crt_list`` in HAProxy's memory, in order.

        Raises ``HaproxyError`` when HAProxy has no such crt-list (it only knows
        the ones referenced by a bind line).
        """
        text = self.call(f"show ssl crt-list -n {_argument(crt_list)}")
        return [_parse_crt_list_line(line) for line in text.splitlines() if _is_entry(line)]

    # --- writing -----------------------------------------------------------

    def new_cert(self, path: str) -> None:
        """Create an empty certificate store; ``HaproxyError`` if ``path`` already exists."""
        self.call(f"new ssl cert {_argument(path)}")

    def set_cert(self, path: str, pem: str) -> None:
        """Open (or update) the transaction for ``path`` with ``pem`` (certificate, chain, key).

        Nothing changes for clients until ``commit_cert``.  HAProxy accepts a key
        that does not match here and refuses it at commit.  Raises ``HaproxyError``
        when HAProxy refuses the payload or ``path``, or when a transaction for
        another certificate is open (HAProxy 2.6 would otherwise overwrite that
        transaction's payload with ``pem``).
        """
        pending = self.pending_transaction()
        if pending is not None and pending != path:
            raise HaproxyError(
                f"HAProxy at {self.address} has an open certificate transaction for "
                f"{pending}; refusing to set {path} (abort that transaction first)"
            )
        command = f"set ssl cert {_argument(path)}"
        text = self.call(command, _require_payload(pem))
        updated = re.search(r"Transaction (?:created|updated) for certificate (\S+)!", text)
        if updated is None:
            raise _refused(command, text, pem)
        if updated.group(1) != path:
            # Lost a race with another writer: our PEM now sits in its transaction.
            self._abort_quietly(updated.group(1))
            raise HaproxyError(
                f"HAProxy at {self.address} applied {path}'s payload to the open transaction "
                f"for {updated.group(1)}; that transaction was aborted",
                command=command,
                reply=text,
            )

    def commit_cert(self, path: str) -> None:
        """Swap the pending transaction for ``path`` in; live connections keep working.

        Raises ``HaproxyError`` with HAProxy's reason (key mismatch, no certificate,
        no transaction); the transaction then stays open until ``abort_cert``.
        """
        self.call(f"commit ssl cert {_argument(path)}", success_marker="Success!")

    def abort_cert(self, path: str) -> None:
        """Drop the pending transaction for ``path``; ``HaproxyError`` when there is none."""
        self.call(f"abort ssl cert {_argument(path)}")

    def del_cert(self, path: str) -> None:
        """Forget an unused certificate store.

        Raises ``HaproxyError`` when ``path`` is unknown or still used: remove it
        from every crt-list first.
        """
        self.call(f"del ssl cert {_argument(path)}")

    def replace_cert(self, path: str, pem: str) -> None:
        """Set and commit ``pem`` for ``path``: all or nothing.

        On any refusal the transaction is aborted, so HAProxy keeps serving the
        previous certificate, and the ``HaproxyError`` from the failing step is
        raised.  Idempotent: committing the same PEM again changes nothing visible.
        """
        try:
            self.set_cert(path, pem)
            self.commit_cert(path)
        except HaproxyError:
            # HAProxy refuses to abort a transaction that belongs to another path,
            # so this never discards someone else's pending change.
            self._abort_quietly(path)
            raise

    def add_crt_list(
        self, crt_list: str, path: str, options: str = "", sni: Sequence[str] = ()
    ) -> None:
        """Append the line ``PATH [options] sni...`` to ``crt_list``.

        ``path`` must already be a committed certificate.  ``options`` are crt-list
        SSL options (``alpn h2,http/1.1``), with or without the brackets; ``sni``
        filters may use ``*.`` and ``!`` as in a crt-list file.  HAProxy does not
        deduplicate: adding the same line twice yields two entries.
        """
        line = _crt_list_line(path, options, sni)
        self.call(f"add ssl crt-list {_argument(crt_list)}", line, success_marker="Success!")

    def del_crt_list(self, crt_list: str, path_or_ref: str) -> None:
        """Remove one line from ``crt_list``: ``PATH`` or, when ambiguous, ``PATH:LINE``.

        Raises ``HaproxyError`` when the entry is absent, ``PATH`` matches several
        lines (HAProxy then lists their numbers), or it is a default certificate.
        """
        self.call(f"del ssl crt-list {_argument(crt_list)} {_argument(path_or_ref)}")

    def _abort_quietly(self, path: str) -> None:
        """Best-effort abort during cleanup: the original error is the one that matters."""
        with contextlib.suppress(HaproxyError):
            self.abort_cert(path)


# --- request encoding --------------------------------------------------------


def is_unix_socket(address: str) -> bool:
    """True when ``address`` names a unix socket path (not ``host:port``)."""
    return _parse_address(address)[0] == socket.AF_UNIX


def _parse_address(address: str) -> tuple[socket.AddressFamily, str | tuple[str, int]]:
    """Socket family and connect target for an HAProxy-style address."""
    if address.startswith("unix@"):
        return socket.AF_UNIX, address.removeprefix("unix@")
    for prefix, family in (("ipv4@", socket.AF_INET), ("ipv6@", socket.AF_INET6)):
        if address.startswith(prefix):
            host, _, port = address.removeprefix(prefix).rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"HAProxy address {address!r}: expected {prefix}HOST:PORT")
            return family, (host.strip("[]"), int(port))
    match = _TCP_ADDRESS.match(address)
    if match is None:
        return socket.AF_UNIX, address
    host = match.group("host")
    family = socket.AF_INET6 if host.startswith("[") else socket.AF_INET
    return family, (host.strip("[]"), int(match.group("port")))


def _encode_request(command: str, payload: str | None) -> bytes:
    if "\n" in command or "\r" in command:
        raise ValueError("an HAProxy command is a single line")
    if payload is None:
        return f"{command}\n".encode()
    body = payload.replace("\r\n", "\n").strip("\n")
    if not body or "\n\n" in body:
        raise ValueError("an HAProxy payload must be non-empty and contain no empty line")
    return f"{command} <<\n{body}\n\n".encode()


def _read_to_eof(sock: socket.socket, until: bytes | None = None) -> bytes:
    """The whole reply, or only what comes before ``until`` (then the rest is not read:
    a long listing whose head is all we need costs one small read)."""
    chunks: list[bytes] = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
        if until is not None:
            head = b"".join(chunks)
            cut = head.find(until)
            if cut >= 0:
                return head[:cut]
    return b"".join(chunks)


def _argument(value: str) -> str:
    """``value`` as one CLI word; HAProxy splits on spaces and ``;``."""
    if not value or _UNSAFE_ARGUMENT.search(value):
        raise ValueError(
            f"{value!r} cannot be passed to the HAProxy runtime API "
            "(empty, or contains whitespace, ';', '\\' or control characters)"
        )
    return value


def _require_payload(pem: str) -> str:
    if "-----BEGIN" not in pem:
        raise ValueError("expected PEM text (certificate, chain and private key)")
    return pem


def _crt_list_line(path: str, options: str, sni: Sequence[str]) -> str:
    inner = options.strip().removeprefix("[").removesuffix("]").strip()
    if "[" in inner or "]" in inner or "\n" in inner:
        raise ValueError(f"crt-list options {options!r}: brackets or newlines inside")
    words = [_argument(path), *([f"[{inner}]"] if inner else []), *map(_argument, sni)]
    return " ".join(words)


# --- reply parsing -----------------------------------------------------------


def _silent(command: str, payload: str | None) -> HaproxyError:
    hint = ""
    if payload is not None:
        hint = f"; a {len(payload.encode())}-byte payload may exceed its tune.bufsize"
    return HaproxyError(f"HAProxy closed the connection without answering '{command}'{hint}")


def _refused(command: str, text: str, payload: str | None) -> HaproxyError:
    safe = _redact(text, payload)
    summary = " ".join(line.strip() for line in safe.splitlines() if line.strip())
    return HaproxyError(f"HAProxy refused '{command}': {summary}", command=command, reply=safe)


def _redact(text: str, payload: str | None) -> str:
    """``text`` without PEM blocks or any long line of ``payload``: no key leaves here."""
    text = _PEM_BLOCK.sub("[PEM redacted]", text)
    for line in (payload or "").splitlines():
        if len(line.strip()) >= _MIN_SECRET_LINE:
            text = text.replace(line.strip(), "[redacted]")
    return text


def _parse_fields(text: str) -> dict[str, str]:
    """``Key: value`` lines; the first occurrence wins (chain lines repeat keys)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(": ")
        if sep and key not in fields:
            fields[key] = value.strip()
    return fields


def _cert_info(path: str, fields: dict[str, str]) -> CertInfo:
    sans = fields.get("Subject Alternative Name", "")
    names = (item.strip().removeprefix("DNS:") for item in sans.split(","))
    return CertInfo(
        path=path,
        status=fields.get("Status", ""),
        serial=fields["Serial"].lower().lstrip("0") or "0",
        not_before=_parse_openssl_time(fields["notBefore"]),
        not_after=_parse_openssl_time(fields["notAfter"]),
        sans=tuple(name for name in names if name),
        subject=fields.get("Subject", ""),
        issuer=fields.get("Issuer", ""),
        sha1_fingerprint=fields.get("SHA1 FingerPrint", "").lower(),
    )


def _parse_openssl_time(value: str) -> datetime:
    """OpenSSL's ``Dec  3 11:43:39 2026 GMT``, parsed without depending on the locale."""
    try:
        month, day, clock, year, zone = value.split()
        hour, minute, second = (int(part) for part in clock.split(":"))
        if zone != "GMT":
            raise ValueError(zone)
        return datetime(int(year), _MONTHS[month], int(day), hour, minute, second, tzinfo=UTC)
    except (ValueError, KeyError):
        raise HaproxyError(f"unexpected certificate time from HAProxy: {value!r}") from None


def _cert_sections(text: str) -> dict[str, set[str]]:
    """``show ssl cert`` lists ``# transaction`` (paths prefixed by ``*``) then ``# filename``."""
    sections: dict[str, set[str]] = {"filename": set(), "transaction": set()}
    current = "filename"
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("#"):
            current = "transaction" if "transaction" in line else "filename"
        elif line:
            sections[current].add(line.removeprefix("*"))
    return sections


def _is_entry(line: str) -> bool:
    return bool(line.strip()) and not line.startswith("#")


def _parse_crt_list_line(line: str) -> CrtListEntry:
    """``PATH:LINE [options] sni...``; HAProxy 2.6 leaves a NUL before ``]``."""
    line = line.replace("\x00", "").strip()
    ref, _, rest = line.partition(" ")
    path, _, number = ref.rpartition(":")
    options = ""
    rest = rest.strip()
    if rest.startswith("["):
        options, _, rest = rest[1:].partition("]")
    return CrtListEntry(
        path=path, options=options.strip(), sni=tuple(rest.split()), line=int(number)
    )
