"""The ``Host`` of a target that says ``via: NAME``: the same operations as
``hosts.LocalHost``, over the run's one connection to that ``ssh`` provider's host.

Observation is batched: every target on the host announces its files first
(``want_stamps``, from ``Target.prefetch``), and the first ``stamp_problems``
of the plan stamps all of them with one remote command (``batch``).  A host
that cannot be reached makes every binding on it unreachable (a plan warning).
"""

from __future__ import annotations

import atexit
import hashlib
import posixpath
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from reconciler.errors import ProviderError
from reconciler.filestamp import Stamp
from reconciler.fsutil import is_temp_of
from reconciler.model.observed import Unreachable
from reconciler.providers.batch import lookup_many, want
from reconciler.providers.commands import command_failure
from reconciler.providers.ssh.config import SshProviderConfig
from reconciler.providers.ssh.connection import SshConnection, SshUnreachable
from reconciler.providers.ssh.statscript import RemoteStat

_pool: dict[tuple[str, str, str], SshConnection] = {}
_pool_lock = threading.Lock()


def connection_for(name: str, config: SshProviderConfig, root: Path) -> SshConnection:
    """The run's connection to provider ``name`` (made once, shared by every binding)."""
    key = (name, config.model_dump_json(), str(root))
    with _pool_lock:
        connection = _pool.get(key)
        if connection is None:
            connection = _pool[key] = SshConnection(name, config, root)
        return connection


def open_connections() -> list[SshConnection]:
    with _pool_lock:
        return list(_pool.values())


@atexit.register
def close_all() -> None:
    """Close every connection of the run (and forget them)."""
    with _pool_lock:
        connections = list(_pool.values())
        _pool.clear()
    for connection in connections:
        connection.close()


class SshHost:
    """Files and commands on one SSH host."""

    remote = True

    def __init__(self, name: str, config: SshProviderConfig, root: Path) -> None:
        self.name = name
        self.connection = connection_for(name, config, root)

    def where(self, path: str) -> str:
        return f"{self.name}:{path}"

    # -- observing ------------------------------------------------------------------
    def want_stamps(self, paths: Iterable[str]) -> None:
        for path in paths:
            want(self._group, path, self._stat_many)

    @property
    def _group(self) -> tuple[str, int]:
        return ("ssh-stat", id(self.connection))

    def _stat_many(self, paths: list[str]) -> dict[str, RemoteStat]:
        return self.connection.stat_many(paths)

    def stamp_problems(
        self, entries: Sequence[tuple[str, str, Stamp]], private: tuple[str, ...] = ()
    ) -> tuple[list[str], int]:
        try:
            stats = lookup_many(self._group, [path for _, path, _ in entries], self._stat_many)
        except SshUnreachable as exc:
            raise Unreachable(str(exc)) from None
        problems: list[str] = []
        missing = 0
        for label, path, (_size, _mtime, digest) in entries:
            stat: RemoteStat | None = stats.get(path)
            if stat is None:
                problems.append(f"{label} missing")
                missing += 1
                continue
            if stat.sha256 is None:
                problems.append(f"{label} cannot be read by {self.connection.config.user}")
            elif stat.sha256 != digest:
                problems.append(f"{label} changed on {self.name}")
            if label in private and stat.mode & 0o777 != 0o600:
                problems.append(f"{label} has mode {stat.mode & 0o777:o}, expected 600")
        return problems, missing

    # -- writing --------------------------------------------------------------------
    def unsafe_key_directory(self, directory: str) -> str | None:
        attrs = self.connection.stat(directory)
        if attrs is None or attrs.permissions is None:
            return None
        mode = attrs.permissions & 0o7777
        if mode & 0o022:
            return (
                f"the directory {self.where(directory)} that receives a private key is "
                f"group- or world-writable (mode {mode:04o}): anyone who can write there "
                f"can replace the key; run on {self.name}: chmod go-w '{directory}'"
            )
        return None

    def make_dirs(self, directory: str, mode: int) -> bool:
        return self.connection.make_dirs(directory, mode)

    def remove_stale_temps(self, directory: str, names: Iterable[str]) -> list[str]:
        """Temp files a killed run left (one may hold a key): the state lock says no
        other run of this state writes there, so every one not of this process goes."""
        wanted = set(names)
        removed = []
        for name in self.connection.listdir(directory) or []:
            path = posixpath.join(directory, name)
            if is_temp_of(name, wanted) and not self.connection.is_own_temp(path):
                self.connection.remove(path)
                removed.append(name)
        return removed

    def write_files(self, files: Mapping[str, tuple[bytes, int]]) -> dict[str, Stamp]:
        written = self.connection.write_files(files)
        return {
            path: [size, mtime * 1_000_000_000, hashlib.sha256(files[path][0]).hexdigest()]
            for path, (size, mtime) in written.items()
        }

    def fsync_directory(self, directory: str) -> None:
        return None  # each file was fsync'd before its rename (fsync@openssh.com)

    def read_if_present(self, path: str) -> bytes | None:
        return self.connection.read(path)

    def file_mode(self, path: str) -> int | None:
        attrs = self.connection.stat(path)
        if attrs is None or attrs.permissions is None:
            return None
        return attrs.permissions & 0o7777

    def present_names(self, directory: str, names: Iterable[str]) -> set[str]:
        found = self.connection.listdir(directory)
        return set(found) if found is not None else set()

    def unlink(self, path: str) -> None:
        self.connection.remove(path)

    def rmdir(self, directory: str) -> None:
        self.connection.rmdir(directory)

    # -- commands -------------------------------------------------------------------
    def run_command(
        self,
        label: str,
        argv: Sequence[str],
        timeout: str,
        *,
        cwd: str | None = None,
        variables: Mapping[str, str] | None = None,
        pass_env: Sequence[str] = (),
    ) -> None:
        """``argv`` run on the host with only ``variables`` set by certform (nothing
        of its own environment; ``pass_env`` is refused with ``via`` at validate)."""
        from reconciler.durations import parse_duration

        where = f" on {self.name}"
        try:
            result = self.connection.run(
                argv, parse_duration(timeout).total_seconds(), cwd=cwd, variables=variables
            )
        except TimeoutError:
            raise ProviderError(
                f"{label} {argv[0]}{where} did not finish within {timeout}"
            ) from None
        if result.returncode == 127:
            raise ProviderError(f"{label} command not found{where}: {argv[0]}")
        if result.returncode == 126:
            raise ProviderError(f"{label} command not executable{where}: {argv[0]}")
        if result.returncode != 0:
            raise command_failure(
                label, argv, result.returncode, result.stdout, result.stderr, where
            )
