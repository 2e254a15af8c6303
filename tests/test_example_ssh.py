"""examples/ssh applied as its README says, from a "CI runner" (this process) to two
real OpenSSH servers (``tests/ssh_lab.py``), nginx behind the first (``tests/nginx_lab.py``):
the committed placeholder ``known_hosts`` refuses both hosts, ``certform ssh-keyscan``
fills it, the one deploy key comes from ``DEPLOY_SSH_KEY`` (both servers authorise it),
and the example is pointed at the lab only through the template variables its README
names.  Checked: the files on both hosts, the serial nginx serves in a real handshake,
no key text in any output, and an empty plan afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from reconciler.providers.tls_probe import probe
from tests.conftest import Workspace
from tests.nginx_lab import NginxLab, ServerSpec, nginx_binary, write_self_signed
from tests.ssh_lab import SshLab, running_lab
from tests.test_examples_servers import applied_cleanly, copied, run

pytestmark = pytest.mark.integration

FILES = ("cert.pem", "chain.pem", "fullchain.pem", "ca.pem", "key.pem")


@pytest.fixture(scope="module")
def web1(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshLab]:
    yield from running_lab(tmp_path_factory)


@pytest.fixture(scope="module")
def web2(tmp_path_factory: pytest.TempPathFactory, web1: SshLab) -> Iterator[SshLab]:
    for lab in running_lab(tmp_path_factory):
        # One deploy key for both servers, as in the README.
        (lab.directory / "authorized_keys").write_text(
            (web1.directory / "client_key.pub").read_text()
        )
        yield lab


def _serial(pem: bytes) -> str:
    return format(x509.load_pem_x509_certificate(pem).serial_number, "x")


def test_the_ssh_example_deploys_to_both_hosts(
    workspace: Workspace, web1: SshLab, web2: SshLab
) -> None:
    if nginx_binary() is None:
        pytest.skip("nginx is not installed (apt-get install nginx)")
    ws = workspace
    tls = ws.root / "nginx" / "tls"
    write_self_signed(tls / "www.crt", tls / "www.key", "www.example.internal")
    servers = [ServerSpec("www.example.internal", tls / "www.crt", tls / "www.key")]
    with NginxLab.start(ws.root / "nginx", servers) as nginx:
        example = copied(ws, "ssh")
        key_text = web1.client_key.read_text()
        ws.env["DEPLOY_SSH_KEY"] = key_text
        hosts = ws.root / "hosts"
        variables = {
            "web1_host": "127.0.0.1",
            "web2_host": "127.0.0.1",
            "web1_port": str(web1.port),
            "web2_port": str(web2.port),
            "ssh_user": web1.user,
            "sudo": "env",
            "nginx_conf": str(nginx.conf),
            "tls_dir": str(tls),
            "https_port": str(nginx.port),
            "web1_app_dir": str(hosts / "web1/app"),
            "web2_app_dir": str(hosts / "web2/app"),
        }

        # The committed placeholder vouches for no host: refused, fingerprint shown.
        refused = run(ws, "ssh", "apply", variables, "--auto-approve")
        assert refused.code == 1, refused.text
        assert "not in known_hosts" in refused.text and "SHA256:" in refused.text
        assert not hosts.exists()

        for name in ("web1", "web2"):
            scanned = run(ws, "ssh", "ssh-keyscan", variables, name)
            assert scanned.code == 0, scanned.text
            with (example / "known_hosts").open("a") as known:
                known.write(scanned.out)

        applied = applied_cleanly(ws, "ssh", variables)
        assert "verified at 127.0.0.1:" in applied.out
        web1_app, web2_app = hosts / "web1/app", hosts / "web2/app"
        for name in FILES:
            assert (web1_app / name).read_bytes() == (web2_app / name).read_bytes(), name
        for directory in (web1_app, web2_app):
            assert (directory / "key.pem").stat().st_mode & 0o777 == 0o600
        served = probe("127.0.0.1", nginx.port, "www.example.internal", timeout=3).serial
        assert served == _serial((tls / "www.crt").read_bytes())
        assert (tls / "www.key").stat().st_mode & 0o777 == 0o600
        for result in (refused, applied):
            assert key_text.splitlines()[1] not in result.text


def test_the_placeholder_known_hosts_holds_no_key() -> None:
    known = Path(__file__).resolve().parents[1] / "examples/ssh/known_hosts"
    lines = [line for line in known.read_text().splitlines() if line.strip()]
    assert lines and all(line.startswith("#") for line in lines)
