"""apply asks on a terminal: 'yes' applies, anything else changes nothing."""

from __future__ import annotations

import os
import pty
import subprocess
import time

from tests.conftest import Workspace, certform_argv


def _apply_on_terminal(ws: Workspace, answer: str) -> tuple[int, str]:
    controller, terminal = pty.openpty()
    proc = subprocess.Popen(
        [*certform_argv(), "apply"],
        cwd=ws.root,
        env=ws.env,
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
    )
    os.close(terminal)
    output = b""
    deadline = time.monotonic() + 60
    answered = False
    while time.monotonic() < deadline:
        try:
            chunk = os.read(controller, 4096)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
        if not answered and b"Enter a value" in output:
            os.write(controller, answer.encode() + b"\n")
            answered = True
    code = proc.wait(timeout=60)
    os.close(controller)
    return code, output.decode(errors="replace")


def test_yes_applies(workspace: Workspace) -> None:
    code, output = _apply_on_terminal(workspace, "yes")
    assert code == 0, output
    assert "Only 'yes' will be accepted" in output
    assert "Apply complete" in output
    assert (workspace.root / "out/web/cert.pem").exists()


def test_anything_else_cancels(workspace: Workspace) -> None:
    code, output = _apply_on_terminal(workspace, "y")
    assert code == 1, output
    assert "cancelled" in output
    assert not (workspace.root / "out").exists()
    assert not (workspace.root / ".certform").exists()
