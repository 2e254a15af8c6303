"""``tls-endpoint`` bindings and ``endpoints:`` against a real nginx: what clients
see is observed state (drift for plan --detailed-exitcode), checked at plan time and
never planned as a change apply could make, and ``check`` reports expiry, wrong
name, incomplete chain, self-signed and unreachable endpoints."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.aws_lab import free_port
from tests.conftest import EXAMPLE, Workspace
from tests.nginx_lab import NginxLab, ServerSpec, nginx_binary, write_self_signed

pytestmark = pytest.mark.integration

PKI = EXAMPLE.split("certificates:")[0]


@pytest.fixture
def nginx(workspace: Workspace) -> Iterator[NginxLab]:
    """nginx serving out/api (written by certform's files target: full chain) and
    out/leaf (leaf only), plus a self-signed www."""
    if nginx_binary() is None:
        pytest.skip("nginx is not installed (apt-get install nginx)")
    root = workspace.root
    for directory in ("out/api", "out/leaf"):
        (root / directory).mkdir(parents=True)
        write_self_signed(root / directory / "fullchain.pem", root / directory / "key.pem", "x")
    (root / "out/leaf/cert.pem").write_bytes((root / "out/leaf/fullchain.pem").read_bytes())
    write_self_signed(root / "www.crt", root / "www.key", "www.example.test")
    servers = [
        ServerSpec("api.example.test", root / "out/api/fullchain.pem", root / "out/api/key.pem"),
        ServerSpec("leaf.example.test", root / "out/leaf/cert.pem", root / "out/leaf/key.pem"),
        ServerSpec("www.example.test", root / "www.crt", root / "www.key"),
    ]
    lab = NginxLab.start(root / "nginx", servers)
    yield lab
    lab.stop()


def _config(lab: NginxLab, *, endpoint_port: int | None = None, extra: str = "") -> str:
    port = endpoint_port or lab.port

    def files(directory: str) -> str:
        return json.dumps(
            {"type": "files", "directory": directory, "post_deploy": lab.reload_command}
        )

    def endpoint(name: str) -> str:
        settings = {"host": "127.0.0.1", "port": port, "server_name": name, "timeout": "2s"}
        return json.dumps({"type": "tls-endpoint", **settings})

    return PKI + (
        "certificates:\n"
        "  api: {names: [api.example.test], issuer: issuing, key: ec-p256, validity: 90d}\n"
        "  leaf: {names: [leaf.example.test], issuer: issuing, key: ec-p256, validity: 90d}\n"
        "bindings:\n"
        f"  - {{certificate: api, target: {files('out/api')}}}\n"
        f"  - {{certificate: leaf, target: {files('out/leaf')}}}\n"
        f"  - {{certificate: api, target: {endpoint('api.example.test')}}}\n"
        f"{extra}"
    )


def test_endpoint_binding_is_checked_and_detects_drift(
    workspace: Workspace, nginx: NginxLab
) -> None:
    workspace.write(_config(nginx))
    first = workspace.run("plan")
    assert "+ binding.tls-endpoint" not in first.out, first.out  # a watch is never a change
    assert "Plan: 4 to issue, 2 to bind." in first.out, first.out
    result = workspace.ok("apply", "--auto-approve")
    assert "binding.tls-endpoint:" not in result.out
    assert workspace.run("plan", "--detailed-exitcode").code == 0

    # Someone puts another certificate on the server: clients see it, so does plan.
    out = workspace.root / "out/api"
    write_self_signed(out / "fullchain.pem", out / "key.pem", "api.example.test")
    nginx.reload()
    plan = workspace.run("plan", "--detailed-exitcode")
    assert plan.code == 2, plan.text
    assert "Watched endpoints serving something else" in plan.out
    assert "serves serial" in plan.out and "expected serial" in plan.out
    workspace.ok("apply", "--auto-approve")  # the files binding puts it back
    assert workspace.run("plan", "--detailed-exitcode").code == 0


def test_endpoint_serving_a_foreign_certificate_is_drift_not_a_change(
    workspace: Workspace, nginx: NginxLab
) -> None:
    extra = (
        "  - {certificate: leaf, target: {type: tls-endpoint, host: 127.0.0.1, "
        f"port: {nginx.port}, server_name: www.example.test, timeout: 1s}}}}\n"
    )
    workspace.write(_config(nginx, extra=extra))
    workspace.ok("apply", "--auto-approve")  # nothing to do for the watch itself
    plan = workspace.run("plan", "--detailed-exitcode")
    assert plan.code == 2, plan.text  # never reported as fixed
    assert "No changes." in plan.out
    assert "it should serve certificate.leaf" in plan.out and "fix the endpoint" in plan.out
    again = workspace.run("apply", "--auto-approve")
    assert again.code == 0 and "FAILED" not in again.text, again.text


def test_unreachable_endpoint_is_reported_not_fixed(workspace: Workspace, nginx: NginxLab) -> None:
    workspace.write(_config(nginx))
    workspace.ok("apply", "--auto-approve")
    closed = free_port()
    workspace.write(_config(nginx, endpoint_port=closed))
    plan = workspace.run("plan", "--detailed-exitcode")
    assert plan.code == 0, plan.text  # a warning, never a change
    assert f"127.0.0.1:{closed}" in plan.out and "unreachable" in plan.out
    check = workspace.run("check")
    assert check.code == 2
    assert "unreachable" in check.out


def test_check_reports_what_clients_trip_over(workspace: Workspace, nginx: NginxLab) -> None:
    extra = (
        "endpoints:\n"
        f"  www: {{host: 127.0.0.1, port: {nginx.port}, server_name: www.example.test}}\n"
        f"  wrong-name: {{host: 127.0.0.1, port: {nginx.port}, server_name: wrong.example.test,"
        " ca_bundle: out/api/ca.pem}\n"
        f"  leaf-only: {{host: 127.0.0.1, port: {nginx.port}, server_name: leaf.example.test,"
        " ca_bundle: out/api/ca.pem}\n"
        f"  good: {{host: 127.0.0.1, port: {nginx.port}, server_name: api.example.test,"
        " ca_bundle: out/api/ca.pem}\n"
    )
    workspace.write(_config(nginx))
    workspace.ok("apply", "--auto-approve")
    workspace.write(_config(nginx, extra=extra))
    result = workspace.run("check", "--json")
    assert result.code == 2, result.text
    findings = json.loads(result.out)["findings"]
    by_address: dict[str, list[str]] = {}
    for finding in findings:
        if finding["severity"] == "problem":
            by_address.setdefault(finding["address"], []).append(finding["message"])
    assert any("self-signed" in m for m in by_address["endpoint.www"])
    # nginx answers an unknown name with its default server (api): name mismatch
    assert any("name mismatch" in m for m in by_address["endpoint.wrong-name"])
    assert any("chain incomplete" in m for m in by_address["endpoint.leaf-only"])
    assert "endpoint.good" not in by_address
    assert not [a for a in by_address if a.startswith("binding.")], by_address

    # 70 days on, the 90-day certificates are within the default 30-day window.
    later = workspace.run("check", "--at", "+70d")
    assert later.code == 2
    assert "endpoint.good" in later.out and "days left" in later.out


def test_files_target_verify_endpoint_restores_on_mismatch(
    workspace: Workspace, nginx: NginxLab
) -> None:
    verify = {"host": "127.0.0.1", "port": nginx.port, "server_name": "api.example.test"}

    def config(post_deploy: list[str]) -> str:
        target = {
            "type": "files",
            "directory": "out/api",
            "post_deploy": post_deploy,
            "verify_endpoint": {**verify, "timeout": "2s"},
        }
        return PKI + (
            "certificates:\n"
            "  api: {names: [api.example.test], issuer: issuing, key: {KEY}, validity: 90d}\n"
            f"bindings:\n  - {{certificate: api, target: {json.dumps(target)}}}\n"
        )

    workspace.write(config(nginx.reload_command).replace("{KEY}", "ec-p256"))
    result = workspace.ok("apply", "--auto-approve")
    assert "verified at 127.0.0.1:" in result.out
    before = (workspace.root / "out/api/cert.pem").read_bytes()

    # post_deploy that does not reload: the endpoint keeps the old certificate.
    workspace.write(config(["true"]).replace("{KEY}", "rsa-2048"))
    result = workspace.run("apply", "--auto-approve")
    assert result.code == 1, result.text
    assert "verification failed" in result.text and "previous files restored" in result.text
    assert (workspace.root / "out/api/cert.pem").read_bytes() == before
