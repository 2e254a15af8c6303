"""The ``nginx`` target against a real nginx: deploy, renew, drift, a bad snippet,
a failed verification with rollback, and a stopped server — every result read
back with a real TLS handshake."""

from __future__ import annotations

import json
import sqlite3
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from reconciler.providers.tls_probe import probe
from tests.conftest import EXAMPLE, Workspace
from tests.nginx_lab import NginxLab, ServerSpec, nginx_binary, write_self_signed

pytestmark = pytest.mark.integration

PKI = EXAMPLE.split("certificates:")[0]


@pytest.fixture
def nginx(workspace: Workspace) -> Iterator[NginxLab]:
    if nginx_binary() is None:
        pytest.skip("nginx is not installed (apt-get install nginx)")
    tls = workspace.root / "nginx" / "tls"
    tls.mkdir(parents=True)
    write_self_signed(tls / "api.crt", tls / "api.key", "api.example.test")
    write_self_signed(tls / "www.crt", tls / "www.key", "www.example.test")
    servers = [
        ServerSpec("api.example.test", tls / "api.crt", tls / "api.key", tls / "api.conf"),
        ServerSpec("www.example.test", tls / "www.crt", tls / "www.key"),
    ]
    lab = NginxLab.start(workspace.root / "nginx", servers)
    yield lab
    lab.stop()


def _config(lab: NginxLab, *, reload: list[str] | None = None, snippet: str = "") -> str:
    target = {
        "type": "nginx",
        "provider": "web",
        "certificate_path": "nginx/tls/api.crt",
        "key_path": "nginx/tls/api.key",
        "verify_endpoint": {
            "host": "127.0.0.1",
            "port": lab.port,
            "server_name": "api.example.test",
            "timeout": "3s",
        },
    }
    if snippet:
        target["snippet"] = {"template": "api.conf.j2", "path": "nginx/tls/api.conf"}
    provider = {
        "type": "nginx",
        "test_command": lab.test_command,
        "reload_command": reload or lab.reload_command,
        "command_timeout": "20s",
    }
    return PKI + textwrap.dedent(f"""\
        providers:
          web: {json.dumps(provider)}
        certificates:
          api:
            names: [api.example.test]
            issuer: issuing
            key: {{KEY}}
            validity: 90d
          www:
            names: [www.example.test]
            issuer: issuing
            key: ec-p256
            validity: 90d
        bindings:
          - certificate: api
            target: {json.dumps(target)}
          - certificate: www
            target: {{type: files, directory: out/www}}
        """)


def _write(workspace: Workspace, lab: NginxLab, key: str = "ec-p256", **kwargs: object) -> None:
    workspace.write(_config(lab, **kwargs).replace("{KEY}", key))  # type: ignore[arg-type]


def _served(lab: NginxLab, name: str = "api.example.test") -> str:
    return probe("127.0.0.1", lab.port, name, timeout=3).serial


def _file_serial(path: Path) -> str:
    return format(x509.load_pem_x509_certificate(path.read_bytes()).serial_number, "x")


def _audit(workspace: Workspace) -> list[tuple[str, str, str, str]]:
    with sqlite3.connect(workspace.state_db) as conn:
        rows = conn.execute("SELECT address, action, result, detail FROM audit ORDER BY id")
        return list(rows)


def test_deploy_renew_and_no_change(workspace: Workspace, nginx: NginxLab) -> None:
    _write(workspace, nginx)
    result = workspace.ok("apply", "--auto-approve")
    assert "verified at 127.0.0.1:" in result.out
    cert_path = workspace.root / "nginx/tls/api.crt"
    first = _file_serial(cert_path)
    assert _served(nginx) == first
    assert (workspace.root / "nginx/tls/api.key").stat().st_mode & 0o777 == 0o600
    # The served chain is leaf + issuing CA and verifies to the private root.
    presented = probe("127.0.0.1", nginx.port, "api.example.test", timeout=3)
    assert len(presented.chain) == 1
    assert workspace.run("plan", "--detailed-exitcode").code == 0

    _write(workspace, nginx, key="rsa-2048")  # key change: a new certificate
    plan = workspace.run("plan", "--detailed-exitcode")
    assert plan.code == 2, plan.text
    workspace.ok("apply", "--auto-approve")
    second = _file_serial(cert_path)
    assert second != first
    assert _served(nginx) == second
    assert workspace.run("plan", "--detailed-exitcode").code == 0


def test_snippet_rendered_and_bad_snippet_rolls_back(workspace: Workspace, nginx: NginxLab) -> None:
    template = workspace.root / "api.conf.j2"
    template.write_text("add_header X-Cert-Serial {{ serial }};  # {{ names | join(' ') }}\n")
    _write(workspace, nginx, snippet="yes")
    workspace.ok("apply", "--auto-approve")
    serial = _served(nginx)
    snippet = (workspace.root / "nginx/tls/api.conf").read_text()
    assert f"X-Cert-Serial {serial};" in snippet and "api.example.test" in snippet

    # A directive nginx does not know: `nginx -t` fails, nothing changes.
    template.write_text("ssl_no_such_directive on;\n")
    _write(workspace, nginx, key="rsa-2048", snippet="yes")
    result = workspace.run("apply", "--auto-approve")
    assert result.code == 1, result.text
    assert "test_command" in result.text and "ssl_no_such_directive" in result.text
    assert "previous files restored" in result.text
    assert _served(nginx) == serial
    assert _file_serial(workspace.root / "nginx/tls/api.crt") == serial
    assert (workspace.root / "nginx/tls/api.conf").read_text() == snippet
    # The other binding was still applied; the failure is in the audit log.
    assert (workspace.root / "out/www/cert.pem").exists()
    failed = [row for row in _audit(workspace) if row[2] == "failed"]
    assert failed and "ssl_no_such_directive" in failed[-1][3]


def test_failed_verification_restores_previous_certificate(
    workspace: Workspace, nginx: NginxLab
) -> None:
    _write(workspace, nginx)
    workspace.ok("apply", "--auto-approve")
    before = _served(nginx)
    old_files = (workspace.root / "nginx/tls/api.crt").read_bytes()

    # The reload "succeeds" but does nothing: the endpoint keeps the old certificate.
    _write(workspace, nginx, key="rsa-2048", reload=["true"])
    result = workspace.run("apply", "--auto-approve")
    assert result.code == 1, result.text
    assert "verification failed" in result.text
    assert f"serial {before}" in result.text  # says what was served instead
    assert "previous files restored" in result.text
    assert (workspace.root / "nginx/tls/api.crt").read_bytes() == old_files
    assert _served(nginx) == before
    failed = [row for row in _audit(workspace) if row[2] == "failed"]
    assert failed[-1][0].startswith("binding.nginx:") and "verification failed" in failed[-1][3]

    # Fixed config: the next apply retries and lands.
    _write(workspace, nginx, key="rsa-2048")
    plan = workspace.run("plan", "--detailed-exitcode")
    assert plan.code == 2
    workspace.ok("apply", "--auto-approve")
    assert _served(nginx) != before
    assert workspace.run("plan", "--detailed-exitcode").code == 0


def test_drift_on_disk_and_at_the_endpoint(workspace: Workspace, nginx: NginxLab) -> None:
    _write(workspace, nginx)
    workspace.ok("apply", "--auto-approve")
    deployed = _served(nginx)
    tls = workspace.root / "nginx" / "tls"
    write_self_signed(tls / "api.crt", tls / "api.key", "api.example.test")
    nginx.reload()
    plan = workspace.run("plan", "--detailed-exitcode")
    assert plan.code == 2, plan.text
    assert "changed on disk" in plan.out
    workspace.ok("apply", "--auto-approve")
    assert _served(nginx) == deployed
    assert workspace.run("plan", "--detailed-exitcode").code == 0


def test_stopped_nginx_fails_its_binding_only_and_next_apply_retries(
    workspace: Workspace, nginx: NginxLab
) -> None:
    _write(workspace, nginx)
    workspace.ok("apply", "--auto-approve")
    nginx.stop()
    plan = workspace.run("plan")
    assert plan.code == 0, plan.text
    assert "unreachable" in plan.text

    _write(workspace, nginx, key="rsa-2048")
    result = workspace.run("apply", "--auto-approve")
    assert result.code == 1, result.text
    assert "binding.nginx:" in result.text and "FAILED" in result.text
    assert "reload_command" in result.text  # nginx -s reload has no master to signal
    assert "certificate.www" not in [line for line in result.out.splitlines() if "FAILED" in line]

    restarted = NginxLab.start(
        workspace.root / "nginx",
        [
            ServerSpec(
                "api.example.test",
                workspace.root / "nginx/tls/api.crt",
                workspace.root / "nginx/tls/api.key",
                workspace.root / "nginx/tls/api.conf",
            )
        ],
    )
    try:
        _write(workspace, restarted, key="rsa-2048")
        workspace.ok("apply", "--auto-approve")
        assert _served(restarted) == _file_serial(workspace.root / "nginx/tls/api.crt")
        assert workspace.run("plan", "--detailed-exitcode").code == 0
    finally:
        restarted.stop()
