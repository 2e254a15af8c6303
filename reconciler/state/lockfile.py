"""The state lock: an OS lock (``flock``) on a file beside the state.

Why a file and not a row in the state: the lock must be taken before the state
exists, so that two first applies cannot both create one; and the kernel drops
an OS lock when its process dies, so a crashed run never leaves a stale lock.
The file holds one JSON line naming the holder (user@host, pid, operation,
time) for the message the loser of a race prints; it is emptied on release.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from dataclasses import asdict
from pathlib import Path

from reconciler.errors import StateLockedError
from reconciler.state.store import LockInfo, locked_message

_HOLDER_WAIT = 0.5
"""How long to wait for a new holder to write its name before reporting it unknown."""


class LockFile:
    """An exclusive, non-blocking lock on ``path``, held until ``release``."""

    def __init__(self, path: Path, state: Path) -> None:
        self.path = path
        self.state = state
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, me: LockInfo, timeout: float) -> None:
        """Take the lock, waiting up to ``timeout`` seconds; raise StateLockedError
        naming the holder when it stays taken."""
        if self._fd is not None:
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        deadline = time.monotonic() + timeout
        unnamed_since: float | None = None
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    holder = _read_holder(fd)
                    now = time.monotonic()
                    if holder is None and unnamed_since is None:
                        unnamed_since = now
                    named_or_waited = holder is not None or (
                        unnamed_since is not None and now - unnamed_since >= _HOLDER_WAIT
                    )
                    if now >= deadline and named_or_waited:
                        raise StateLockedError(self._message(holder)) from None
                    time.sleep(0.05)
                    continue
                break
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(asdict(me)) + "\n").encode(), 0)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def release(self) -> None:
        """Empty the holder line and drop the lock (the file stays: deleting a lock
        file races with a process that just opened it)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)  # closing the last descriptor releases the flock

    def _message(self, holder: LockInfo | None) -> str:
        return locked_message(str(self.state), holder)

    def holder(self) -> LockInfo | None:
        """Who holds the lock now; None when nobody does (probed without waiting)."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
        except FileNotFoundError:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return _read_holder(fd) or LockInfo("unknown", 0, "unknown", "unknown", "")
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)


def _read_holder(fd: int) -> LockInfo | None:
    try:
        data = json.loads(os.pread(fd, 4096, 0).decode())
        return LockInfo(
            holder=str(data["holder"]),
            pid=int(data["pid"]),
            host=str(data["host"]),
            operation=str(data["operation"]),
            acquired_at=str(data["acquired_at"]),
            lock_id=str(data.get("lock_id", "")),
        )
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return None
