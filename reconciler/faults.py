"""A fault-injection point for crash tests: pause a step (or an SSH upload before its
rename, ``ssh:PATH:uploaded``) so a test can SIGKILL us there.

``CERTFORM_TEST_PAUSE_AT=<address>:<phase>`` makes apply stop at that phase of
that step (``journaled``: the entries of its batch are written, this step has not
acted, steps before it in the batch may have, and so may steps after it when they
act in parallel worker threads, which go on while this one pauses; ``acted``: the
world changed, the state does not know yet), touch the file named by ``CERTFORM_TEST_PAUSE_MARKER``
and sleep.  Unset, it costs one dict lookup per step.  ``CERTFORM_TEST_BATCH_SIZE``
makes apply's batches smaller, so that a small test runs several of them.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

PAUSE_ENV = "CERTFORM_TEST_PAUSE_AT"
MARKER_ENV = "CERTFORM_TEST_PAUSE_MARKER"


def fault_point(address: str, phase: str) -> None:
    wanted = os.environ.get(PAUSE_ENV)
    if not wanted or wanted != f"{address}:{phase}":
        return
    marker = os.environ.get(MARKER_ENV)
    if marker:
        Path(marker).write_text(f"{address}:{phase}\n")
    time.sleep(300)


BATCH_SIZE_ENV = "CERTFORM_TEST_BATCH_SIZE"
"""Test hook: a smaller apply batch (``runner.BATCH_SIZE`` at most), so that a test of
a few dozen steps runs several batches."""
