"""The ``haproxy`` target against a real HAProxy through its runtime API: issue,
bind, renew under load with zero failed handshakes, remove, drift, a failed
verification with rollback, and an unreachable socket — each checked with a
real TLS handshake that reads the served serial."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from reconciler.providers.tls_probe import probe
from tests.conftest import EXAMPLE, Workspace
from tests.haproxy_lab import HaproxyLab, handshake_loop, running_haproxy, served_serial
from tests.nginx_lab import write_self_signed

pytestmark = pytest.mark.integration

PKI = EXAMPLE.split("certificates:")[0]


@pytest.fixture
def haproxy(workspace: Workspace) -> Iterator[HaproxyLab]:
    yield from running_haproxy(workspace.root / "haproxy")


def _config(
    lab: HaproxyLab,
    *,
    key: str = "ec-p256",
    socket: str | None = None,
    bind_web: bool = True,
    verify_name: str | None = None,
) -> str:
    provider = {
        "type": "haproxy",
        "socket": socket or lab.socket,
        "crt_dir": str(lab.crt_dir),
        "crt_list": str(lab.crt_list),
        "timeout": "2s",
    }
    web = {"type": "haproxy", "provider": "edge", "sni": ["web.example.test"]}
    if verify_name:
        web["verify_endpoint"] = {
            "host": "127.0.0.1",
            "port": lab.port,
            "server_name": verify_name,
            "timeout": "1s",
        }
    api = {"type": "haproxy", "provider": "edge", "ssl_options": "alpn h2,http/1.1"}
    bindings = [f"  - certificate: api\n    target: {json.dumps(api)}\n"]
    if bind_web:
        bindings.append(f"  - certificate: web\n    target: {json.dumps(web)}\n")
    bindings.append("  - certificate: api\n    target: {type: files, directory: out/api}\n")
    return (
        PKI
        + f"providers:\n  edge: {json.dumps(provider)}\n"
        + "certificates:\n"
        + f"  web:\n    names: [web.example.test]\n    issuer: issuing\n    key: {key}\n"
        + "    validity: 90d\n"
        + "  api:\n    names: [api.example.test]\n    issuer: issuing\n    key: ec-p256\n"
        + "    validity: 90d\n"
        + "bindings:\n"
        + "".join(bindings)
    )


def _file_serial(path: Path) -> str:
    return format(x509.load_pem_x509_certificate(path.read_bytes()).serial_number, "x")


def test_bind_serves_from_runtime_and_files(workspace: Workspace, haproxy: HaproxyLab) -> None:
    workspace.write(_config(haproxy))
    workspace.ok("apply", "--auto-approve")
    web_file = haproxy.crt_dir / "web.pem"
    web_serial = _file_serial(web_file)
    assert served_serial(haproxy.port, "web.example.test") == web_serial
    api_serial = _file_serial(haproxy.crt_dir / "api.pem")
    assert served_serial(haproxy.port, "api.example.test") == api_serial
    assert web_file.stat().st_mode & 0o777 == 0o600
    lines = haproxy.crt_list.read_text().splitlines()
    assert f"{web_file} web.example.test" in lines
    assert f"{haproxy.crt_dir / 'api.pem'} [alpn h2,http/1.1]" in lines
    # The chain is served too (leaf + issuing CA).
    assert len(probe("127.0.0.1", haproxy.port, "web.example.test").chain) == 1
    assert workspace.run("plan", "--detailed-exitcode").code == 0
    # A full reload reads the files: the same certificates come back.
    haproxy.reload()
    assert served_serial(haproxy.port, "web.example.test") == web_serial
    assert workspace.run("plan", "--detailed-exitcode").code == 0


def test_renewal_under_load_drops_no_handshake(workspace: Workspace, haproxy: HaproxyLab) -> None:
    workspace.write(_config(haproxy))
    workspace.ok("apply", "--auto-approve")
    old = served_serial(haproxy.port, "web.example.test")
    with handshake_loop(haproxy.port, "web.example.test") as loop:
        workspace.write(_config(haproxy, key="rsa-2048"))  # new key: the certificate is replaced
        workspace.ok("apply", "--auto-approve")
    loop.assert_swapped(old, _file_serial(haproxy.crt_dir / "web.pem"))


def test_unbind_removes_from_runtime_and_files(workspace: Workspace, haproxy: HaproxyLab) -> None:
    workspace.write(_config(haproxy))
    workspace.ok("apply", "--auto-approve")
    workspace.write(_config(haproxy, bind_web=False))
    result = workspace.ok("apply", "--auto-approve")
    assert "unbind" in result.out
    assert served_serial(haproxy.port, "web.example.test") == haproxy.default_serial
    assert not (haproxy.crt_dir / "web.pem").exists()
    assert "web.pem" not in haproxy.crt_list.read_text()
    assert haproxy.runtime().show_cert(str(haproxy.crt_dir / "web.pem")) is None
    assert workspace.run("plan", "--detailed-exitcode").code == 0


def test_certificate_changed_through_runtime_api_is_drift(
    workspace: Workspace, haproxy: HaproxyLab, tmp_path: Path
) -> None:
    workspace.write(_config(haproxy))
    workspace.ok("apply", "--auto-approve")
    deployed = served_serial(haproxy.port, "web.example.test")
    foreign = write_self_signed(tmp_path / "x.crt", tmp_path / "x.key", "web.example.test")
    pem = (tmp_path / "x.crt").read_text() + (tmp_path / "x.key").read_text()
    haproxy.runtime().replace_cert(str(haproxy.crt_dir / "web.pem"), pem)
    assert served_serial(haproxy.port, "web.example.test") == format(foreign.serial_number, "x")

    plan = workspace.run("plan", "--detailed-exitcode")
    assert plan.code == 2, plan.text
    assert "HAProxy serves serial" in plan.out
    workspace.ok("apply", "--auto-approve")
    assert served_serial(haproxy.port, "web.example.test") == deployed
    assert workspace.run("plan", "--detailed-exitcode").code == 0


def test_failed_verification_commits_the_previous_certificate_back(
    workspace: Workspace, haproxy: HaproxyLab
) -> None:
    workspace.write(_config(haproxy))
    workspace.ok("apply", "--auto-approve")
    before = served_serial(haproxy.port, "web.example.test")
    old_file = (haproxy.crt_dir / "web.pem").read_bytes()
    # Verification asks a name HAProxy answers with its default certificate.
    workspace.write(_config(haproxy, key="rsa-2048", verify_name="elsewhere.example.test"))
    result = workspace.run("apply", "--auto-approve")
    assert result.code == 1, result.text
    assert "verification failed" in result.text
    assert "previous certificate committed back" in result.text
    assert served_serial(haproxy.port, "web.example.test") == before
    assert (haproxy.crt_dir / "web.pem").read_bytes() == old_file
    # The right name verifies; the retry lands.
    workspace.write(_config(haproxy, key="rsa-2048", verify_name="web.example.test"))
    result = workspace.ok("apply", "--auto-approve")
    assert "verified at 127.0.0.1:" in result.out
    assert served_serial(haproxy.port, "web.example.test") != before


def test_new_binding_failing_verification_is_taken_out_again(
    workspace: Workspace, haproxy: HaproxyLab
) -> None:
    workspace.write(_config(haproxy, verify_name="elsewhere.example.test"))
    result = workspace.run("apply", "--auto-approve")
    assert result.code == 1, result.text
    assert "new certificate taken out of HAProxy again" in result.text
    assert served_serial(haproxy.port, "web.example.test") == haproxy.default_serial
    assert "web.pem" not in haproxy.crt_list.read_text()
    assert not (haproxy.crt_dir / "web.pem").exists()
    # The api binding (no verification asked) was applied.
    assert served_serial(haproxy.port, "api.example.test") != haproxy.default_serial


def test_unreachable_socket_fails_that_binding_and_next_apply_retries(
    workspace: Workspace, haproxy: HaproxyLab
) -> None:
    missing = str(workspace.root / "no-such.sock")
    workspace.write(_config(haproxy, socket=missing))
    result = workspace.run("apply", "--auto-approve")
    assert result.code == 1, result.text
    assert missing in result.text
    assert (workspace.root / "out/api/cert.pem").exists()  # the files binding still ran
    assert "Traceback" not in result.text

    workspace.write(_config(haproxy))
    workspace.ok("apply", "--auto-approve")
    assert served_serial(haproxy.port, "web.example.test") == _file_serial(
        haproxy.crt_dir / "web.pem"
    )

    haproxy.stop()
    plan = workspace.run("plan")
    assert plan.code == 0, plan.text
    assert "unreachable" in plan.text


def test_unwritable_crt_dir_leaves_haproxy_as_it_was(
    workspace: Workspace, haproxy: HaproxyLab
) -> None:
    blocker = workspace.root / "not-a-directory"
    blocker.write_text("")
    config = _config(haproxy).replace(json.dumps(str(haproxy.crt_dir)), json.dumps(str(blocker)))
    workspace.write(config)
    result = workspace.run("apply", "--auto-approve")
    assert result.code == 1, result.text
    assert "Not a directory" in result.text
    assert "new certificate taken out of HAProxy again" in result.text
    assert served_serial(haproxy.port, "web.example.test") == haproxy.default_serial
    assert haproxy.runtime().cert_paths() == {str(haproxy.crt_dir / "default.pem")}
    assert haproxy.crt_list.read_text().splitlines() == [str(haproxy.crt_dir / "default.pem")]


@pytest.mark.parametrize("phase", ["journaled", "acted"])
def test_killed_apply_is_recovered_without_duplicate_entries(
    workspace: Workspace, haproxy: HaproxyLab, phase: str
) -> None:
    from tests.test_crash_recovery import kill, start_apply, wait_for

    workspace.write(_config(haproxy))
    marker = workspace.root / "paused"
    proc = start_apply(
        workspace,
        {
            "CERTFORM_TEST_PAUSE_AT": f"binding.haproxy:edge/web:{phase}",
            "CERTFORM_TEST_PAUSE_MARKER": str(marker),
        },
    )
    wait_for(marker, proc)
    kill(proc)
    recovered = workspace.run("apply", "--auto-approve")
    assert recovered.code == 0, recovered.text
    path = str(haproxy.crt_dir / "web.pem")
    entries = [
        e for e in haproxy.runtime().crt_list_entries(str(haproxy.crt_list)) if e.path == path
    ]
    assert len(entries) == 1
    assert [line for line in haproxy.crt_list.read_text().splitlines() if path in line] == [
        f"{path} web.example.test"
    ]
    assert served_serial(haproxy.port, "web.example.test") == _file_serial(Path(path))
    assert workspace.run("plan", "--detailed-exitcode").code == 0
