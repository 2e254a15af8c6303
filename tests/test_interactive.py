"""apply and revoke ask on a terminal: 'yes' goes on, anything else changes nothing."""

from __future__ import annotations

from tests.conftest import Workspace, certform_argv
from tests.pty_lab import run_on_terminal


def _apply_on_terminal(ws: Workspace, answer: str, *argv: str) -> tuple[int, str]:
    return run_on_terminal([*certform_argv(), *(argv or ("apply",))], ws.root, ws.env, answer)


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


def test_revoke_asks_on_a_terminal_and_says_no_crl_will_list_it(workspace: Workspace) -> None:
    workspace.ok("apply", "--auto-approve")
    code, output = _apply_on_terminal(workspace, "no", "revoke", "web")
    assert code == 1, output
    assert "Revoke web (unspecified)?" in output and "cancelled" in output
    assert "revoked" not in workspace.ok("show").out.lower()
    code, output = _apply_on_terminal(workspace, "yes", "revoke", "web")
    assert code == 0, output
    assert "publishes no CRL" in output and "crl:" in output
    assert "when it publishes one" not in output


def test_revoke_yes_skips_the_question(workspace: Workspace) -> None:
    workspace.ok("apply", "--auto-approve")
    code, output = _apply_on_terminal(workspace, "", "revoke", "web", "--yes")
    assert code == 0, output
    assert "Only 'yes'" not in output and "recorded as revoked in the state only" in output
