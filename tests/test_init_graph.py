"""``certform init`` and ``certform graph`` through the CLI: the starter applies as
is and verifies with openssl, is never written over an existing config, and the
graph names every authority, certificate and binding with the edges between them."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.conftest import Workspace, openssl_verify

REPO = Path(__file__).resolve().parent.parent


def test_init_writes_a_starter_that_applies_as_is(workspace: Workspace, tmp_path: Path) -> None:
    target = tmp_path / "new-repo"
    result = workspace.ok("init", str(target))
    assert result.out.splitlines()[:2] == [
        f"Wrote {target}/certform.yaml",
        f"Wrote {target}/certform.schema.json",
    ]
    config = (target / "certform.yaml").read_text()
    assert config.startswith("# yaml-language-server: $schema=certform.schema.json\n")
    schema = json.loads((target / "certform.schema.json").read_text())
    assert schema == json.loads((REPO / "schemas/certform.schema.json").read_text())
    workspace.ok("apply", "--auto-approve", "-c", str(target))
    assert openssl_verify(target / "out/www").returncode == 0
    assert workspace.run("plan", "--detailed-exitcode", "-c", str(target)).code == 0


def test_init_never_writes_over_a_config(workspace: Workspace) -> None:
    before = workspace.config.read_text()
    result = workspace.run("init")
    assert result.code == 1
    assert result.err == f"Error: {Path('certform.yaml')} exists already; nothing was written\n"
    assert workspace.config.read_text() == before
    assert not (workspace.root / "certform.schema.json").exists()


def test_graph_draws_authorities_certificates_and_bindings(workspace: Workspace) -> None:
    dot = workspace.ok("graph").out
    assert dot.startswith("digraph certform {\n") and dot.rstrip().endswith("}")
    edges = set(re.findall(r'^  "([^"]+)" -> "([^"]+)";$', dot, re.MULTILINE))
    assert edges == {
        ("authority.root", "authority.issuing"),
        ("authority.issuing", "certificate.web"),
        ("authority.issuing", "certificate.api"),
        ("certificate.web", "binding.files:out/web"),
        ("certificate.api", "binding.files:out/api"),
    }
    assert not (workspace.root / ".certform").exists()  # no state read or made
