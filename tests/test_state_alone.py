"""show, check and report read the state even when an unrelated part of the
configuration is invalid, and say so; plan and apply still refuse it."""

from __future__ import annotations

import json

from tests.conftest import Workspace

CONFIG = """\
authorities:
  root: {type: private-root, key: ec-p256, validity: 3650d, subject: {common_name: R}}
certificates:
  web: {names: [web.example.test], issuer: root}
bindings:
  - {certificate: web, target: {type: files, directory: out/web}}
"""
WARNING = (
    "Warning: the configuration is invalid (1 problem(s); `certform validate` lists them): "
    "showing what the state records."
)


def test_read_only_commands_work_from_the_state_alone(workspace: Workspace) -> None:
    workspace.write(CONFIG)
    workspace.ok("apply", "--auto-approve")
    serial = json.loads(workspace.ok("show", "--json").out)["certificates"][0]["serial"]
    workspace.write(CONFIG.replace("issuer: root}", "issuer: root, validty: 90d}"))

    shown = workspace.run("show", "--json")
    assert shown.code == 0 and WARNING in shown.err, shown.text
    [web] = json.loads(shown.out)["certificates"]
    assert (web["address"], web["serial"], web["declared"]) == ("certificate.web", serial, False)
    assert web["bound_to"] == ["binding.files:out/web"]

    checked = workspace.run("check", "--format", "json")
    assert checked.code == 0 and WARNING in checked.err, checked.text
    addresses = [f["address"] for f in json.loads(checked.out)["findings"]]
    assert "certificate.web" in addresses and "authority.root" in addresses

    report = workspace.run("report", "--out", "inventory.html")
    assert report.code == 0 and WARNING in report.err, report.text
    assert serial[:16] in (workspace.root / "inventory.html").read_text()

    for command in (("plan",), ("apply", "--auto-approve")):
        refused = workspace.run(*command)
        assert refused.code == 1 and "unknown key 'validty'" in refused.err, refused.text


def test_unparsable_config_is_still_an_error(workspace: Workspace) -> None:
    workspace.write(CONFIG)
    workspace.ok("apply", "--auto-approve")
    workspace.write(CONFIG + "  : [\n")
    shown = workspace.run("show")
    assert shown.code == 1 and "invalid YAML" in shown.err and "Warning" not in shown.err
