"""HAProxy reached over SSH (``via:`` on an ``haproxy`` provider) against a real HAProxy
(``tests/haproxy_lab.py``) on this machine, reached through a real sshd
(``tests/ssh_lab.py``): the runtime API through the connection (the unix stats
socket forwarded, or its TCP address), the PEM and crt-list files written over
SFTP, the served certificate checked with real handshakes, and a renewal under a
handshake loop with no failed handshake."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from tests.conftest import EXAMPLE, Workspace
from tests.haproxy_lab import HaproxyLab, handshake_loop, running_haproxy, served_serial
from tests.ssh_lab import SshLab, provider_yaml, running_lab

pytestmark = pytest.mark.integration

PKI = EXAMPLE.split("certificates:")[0]


@pytest.fixture(scope="module")
def ssh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshLab]:
    yield from running_lab(tmp_path_factory)


@pytest.fixture
def haproxy(workspace: Workspace) -> Iterator[HaproxyLab]:
    yield from running_haproxy(workspace.root / "haproxy")


def _config(
    ssh: SshLab, lab: HaproxyLab, *, socket: str | None = None, key: str = "ec-p256"
) -> str:
    provider = {
        "type": "haproxy",
        "via": "web1",
        "socket": socket or lab.socket,
        "crt_dir": str(lab.crt_dir),
        "crt_list": str(lab.crt_list),
        "timeout": "3s",
    }
    web = {"type": "haproxy", "provider": "edge1", "sni": ["web.example.test"]}
    api = {"type": "haproxy", "provider": "edge1", "ssl_options": "alpn h2,http/1.1"}
    return (
        PKI
        + "providers:\n"
        + provider_yaml(ssh)
        + f"  edge1: {json.dumps(provider)}\n"
        + "certificates:\n"
        + f"  web:\n    names: [web.example.test]\n    issuer: issuing\n    key: {key}\n"
        + "    validity: 90d\n"
        + "  api:\n    names: [api.example.test]\n    issuer: issuing\n    key: ec-p256\n"
        + "    validity: 90d\n"
        + "bindings:\n"
        + f"  - certificate: web\n    target: {json.dumps(web)}\n"
        + f"  - certificate: api\n    target: {json.dumps(api)}\n"
    )


def _file_serial(path: Path) -> str:
    return format(x509.load_pem_x509_certificate(path.read_bytes()).serial_number, "x")


def test_deploy_through_the_forwarded_unix_socket(
    workspace: Workspace, ssh: SshLab, haproxy: HaproxyLab
) -> None:
    workspace.write(_config(ssh, haproxy))
    workspace.env["CERTFORM_LOG"] = "debug"
    result = workspace.ok("apply", "--auto-approve")
    # Every runtime API call went through the SSH connection, to the unix socket.
    assert "ssh web1 (" in result.err and f": stream to {haproxy.socket}" in result.err
    web_file = haproxy.crt_dir / "web.pem"
    assert served_serial(haproxy.port, "web.example.test") == _file_serial(web_file)
    assert served_serial(haproxy.port, "api.example.test") == _file_serial(
        haproxy.crt_dir / "api.pem"
    )
    assert web_file.stat().st_mode & 0o777 == 0o600
    assert not [p for p in haproxy.crt_dir.iterdir() if p.name.endswith(".tmp")]
    lines = haproxy.crt_list.read_text().splitlines()
    assert f"{web_file} web.example.test" in lines
    assert f"{haproxy.crt_dir / 'api.pem'} [alpn h2,http/1.1]" in lines
    del workspace.env["CERTFORM_LOG"]
    assert workspace.run("plan", "--detailed-exitcode").code == 0
    # A restart reads the files written over SFTP: the same certificate comes back.
    haproxy.reload()
    assert served_serial(haproxy.port, "web.example.test") == _file_serial(web_file)
    assert workspace.run("plan", "--detailed-exitcode").code == 0
    # The file edited on the host is drift; apply repairs it.
    web_file.write_bytes(b"edited on the host\n")
    plan = workspace.run("plan", "--detailed-exitcode")
    assert plan.code == 2, plan.text
    assert "changed on web1" in plan.out
    workspace.ok("apply", "--auto-approve")
    assert workspace.run("plan", "--detailed-exitcode").code == 0


def test_renewal_over_ssh_under_load_drops_no_handshake(
    workspace: Workspace, ssh: SshLab, haproxy: HaproxyLab
) -> None:
    # The runtime API at its TCP address on the host, reached through the connection.
    workspace.write(_config(ssh, haproxy, socket=haproxy.tcp_address))
    workspace.ok("apply", "--auto-approve")
    old = served_serial(haproxy.port, "web.example.test")
    with handshake_loop(haproxy.port, "web.example.test") as loop:
        workspace.write(_config(ssh, haproxy, socket=haproxy.tcp_address, key="rsa-2048"))
        workspace.ok("apply", "--auto-approve")
    loop.assert_swapped(old, _file_serial(haproxy.crt_dir / "web.pem"))
    assert workspace.run("plan", "--detailed-exitcode").code == 0


def test_a_socket_sshd_cannot_open_fails_cleanly(
    workspace: Workspace, ssh: SshLab, haproxy: HaproxyLab
) -> None:
    missing = workspace.root / "no-such.sock"
    workspace.write(_config(ssh, haproxy, socket=str(missing)))
    result = workspace.run("apply", "--auto-approve")
    assert result.code == 1, result.text
    assert f"cannot reach HAProxy runtime API at web1:{missing}: sshd on web1 could not" in (
        result.text
    )
    assert "Traceback" not in result.text
    assert not (haproxy.crt_dir / "web.pem").exists()
    # Relative paths cannot name anything on the host: a config error.
    text = _config(ssh, haproxy).replace(f'"crt_dir": "{haproxy.crt_dir}"', '"crt_dir": "certs"')
    workspace.write(text)
    check = workspace.run("validate")
    assert check.code == 1
    assert "provider 'edge1': crt_dir must be an absolute path on the host with via" in check.err
    assert "certform.yaml:" in check.err
