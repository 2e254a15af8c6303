"""A fault-injection point for crash tests: pause a step so a test can SIGKILL us there.

``CERTFORM_TEST_PAUSE_AT=<address>:<phase>`` makes apply stop at that phase of
that step (``journaled``: the journal entry is written, nothing else done;
``acted``: the world changed, the state does not know yet), touch the file
named by ``CERTFORM_TEST_PAUSE_MARKER`` and sleep.  Unset, it costs one dict
lookup per step.
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
