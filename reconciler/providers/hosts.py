"""Where a file-writing target's files and commands live: this machine, or a host over SSH.

``files`` and ``nginx`` targets do their file-system and command work through a
``Host``.  ``LOCAL`` is today's code path unchanged (``fsutil``'s atomic writes
with batched durability, ``filestamp``'s stat-then-hash, ``run_command``'s
scrubbed child processes); a target whose config (or provider) says ``via:
NAME`` gets the ``SshHost`` of that ``ssh`` provider (``providers/ssh/host.py``)
instead, with the same operations and the same guarantees over one shared
connection.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

from reconciler.filestamp import Stamp, read_if_present, stamp_from, stamp_problems
from reconciler.fsutil import (
    fsync_directory,
    make_dirs,
    remove_stale_temps,
    unsafe_key_directory,
    write_atomic,
)
from reconciler.providers.commands import run_command


class Host(Protocol):
    """The operations a file-writing target needs from the machine it writes to."""

    remote: bool

    def where(self, path: str) -> str:
        """``path`` as messages name it (``web1:/etc/ssl/web`` on a host)."""
        ...

    def want_stamps(self, paths: Iterable[str]) -> None:
        """Announce the paths a plan will stamp (one batched read per host)."""
        ...

    def stamp_problems(
        self, entries: Sequence[tuple[str, str, Stamp]], private: tuple[str, ...] = ()
    ) -> tuple[list[str], int]:
        """``filestamp.stamp_problems`` on this host; raises Unreachable."""
        ...

    def unsafe_key_directory(self, directory: str) -> str | None: ...

    def make_dirs(self, directory: str, mode: int) -> bool: ...

    def remove_stale_temps(self, directory: str, names: Iterable[str]) -> list[str]: ...

    def write_files(self, files: Mapping[str, tuple[bytes, int]]) -> dict[str, Stamp]:
        """Each ``path: (data, mode)`` written atomically; their stamps."""
        ...

    def fsync_directory(self, directory: str) -> None: ...

    def read_if_present(self, path: str) -> bytes | None: ...

    def file_mode(self, path: str) -> int | None:
        """Permission bits of ``path`` (None when it does not exist)."""
        ...

    def present_names(self, directory: str, names: Iterable[str]) -> set[str]:
        """Which of ``names`` are in ``directory`` (all of them when it cannot be listed)."""
        ...

    def unlink(self, path: str) -> None:
        """Delete a file; nothing to do when it is gone."""
        ...

    def rmdir(self, directory: str) -> None:
        """Remove ``directory`` if it is empty; errors ignored."""
        ...

    def run_command(
        self,
        label: str,
        argv: Sequence[str],
        timeout: str,
        *,
        cwd: str | None = None,
        variables: Mapping[str, str] | None = None,
        pass_env: Sequence[str] = (),
    ) -> None: ...


class LocalHost:
    """This machine: the code paths local targets always used."""

    remote = False

    def where(self, path: str) -> str:
        return path

    def want_stamps(self, paths: Iterable[str]) -> None:
        return None

    def stamp_problems(
        self, entries: Sequence[tuple[str, str, Stamp]], private: tuple[str, ...] = ()
    ) -> tuple[list[str], int]:
        return stamp_problems(entries, private=private)

    def unsafe_key_directory(self, directory: str) -> str | None:
        return unsafe_key_directory(Path(directory))

    def make_dirs(self, directory: str, mode: int) -> bool:
        return make_dirs(directory, mode)

    def remove_stale_temps(self, directory: str, names: Iterable[str]) -> list[str]:
        return remove_stale_temps(Path(directory), names)

    def write_files(self, files: Mapping[str, tuple[bytes, int]]) -> dict[str, Stamp]:
        return {
            path: stamp_from(write_atomic(path, data, mode), data)
            for path, (data, mode) in files.items()
        }

    def fsync_directory(self, directory: str) -> None:
        fsync_directory(directory)

    def read_if_present(self, path: str) -> bytes | None:
        return read_if_present(path)

    def file_mode(self, path: str) -> int | None:
        try:
            return os.stat(path).st_mode & 0o7777
        except (FileNotFoundError, NotADirectoryError):
            return None

    def present_names(self, directory: str, names: Iterable[str]) -> set[str]:
        try:
            return set(os.listdir(directory))
        except (FileNotFoundError, NotADirectoryError):
            return set()  # a first deploy: nothing to put back but absence
        except PermissionError:
            return set(names)  # searchable, not listable: try each file

    def unlink(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            os.unlink(path)

    def rmdir(self, directory: str) -> None:
        with contextlib.suppress(OSError):
            os.rmdir(directory)

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
        run_command(
            label,
            argv,
            timeout,
            cwd=Path(cwd) if cwd is not None else None,
            variables=variables,
            pass_env=pass_env,
        )


LOCAL = LocalHost()
