"""Process hardening at startup: no core dumps.

A core file of certform would hold the master key, the state's data key and the
PEM private keys it deploys.  ``RLIMIT_CORE`` 0 stops the kernel from writing
one; ``PR_SET_DUMPABLE`` 0 (Linux) also stops ``/proc/PID/mem`` reads and ptrace
attaches by other processes of the same user, and core handlers that ignore the
limit (``core_pattern`` pipes).  Best-effort: a platform without either keeps
running as before.
"""

from __future__ import annotations

import contextlib
import ctypes
import sys

PR_SET_DUMPABLE = 4
PR_GET_DUMPABLE = 3


def disable_core_dumps() -> None:
    """Set RLIMIT_CORE to 0 (soft and hard) and mark the process not dumpable."""
    with contextlib.suppress(ImportError, ValueError, OSError):
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if sys.platform.startswith("linux"):
        libc = _libc()
        if libc is not None:
            with contextlib.suppress(AttributeError, OSError):
                libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)


def dumpable() -> int | None:
    """The process's dumpable flag (Linux), None when it cannot be read."""
    libc = _libc() if sys.platform.startswith("linux") else None
    if libc is None:
        return None
    try:
        return int(libc.prctl(PR_GET_DUMPABLE, 0, 0, 0, 0))
    except (AttributeError, OSError):
        return None


def _libc() -> ctypes.CDLL | None:
    # dlopen(NULL): the symbols already loaded, libc's among them; no ldconfig run.
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None
