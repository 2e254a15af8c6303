"""What the plan says about a binding's settings and a post_deploy that failed: paths as
the YAML writes them, and the failure named as such, never as drift."""

from __future__ import annotations

from tests.conftest import Workspace

CONFIG = """\
authorities:
  root: {type: private-root, key: ec-p256, validity: 3650d, subject: {common_name: R}}
certificates:
  web: {names: [web.example.test], issuer: root}
bindings:
  - {certificate: web, target: {type: files, directory: out/web, post_deploy: [/bin/true]}}
"""


def test_changed_settings_are_named_by_their_yaml_path(workspace: Workspace) -> None:
    workspace.write(CONFIG)
    workspace.ok("apply", "--auto-approve")
    workspace.write(CONFIG.replace("[/bin/true]", "[/bin/echo, deployed]"))
    plan = workspace.run("plan", "--detailed-exitcode")
    assert plan.code == 2, plan.text
    assert "because target settings changed: post_deploy[0] changed, post_deploy[1] added" in (
        plan.out
    ), plan.out
    assert "']" not in plan.out and "dictionary item" not in plan.out
