"""One SSH connection per host per run, shared by every binding on that host.

The facade is synchronous and thread-safe: apply's runner may deploy several
bindings of one host from several threads at once; they share the connection
(asyncssh multiplexes channels and SFTP requests), and only the first caller
connects (a lock).  A host that cannot be reached is remembered for the rest of
the run, so 500 bindings on a host that is down cost one connect timeout, not
500; a connection that drops mid-run is re-established once on the next use.

What it guarantees: host keys are checked against ``known_hosts`` only (never
trusted on first use), no agent forwarding, no local SSH agent or
``~/.ssh/config`` consulted, no environment variable sent, no pty.  Files are
written into a temp name beside the target (created 0600, chmod to its mode,
fsync'd when the server has ``fsync@openssh.com``) and renamed with
``posix-rename``: atomic on the host.

Errors: ``SshUnreachable`` (network: refused, timeout, dropped) — a plan
warning; ``SshError`` (host key, authentication, key file) — a failure; SFTP
status errors become ``OSError`` with the usual errno, as local writes raise.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import posixpath
import shlex
import threading
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import asyncssh

from reconciler.durations import parse_duration
from reconciler.errors import ProviderError
from reconciler.faults import fault_point
from reconciler.fsutil import config_path, temp_path
from reconciler.providers.ssh import loop, statscript
from reconciler.providers.ssh.config import SshProviderConfig, identity_problem
from reconciler.providers.ssh.hostkeys import mismatch_message
from reconciler.providers.ssh.statscript import RemoteStat

log = logging.getLogger("reconciler.ssh")

T = TypeVar("T")


class SshError(ProviderError):
    """The host cannot be used: host key, authentication, key file."""


class SshUnreachable(SshError):
    """The host cannot be reached now (refused, timed out, dropped): says nothing
    about what is deployed there."""


@dataclass(frozen=True)
class _Refused:
    """The host's sshd would not open a stream (an answer, not a lost connection)."""

    reason: str


@dataclass(frozen=True)
class CommandResult:
    returncode: int
    stdout: bytes
    stderr: bytes


_SFTP_ERRNO = {
    asyncssh.sftp.FX_NO_SUCH_FILE: errno.ENOENT,
    asyncssh.sftp.FX_PERMISSION_DENIED: errno.EACCES,
    asyncssh.sftp.FX_FILE_ALREADY_EXISTS: errno.EEXIST,
    asyncssh.sftp.FX_NO_SPACE_ON_FILESYSTEM: errno.ENOSPC,
    asyncssh.sftp.FX_NOT_A_DIRECTORY: errno.ENOTDIR,
    asyncssh.sftp.FX_FILE_IS_A_DIRECTORY: errno.EISDIR,
    asyncssh.sftp.FX_DIR_NOT_EMPTY: errno.ENOTEMPTY,
}


def _os_error(exc: asyncssh.SFTPError, path: str) -> OSError:
    code = _SFTP_ERRNO.get(exc.code)
    if code is not None:
        return OSError(code, os.strerror(code), path)
    return OSError(errno.EIO, exc.reason or "SFTP error", path)


class SshConnection:
    """The connection to one ``ssh`` provider's host, opened on first use."""

    def __init__(self, name: str, config: SshProviderConfig, root: Path) -> None:
        self.name = name
        self.config = config
        self.root = root
        self.timeout = parse_duration(config.timeout).total_seconds()
        self.commands_run = 0
        """Remote commands run on this connection (the no-change plan test counts them)."""
        self.streams_opened = 0
        """Streams opened to a socket on the host (HAProxy runtime API calls)."""
        self._lock = threading.Lock()
        self._conn: asyncssh.SSHClientConnection | None = None
        self._sftp: asyncssh.SFTPClient | None = None
        self._fsync = True
        self._failure: SshError | None = None
        self._own_temps: set[str] = set()

    @property
    def label(self) -> str:
        return f"ssh {self.name} ({self.config.address()})"

    # -- connecting -----------------------------------------------------------------
    def _ensure(self) -> tuple[asyncssh.SSHClientConnection, asyncssh.SFTPClient]:
        with self._lock:
            if self._failure is not None:
                raise self._failure
            conn, sftp = self._conn, self._sftp
            if conn is not None and sftp is not None and not conn.is_closed():
                return conn, sftp
            try:
                self._conn, self._sftp = loop.call(self._connect(), self.timeout + 5)
            except SshError as exc:
                self._failure = exc
                raise
            except asyncssh.HostKeyNotVerifiable:
                message = mismatch_message(self.config, self.root, self.timeout)
                self._failure = SshError(f"{self.label}: {message}")
                raise self._failure from None
            except asyncssh.PermissionDenied:
                self._failure = SshError(
                    f"{self.label}: authentication refused for user {self.config.user} "
                    "(is the identity's public key in the user's authorized_keys?)"
                )
                raise self._failure from None
            except (OSError, asyncssh.Error, TimeoutError) as exc:
                self._failure = SshUnreachable(f"{self.label}: cannot connect: {_why(exc)}")
                raise self._failure from None
            log.debug("%s: connected", self.label)
            assert self._conn is not None and self._sftp is not None
            return self._conn, self._sftp

    def _client_key(self) -> asyncssh.SSHKey:
        config = self.config
        try:
            if config.identity_env is not None:
                text = os.environ.get(config.identity_env)
                if not text:
                    raise SshError(f"{self.label}: identity_env {config.identity_env} is not set")
                return asyncssh.import_private_key(text)
            problem = identity_problem(config, self.root)
            if problem is not None:
                raise SshError(f"{self.label}: {problem}")
            assert config.identity_file is not None
            return asyncssh.read_private_key(str(config_path(self.root, config.identity_file)))
        except (asyncssh.KeyImportError, ValueError) as exc:
            # Never the key's text: only what kind of problem it is.
            source = config.identity_env or config.identity_file
            raise SshError(
                f"{self.label}: the identity in {source} is not an unencrypted private key "
                f"({type(exc).__name__})"
            ) from None

    async def _connect(self) -> tuple[asyncssh.SSHClientConnection, asyncssh.SFTPClient]:
        config = self.config
        known_hosts = config_path(self.root, config.known_hosts)
        if not known_hosts.is_file():
            raise SshError(
                f"{self.label}: known_hosts file {known_hosts} does not exist "
                f"(run `certform ssh-keyscan {self.name}`)"
            )
        conn = await asyncssh.connect(
            config.host,
            config.port,
            username=config.user,
            client_keys=[self._client_key()],
            known_hosts=str(known_hosts),
            config=None,
            agent_path=None,
            agent_forwarding=False,
            x11_forwarding=False,
            preferred_auth="publickey",
            connect_timeout=self.timeout,
            login_timeout=self.timeout,
            keepalive_interval=max(5.0, self.timeout / 2),
        )
        try:
            sftp = await conn.start_sftp_client()
        except BaseException:
            conn.close()
            raise
        return conn, sftp

    def _call(
        self, work: Coroutine[Any, Any, T], path: str = "", timeout: float | None = None
    ) -> T:
        """Run ``work`` on the loop; map transport failures to SshUnreachable (the
        connection is dropped, so the next call reconnects) and SFTP status errors
        to OSError."""
        try:
            return loop.call(work, (timeout or self.timeout) + 5)
        except asyncssh.SFTPError as exc:
            raise _os_error(exc, path) from None
        except (asyncssh.Error, ConnectionError, EOFError, TimeoutError) as exc:
            self._drop()
            raise SshUnreachable(f"{self.label}: connection lost: {_why(exc)}") from None

    def _drop(self) -> None:
        with self._lock:
            conn, self._conn, self._sftp = self._conn, None, None
        if conn is not None:
            conn.close()

    def close(self) -> None:
        """Close the connection (end of the run); idempotent."""
        with self._lock:
            conn, self._conn, self._sftp = self._conn, None, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()
                loop.call(conn.wait_closed(), 5)

    def sftp(self) -> asyncssh.SFTPClient:
        return self._ensure()[1]

    # -- files ----------------------------------------------------------------------
    def write_files(self, files: Mapping[str, tuple[bytes, int]]) -> dict[str, tuple[int, int]]:
        """Write each ``path: (data, mode)`` atomically (concurrently); returns each
        file's ``(size, mtime)`` as the host stamped it."""
        sftp = self.sftp()

        async def all_files() -> list[tuple[int, int]]:
            return list(
                await asyncio.gather(
                    *(self._write(sftp, path, data, mode) for path, (data, mode) in files.items())
                )
            )

        stamps = self._call(all_files(), next(iter(files), ""))
        return dict(zip(files, stamps, strict=True))

    async def _write(
        self, sftp: asyncssh.SFTPClient, path: str, data: bytes, mode: int
    ) -> tuple[int, int]:
        tmp = temp_path(path)
        self._own_temps.add(tmp)
        try:
            handle = await sftp.open(tmp, "xb", asyncssh.SFTPAttrs(permissions=0o600))
            try:
                await handle.write(data)
                await handle.chmod(mode)  # after creation 0600: a key is never readable
                if self._fsync:
                    try:
                        await handle.fsync()
                    except asyncssh.SFTPOpUnsupported:
                        self._fsync = False
                attrs = await handle.stat()
            finally:
                await handle.close()
            # Crash tests stop here (uploaded, not renamed) and SIGKILL the run.
            fault_point(f"ssh:{path}", "uploaded")
            await sftp.posix_rename(tmp, path)
        except BaseException:
            with contextlib.suppress(Exception):
                await sftp.remove(tmp)
            raise
        return int(attrs.size or len(data)), int(attrs.mtime or 0)

    def read(self, path: str) -> bytes | None:
        """A file's bytes, or None when it does not exist."""
        sftp = self.sftp()

        async def read() -> bytes | None:
            try:
                async with sftp.open(path, "rb") as handle:
                    return bytes(await handle.read())
            except asyncssh.SFTPNoSuchFile:
                return None

        return self._call(read(), path)

    def remove(self, path: str) -> None:
        """Delete ``path``; nothing to do when it is already gone."""
        sftp = self.sftp()

        async def remove() -> None:
            with contextlib.suppress(asyncssh.SFTPNoSuchFile):
                await sftp.remove(path)

        self._call(remove(), path)

    def rmdir(self, path: str) -> bool:
        """Remove an empty directory; False when it cannot be (not empty, gone)."""
        sftp = self.sftp()
        try:
            self._call(sftp.rmdir(path), path)
        except OSError:
            return False
        return True

    def listdir(self, directory: str) -> list[str] | None:
        """Names in ``directory`` (None when it does not exist)."""
        sftp = self.sftp()

        async def names() -> list[str] | None:
            try:
                return [n for n in await sftp.listdir(directory) if n not in (".", "..")]
            except (asyncssh.SFTPNoSuchFile, asyncssh.SFTPNoSuchPath):
                return None

        return self._call(names(), directory)

    def stat(self, path: str) -> asyncssh.SFTPAttrs | None:
        sftp = self.sftp()

        async def stat() -> asyncssh.SFTPAttrs | None:
            try:
                return await sftp.stat(path)
            except asyncssh.SFTPNoSuchFile:
                return None

        return self._call(stat(), path)

    def make_dirs(self, directory: str, mode: int) -> bool:
        """``mkdir -p`` with exactly ``mode`` for the directories made (existing ones
        are left alone); True when ``directory`` itself was made here."""
        sftp = self.sftp()

        async def make() -> bool:
            missing: list[str] = []
            current = posixpath.normpath(directory)
            while True:
                try:
                    attrs = await sftp.stat(current)
                except asyncssh.SFTPNoSuchFile:
                    missing.append(current)
                    parent = posixpath.dirname(current)
                    if parent == current:
                        break
                    current = parent
                    continue
                if attrs.type != asyncssh.FILEXFER_TYPE_DIRECTORY:
                    raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), current)
                break
            for path in reversed(missing):
                try:
                    await sftp.mkdir(path, asyncssh.SFTPAttrs(permissions=mode))
                except asyncssh.SFTPFailure:
                    continue  # made meanwhile (OpenSSH answers a generic failure)
                await sftp.chmod(path, mode)  # the server's umask applied to mkdir
            return bool(missing) and missing[0] == posixpath.normpath(directory)

        return self._call(make(), directory)

    def is_own_temp(self, path: str) -> bool:
        """True for a temp file this process is writing (never cleaned up as stale)."""
        return path in self._own_temps

    # -- commands -------------------------------------------------------------------
    def run(
        self,
        argv: Sequence[str],
        timeout: float,
        *,
        cwd: str | None = None,
        variables: Mapping[str, str] | None = None,
        stdin: bytes = b"",
    ) -> CommandResult:
        """Run ``argv`` on the host: quoted with ``shlex.join`` (the login shell sees
        one command and its arguments, nothing to interpret), ``variables`` set with
        ``env``, in ``cwd``; nothing of certform's environment is sent.  Raises
        TimeoutError when it runs past ``timeout`` (the host's ``timeout`` kills its
        process group)."""
        conn, _ = self._ensure()
        # The host's own ``timeout`` (coreutils) stops the command and everything it
        # started (its process group) even if this side is gone; 124: timed out.
        seconds = f"{max(timeout, 0.1):g}"
        prefix = ["timeout", "-k", "2", seconds]
        if variables:
            prefix += ["env", *(f"{k}={v}" for k, v in variables.items())]
        command = shlex.join([*prefix, *argv])
        if cwd is not None:
            command = f"cd {shlex.quote(cwd)} && {command}"
        self.commands_run += 1
        log.debug("%s: run %s", self.label, shlex.join(argv[:1]))

        async def run() -> CommandResult:
            process = await conn.create_process(command, encoding=None)
            try:
                stdout, stderr = await asyncio.wait_for(process.communicate(stdin), timeout + 5)
            except TimeoutError:
                process.close()  # not waited for: the host's timeout ends the command
                raise
            status = process.exit_status
            if status is None or status < 0:  # killed by a signal
                status = 137 if process.exit_signal else 255
            process.close()
            if status in (124, 137):
                raise TimeoutError()
            return CommandResult(status, bytes(stdout or b""), bytes(stderr or b""))

        try:
            return loop.call(run(), timeout + self.timeout + 10)
        except TimeoutError:
            raise
        except (asyncssh.Error, ConnectionError, EOFError) as exc:
            self._drop()
            raise SshUnreachable(f"{self.label}: connection lost: {_why(exc)}") from None

    def exchange(
        self,
        target: str | tuple[str, int],
        request: bytes,
        timeout: float,
        until: bytes | None = None,
    ) -> bytes:
        """One stream through the connection to a socket on the host — a unix socket
        path (``direct-streamlocal``) or ``(host, port)`` as the host resolves it
        (``direct-tcpip``): send ``request``, half-close, read to EOF (or to
        ``until``).  The HAProxy runtime API over SSH.

        Raises OSError when the host's sshd cannot open the socket (no such
        socket, refused, forwarding disabled: the connection stays up),
        TimeoutError past ``timeout``, SshUnreachable when the connection is lost."""
        conn, _ = self._ensure()
        self.streams_opened += 1
        log.debug("%s: stream to %s", self.label, target)

        async def exchange() -> bytes | _Refused:
            try:
                if isinstance(target, str):
                    reader, writer = await conn.open_unix_connection(target)
                else:
                    reader, writer = await conn.open_connection(*target)
            except asyncssh.ChannelOpenError as exc:
                return _Refused(exc.reason or "channel open failed")
            try:
                writer.write(request)
                writer.write_eof()
                chunks: list[bytes] = []
                while chunk := await reader.read(65536):
                    chunks.append(chunk)
                    if until is not None and until in (head := b"".join(chunks)):
                        return head[: head.find(until)]
                return b"".join(chunks)
            finally:
                writer.close()

        try:
            answer = loop.call(asyncio.wait_for(exchange(), timeout), timeout + 5)
        except TimeoutError:
            raise
        except (asyncssh.Error, ConnectionError, EOFError) as exc:
            self._drop()
            raise SshUnreachable(f"{self.label}: connection lost: {_why(exc)}") from None
        if isinstance(answer, _Refused):
            reason = f"sshd on {self.name} could not open it: {answer.reason}"
            raise OSError(errno.ECONNREFUSED, reason)
        return answer

    def stat_many(self, paths: Sequence[str]) -> dict[str, RemoteStat]:
        """Size, mode, mtime and SHA-256 of every path that exists, in ONE remote
        command (``statscript``)."""
        if not paths:
            return {}
        try:
            result = self.run(statscript.ARGV, self.timeout, stdin=statscript.stdin_for(paths))
        except TimeoutError:
            raise SshUnreachable(
                f"{self.label}: stamping {len(paths)} files did not finish within "
                f"{self.config.timeout}"
            ) from None
        if result.returncode != 0:
            detail = result.stderr.decode(errors="replace").strip().splitlines()[-1:]
            raise SshError(
                f"{self.label}: cannot stamp files (needs sh, xargs, stat and sha256sum): "
                f"exit {result.returncode}{': ' + detail[0] if detail else ''}"
            )
        log.debug("%s: stamped %d files in one command", self.label, len(paths))
        return statscript.parse(result.stdout, paths)


def _why(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return "timed out"
    if isinstance(exc, OSError) and exc.errno:
        return os.strerror(exc.errno)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
