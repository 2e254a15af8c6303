"""File-system helpers: atomic and exclusive writes, directories made with fixed modes
whatever the umask, cleanup of temp files a killed run left behind, and the
OpenSSH-style permission checks on secrets and key directories.

Durability can be batched: inside ``deferred_sync()`` a durable ``write_atomic``
and ``fsync_directory`` only note what they wrote, and the batch makes all of it
durable at once (``SyncBatch.flush``: one ``syncfs`` per file system, or one
``fsync`` per file and directory where ``syncfs`` is missing).  Apply's runner
flushes a batch of steps before it records them, so the state never says a file
was deployed before the file is on disk; only how many flushes it takes changes.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import itertools
import os
import re
import secrets
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

STATE_DIR_MODE = 0o700
"""``.certform/`` (or wherever the state lives): the state, the master key, the lock."""
TARGET_DIR_MODE = 0o750
"""A directory certform creates to deploy a certificate (and its private key) into."""
PUBLIC_DIR_MODE = 0o755
"""A directory of public files meant to be served (CRLs, ACME http-01 answers)."""

STALE_TEMP_AGE = 3600.0
"""A temp file whose writer still seems alive is only removed when older than this
(its pid may have been reused by an unrelated process)."""

_TEMP = re.compile(r"^\.(?P<name>.+)\.(?:(?P<pid>\d+)-[0-9a-f]{8}|[a-z0-9_]{8})\.tmp$")
"""certform's temp names: ``.NAME.PID-RANDOM.tmp`` (this version) and
``.NAME.RANDOM.tmp`` (``tempfile.mkstemp``, earlier versions)."""


_TEMP_BASE = secrets.randbits(32)
_temp_counter = itertools.count()
_pid = os.getpid()
"""This process's pid for temp names (one ``getpid`` per process, not per file)."""


def _forked() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_forked)


def _temp_path(path: str) -> str:
    """Where ``write_atomic`` stages ``path``: named after the file and this process,
    so that a later run can tell a dead writer's leftover from a live one.  The
    8 hex digits are a random base plus a counter (one ``getrandom`` per process,
    not per file); ``O_EXCL`` catches the rare name that is taken."""
    head, name = os.path.split(path)
    tag = (_TEMP_BASE + next(_temp_counter)) & 0xFFFFFFFF
    return os.path.join(head, f".{name}.{_pid}-{tag:08x}.tmp")


temp_path = _temp_path
"""The public name: SSH delivery stages remote files under the same pattern, so that
one cleanup rule (``is_temp_of``) serves both."""


def is_temp_of(name: str, names: set[str] | None) -> bool:
    """True when ``name`` is one of certform's temp names for a file in ``names``
    (any file when None)."""
    match = _TEMP.match(name)
    return match is not None and (names is None or match["name"] in names)


def _create_temp(path: str, mode: int) -> tuple[int, str]:
    """One ``open`` with ``O_EXCL``: the name is this process's own (pid and counter),
    so it is only taken by a leftover of an earlier process with the same pid."""
    while True:
        tmp = _temp_path(path)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
        except FileExistsError:  # pragma: no cover - a leftover with the same name
            continue
        return fd, tmp


def _write_fd(fd: int, data: bytes, mode: int, durable: bool) -> os.stat_result:
    """Write ``data`` through ``fd`` (raw ``os.write``: no buffered file object), fsync
    it when ``durable``, give it ``mode`` if the umask took some of it away; close it
    in any case.  Its ``fstat`` after the write: size and mtime for the caller's
    stamp (and the mode it was created with), without a path lookup."""
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if durable:
            os.fsync(fd)
        written = os.fstat(fd)
        if stat.S_IMODE(written.st_mode) != mode:
            os.fchmod(fd, mode)
        return written
    finally:
        os.close(fd)


def write_atomic(
    path: Path | str, data: bytes, mode: int = 0o644, *, durable: bool = True
) -> os.stat_result:
    """Write ``data`` to ``path`` through a temp file in the same directory and a rename;
    returns the written file's ``stat`` (taken before the rename, which keeps size and
    mtime).

    The temp file is created with ``mode`` itself, which the umask can only narrow,
    and given the rest of ``mode`` after the write (one ``fchmod`` only when the
    umask took something): a 0600 key file is never readable by others, even for an
    instant.  ``durable`` fsyncs the file
    before the rename so that a power cut cannot leave an empty file behind;
    inside ``deferred_sync()`` the file and its directory are noted instead and
    made durable when the batch is flushed (before anything records the write).
    A run killed in between leaves ``.NAME.PID-RANDOM.tmp``: see ``remove_stale_temps``.
    """
    path = os.fspath(path)
    batch = _active_batch if durable else None
    fd, tmp = _create_temp(path, mode)
    try:
        written = _write_fd(fd, data, mode, durable and batch is None)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if batch is not None:
        batch.add(path, os.path.dirname(path) or ".", written.st_dev)
    return written


def create_exclusive(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Create ``path`` holding ``data`` only if it does not exist yet; raise
    FileExistsError otherwise.

    Atomic and exclusive at once: the content is written to a temp file which is
    then hard-linked to ``path`` (``link`` never replaces an existing file), so a
    concurrent reader sees no file or the whole file, and two concurrent creators
    cannot both win.
    """
    fd, tmp = _create_temp(os.fspath(path), mode)
    try:
        _write_fd(fd, data, mode, True)
        os.link(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    _fsync_path(path.parent)  # never deferred: the caller relies on it at once


def fsync_directory(directory: Path | str) -> None:
    """Make renames in ``directory`` durable (when the batch is flushed, inside
    ``deferred_sync()``)."""
    batch = _active_batch
    if batch is not None:
        batch.add(None, directory)
        return
    _fsync_path(directory)


def _fsync_path(path: Path | str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- batched durability ----------------------------------------------------------------
def _load_syncfs() -> Callable[[int], int] | None:
    """libc's ``syncfs(fd)`` (Linux), which Python's ``os`` lacks; None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        function: Callable[[int], int] = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int]  # type: ignore[attr-defined]
    function.restype = ctypes.c_int  # type: ignore[attr-defined]
    return function


_SYNCFS = _load_syncfs()
USE_SYNCFS = _SYNCFS is not None
"""Flush a batch with one ``syncfs`` per file system (tests switch it off to cover
the per-file ``fsync`` pass used where ``syncfs`` is missing)."""


class SyncBatch:
    """Files and directories written since the batch began, to make durable together.

    ``syncfs`` writes back every dirty page and inode of a file system and commits
    its journal once, where ``fsync`` per file commits it once per file: the same
    guarantee (everything noted is on disk when ``flush`` returns) for one flush per
    batch.  Thread-safe: parallel steps (ACME orders, binding deploys) write while it
    is active.  The file system of a directory is known from a file written into it
    (a rename never crosses file systems), so a flush of 1,000 directories on one
    disk opens one of them, not each."""

    def __init__(self) -> None:
        self._files: dict[str, None] = {}
        self._directories: dict[str, int | None] = {}
        """Each directory noted, with its file system's ``st_dev`` when known."""
        self._lock = threading.Lock()

    def add(
        self, file: Path | str | None, directory: Path | str, device: int | None = None
    ) -> None:
        """Note ``file`` (None: only the directory) in ``directory``; ``device`` is the
        ``st_dev`` of the file just written there, when the caller has it."""
        where = os.fspath(directory)
        with self._lock:
            if file is not None:
                self._files[os.fspath(file)] = None
            if device is not None or self._directories.get(where) is None:
                self._directories[where] = device

    def __len__(self) -> int:
        return len(self._files) + len(self._directories)

    def flush(self) -> None:
        """Make everything noted durable; raises OSError when the disk refuses."""
        with self._lock:
            files, directories = list(self._files), dict(self._directories)
            self._files.clear()
            self._directories.clear()
        if not directories:
            return
        if USE_SYNCFS and _SYNCFS is not None:
            _syncfs_each(directories)
            return
        for path in (*files, *directories):
            with contextlib.suppress(FileNotFoundError):  # replaced or removed since
                _fsync_path(path)


def _syncfs_each(directories: dict[str, int | None]) -> None:
    """One ``syncfs`` per file system holding any of ``directories`` (each with its
    ``st_dev`` when known; the others are asked with one ``stat``)."""
    by_device: dict[int, list[str]] = {}
    for directory, device in directories.items():
        if device is None:
            try:
                device = os.stat(directory).st_dev
            except FileNotFoundError:
                continue  # removed since (a restore, an unbind): nothing left to flush
        by_device.setdefault(device, []).append(directory)
    for candidates in by_device.values():
        _syncfs_one(candidates)


def _syncfs_one(candidates: Iterable[str]) -> None:
    """``syncfs`` the file system of the first of ``candidates`` that still exists."""
    assert _SYNCFS is not None
    for directory in candidates:
        try:
            fd = os.open(directory, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        try:
            if _SYNCFS(fd) != 0:
                code = ctypes.get_errno()
                raise OSError(code, os.strerror(code), directory)
        finally:
            os.close(fd)
        return


_active_batch: SyncBatch | None = None


@contextlib.contextmanager
def deferred_sync() -> Iterator[SyncBatch]:
    """Batch the durability of writes made inside (by any thread of this process):
    the caller ``flush``es the batch before it records what was written, and the
    batch is flushed on the way out in any case (an error included)."""
    global _active_batch
    if _active_batch is not None:  # nested: the outer batch flushes
        yield _active_batch
        return
    batch = SyncBatch()
    _active_batch = batch
    try:
        yield batch
    except BaseException:
        _active_batch = None
        with contextlib.suppress(OSError):  # the error on its way out says more
            batch.flush()
        raise
    _active_batch = None
    batch.flush()


def make_dirs(directory: Path | str, mode: int) -> bool:
    """Create ``directory`` and its missing parents with exactly ``mode``, whatever
    the umask (an explicit chmod after each mkdir).  Directories that already exist
    are left as they are: they belong to the user.  True when ``directory`` itself
    was created here (so it is empty: nothing of a killed run to clean up).

    The common cases cost one ``mkdir`` (and its ``chmod``): the parent exists, or
    the directory does."""
    try:
        os.mkdir(directory, mode)
    except FileExistsError:
        if not os.path.isdir(directory) and os.path.exists(directory):
            raise  # as mkdir(exist_ok=True) does
        return False
    except FileNotFoundError:
        return _make_parents(Path(directory), mode)
    os.chmod(directory, mode)
    return True


def _make_parents(directory: Path, mode: int) -> bool:
    if directory.exists() and not directory.is_dir():  # as mkdir(exist_ok=True) does
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(directory))
    missing: list[Path] = []
    current = directory
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    created = False
    for path in reversed(missing):
        try:
            os.mkdir(path, mode)
        except FileExistsError:
            continue  # made meanwhile by someone else: theirs, not ours to chmod
        os.chmod(path, mode)
        created = path == directory
    return created


def remove_stale_temps(directory: Path, names: Iterable[str] | None = None) -> list[str]:
    """Delete temp files that a killed certform left in ``directory``; return their names.

    Only names of certform's own temp pattern count, and only for the files in
    ``names`` (every name when None).  A temp whose writer (the pid in its name) is
    still running is kept unless older than ``STALE_TEMP_AGE``; a temp of an earlier
    version, which has no pid in its name, is removed (the caller holds the state
    lock, so no other run of this state is writing there).
    """
    wanted = set(names) if names is not None else None
    removed: list[str] = []
    try:
        entries = list(os.scandir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return removed
    now = time.time()
    for entry in entries:
        match = _TEMP.match(entry.name)
        if match is None or (wanted is not None and match["name"] not in wanted):
            continue
        if not entry.is_file(follow_symlinks=False) and not entry.is_symlink():
            continue
        pid = match["pid"]
        if pid is not None and int(pid) == os.getpid():
            continue
        if pid is not None and _pid_alive(int(pid)):
            with contextlib.suppress(FileNotFoundError):
                if now - entry.stat(follow_symlinks=False).st_mtime < STALE_TEMP_AGE:
                    continue
        with contextlib.suppress(FileNotFoundError):
            os.unlink(entry.path)
            removed.append(entry.name)
    return removed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def too_open(path: Path) -> str | None:
    """Like OpenSSH for private keys: a secret file (the master key, the state) must
    not be accessible to group or others.  The message says how to fix it."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return None
    if not mode & 0o077:
        return None
    return (
        f"permissions {mode:04o} for '{path}' are too open: it must not be accessible "
        f"by group or others; run: chmod 600 '{path}'. Nothing was changed"
    )


def unsafe_key_directory(directory: Path) -> str | None:
    """Why ``directory`` must not receive a private key, or None when it may.

    Refused: a directory that someone else can write to (group- or world-writable:
    they could swap or link the key file), or one owned by another user than the
    one running certform (root-owned directories are trusted, as by OpenSSH).
    A directory that does not exist yet is fine: certform creates it 0750.
    """
    try:
        info = os.stat(directory)
    except FileNotFoundError:
        return None
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o022:
        return (
            f"the directory {directory} that receives a private key is group- or "
            f"world-writable (mode {mode:04o}): anyone who can write there can replace "
            f"the key; run: chmod go-w '{directory}'"
        )
    me = os.geteuid()
    if info.st_uid not in (me, 0):
        return (
            f"the directory {directory} that receives a private key is owned by uid "
            f"{info.st_uid}, not by the user running certform (uid {me}) or root; "
            f"run: chown {me} '{directory}', or deploy elsewhere"
        )
    return None


def config_path(root: Path | str, value: str) -> Path:
    """A path from the configuration: relative ones are relative to the config's
    directory (an absolute ``value`` wins in the join)."""
    return Path(os.path.normpath(os.path.join(root, value)))
