"""certform on a real pseudo-terminal: what a person at a terminal sees.

The pty is the process's stdin, stdout and stderr (so it believes it is
interactive: it asks, colours, draws a progress bar); what it wrote is read back
from the other end, escapes and all, with the terminal's CRLF turned into LF.
"""

from __future__ import annotations

import os
import pty
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path


def run_on_terminal(
    argv: Sequence[str],
    cwd: Path,
    env: Mapping[str, str],
    answer: str | None = None,
    prompt: bytes = b"Enter a value",
) -> tuple[int, str]:
    """Run ``argv`` on a pty, typing ``answer`` once ``prompt`` appears; its exit
    code and everything it wrote."""
    controller, terminal = pty.openpty()
    proc = subprocess.Popen(
        list(argv), cwd=cwd, env=dict(env), stdin=terminal, stdout=terminal, stderr=terminal
    )
    os.close(terminal)
    output = b""
    deadline = time.monotonic() + 60
    answered = answer is None
    while time.monotonic() < deadline:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # the process closed its end
            break
        if not chunk:
            break
        output += chunk
        if not answered and prompt in output:
            os.write(controller, (answer or "").encode() + b"\n")
            answered = True
    code = proc.wait(timeout=60)
    os.close(controller)
    return code, output.decode(errors="replace").replace("\r\n", "\n")
