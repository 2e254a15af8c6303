"""A real SIGKILL at any point of apply loses no key, issues nothing twice, and the
next apply recovers.  The kill lands at exact step phases through the fault point
(``CERTFORM_TEST_PAUSE_AT``) and at random moments during a large apply.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from reconciler.pki.keys import private_key_from_der
from tests.conftest import Workspace, certform_argv, openssl_verify

pytestmark = pytest.mark.state_backends

HEADER = """\
authorities:
  root:
    type: private-root
    subject: {common_name: Crash Root}
  issuing:
    type: private-subordinate
    parent: root
    subject: {common_name: Crash Issuing}
certificates:
"""


def config(count: int) -> str:
    certs = "".join(
        f"  c{i}:\n    names: [c{i}.example.test]\n    issuer: issuing\n" for i in range(count)
    )
    binds = "".join(
        f"  - certificate: c{i}\n    target: {{type: files, directory: out/c{i}}}\n"
        for i in range(count)
    )
    return HEADER + certs + "bindings:\n" + binds


def start_apply(ws: Workspace, env_extra: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    env = dict(ws.env, **env_extra)
    return subprocess.Popen(
        [*certform_argv(), "apply", "--auto-approve", *args],
        cwd=ws.root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def kill(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL


def wait_for(path: Path, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, "apply finished before reaching the fault point"
        assert time.monotonic() < deadline, "fault point never reached"
        time.sleep(0.01)


def journaled_public_key(ws: Workspace, address: str) -> bytes | None:
    with ws.opened_store() as store:
        der = store.journaled_key(address)
    if der is None:
        return None
    return _spki(private_key_from_der(der).public_key())


def _spki(public_key: object) -> bytes:
    return public_key.public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def assert_consistent(ws: Workspace, count: int) -> None:
    """Every deployment matches the state, keys match certificates, nothing dangles."""
    plan = ws.run("plan", "--detailed-exitcode")
    assert plan.code == 0, plan.text
    serials = dict(ws.query("SELECT name, serial FROM certificates WHERE status='active'"))
    ((open_steps,),) = ws.query(
        "SELECT count(*) FROM journal WHERE status IN ('started', 'interrupted')"
    )
    ((keys_left,),) = ws.query("SELECT count(*) FROM journal WHERE sealed_key IS NOT NULL")
    assert open_steps == 0 and keys_left == 0
    assert len(serials) == count
    for i in range(count):
        directory = ws.root / f"out/c{i}"
        cert = x509.load_pem_x509_certificate((directory / "cert.pem").read_bytes())
        key = serialization.load_pem_private_key((directory / "key.pem").read_bytes(), None)
        assert _spki(key.public_key()) == _spki(cert.public_key())
        assert format(cert.serial_number, "x") == serials[f"c{i}"]
    assert openssl_verify(ws.root / "out/c0").returncode == 0


PHASES = [
    ("authority.issuing", "journaled"),
    ("authority.issuing", "acted"),
    ("certificate.c3", "journaled"),
    ("certificate.c3", "acted"),
    ("binding.files:out/c3", "journaled"),
    ("binding.files:out/c3", "acted"),
]


@pytest.mark.parametrize(("address", "phase"), PHASES)
def test_sigkill_at_each_phase_is_recovered(workspace: Workspace, address: str, phase: str) -> None:
    ws = workspace
    count = 6
    ws.write(config(count))
    marker = ws.root / "paused"
    proc = start_apply(
        ws,
        {"CERTFORM_TEST_PAUSE_AT": f"{address}:{phase}", "CERTFORM_TEST_PAUSE_MARKER": str(marker)},
    )
    wait_for(marker, proc)
    kill(proc)

    pending_key = journaled_public_key(ws, address)
    if address.startswith(("certificate.", "authority.")):
        assert pending_key is not None, "the generated key was not journaled before use"
    warning = ws.run("plan")
    assert "interrupted" in warning.out, warning.text

    recovered = ws.run("apply", "--auto-approve")
    assert recovered.code == 0, recovered.text
    assert "Recovering from an interrupted apply" in recovered.out
    assert_consistent(ws, count)

    if address.startswith("certificate."):
        name = address.split(".", 1)[1]
        cert = x509.load_pem_x509_certificate((ws.root / f"out/{name}/cert.pem").read_bytes())
        assert _spki(cert.public_key()) == pending_key, "the journaled key was not reused"
        ((superseded,),) = ws.query("SELECT count(*) FROM history WHERE address = ?", (address,))
        assert superseded == 0, "the certificate was recorded twice"


def test_sigkill_at_random_moments_during_large_apply(workspace: Workspace) -> None:
    ws = workspace
    count = 120
    ws.write(config(count))
    rng = random.Random(20261122)
    for _ in range(3):
        proc = start_apply(ws, {})
        time.sleep(rng.uniform(0.7, 2.0))
        if proc.poll() is None:
            kill(proc)
    final = ws.run("apply", "--auto-approve", timeout=300)
    assert final.code == 0, final.text
    assert_consistent(ws, count)
