"""ACME issuance end to end against real servers: Pebble (Let's Encrypt's test CA,
5% of nonces rejected) resolving names through a real BIND 9 that certform
updates with TSIG-signed RFC 2136 messages.  Every result is checked with
openssl against the roots from Pebble's management API."""

from __future__ import annotations

import base64
import json
import sqlite3
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.acme_lab import PebbleLab, pebble_binary
from tests.bind_lab import BindLab, bind_binary
from tests.conftest import Workspace

pytestmark = pytest.mark.integration

DELEGATION = {"example.test": ["_acme-challenge.delegated CNAME delegated.validation.test."]}


@dataclass
class Lab:
    bind: BindLab
    pebble: PebbleLab


@pytest.fixture
def lab(workspace: Workspace) -> Iterator[Lab]:
    if pebble_binary() is None or bind_binary() is None:
        pytest.skip("pebble and bind9 are not installed (apt-get install pebble bind9)")
    bind = BindLab.start(workspace.root / "bind", records=DELEGATION)
    try:
        pebble = PebbleLab.start(workspace.root / "pebble", dns_server=bind.address)
    except BaseException:
        bind.stop()
        raise
    workspace.env["TSIG_SECRET"] = bind.tsig_secret
    yield Lab(bind, pebble)
    pebble.stop()
    bind.stop()


def authority(pebble: PebbleLab, bind: BindLab, *, extra: str = "") -> str:
    rfc2136 = {
        "server": "127.0.0.1",
        "port": bind.port,
        "tsig_key_name": bind.tsig_key_name,
        "tsig_algorithm": bind.tsig_algorithm,
        "tsig_secret_env": "TSIG_SECRET",
    }
    return (
        f"    type: acme\n"
        f"    directory: {pebble.directory_url}\n"
        f"    contact: [mailto:ops@example.test]\n"
        f"    terms_of_service_agreed: true\n"
        f"    ca_bundle: {pebble.ca_bundle}\n"
        f"{extra}"
        f"    solvers:\n"
        f"      - http01: {{standalone: {{address: '127.0.0.1:{pebble.http_port}'}}}}\n"
        f"        domains: [web.example.test]\n"
        f"      - dns01: {{rfc2136: {json.dumps(rfc2136)}, propagation_timeout: 10s}}\n"
    )


def config(lab: Lab, certificates: str, *, issuer: str = "pebble") -> str:
    return (
        "authorities:\n  pebble:\n"
        + authority(lab.pebble, lab.bind)
        + "certificates:\n"
        + certificates.replace("ISSUER", issuer)
    )


CERTS = """\
  web: {names: [web.example.test], issuer: ISSUER, key: ec-p256}
  wild: {names: ["*.wild.example.test", wild.example.test], issuer: ISSUER, key: KEY}
  delegated: {names: [delegated.example.test], issuer: ISSUER, key: rsa-2048}
bindings:
  - {certificate: web, target: {type: files, directory: out/web}}
  - {certificate: wild, target: {type: files, directory: out/wild}}
  - {certificate: delegated, target: {type: files, directory: out/delegated}}
"""


def roots_file(pebble: PebbleLab, directory: Path) -> Path:
    path = directory / "pebble-roots.pem"
    pems = [r.public_bytes(serialization.Encoding.PEM) for r in pebble.roots()]
    path.write_bytes(b"".join(pems))
    return path


def openssl_verify(out: Path, roots: Path) -> subprocess.CompletedProcess[str]:
    argv = ["openssl", "verify", "-CAfile", str(roots), "-untrusted", str(out / "chain.pem")]
    return subprocess.run(
        [*argv, str(out / "cert.pem")], capture_output=True, text=True, check=False
    )


def leaf(out: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate((out / "cert.pem").read_bytes())


def sans(cert: x509.Certificate) -> list[str]:
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return sorted(str(n.value) for n in ext)


def serial(cert: x509.Certificate) -> str:
    return format(cert.serial_number, "x")


def no_challenge_records(bind: BindLab) -> None:
    for name in (
        "_acme-challenge.wild.example.test",
        "_acme-challenge.delegated.example.test",
        "delegated.validation.test",
    ):
        assert bind.txt(name) == [], name


def test_http01_dns01_wildcard_and_cname_delegation(workspace: Workspace, lab: Lab) -> None:
    workspace.write(config(lab, CERTS.replace("KEY", "ec-p384")))
    plan = workspace.run("plan")
    assert "authority.pebble will be registered" in plan.out, plan.text
    result = workspace.run("apply", "--auto-approve")
    assert result.code == 0, result.text
    assert "issued by pebble" in result.out
    roots = roots_file(lab.pebble, workspace.root)
    for name, expected in (
        ("web", ["web.example.test"]),
        ("wild", ["*.wild.example.test", "wild.example.test"]),
        ("delegated", ["delegated.example.test"]),
    ):
        out = workspace.root / "out" / name
        verified = openssl_verify(out, roots)
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert sans(leaf(out)) == expected
        assert (out / "key.pem").stat().st_mode & 0o777 == 0o600
    no_challenge_records(lab.bind)
    # The account key is in the state (sealed), with the account URL; plans are clean.
    with sqlite3.connect(workspace.state_db) as db:
        url, sealed = db.execute(
            "SELECT key_id, sealed_key FROM authorities WHERE name='pebble'"
        ).fetchone()
    assert url.startswith("https://127.0.0.1:") and sealed
    assert workspace.run("plan", "--detailed-exitcode").code == 0
    shown = workspace.ok("show", "--json")
    rows = json.loads(shown.out)
    assert rows["authorities"][0]["type"] == "acme"
    assert {c["issuer"] for c in rows["certificates"]} == {"pebble"}


def _spki(cert: x509.Certificate) -> bytes:
    return cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def test_renewal_gives_a_new_serial_and_a_new_key(workspace: Workspace, tmp_path: Path) -> None:
    if pebble_binary() is None or bind_binary() is None:
        pytest.skip("pebble and bind9 are not installed (apt-get install pebble bind9)")
    bind = BindLab.start(tmp_path / "bind")
    pebble = PebbleLab.start(tmp_path / "pebble", dns_server=bind.address, validity_seconds=7200)
    workspace.env["TSIG_SECRET"] = bind.tsig_secret
    try:
        lab = Lab(bind, pebble)
        certs = (
            "  web: {names: [web.example.test], issuer: ISSUER, key: ec-p256,"
            " renew_before: 2h}\n"
            "bindings:\n  - {certificate: web, target: {type: files, directory: out/web}}\n"
        )
        workspace.write(config(lab, certs))
        workspace.ok("apply", "--auto-approve")
        first = leaf(workspace.root / "out/web")
        plan = workspace.run("plan", "--detailed-exitcode")
        assert plan.code == 2 and "certificate.web will be renewed" in plan.out, plan.text
        assert "renew_before 2h" in plan.out
        workspace.ok("apply", "--auto-approve")
        second = leaf(workspace.root / "out/web")
        assert serial(second) != serial(first)
        assert _spki(second) != _spki(first)  # rotation: a renewal gets a new key
        verified = openssl_verify(workspace.root / "out/web", roots_file(pebble, tmp_path))
        assert verified.returncode == 0, verified.stderr
    finally:
        pebble.stop()
        bind.stop()


def test_revoke_at_the_ca_then_reissue(workspace: Workspace, lab: Lab) -> None:
    workspace.write(config(lab, CERTS.replace("KEY", "ec-p256")))
    workspace.ok("apply", "--auto-approve")
    old = serial(leaf(workspace.root / "out/web"))
    bad = workspace.run("revoke", "web", "--reason", "stolen")
    assert bad.code == 1 and "unknown revocation reason 'stolen'" in bad.text
    assert not lab.pebble.is_revoked(old)

    result = workspace.run("revoke", "web", "--reason", "keyCompromise")
    assert result.code == 0, result.text
    assert lab.pebble.is_revoked(old)
    assert lab.pebble.cert_status(old)["Status"] == "Revoked"
    plan = workspace.run("plan", "--detailed-exitcode")
    assert plan.code == 2 and "revoked on" in plan.out, plan.text
    workspace.ok("apply", "--auto-approve")
    new = serial(leaf(workspace.root / "out/web"))
    assert new != old and not lab.pebble.is_revoked(new)
    with sqlite3.connect(workspace.state_db) as db:
        audit = db.execute("SELECT detail FROM audit WHERE command='revoke'").fetchall()
    assert any("keyCompromise" in row[0] for row in audit)


def test_wrong_tsig_key_fails_cleanly_and_keeps_the_working_certificate(
    workspace: Workspace, lab: Lab
) -> None:
    workspace.write(config(lab, CERTS.replace("KEY", "ec-p256")))
    workspace.ok("apply", "--auto-approve")
    before = (workspace.root / "out/wild/cert.pem").read_bytes()
    with sqlite3.connect(workspace.state_db) as db:
        serial_before = db.execute("SELECT serial FROM certificates WHERE name='wild'").fetchone()

    workspace.env["TSIG_SECRET"] = base64.b64encode(b"\x01" * 32).decode()
    workspace.write(config(lab, CERTS.replace("KEY", "ec-p384")))  # forces a new order
    result = workspace.run("apply", "--auto-approve")
    assert result.code == 1, result.text
    assert "TSIG" in result.text and "certificate.wild" in result.text
    assert workspace.env["TSIG_SECRET"] not in result.text
    assert (workspace.root / "out/wild/cert.pem").read_bytes() == before
    with sqlite3.connect(workspace.state_db) as db:
        assert db.execute("SELECT serial FROM certificates WHERE name='wild'").fetchone() == (
            serial_before
        )
    no_challenge_records(lab.bind)

    workspace.env["TSIG_SECRET"] = lab.bind.tsig_secret  # fixed: the next apply retries
    workspace.ok("apply", "--auto-approve")
    assert (workspace.root / "out/wild/cert.pem").read_bytes() != before
    no_challenge_records(lab.bind)


def test_external_account_binding(workspace: Workspace, tmp_path: Path) -> None:
    if pebble_binary() is None or bind_binary() is None:
        pytest.skip("pebble and bind9 are not installed (apt-get install pebble bind9)")
    hmac_key = base64.urlsafe_b64encode(b"\x07" * 32).decode().rstrip("=")
    bind = BindLab.start(tmp_path / "bind")
    pebble = PebbleLab.start(
        tmp_path / "pebble", dns_server=bind.address, eab_keys={"kid-1": hmac_key}
    )
    try:
        lab = Lab(bind, pebble)
        certs = (
            "  web: {names: [web.example.test], issuer: ISSUER}\n"
            "bindings:\n  - {certificate: web, target: {type: files, directory: out/web}}\n"
        )
        workspace.write(config(lab, certs))
        refused = workspace.run("apply", "--auto-approve")
        assert refused.code == 1 and "externalAccountRequired" in refused.text, refused.text

        eab = "    external_account_binding: {kid: kid-1, hmac_key_env: EAB_HMAC}\n"
        workspace.write(
            "authorities:\n  pebble:\n"
            + authority(pebble, bind, extra=eab)
            + "certificates:\n"
            + certs.replace("ISSUER", "pebble")
        )
        missing = workspace.run("apply", "--auto-approve")
        assert missing.code == 1 and "EAB_HMAC" in missing.text
        workspace.env["EAB_HMAC"] = hmac_key
        result = workspace.run("apply", "--auto-approve")
        assert result.code == 0, result.text
        assert hmac_key not in result.text
        assert (workspace.root / "out/web/cert.pem").exists()
    finally:
        pebble.stop()
        bind.stop()


def test_fallback_to_the_second_issuer_when_the_first_is_down(
    workspace: Workspace, lab: Lab, tmp_path: Path
) -> None:
    second = PebbleLab.start(tmp_path / "second", dns_server=lab.bind.address)
    try:
        text = (
            "authorities:\n  first:\n"
            + authority(lab.pebble, lab.bind)
            + "  second:\n"
            + authority(second, lab.bind).replace(
                f"'127.0.0.1:{lab.pebble.http_port}'", f"'127.0.0.1:{second.http_port}'"
            )
            + "certificates:\n"
            + "  web: {names: [web.example.test, api.example.test], issuer: [first, second],"
            " key: KEY}\n"
            + "bindings:\n  - {certificate: web, target: {type: files, directory: out/web}}\n"
        )
        workspace.write(text.replace("KEY", "ec-p256"))
        result = workspace.ok("apply", "--auto-approve")
        assert "issued by first" in result.out
        first_roots = roots_file(lab.pebble, tmp_path)
        assert openssl_verify(workspace.root / "out/web", first_roots).returncode == 0

        lab.pebble.stop()
        workspace.write(text.replace("KEY", "ec-p384"))
        result = workspace.run("apply", "--auto-approve")
        assert result.code == 0, result.text
        assert "issued by second after first:" in result.out
        assert "unreachable" in result.out
        second_roots = second.directory / "second-roots.pem"
        second_roots.write_bytes(
            b"".join(r.public_bytes(serialization.Encoding.PEM) for r in second.roots())
        )
        verified = openssl_verify(workspace.root / "out/web", second_roots)
        assert verified.returncode == 0, verified.stderr
        with sqlite3.connect(workspace.state_db) as db:
            details = [r[0] for r in db.execute("SELECT detail FROM audit")]
        assert any("issued by second after first" in d for d in details)
        shown = json.loads(workspace.ok("show", "--json").out)
        assert shown["certificates"][0]["issuer"] == "second"
        assert workspace.run("plan", "--detailed-exitcode").code == 0
    finally:
        second.stop()


def test_webroot_http01_and_contact_update(workspace: Workspace, lab: Lab) -> None:
    from tests.acme_lab import WebrootServer

    webroot = workspace.root / "www"
    server = WebrootServer.start(webroot, lab.pebble.http_port)
    try:
        text = config(
            lab,
            "  web: {names: [web.example.test], issuer: ISSUER}\n"
            "bindings:\n  - {certificate: web, target: {type: files, directory: out/web}}\n",
        ).replace(
            f"http01: {{standalone: {{address: '127.0.0.1:{lab.pebble.http_port}'}}}}",
            "http01: {webroot: www}",
        )
        workspace.write(text)
        workspace.ok("apply", "--auto-approve")
        assert any("/.well-known/acme-challenge/" in path for path in server.requests)
        challenge_dir = webroot / ".well-known" / "acme-challenge"
        assert list(challenge_dir.iterdir()) == []  # answers withdrawn after validation
        verified = openssl_verify(workspace.root / "out/web", roots_file(lab.pebble, webroot))
        assert verified.returncode == 0, verified.stderr

        workspace.write(text.replace("mailto:ops@example.test", "mailto:pki@example.test"))
        plan = workspace.run("plan", "--detailed-exitcode")
        assert plan.code == 2 and "authority.pebble will be updated" in plan.out, plan.text
        assert "contact changed: mailto:ops@example.test → mailto:pki@example.test" in plan.out
        workspace.ok("apply", "--auto-approve")
        assert workspace.run("plan", "--detailed-exitcode").code == 0

        # A bare address means mailto: — the same as recorded, and Pebble (which
        # refuses any other scheme) accepts a new one written that way.
        workspace.write(text.replace("mailto:ops@example.test", "pki@example.test"))
        assert workspace.run("plan", "--detailed-exitcode").code == 0
        workspace.write(text.replace("mailto:ops@example.test", "sec@example.test"))
        plan = workspace.run("plan")
        assert "contact changed: mailto:pki@example.test → mailto:sec@example.test" in plan.out
        workspace.ok("apply", "--auto-approve")
    finally:
        server.stop()


def test_timeout_withdraws_every_answer_and_keeps_the_old_certificate(
    workspace: Workspace, lab: Lab
) -> None:
    log = workspace.root / "hook.log"
    hook = workspace.root / "hook.sh"
    hook.write_text(f'#!/bin/sh\necho "$1 $CERTFORM_ACME_RECORD" >> {log}\n')
    hook.chmod(0o755)
    workspace.write(config(lab, CERTS.replace("KEY", "ec-p256")))
    workspace.ok("apply", "--auto-approve")
    before = (workspace.root / "out/wild/cert.pem").read_bytes()

    # A hook that "publishes" nothing: the record never shows on the server.
    command = {
        "present": [str(hook), "present"],
        "cleanup": [str(hook), "cleanup"],
        "check_server": lab.bind.address,
    }
    text = config(lab, CERTS.replace("KEY", "ec-p384"))
    start = text.index("      - dns01: {rfc2136:")
    end = text.index("\n", start)
    text = (
        text[:start]
        + f"      - dns01: {{command: {json.dumps(command)}, propagation_timeout: 1s}}"
        + text[end:]
    )
    workspace.write(text)
    result = workspace.run("apply", "--auto-approve")
    assert result.code == 1, result.text
    assert "certificate.wild" in result.text and "FAILED" in result.text
    lines = log.read_text().splitlines()
    presented = sorted(line.split()[1] for line in lines if line.startswith("present"))
    withdrawn = sorted(line.split()[1] for line in lines if line.startswith("cleanup"))
    assert presented and presented == withdrawn  # every answer withdrawn after the timeout
    assert (workspace.root / "out/wild/cert.pem").read_bytes() == before


@pytest.mark.parametrize("wanted_index", [0, 1])
def test_preferred_chain_picks_the_named_root(
    workspace: Workspace, tmp_path: Path, wanted_index: int
) -> None:
    if pebble_binary() is None or bind_binary() is None:
        pytest.skip("pebble and bind9 are not installed (apt-get install pebble bind9)")
    bind = BindLab.start(tmp_path / "bind")
    pebble = PebbleLab.start(
        tmp_path / "pebble", dns_server=bind.address, extra_env={"PEBBLE_ALTERNATE_ROOTS": "1"}
    )
    workspace.env["TSIG_SECRET"] = bind.tsig_secret
    try:
        roots = pebble.roots()
        assert len(roots) == 2
        wanted_root, other_root = roots[wanted_index], roots[1 - wanted_index]
        wanted = wanted_root.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value
        extra = f"    preferred_chain: {wanted}\n"
        workspace.write(
            "authorities:\n  pebble:\n"
            + authority(pebble, bind, extra=extra)
            + "certificates:\n  web: {names: [web.example.test], issuer: pebble}\n"
            + "bindings:\n  - {certificate: web, target: {type: files, directory: out/web}}\n"
        )
        workspace.ok("apply", "--auto-approve")
        only_wanted = tmp_path / "wanted-root.pem"
        only_wanted.write_bytes(wanted_root.public_bytes(serialization.Encoding.PEM))
        verified = openssl_verify(workspace.root / "out/web", only_wanted)
        assert verified.returncode == 0, verified.stdout + verified.stderr
        other = tmp_path / "other-root.pem"
        other.write_bytes(other_root.public_bytes(serialization.Encoding.PEM))
        assert openssl_verify(workspace.root / "out/web", other).returncode != 0
    finally:
        pebble.stop()
        bind.stop()


def test_killed_apply_reuses_the_journaled_key(workspace: Workspace, lab: Lab) -> None:
    from tests.test_crash_recovery import journaled_public_key, kill, start_apply, wait_for

    workspace.write(config(lab, CERTS.replace("KEY", "ec-p256")))
    marker = workspace.root / "paused"
    proc = start_apply(
        workspace,
        {
            "CERTFORM_TEST_PAUSE_AT": "certificate.wild:journaled",
            "CERTFORM_TEST_PAUSE_MARKER": str(marker),
        },
    )
    wait_for(marker, proc)
    kill(proc)
    pending = journaled_public_key(workspace, "certificate.wild")
    assert pending is not None
    recovered = workspace.run("apply", "--auto-approve")
    assert recovered.code == 0, recovered.text
    assert "Recovering from an interrupted apply" in recovered.out
    assert _spki(leaf(workspace.root / "out/wild")) == pending
    assert workspace.run("plan", "--detailed-exitcode").code == 0
    no_challenge_records(lab.bind)
