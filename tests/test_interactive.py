"""apply asks on a terminal: 'yes' applies, anything else changes nothing."""

from __future__ import annotations

from tests.conftest import Workspace, certform_argv
from tests.pty_lab import run_on_terminal


def _apply_on_terminal(ws: Workspace, answer: str) -> tuple[int, str]:
    return run_on_terminal([*certform_argv(), "apply"], ws.root, ws.env, answer)


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
