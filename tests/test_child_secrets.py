"""Issue 10, item 3: child processes (post_deploy, nginx commands, dns-01 hooks) get
the environment without certform's secrets, and a timeout kills the whole
process group."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from reconciler.acme.dns01 import CommandWriter, DnsChallengeError
from reconciler.childenv import ALWAYS_SECRET, secret_env_names
from reconciler.config.models import CertformConfig
from reconciler.errors import ProviderError
from reconciler.providers.commands import run_command
from tests.conftest import Workspace

SECRETS = {
    "AWS_SECRET_ACCESS_KEY": "aws-secret-value-0001",
    "AWS_SESSION_TOKEN": "aws-session-token-0002",
    "HOOK_TOKEN": "webhook-header-token-0003",
    "HOOK_URL": "https://hooks.example.test/secret-path-0004",
}
ORDINARY = {"CERTFORM_TEST_ORDINARY": "plain-value"}


def _config(pass_env: str = "") -> str:
    return f"""\
authorities:
  root:
    type: private-root
    subject: {{common_name: Child Env Root}}
certificates:
  web:
    names: [web.example.test]
    issuer: root
bindings:
  - certificate: web
    target:
      type: files
      directory: out/web
      post_deploy: [sh, -c, 'env > "$CERTFORM_DIRECTORY/../env.txt"']
{pass_env}notifications:
  sinks:
    - type: webhook
      url_env: HOOK_URL
      headers_env: {{X-Token: HOOK_TOKEN}}
"""


def _environment_seen(workspace: Workspace, pass_env: str = "") -> dict[str, str]:
    workspace.env.update(SECRETS)
    workspace.env.update(ORDINARY)
    workspace.write(_config(pass_env))
    result = workspace.ok("apply", "--auto-approve")
    for value in [*SECRETS.values(), workspace.env["CERTFORM_MASTER_KEY"]]:
        assert value not in result.text
    lines = (workspace.root / "out" / "env.txt").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line)


def test_post_deploy_sees_no_secret_of_certform(workspace: Workspace) -> None:
    seen = _environment_seen(workspace)
    for name in ("CERTFORM_MASTER_KEY", *SECRETS):
        assert name not in seen, name
    master_key = workspace.env["CERTFORM_MASTER_KEY"]
    text = (workspace.root / "out" / "env.txt").read_text()
    assert master_key not in text and all(v not in text for v in SECRETS.values())
    # The rest of the environment is there, as are certform's own variables.
    assert seen["PATH"] == workspace.env["PATH"]
    assert seen["CERTFORM_TEST_ORDINARY"] == "plain-value"
    assert seen["CERTFORM_CERTIFICATE"] == "web"


def test_pass_env_lets_exactly_the_named_secret_through(workspace: Workspace) -> None:
    seen = _environment_seen(workspace, "      pass_env: [HOOK_TOKEN]\n")
    assert seen["HOOK_TOKEN"] == SECRETS["HOOK_TOKEN"]
    for name in ("CERTFORM_MASTER_KEY", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "HOOK_URL"):
        assert name not in seen, name


def test_pass_env_names_must_be_environment_variable_names(workspace: Workspace) -> None:
    workspace.write(_config("      pass_env: [HOOK_TOKEN, 'NOT-A-NAME']\n"))
    before = sorted(p.name for p in workspace.root.iterdir())
    result = workspace.run("validate")
    assert result.code == 1, result.text
    assert "certform.yaml:15: bindings[0].target.pass_env[1]:" in result.err, result.err
    assert "'NOT-A-NAME' is not an environment variable name" in result.err
    assert "Traceback" not in result.text
    assert sorted(p.name for p in workspace.root.iterdir()) == before


def test_secret_names_are_every_star_env_setting_of_the_config() -> None:
    config = CertformConfig.model_validate(
        {
            "authorities": {
                "acme": {
                    "type": "acme",
                    "directory": "https://acme.example.test/dir",
                    "contact": ["mailto:ops@example.test"],
                    "terms_of_service_agreed": True,
                    "external_account_binding": {"kid": "k", "hmac_key_env": "EAB_KEY"},
                    "solvers": [
                        {
                            "dns01": {
                                "rfc2136": {
                                    "server": "127.0.0.1",
                                    "tsig_key_name": "k",
                                    "tsig_secret_env": "TSIG_SECRET",
                                }
                            }
                        },
                        {
                            "dns01": {
                                "command": {
                                    "present": ["true"],
                                    "cleanup": ["true"],
                                    "pass_env": ["NOT_A_SECRET"],
                                }
                            }
                        },
                    ],
                },
                "imported": {"type": "imported"},
            },
            "certificates": {
                "legacy": {
                    "names": ["legacy.example.test"],
                    "issuer": "imported",
                    "certificate": "legacy.pem",
                    "private_key_env": "LEGACY_KEY",
                }
            },
            "notifications": {
                "sinks": [
                    {"type": "webhook", "url_env": "HOOK_URL", "headers_env": {"X-A": "HOOK_A"}}
                ]
            },
        }
    )
    names = secret_env_names(config)
    assert names == {"EAB_KEY", "TSIG_SECRET", "LEGACY_KEY", "HOOK_URL", "HOOK_A"}
    assert "CERTFORM_MASTER_KEY" in ALWAYS_SECRET and "AWS_SECRET_ACCESS_KEY" in ALWAYS_SECRET


# --- dns-01 command hooks and run_command, in process -----------------------------------


def _script(path: Path, body: str) -> str:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_dns01_hook_sees_no_secret_unless_passed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CERTFORM_MASTER_KEY", "master-key-value")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret-value")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "aws-session-value")
    monkeypatch.setenv("CERTFORM_TEST_ORDINARY", "plain-value")
    out = tmp_path / "env.txt"
    hook = _script(tmp_path / "hook.sh", f'env > "{out}"\n')

    CommandWriter([hook], [hook], timeout=5.0).present("_acme-challenge.a.test", "v")
    text = out.read_text()
    assert "master-key-value" not in text and "aws-secret-value" not in text
    assert "aws-session-value" not in text
    assert "CERTFORM_TEST_ORDINARY=plain-value" in text
    assert "CERTFORM_ACME_DOMAIN=a.test" in text

    passing = CommandWriter([hook], [hook], timeout=5.0, pass_env=["AWS_SECRET_ACCESS_KEY"])
    passing.present("_acme-challenge.a.test", "v")
    text = out.read_text()
    assert "AWS_SECRET_ACCESS_KEY=aws-secret-value" in text
    assert "master-key-value" not in text and "aws-session-value" not in text


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie not yet reaped by init counts as gone.
    status = Path(f"/proc/{pid}/stat")
    return status.exists() and status.read_text().split(") ")[-1].startswith("Z")


def _wait_gone(pid: int, seconds: float = 3.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if _gone(pid):
            return True
        time.sleep(0.05)
    return _gone(pid)


def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    argv = ["sh", "-c", f"sleep 37 & echo $! > {pidfile}; wait"]
    started = time.monotonic()
    with pytest.raises(ProviderError, match="post_deploy sh did not finish within 1s"):
        run_command("post_deploy", argv, "1s")
    assert time.monotonic() - started < 5
    assert _wait_gone(int(pidfile.read_text())), "the background sleep survived the timeout"


def test_a_background_child_holding_the_output_does_not_outlive_the_timeout(
    tmp_path: Path,
) -> None:
    # The shell exits at once; its background sleep keeps stdout open.
    pidfile = tmp_path / "pid"
    argv = ["sh", "-c", f"sleep 37 & echo $! > {pidfile}"]
    started = time.monotonic()
    with pytest.raises(ProviderError, match="did not finish within 1s"):
        run_command("reload_command", argv, "1s")
    assert time.monotonic() - started < 5
    assert _wait_gone(int(pidfile.read_text()))


def test_dns01_hook_timeout_kills_its_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    hook = _script(tmp_path / "slow.sh", f"sleep 37 &\necho $! > {pidfile}\nwait\n")
    started = time.monotonic()
    with pytest.raises(DnsChallengeError, match=r"timed out after 1 s"):
        CommandWriter([hook], [hook], timeout=1.0).present("_acme-challenge.a.test", "v")
    assert time.monotonic() - started < 5
    assert _wait_gone(int(pidfile.read_text()))


def test_nginx_commands_see_no_secret_except_pass_env(workspace: Workspace) -> None:
    workspace.env.update(SECRETS)
    workspace.write("""\
authorities:
  root:
    type: private-root
    subject: {common_name: Child Env Root}
providers:
  web:
    type: nginx
    test_command: [sh, -c, 'env > test-env.txt']
    reload_command: [sh, -c, 'env > reload-env.txt']
    pass_env: [AWS_SESSION_TOKEN]
certificates:
  api:
    names: [api.example.test]
    issuer: root
bindings:
  - certificate: api
    target: {type: nginx, provider: web, certificate_path: tls/api.crt, key_path: tls/api.key}
notifications:
  sinks: [{type: webhook, url_env: HOOK_URL, headers_env: {X-Token: HOOK_TOKEN}}]
""")
    workspace.ok("apply", "--auto-approve")
    master_key = workspace.env["CERTFORM_MASTER_KEY"]
    for name in ("test-env.txt", "reload-env.txt"):
        text = (workspace.root / name).read_text()
        assert f"AWS_SESSION_TOKEN={SECRETS['AWS_SESSION_TOKEN']}" in text
        for secret in (master_key, *(v for k, v in SECRETS.items() if k != "AWS_SESSION_TOKEN")):
            assert secret not in text
