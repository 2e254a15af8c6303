"""Run a function in a forked copy of this process and get its result back: the
second core for work that Python's GIL would otherwise serialise (creating files
while certificates are signed, stamping files while others are compared).

The child gets everything this process holds (it is a copy), asks the kernel to
kill it when this process dies (``PR_SET_PDEATHSIG``), ignores ^C (this process
answers it), sends its result through a pipe only this pair holds and leaves
with ``os._exit``: no exit handler, no finaliser, no flush of a copied buffer,
nothing done to a database connection it inherited.  Linux only (the death
signal); elsewhere ``fork_call`` returns None and the caller does the work itself.
"""

from __future__ import annotations

import ctypes
import os
import pickle
import signal
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

_PR_SET_PDEATHSIG = 1


class ForkedFailure(Exception):
    """The child died without an answer (``died``), or its function raised (the
    message is its traceback)."""

    def __init__(self, message: str, died: bool) -> None:
        super().__init__(message)
        self.died = died


def fork_supported() -> bool:
    return sys.platform.startswith("linux") and hasattr(os, "fork")


@dataclass
class ForkedCall:
    """A function running in a child: ``result`` waits for its answer."""

    pid: int
    read_fd: int

    def result(self) -> Any:
        """What the function returned; ForkedFailure when it raised or the child died.
        Asked once."""
        chunks = []
        with os.fdopen(self.read_fd, "rb") as pipe:
            while chunk := pipe.read(1 << 16):
                chunks.append(chunk)
        _, status = os.waitpid(self.pid, 0)
        try:
            kind, value = pickle.loads(b"".join(chunks))
        except Exception:  # nothing, or half an answer: the child died
            code = os.waitstatus_to_exitcode(status)
            raise ForkedFailure(f"it ended with status {code}", died=True) from None
        if kind != "ok":
            raise ForkedFailure(value, died=False)
        return value


def fork_call(function: Callable[[], Any]) -> ForkedCall | None:
    """Start ``function`` in a forked child (None where that is not supported)."""
    if not fork_supported():
        return None
    read_fd, write_fd = os.pipe()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child; covered through its answers
        os.close(read_fd)
        _child(function, write_fd, parent)
    os.close(write_fd)
    return ForkedCall(pid, read_fd)


def _child(
    function: Callable[[], Any], write_fd: int, parent: int
) -> None:  # pragma: no cover - runs in the forked child
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the signal was asked for
            os._exit(1)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            answer: tuple[str, Any] = ("ok", function())
            data = pickle.dumps(answer)
        except BaseException as exc:  # told to the parent, which decides
            data = pickle.dumps(("error", "".join(traceback.format_exception(exc))))
        view = memoryview(data)
        while view:
            view = view[os.write(write_fd, view) :]
    finally:
        os._exit(0)
