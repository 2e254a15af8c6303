"""SSH delivery against a real OpenSSH server (``tests/ssh_lab.py``): files over SFTP
byte-identical to a local deploy, post_deploy run on the host without certform's
secrets, drift on the host, one stat command per host per plan, strict host keys,
a host that is down, sshd killed between upload and rename, and nginx reached
through the connection (test, reload, handshake, rollback)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from reconciler.providers.tls_probe import probe
from tests.conftest import EXAMPLE, Workspace, certform_argv
from tests.nginx_lab import NginxLab, ServerSpec, nginx_binary, write_self_signed
from tests.ssh_lab import SshLab, provider_yaml, running_lab

pytestmark = pytest.mark.integration

PKI = EXAMPLE.split("certificates:")[0]
FILES = ("cert.pem", "chain.pem", "fullchain.pem", "ca.pem", "key.pem")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshLab]:
    yield from running_lab(tmp_path_factory)


@pytest.fixture
def up(lab: SshLab) -> SshLab:
    """The lab, running (a test before may have killed it)."""
    if lab.process is None or lab.process.poll() is not None:
        lab.resume()
    return lab


def _config(
    ws: Workspace,
    lab: SshLab,
    *,
    post_deploy: str = "",
    count: int = 1,
    known_hosts: Path | None = None,
    local: bool = True,
    identity_env: str = "",
) -> Path:
    remote = ws.root / "remote"
    bindings = ""
    for index in range(count):
        extra = f", post_deploy: {post_deploy}" if post_deploy else ""
        bindings += (
            f"  - certificate: web\n"
            f"    target: {{type: files, via: web1, directory: {remote}/web{index}{extra}}}\n"
        )
    if local:
        bindings += "  - certificate: web\n    target: {type: files, directory: out/web}\n"
    ws.write(
        PKI
        + "providers:\n"
        + provider_yaml(lab, known_hosts=known_hosts, identity_env=identity_env)
        + textwrap.dedent("""\
            certificates:
              web:
                names: [web.example.test]
                issuer: issuing
                key: ec-p256
                validity: 90d
            bindings:
            """)
        + bindings
    )
    return remote


def test_files_over_ssh_match_a_local_deploy_and_post_deploy_sees_no_secret(
    workspace: Workspace, up: SshLab
) -> None:
    env_file = workspace.root / "hook-env.txt"
    workspace.env["SSH_TEST_SECRET"] = "do-not-leak"
    key_text = up.client_key.read_text()
    workspace.env["DEPLOY_SSH_KEY"] = key_text  # the CI way: the key's text in a secret
    remote = _config(
        workspace,
        up,
        post_deploy=f'[sh, -c, "env > {env_file}; pwd >> {env_file}"]',
        identity_env="DEPLOY_SSH_KEY",
    )
    result = workspace.ok("apply", "--auto-approve")
    assert "binding.files:web1:" in result.out, result.out
    for name in FILES:
        deployed = remote / "web0" / name
        assert deployed.read_bytes() == (workspace.root / "out/web" / name).read_bytes(), name
        assert deployed.stat().st_uid == os.geteuid()  # owned by the login user
    assert (remote / "web0/key.pem").stat().st_mode & 0o777 == 0o600
    assert (remote / "web0").stat().st_mode & 0o777 == 0o750
    hook = env_file.read_text()
    assert "CERTFORM_CERTIFICATE=web" in hook
    assert f"{remote}/web0" in hook  # ran in the directory, on the host
    assert "SSH_CONNECTION=" in hook  # through sshd, not a local child
    secrets = ("CERTFORM_MASTER_KEY", workspace.env["CERTFORM_MASTER_KEY"], "do-not-leak")
    for secret in (*secrets, "DEPLOY_SSH_KEY", key_text.splitlines()[1]):
        assert secret not in hook
    assert key_text.splitlines()[1] not in result.text
    assert not [p for p in (remote / "web0").iterdir() if p.name.endswith(".tmp")]
    assert workspace.run("plan", "--detailed-exitcode").code == 0


def test_drift_on_the_host_is_planned_and_repaired(workspace: Workspace, up: SshLab) -> None:
    remote = _config(workspace, up, local=False)
    workspace.ok("apply", "--auto-approve")
    good = (remote / "web0/cert.pem").read_bytes()
    (remote / "web0/cert.pem").write_bytes(b"edited on the host\n")
    (remote / "web0/key.pem").chmod(0o644)
    plan = workspace.run("plan", "--detailed-exitcode")
    assert plan.code == 2, plan.text
    assert "cert.pem changed on web1" in plan.out
    assert "key.pem has mode 644, expected 600" in plan.out
    workspace.ok("apply", "--auto-approve")
    assert (remote / "web0/cert.pem").read_bytes() == good
    assert (remote / "web0/key.pem").stat().st_mode & 0o777 == 0o600
    assert workspace.run("plan", "--detailed-exitcode").code == 0


def test_no_change_plan_makes_one_remote_command_per_host(workspace: Workspace, up: SshLab) -> None:
    _config(workspace, up, count=25, local=False)
    workspace.ok("apply", "--auto-approve")
    workspace.env["CERTFORM_LOG"] = "debug"
    plan = workspace.run("plan", "--detailed-exitcode")
    assert plan.code == 0, plan.text
    runs = [line for line in plan.err.splitlines() if "ssh web1" in line and ": run " in line]
    assert len(runs) == 1, plan.err
    assert "stamped 125 files in one command" in plan.err


def test_a_wrong_host_key_fails_cleanly_with_the_fingerprint(
    workspace: Workspace, up: SshLab
) -> None:
    other = workspace.root / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    algorithm, key = (other.with_suffix(".pub")).read_text().split()[:2]
    known = workspace.root / "known_hosts"
    known.write_text(f"[127.0.0.1]:{up.port} {algorithm} {key}\n")
    remote = _config(workspace, up, known_hosts=known, local=False)
    result = workspace.run("apply", "--auto-approve")
    assert result.code == 1, result.text
    fingerprint = subprocess.run(
        ["ssh-keygen", "-lf", str(up.directory / "host_key.pub")], capture_output=True, text=True
    ).stdout.split()[1]
    assert "host key of [127.0.0.1]:" in result.text
    assert "CHANGED" in result.text
    assert fingerprint in result.text
    assert f"ssh-keyscan -p {up.port} 127.0.0.1 >> {known}" in result.text
    assert "Traceback" not in result.text
    assert not remote.exists()


def test_ssh_keyscan_prints_the_line_and_fingerprint(workspace: Workspace, up: SshLab) -> None:
    _config(workspace, up, known_hosts=workspace.root / "absent_known_hosts")
    result = workspace.ok("ssh-keyscan", "web1")
    fingerprint = subprocess.run(
        ["ssh-keygen", "-lf", str(up.directory / "host_key.pub")], capture_output=True, text=True
    ).stdout.split()[1]
    assert up.known_hosts_line in result.out.splitlines()
    assert f"# ssh-ed25519 {fingerprint}" in result.out
    assert "Verify these fingerprints out of band" in result.err
    # Missing known_hosts is a validate error that names the command to run.
    check = workspace.run("validate")
    assert check.code == 1
    assert "known_hosts" in check.err and "certform ssh-keyscan web1" in check.err


def test_host_down_warns_at_plan_and_fails_only_its_bindings_at_apply(
    workspace: Workspace, up: SshLab
) -> None:
    remote = _config(workspace, up)
    workspace.ok("apply", "--auto-approve")
    up.kill()
    try:
        plan = workspace.run("plan", "--detailed-exitcode")
        assert plan.code == 0, plan.text
        assert "unreachable" in plan.text and "Connection refused" in plan.text
        old = (remote / "web0/cert.pem").read_bytes()
        local_old = (workspace.root / "out/web/cert.pem").read_bytes()
        result = workspace.run("apply", "--auto-approve", "--replace", "certificate.web")
        assert result.code == 1, result.text
        assert "Connection refused" in result.text
        assert (workspace.root / "out/web/cert.pem").read_bytes() != local_old  # landed
        assert (remote / "web0/cert.pem").read_bytes() == old  # untouched
    finally:
        up.resume()
    workspace.ok("apply", "--auto-approve")
    assert (remote / "web0/cert.pem").read_bytes() == (
        workspace.root / "out/web/cert.pem"
    ).read_bytes()


def test_sshd_killed_between_upload_and_rename(workspace: Workspace, up: SshLab) -> None:
    remote = _config(workspace, up, local=False)
    workspace.ok("apply", "--auto-approve")
    before = {name: (remote / "web0" / name).read_bytes() for name in FILES}
    marker = workspace.root / "paused"
    env = dict(
        workspace.env,
        CERTFORM_TEST_PAUSE_AT=f"ssh:{remote}/web0/key.pem:uploaded",
        CERTFORM_TEST_PAUSE_MARKER=str(marker),
    )
    process = subprocess.Popen(
        [*certform_argv(), "apply", "--auto-approve", "--replace", "certificate.web"],
        cwd=workspace.root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert process.poll() is None, "apply ended before the upload"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        up.kill()
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    finally:
        if process.poll() is None:
            process.kill()
        up.resume()
    temps = [
        p.name for p in (remote / "web0").iterdir() if re.match(r"^\.key\.pem\..*\.tmp$", p.name)
    ]
    assert temps, "the key's temp file was uploaded"
    assert (remote / "web0/key.pem").read_bytes() == before["key.pem"]  # not renamed over
    workspace.ok("apply", "--auto-approve")
    assert not [p.name for p in (remote / "web0").iterdir() if p.name.endswith(".tmp")]
    assert (remote / "web0/key.pem").read_bytes() != before["key.pem"]
    assert (remote / "web0/key.pem").stat().st_mode & 0o777 == 0o600
    assert workspace.run("plan", "--detailed-exitcode").code == 0


def _file_serial(path: Path) -> str:
    return format(x509.load_pem_x509_certificate(path.read_bytes()).serial_number, "x")


def _nginx_config(ws: Workspace, ssh: SshLab, nginx: NginxLab, test_command: list[str]) -> None:
    tls = ws.root / "nginx" / "tls"
    provider = {
        "type": "nginx",
        "via": "web1",
        "test_command": test_command,
        "reload_command": nginx.reload_command,
        "command_timeout": "20s",
    }
    target = {
        "type": "nginx",
        "provider": "web1-nginx",
        "certificate_path": str(tls / "api.crt"),
        "key_path": str(tls / "api.key"),
        "verify_endpoint": {
            "host": "127.0.0.1",
            "port": nginx.port,
            "server_name": "api.example.test",
            "timeout": "3s",
        },
    }
    ws.write(
        PKI
        + "providers:\n"
        + provider_yaml(ssh)
        + f"  web1-nginx: {json.dumps(provider)}\n"
        + textwrap.dedent(f"""\
            certificates:
              api:
                names: [api.example.test]
                issuer: issuing
                key: ec-p256
                validity: 90d
            bindings:
              - certificate: api
                target: {json.dumps(target)}
            """)
    )


def test_nginx_over_ssh_reloads_verifies_and_rolls_back(workspace: Workspace, up: SshLab) -> None:
    if nginx_binary() is None:
        pytest.skip("nginx is not installed (apt-get install nginx)")
    tls = workspace.root / "nginx" / "tls"
    tls.mkdir(parents=True)
    write_self_signed(tls / "api.crt", tls / "api.key", "api.example.test")
    servers = [ServerSpec("api.example.test", tls / "api.crt", tls / "api.key")]
    with NginxLab.start(workspace.root / "nginx", servers) as nginx:
        # The commands leave a trace only when sshd ran them.
        trace = workspace.root / "ran-over-ssh"
        traced = ["sh", "-c", f'[ -n "$SSH_CONNECTION" ] && touch {trace}; exec "$@"', "sh"]
        _nginx_config(workspace, up, nginx, [*traced, *nginx.test_command])
        result = workspace.ok("apply", "--auto-approve")
        assert "verified at 127.0.0.1:" in result.out
        served = probe("127.0.0.1", nginx.port, "api.example.test", timeout=3).serial
        assert served == _file_serial(tls / "api.crt")
        assert trace.exists()
        assert (tls / "api.key").stat().st_mode & 0o777 == 0o600
        assert workspace.run("plan", "--detailed-exitcode").code == 0

        # A failing `nginx -t` on the host: files put back, nginx keeps the old certificate.
        _nginx_config(workspace, up, nginx, ["sh", "-c", "echo 'emerg: broken' >&2; exit 1"])
        before = (tls / "api.crt").read_bytes()
        failed = workspace.run("apply", "--auto-approve", "--replace", "certificate.api")
        assert failed.code == 1, failed.text
        assert "test_command sh on web1 exited with 1: emerg: broken" in failed.text
        assert "previous files restored" in failed.text
        assert (tls / "api.crt").read_bytes() == before
        assert probe("127.0.0.1", nginx.port, "api.example.test", timeout=3).serial == served


def test_bad_ssh_settings_are_config_errors(workspace: Workspace, up: SshLab) -> None:
    loose = workspace.root / "loose_key"
    loose.write_bytes(up.client_key.read_bytes())
    loose.chmod(0o644)
    base = PKI + "certificates:\n  web: {names: [web.example.test], issuer: issuing}\n"
    cases = {
        "inline": (
            "providers:\n  web1: {type: ssh, host: h, user: u, identity: KEYTEXT, "
            "known_hosts: kh}\n",
            "an inline private key is refused",
        ),
        "loose": (
            f"providers:\n  web1: {{type: ssh, host: h, user: u, identity_file: {loose}, "
            f"known_hosts: {up.known_hosts}}}\n",
            f"permissions 0644 for '{loose}' are too open",
        ),
        "relative": (
            provider_yaml(up).join(["providers:\n", ""])
            + "bindings:\n  - certificate: web\n"
            + "    target: {type: files, via: web1, directory: out/web}\n",
            "must be an absolute path on the host with via",
        ),
        "pass_env": (
            provider_yaml(up).join(["providers:\n", ""])
            + "bindings:\n  - certificate: web\n"
            + "    target: {type: files, via: web1, directory: /srv/web, post_deploy: [x], "
            + "pass_env: [HOME]}\n",
            "pass_env cannot be used with via",
        ),
        "unknown": (
            "bindings:\n  - certificate: web\n"
            + "    target: {type: files, via: web2, directory: /srv/web}\n",
            "unknown ssh provider 'web2' in via",
        ),
    }
    for name, (text, message) in cases.items():
        workspace.write(base + text)
        result = workspace.run("validate")
        assert result.code == 1, (name, result.text)
        assert message in result.err, (name, result.err)
        assert "certform.yaml:" in result.err, (name, result.err)
        assert "Traceback" not in result.err and "KEYTEXT" not in result.err


def test_one_connection_serves_many_threads(tmp_path: Path, up: SshLab) -> None:
    """Bindings of one host deployed from several threads share one connection."""
    from concurrent.futures import ThreadPoolExecutor

    from reconciler.providers.ssh.config import SshProviderConfig
    from reconciler.providers.ssh.host import SshHost, close_all

    config = SshProviderConfig(
        type="ssh",
        host="127.0.0.1",
        port=up.port,
        user=up.user,
        identity_file=str(up.client_key),
        known_hosts=str(up.known_hosts),
    )
    hosts = [SshHost("web1", config, tmp_path) for _ in range(16)]
    assert len({id(host.connection) for host in hosts}) == 1

    def deploy(index: int) -> None:
        directory = f"{tmp_path}/remote/{index}"
        hosts[index].make_dirs(directory, 0o750)
        hosts[index].write_files({f"{directory}/key.pem": (b"k%d" % index, 0o600)})
        hosts[index].run_command("post_deploy", ["true"], "10s")

    try:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(deploy, range(16)))
        for index in range(16):
            assert (tmp_path / f"remote/{index}/key.pem").read_bytes() == b"k%d" % index
        assert hosts[0].connection.commands_run == 16
    finally:
        close_all()
