"""examples/imported applied as a user would: its own make-demo-files.sh writes a
certbot-style live directory (openssl), ``certform import`` prints what the example
declares, and apply deploys files byte-equal to the imported ones (certificate,
chain, full chain, key).  When the files are renewed outside certform (certbot ran
again) the next plan replaces the certificate and apply deploys the new files."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from tests.conftest import Workspace
from tests.examples_lab import copy_example

LIVE = "live/www.example.com"
LAB = ("--var", f"live={LIVE}", "--var", "tls_dir=out/www")
DEPLOYED_AS = {
    "cert.pem": "cert.pem",
    "chain.pem": "chain.pem",
    "fullchain.pem": "fullchain.pem",
    "key.pem": "privkey.pem",
}


def _demo_files(ws: Workspace) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl binary not installed")
    made = subprocess.run(
        ["sh", "make-demo-files.sh"], cwd=ws.root, capture_output=True, text=True, check=False
    )
    assert made.returncode == 0, made.stderr


def _assert_deployed_as_imported(ws: Workspace) -> None:
    for deployed, original in DEPLOYED_AS.items():
        assert (ws.root / "out/www" / deployed).read_bytes() == (
            ws.root / LIVE / original
        ).read_bytes(), deployed


def test_the_imported_example_deploys_the_files_it_adopts(workspace: Workspace) -> None:
    ws = workspace
    source = copy_example(ws, "imported")
    _demo_files(ws)

    files = ("--cert", f"{LIVE}/cert.pem", "--key", f"{LIVE}/privkey.pem")
    printed = ws.ok("import", "www", "--issuer", "certbot", *files, "--chain", f"{LIVE}/chain.pem")
    assert "PRIVATE KEY" not in printed.text
    proposed = yaml.safe_load(printed.out)
    declared = yaml.safe_load((source / "certform.yaml").read_text())  # templates are quoted
    assert proposed["authorities"] == declared["authorities"]
    assert set(proposed["certificates"]["www"]) <= set(declared["certificates"]["www"])

    ws.ok("validate", *LAB)
    ws.ok("plan", *LAB)
    applied = ws.run("apply", "--auto-approve", *LAB)
    assert applied.code == 0, applied.text
    assert "PRIVATE KEY" not in applied.text
    _assert_deployed_as_imported(ws)
    assert (ws.root / "out/www/key.pem").stat().st_mode & 0o777 == 0o600
    assert ws.run("plan", "--detailed-exitcode", *LAB).code == 0
    assert ws.run("check", *LAB).code == 0  # 90 days left: nothing to say

    _demo_files(ws)  # certbot renewed: new files in the live directory
    plan = ws.run("plan", "--detailed-exitcode", *LAB)
    assert plan.code == 2 and "the imported certificate file changed" in plan.out
    ws.ok("apply", "--auto-approve", *LAB)
    _assert_deployed_as_imported(ws)
    assert ws.run("plan", "--detailed-exitcode", *LAB).code == 0
