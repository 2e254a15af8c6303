"""``certform state list|show`` through the CLI: what the state records, by address,
never a private key, and clear errors for addresses it does not hold."""

from __future__ import annotations

import json

import pytest
from cryptography import x509

from tests.conftest import Workspace

pytestmark = pytest.mark.state_backends

RECORDED = [
    "authority.issuing",
    "authority.root",
    "certificate.api",
    "certificate.web",
    "binding.files:out/api",
    "binding.files:out/web",
]


def test_state_list_names_every_recorded_address(workspace: Workspace) -> None:
    ws = workspace
    assert ws.ok("state", "list").out == ""  # no state yet: nothing, and nothing created
    assert not (ws.root / ".certform").exists()
    ws.ok("apply", "--auto-approve")
    assert ws.ok("state", "list").out.splitlines() == RECORDED
    document = json.loads(ws.ok("state", "list", "--json").out)
    assert document["format_version"] == "1"
    assert [r["address"] for r in document["resources"]] == RECORDED
    web = next(r for r in document["resources"] if r["address"] == "certificate.web")
    served = ws.root / "out/web/cert.pem"
    serial = format(x509.load_pem_x509_certificate(served.read_bytes()).serial_number, "x")
    assert web == {
        "address": "certificate.web",
        "kind": "certificate",
        "status": "active",
        "serial": serial,
    }


def test_state_show_reports_a_certificate_and_its_bindings_without_its_key(
    workspace: Workspace,
) -> None:
    ws = workspace
    ws.ok("apply", "--auto-approve")
    shown = json.loads(ws.ok("state", "show", "certificate.web", "--json").out)
    assert shown["bindings"] == ["binding.files:out/web"]
    assert shown["private_key"] == "sealed in the state"
    assert shown["tags"] == {"team": "web"} and shown["spec"]["key"] == "ec-p256"
    text = ws.ok("state", "show", "certificate.web").out
    assert "bindings: binding.files:out/web" in text
    key_lines = (ws.root / "out/web/key.pem").read_text().splitlines()[1:-1]
    for output in (text, json.dumps(shown)):
        assert "PRIVATE KEY" not in output and not any(line in output for line in key_lines)
    binding = json.loads(ws.ok("state", "show", "binding.files:out/web", "--json").out)
    assert binding["certificate"] == "certificate.web" and binding["serial"] == shown["serial"]


def test_state_show_of_an_unknown_address_is_a_clear_error(workspace: Workspace) -> None:
    ws = workspace
    ws.ok("apply", "--auto-approve")
    missing = ws.run("state", "show", "certificate.nope")
    assert missing.code == 1
    assert (
        missing.err == "Error: certificate.nope is not in the state (see `certform state list`)\n"
    )
    bad = ws.run("state", "show", "web")
    assert bad.code == 1 and "is not a state address" in bad.err and "Traceback" not in bad.err
