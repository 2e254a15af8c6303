"""Shared helpers: run the real ``certform`` executable in a scratch workspace."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

EXAMPLE = """\
authorities:
  root:
    type: private-root
    subject: {common_name: Example Root CA, organization: Example}
    key: ec-p384
    validity: 3650d
  issuing:
    type: private-subordinate
    parent: root
    subject: {common_name: Example Issuing CA}
    validity: 1825d
    path_length: 0
    name_constraints: {permitted: [example.test]}
certificates:
  web:
    names: [web.example.test, "*.web.example.test"]
    issuer: issuing
    key: ec-p256
    validity: 90d
    renew_before: 30d
    tags: {team: web}
  api:
    names: [api.example.test]
    issuer: issuing
    key: rsa-2048
    validity: 90d
bindings:
  - certificate: web
    target: {type: files, directory: out/web}
  - certificate: api
    target: {type: files, directory: out/api}
"""


def certform_argv() -> list[str]:
    exe = shutil.which("certform")
    if exe:
        return [exe]
    return [sys.executable, "-c", "from reconciler.cli import main; main()"]


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


@dataclass
class Workspace:
    root: Path
    env: dict[str, str]

    @property
    def config(self) -> Path:
        return self.root / "certform.yaml"

    @property
    def state_db(self) -> Path:
        return self.root / ".certform" / "state.db"

    def write(self, text: str, name: str = "certform.yaml") -> Path:
        path = self.root / name
        path.write_text(text)
        return path

    def run(self, *args: str, stdin: str | None = None, timeout: float = 120) -> Result:
        proc = subprocess.run(
            [*certform_argv(), *args],
            cwd=self.root,
            env=self.env,
            input=stdin if stdin is not None else "",
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def ok(self, *args: str) -> Result:
        result = self.run(*args)
        assert result.code == 0, result.text
        return result


@pytest.fixture
def master_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


@pytest.fixture
def workspace(tmp_path: Path, master_key: str) -> Workspace:
    env = dict(os.environ)
    env["CERTFORM_MASTER_KEY"] = master_key
    env.pop("CERTFORM_SKIP_INSTALL", None)
    ws = Workspace(tmp_path, env)
    ws.write(EXAMPLE)
    return ws


PKILINT = [sys.executable, "-m", "pkilint.bin.lint_pkix_cert"]
"""pkilint's RFC 5280 certificate linter, run with this interpreter: pkilint is a test
dependency (the ``test`` extra, installed by tests/run.sh), so it is required, never
skipped, and whether its console script is on PATH does not matter."""


def pkilint_findings(path: Path) -> list[tuple[str, str, str, str]]:
    """pkilint's findings for the PEM certificate at ``path``: (validator, severity, code,
    message), NOTICE and above. Fails when pkilint could not lint it (not installed,
    unreadable input), so that "no findings" always means it looked."""
    result = subprocess.run(
        [*PKILINT, "lint", "-f", "JSON", "-s", "NOTICE", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.stdout.strip(), f"pkilint could not lint {path}: {result.stderr}"
    return [
        (entry["validator"], finding["severity"], finding["code"], finding["message"])
        for entry in json.loads(result.stdout)["results"]
        for finding in entry["finding_descriptions"]
    ]


def openssl_verify(directory: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl binary not installed")
    argv = ["openssl", "verify", "-CAfile", str(directory / "ca.pem")]
    if (directory / "chain.pem").read_text().strip():
        argv += ["-untrusted", str(directory / "chain.pem")]
    argv += [*extra, str(directory / "cert.pem")]
    return subprocess.run(argv, capture_output=True, text=True, check=False)


@pytest.fixture(scope="session")
def aws_lab():  # type: ignore[no-untyped-def]
    """A moto server for the whole session, reset before each test that uses it."""
    from tests.aws_lab import AwsLab

    lab = AwsLab.start()
    yield lab
    lab.stop()


@pytest.fixture
def aws(aws_lab, workspace: Workspace, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    from tests.aws_lab import CREDENTIALS

    aws_lab.reset()
    for key, value in CREDENTIALS.items():
        workspace.env[key] = value
        monkeypatch.setenv(key, value)
    workspace.env.pop("AWS_PROFILE", None)
    return aws_lab
