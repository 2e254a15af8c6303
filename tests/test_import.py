"""Imported certificates (ACM ImportCertificate) through the real CLI: `certform
import` prints the YAML, apply stores and deploys, a new file means replace,
expiry is watched, and every bad input is refused naming the file, with the
state left byte-for-byte unchanged."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from reconciler.pki.builder import (
    Subject,
    build_ca_certificate,
    build_leaf_certificate,
    certificate_to_pem,
)
from reconciler.pki.keys import generate_private_key, private_key_to_pem
from tests.conftest import EXAMPLE, Workspace


def _issue(
    directory: Path, name: str, *, days: int = 90, ca_name: str = "Ext CA", ago: int = 0
) -> None:
    """A CA and a leaf for web.example.test, as PEM files: NAME.crt, NAME.key, chain.pem."""
    now = datetime.now(UTC) - timedelta(minutes=1, days=ago)
    ca_key, key = generate_private_key("ec-p256"), generate_private_key("ec-p256")
    ca = build_ca_certificate(
        public_key=ca_key.public_key(), subject=Subject(ca_name), issuer_cert=None,
        issuer_key=ca_key, not_before=now, not_after=now + timedelta(days=365), path_length=0,
    )  # fmt: skip
    leaf = build_leaf_certificate(
        public_key=key.public_key(), names=["web.example.test"], issuer_cert=ca,
        issuer_key=ca_key, not_before=now, not_after=now + timedelta(days=days),
    )  # fmt: skip
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.crt").write_text(certificate_to_pem(leaf))
    (directory / f"{name}.key").write_bytes(private_key_to_pem(key))
    (directory / "chain.pem").write_text(certificate_to_pem(ca))


def _adopt(workspace: Workspace) -> str:
    _issue(workspace.root / "certs", "web")
    printed = workspace.ok(
        "import", "ext", "--cert", "certs/web.crt", "--key", "certs/web.key",
        "--chain", "certs/chain.pem",
    )  # fmt: skip
    snippet = yaml.safe_load(printed.out)
    assert snippet["certificates"]["ext"]["names"] == ["web.example.test"]
    assert "PRIVATE KEY" not in printed.out
    base = yaml.safe_load(EXAMPLE)
    base["authorities"].update(snippet["authorities"])
    base["certificates"].update(snippet["certificates"])
    base["bindings"].append(
        {"certificate": "ext", "target": {"type": "files", "directory": "out/ext"}}
    )
    return yaml.safe_dump(base, sort_keys=False)


def test_import_apply_replace_and_check(workspace: Workspace) -> None:
    workspace.write(_adopt(workspace))
    workspace.ok("apply", "--auto-approve")
    out = workspace.root / "out/ext"
    assert (out / "cert.pem").read_text() == (workspace.root / "certs/web.crt").read_text()
    verified = subprocess.run(
        ["openssl", "verify", "-CAfile", str(out / "ca.pem"), str(out / "cert.pem")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert (out / "key.pem").stat().st_mode & 0o777 == 0o600
    assert workspace.run("plan", "--detailed-exitcode").code == 0
    # Never renewed by certform, even when its renewal time would have come.
    assert "certificate.ext" not in workspace.run("plan", "--at", "+80d").out

    _issue(workspace.root / "certs", "web")  # the team put a renewed certificate in git
    plan = workspace.run("plan", "--detailed-exitcode")
    assert plan.code == 2 and "the imported certificate file changed" in plan.out
    workspace.ok("apply", "--auto-approve")
    assert (out / "cert.pem").read_text() == (workspace.root / "certs/web.crt").read_text()

    soon = workspace.run("check", "--at", "+70d")
    assert soon.code == 2 and "imported: replace its files" in soon.out


@pytest.mark.parametrize("problem", ["mismatched-key", "expired", "broken-chain", "names"])
def test_bad_imports_are_refused_and_change_nothing(workspace: Workspace, problem: str) -> None:
    workspace.write(_adopt(workspace))
    workspace.ok("apply", "--auto-approve")
    certs = workspace.root / "certs"
    text = workspace.config.read_text()
    if problem == "mismatched-key":
        _issue(certs, "other")
        (certs / "web.key").write_bytes((certs / "other.key").read_bytes())
        expected = ["certs/web.key", "does not match the certificate"]
    elif problem == "expired":
        _issue(certs, "web", days=10, ago=20)
        expected = ["certs/web.crt", "expired on"]
    elif problem == "broken-chain":
        _issue(certs, "other", ca_name="Other CA")
        expected = ["certs/chain.pem", "does not verify"]
    else:
        text = text.replace(
            "- web.example.test\n    certificate:", "- www.example.test\n    certificate:"
        )
        expected = ["is for web.example.test, not www.example.test"]
    workspace.write(text)
    state_before = workspace.state_db.read_bytes()
    result = workspace.run("apply", "--auto-approve")
    assert result.code == 1, result.text
    assert "certificates.ext" in result.err
    for phrase in expected:
        assert phrase in result.err, result.err
    assert "PRIVATE KEY" not in result.text
    assert workspace.state_db.read_bytes() == state_before
