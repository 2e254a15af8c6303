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


def test_a_failed_post_deploy_is_said_so_not_called_drift(workspace: Workspace) -> None:
    workspace.write(CONFIG)
    workspace.ok("apply", "--auto-approve")
    flag = workspace.root / "fail"
    hook = workspace.root / "hook.sh"
    hook.write_text(
        f'#!/bin/sh\n[ -e {flag} ] && {{ echo "reload refused" >&2; exit 3; }}\nexit 0\n'
    )
    hook.chmod(0o755)
    workspace.write(CONFIG.replace("[/bin/true]", f"[{hook}]"))
    workspace.ok("apply", "--auto-approve")
    flag.write_text("")
    failed = workspace.run("apply", "--auto-approve", "--replace", "certificate.web")
    assert failed.code == 1, failed.text
    assert "rebind FAILED: post_deploy" in failed.out and "exited with 3" in failed.out
    served = (workspace.root / "out/web/cert.pem").read_bytes()

    plan = workspace.run("plan", "--detailed-exitcode")
    assert plan.code == 2, plan.text
    assert "because the post_deploy command failed at the last apply" in plan.out, plan.out
    assert "changed on disk" not in plan.out and "drift" not in plan.out

    flag.unlink()
    workspace.ok("apply", "--auto-approve")
    assert (workspace.root / "out/web/cert.pem").read_bytes() == served  # same certificate
    assert workspace.run("plan", "--detailed-exitcode").code == 0
    audit = workspace.ok("audit", "--json").out
    assert '"result": "failed"' in audit
