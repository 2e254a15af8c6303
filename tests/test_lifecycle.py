"""End to end through the real CLI: issue, verify, renew, replace, drift, destroy, guards."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.conftest import EXAMPLE, Workspace, openssl_verify

pytestmark = pytest.mark.state_backends


def serial_of(path: Path) -> str:
    return format(x509.load_pem_x509_certificate(path.read_bytes()).serial_number, "x")


def plan_json(ws: Workspace, *args: str) -> dict:
    result = ws.run("plan", "--json", *args)
    assert result.code in (0, 2), result.text
    return json.loads(result.out)


def with_api_names(extra: str) -> str:
    return EXAMPLE.replace("names: [api.example.test]", f"names: [api.example.test, {extra}]")


def actions(plan: dict) -> list[tuple[str, str]]:
    return [(c["address"], c["action"]) for c in plan["changes"]]


def test_first_apply_issues_verifiable_chain_and_second_plan_is_empty(workspace: Workspace) -> None:
    ws = workspace
    first = plan_json(ws)
    assert actions(first) == [
        ("authority.root", "issue"),
        ("authority.issuing", "issue"),
        ("certificate.web", "issue"),
        ("certificate.api", "issue"),
        ("binding.files:out/web", "bind"),
        ("binding.files:out/api", "bind"),
    ]
    web = next(c for c in first["changes"] if c["address"] == "certificate.web")
    assert web["bindings"] == ["binding.files:out/web"]
    assert web["reasons"] == ["not issued yet"]

    result = ws.ok("apply", "--auto-approve")
    assert "Apply complete" in result.out
    for name in ("web", "api"):
        directory = ws.root / "out" / name
        verify = openssl_verify(directory, "-purpose", "sslserver")
        assert verify.returncode == 0, verify.stdout + verify.stderr
        assert stat.S_IMODE((directory / "key.pem").stat().st_mode) == 0o600
        full = (directory / "fullchain.pem").read_text()
        assert full == (directory / "cert.pem").read_text() + (directory / "chain.pem").read_text()
        key = serialization.load_pem_private_key((directory / "key.pem").read_bytes(), None)
        cert = x509.load_pem_x509_certificate((directory / "cert.pem").read_bytes())
        assert key.public_key() == cert.public_key()

    again = ws.run("plan", "--detailed-exitcode")
    assert again.code == 0, again.text
    assert "No changes" in again.out


def test_at_flag_renews_inside_window_only(workspace: Workspace) -> None:
    ws = workspace
    ws.ok("apply", "--auto-approve")
    early = ws.run("plan", "--detailed-exitcode", "--at", "+59d")
    assert early.code == 0, early.text
    late = plan_json(ws, "--at", "+61d")
    web = next(c for c in late["changes"] if c["address"] == "certificate.web")
    assert web["action"] == "renew"
    assert "inside renew_before 30d" in web["reasons"][0]
    assert ("binding.files:out/web", "rebind") in actions(late)
    # api has no renew_before: default window is the last third of 90d (30d).
    assert ("certificate.api", "renew") in actions(late)
    human = ws.run("plan", "--at", "+61d", "--detailed-exitcode")
    assert human.code == 2
    assert "~ certificate.web" in human.out
    assert "Plan: 2 to renew, 2 to rebind." in human.out


def test_renewal_by_percentage(workspace: Workspace) -> None:
    ws = workspace
    ws.write(EXAMPLE.replace("renew_before: 30d", 'renew_before: "10%"'))
    ws.ok("apply", "--auto-approve")
    assert ("certificate.web", "renew") not in actions(plan_json(ws, "--at", "+80d"))
    late = plan_json(ws, "--at", "+82d")
    web = next(c for c in late["changes"] if c["address"] == "certificate.web")
    assert web["action"] == "renew"
    assert "inside renew_before 10%" in web["reasons"][0]


def test_names_change_replaces_and_redeploys(workspace: Workspace) -> None:
    ws = workspace
    ws.ok("apply", "--auto-approve")
    old_serial = serial_of(ws.root / "out/api/cert.pem")
    ws.write(with_api_names("v2.example.test"))
    plan = plan_json(ws)
    assert actions(plan) == [("certificate.api", "replace"), ("binding.files:out/api", "rebind")]
    assert plan["changes"][0]["reasons"] == ["names changed: +v2.example.test"]
    assert plan["changes"][0]["bindings"] == ["binding.files:out/api"]
    human = ws.run("plan").out
    assert "-/+ certificate.api" in human
    assert "bindings touched: binding.files:out/api" in human
    ws.ok("apply", "--auto-approve")
    cert = x509.load_pem_x509_certificate((ws.root / "out/api/cert.pem").read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["api.example.test", "v2.example.test"]
    assert serial_of(ws.root / "out/api/cert.pem") != old_serial
    assert openssl_verify(ws.root / "out/api").returncode == 0
    assert ws.run("plan", "--detailed-exitcode").code == 0


def test_key_algorithm_change_replaces(workspace: Workspace) -> None:
    ws = workspace
    ws.ok("apply", "--auto-approve")
    ws.write(EXAMPLE.replace("key: rsa-2048", "key: ed25519"))
    plan = plan_json(ws)
    assert plan["changes"][0]["reasons"] == ["key algorithm changed: rsa-2048 → ed25519"]
    ws.ok("apply", "--auto-approve")
    key = serialization.load_pem_private_key((ws.root / "out/api/key.pem").read_bytes(), None)
    assert type(key).__name__.startswith("Ed25519")


def test_issuing_ca_replacement_reissues_everything_below(workspace: Workspace) -> None:
    ws = workspace
    ws.ok("apply", "--auto-approve")
    old_chain = (ws.root / "out/web/chain.pem").read_text()
    ws.write(EXAMPLE.replace("    validity: 1825d\n", "    validity: 1825d\n    key: ec-p256\n"))
    plan = plan_json(ws)
    assert actions(plan)[:3] == [
        ("authority.issuing", "replace"),
        ("certificate.web", "replace"),
        ("certificate.api", "replace"),
    ]
    assert "issuer authority.issuing gets a new key in this plan" in plan["changes"][1]["reasons"]
    assert plan["requires_force"] == [
        "authority.issuing is a CA and would be replaced with a new key"
    ]
    ws.ok("apply", "--auto-approve", "--force")  # rotating a CA needs --force
    assert (ws.root / "out/web/chain.pem").read_text() != old_chain
    assert openssl_verify(ws.root / "out/web").returncode == 0
    assert ws.run("plan", "--detailed-exitcode").code == 0


def test_drift_on_disk_is_detected_and_repaired(workspace: Workspace) -> None:
    ws = workspace
    ws.ok("apply", "--auto-approve")
    (ws.root / "out/web/key.pem").unlink()
    with (ws.root / "out/api/cert.pem").open("a") as handle:
        handle.write("tampered\n")
    result = ws.run("plan", "--detailed-exitcode")
    assert result.code == 2, result.text
    assert "drift: key.pem missing" in result.out
    assert "drift: cert.pem changed on disk" in result.out
    plan = plan_json(ws)
    assert plan["drift"] is True
    assert sorted(actions(plan)) == [
        ("binding.files:out/api", "rebind"),
        ("binding.files:out/web", "rebind"),
    ]
    ws.ok("apply", "--auto-approve")
    assert openssl_verify(ws.root / "out/api").returncode == 0
    assert (ws.root / "out/web/key.pem").exists()
    assert ws.run("plan", "--detailed-exitcode").code == 0


def test_key_file_mode_drift(workspace: Workspace) -> None:
    ws = workspace
    ws.ok("apply", "--auto-approve")
    (ws.root / "out/web/key.pem").chmod(0o644)
    result = ws.run("plan", "--detailed-exitcode")
    assert result.code == 2
    assert "key.pem has mode 644, expected 600" in result.out
    ws.ok("apply", "--auto-approve")
    assert stat.S_IMODE((ws.root / "out/web/key.pem").stat().st_mode) == 0o600


def test_removing_a_certificate_unbinds_then_destroys(workspace: Workspace) -> None:
    ws = workspace
    ws.ok("apply", "--auto-approve")
    without_api = EXAMPLE.split("  api:\n")[0] + "bindings:\n" + EXAMPLE.split("bindings:\n")[1]
    without_api = without_api.replace(
        "  - certificate: api\n    target: {type: files, directory: out/api}\n", ""
    )
    ws.write(without_api)
    plan = plan_json(ws)
    assert actions(plan) == [
        ("binding.files:out/api", "unbind"),
        ("certificate.api", "destroy"),
    ]
    ws.ok("apply", "--auto-approve")
    assert not (ws.root / "out/api").exists()
    rows = ws.query("SELECT status, sealed_key FROM certificates WHERE name = 'api'")
    assert rows == [("destroyed", None)]
    assert ws.run("plan", "--detailed-exitcode").code == 0


def test_prevent_destroy_is_remembered_in_state(workspace: Workspace) -> None:
    ws = workspace
    guarded = EXAMPLE.replace(
        "    tags: {team: web}\n", "    tags: {team: web}\n    lifecycle: {prevent_destroy: true}\n"
    )
    ws.write(guarded)
    ws.ok("apply", "--auto-approve")
    removed = guarded.split("  web:\n")[0] + "  api:\n" + guarded.split("  api:\n")[1]
    removed = removed.replace(
        "  - certificate: web\n    target: {type: files, directory: out/web}\n", ""
    )
    ws.write(removed)
    refused = ws.run("apply", "--auto-approve")
    assert refused.code == 1
    assert "certificate.web" in refused.err and "prevent_destroy" in refused.err
    assert (ws.root / "out/web/cert.pem").exists()

    ws.write(guarded.replace("prevent_destroy: true", "prevent_destroy: false"))
    lifted = ws.run("plan", "--detailed-exitcode")
    assert lifted.code == 2
    assert "prevent_destroy: True → False" in lifted.out
    ws.ok("apply", "--auto-approve")
    ws.write(removed)
    assert actions(plan_json(ws)) == [
        ("binding.files:out/web", "unbind"),
        ("certificate.web", "destroy"),
    ]
    ws.ok("apply", "--auto-approve")
    assert not (ws.root / "out/web").exists()


def test_saved_plan_applies_exactly_and_stale_plan_is_refused(workspace: Workspace) -> None:
    ws = workspace
    ws.ok("plan", "--out", "first.plan")
    ws.ok("apply", "first.plan")
    assert openssl_verify(ws.root / "out/web").returncode == 0

    ws.write(with_api_names("b.example.test"))
    ws.ok("plan", "--out", "stale.plan")
    ws.write(EXAMPLE.replace("validity: 90d\n    renew_before", "validity: 60d\n    renew_before"))
    ws.ok("apply", "--auto-approve")
    serial_before = serial_of(ws.root / "out/api/cert.pem")
    refused = ws.run("apply", "stale.plan")
    assert refused.code == 1
    assert "state changed since this plan was made" in refused.err
    assert serial_of(ws.root / "out/api/cert.pem") == serial_before


def test_saved_plan_is_executed_even_if_config_changed_after(workspace: Workspace) -> None:
    ws = workspace
    ws.ok("apply", "--auto-approve")
    ws.write(with_api_names("c.example.test"))
    ws.ok("plan", "--out", "change.plan")
    ws.write(EXAMPLE)
    ws.ok("apply", "change.plan")
    cert = x509.load_pem_x509_certificate((ws.root / "out/api/cert.pem").read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "c.example.test" in sans.get_values_for_type(x509.DNSName)


def test_apply_without_terminal_or_approval_changes_nothing(workspace: Workspace) -> None:
    ws = workspace
    result = ws.run("apply")
    assert result.code == 1
    assert "--auto-approve" in result.err
    assert not (ws.root / ".certform").exists()
    assert not (ws.root / "out").exists()


def test_post_deploy_runs_and_failure_is_retried(workspace: Workspace) -> None:
    ws = workspace
    marker = ws.root / "reloaded.txt"
    hook = EXAMPLE.replace(
        "target: {type: files, directory: out/web}",
        "target: {type: files, directory: out/web, post_deploy: "
        f"[sh, -c, 'echo $CERTFORM_SERIAL >> {marker}']}}",
    )
    ws.write(hook)
    ws.ok("apply", "--auto-approve")
    assert marker.read_text().strip() == serial_of(ws.root / "out/web/cert.pem")

    failing = hook.replace(f"echo $CERTFORM_SERIAL >> {marker}", "echo nope >&2; exit 3")
    ws.write(failing)
    result = ws.run("apply", "--auto-approve")
    assert result.code == 1
    assert "post_deploy sh exited with 3: nope" in result.out + result.err
    retry = ws.run("plan", "--detailed-exitcode")
    assert retry.code == 2
    ws.write(hook)
    ws.ok("apply", "--auto-approve")
    assert ws.run("plan", "--detailed-exitcode").code == 0


def test_show_lists_inventory(workspace: Workspace) -> None:
    ws = workspace
    ws.ok("apply", "--auto-approve")
    rows = json.loads(ws.ok("show", "--json").out)
    web = next(r for r in rows["certificates"] if r["address"] == "certificate.web")
    assert web["serial"] == serial_of(ws.root / "out/web/cert.pem")
    assert web["bound_to"] == ["binding.files:out/web"]
    assert web["tags"] == {"team": "web"}
    assert 88 <= web["days_left"] <= 90
    assert [a["address"] for a in rows["authorities"]] == ["authority.root", "authority.issuing"]
    human = ws.ok("show").out
    assert "certificate.web" in human and "team=web" in human


def test_directory_config_is_merged(workspace: Workspace) -> None:
    ws = workspace
    ws.config.unlink()
    conf = ws.root / "conf"
    conf.mkdir()
    head, tail = EXAMPLE.split("certificates:\n")
    (conf / "10-pki.yaml").write_text(head)
    (conf / "20-certs.yaml").write_text("certificates:\n" + tail)
    result = ws.run("apply", "-c", "conf", "--auto-approve")
    assert result.code == 0, result.text
    assert (conf / ".certform/state.db").exists()
    assert openssl_verify(conf / "out/web").returncode == 0


def test_post_deploy_timeout_fails_the_step(workspace: Workspace) -> None:
    ws = workspace
    ws.write(
        EXAMPLE.replace(
            "target: {type: files, directory: out/web}",
            "target: {type: files, directory: out/web, post_deploy: [sleep, '30'], "
            "post_deploy_timeout: 1s}",
        )
    )
    result = ws.run("apply", "--auto-approve")
    assert result.code == 1
    assert "post_deploy sleep did not finish within 1s" in result.text
    assert "1 failed" in result.err


@pytest.mark.sqlite_only
def test_state_path_and_master_key_file_from_config(workspace: Workspace) -> None:
    ws = workspace
    del ws.env["CERTFORM_MASTER_KEY"]
    (ws.root / "secrets").mkdir()
    key_file = ws.root / "secrets/master.key"
    key_file.write_text("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n")
    key_file.chmod(0o600)  # like OpenSSH, certform refuses a key file others can read
    ws.write(EXAMPLE + "state: {path: state/certs.db, master_key_file: secrets/master.key}\n")
    ws.ok("apply", "--auto-approve")
    assert (ws.root / "state/certs.db").exists()
    assert not (ws.root / ".certform").exists()
    key_file.unlink()
    missing = ws.run("plan")
    assert missing.code == 1 and "secrets/master.key" in missing.err


def test_check_reports_expiry_within_window(workspace: Workspace) -> None:
    ws = workspace
    ws.ok("apply", "--auto-approve")
    calm = ws.run("check")
    assert calm.code == 0, calm.text
    assert "Checked 4 resources: 0 need attention." in calm.out
    soon = ws.run("check", "--within", "100d")
    assert soon.code == 2
    assert "PROBLEM  certificate.web: expires" in soon.out
    assert "PROBLEM  certificate.api: expires" in soon.out
    assert "INFO     authority.root: ok: expires" in soon.out  # every resource is listed
    data = json.loads(ws.run("check", "--within", "100d", "--json").out)
    problems = {f["address"] for f in data["findings"] if f["severity"] == "problem"}
    assert problems == {"certificate.web", "certificate.api"}
    assert {f["address"] for f in data["findings"]} == problems | {
        "authority.root",
        "authority.issuing",
    }
    assert ws.run("check", "--within", "soon").code == 1
    overdue = ws.run("check", "--at", "+61d")
    assert overdue.code == 2
    assert "certificate.web: renewal overdue: expires" in overdue.out
    assert "inside renew_before 30d" in overdue.out
    assert ws.run("check", "--at", "+59d").code == 0
