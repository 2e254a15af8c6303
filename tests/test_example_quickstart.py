"""examples/quickstart, the README's first command, applied as is: every certificate
verifies with openssl against the deployed chain, and the next plan is empty."""

from __future__ import annotations

from tests.conftest import Workspace, openssl_verify
from tests.examples_lab import copy_example


def test_the_quickstart_applies_as_is(workspace: Workspace) -> None:
    ws = workspace
    copy_example(ws, "quickstart")
    ws.ok("validate")
    ws.ok("apply", "--auto-approve")
    for name in ("web", "api", "mtls-client"):
        verified = openssl_verify(ws.root / "out" / name)
        assert verified.returncode == 0, verified.stdout + verified.stderr
    assert ws.run("plan", "--detailed-exitcode").code == 0
