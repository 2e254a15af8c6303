"""CRLs for private CAs through the real CLI, checked with openssl: the CRL
distribution point in issued certificates, publish on first apply, after a
revocation and in the last third of validity, and `openssl verify -crl_check`
rejecting a revoked certificate while accepting a good one."""

from __future__ import annotations

import subprocess
from pathlib import Path

from cryptography import x509

from tests.conftest import EXAMPLE, Workspace

# SQLite only: this logic lives in the SQL core both backends share; PostgreSQL runs
# the lifecycle, crash recovery, state commands and its own tests (tests/test_postgres_state.py).

URL = "http://crl.example.test/issuing.crl"
CRL_BLOCK = f"    crl: {{publish: {{directory: crl}}, validity: 7d, url: '{URL}'}}\n"


def _config() -> str:
    return EXAMPLE.replace(
        "    name_constraints: {permitted: [example.test]}\n",
        "    name_constraints: {permitted: [example.test]}\n" + CRL_BLOCK,
    )


def _verify(workspace: Workspace, cert: Path) -> subprocess.CompletedProcess[str]:
    out = workspace.root / "out/web"
    argv = [
        "openssl", "verify", "-crl_check",
        "-CRLfile", str(workspace.root / "crl/issuing.crl.pem"),
        "-CAfile", str(out / "ca.pem"),
        "-untrusted", str(out / "chain.pem"),
        str(cert),
    ]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, check=False)


def test_publish_revoke_and_openssl_crl_check(workspace: Workspace, tmp_path: Path) -> None:
    workspace.write(_config())
    plan = workspace.run("plan")
    assert "crl.issuing will be published" in plan.out and "no CRL published yet" in plan.out
    workspace.ok("apply", "--auto-approve")
    der = (workspace.root / "crl/issuing.crl").read_bytes()
    crl = x509.load_der_x509_crl(der)
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 1
    assert len(list(crl)) == 0
    cert_path = workspace.root / "out/web/cert.pem"
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    points = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert points[0].full_name[0].value == URL
    good = _verify(workspace, cert_path)
    assert good.returncode == 0, good.stdout + good.stderr
    assert workspace.run("plan", "--detailed-exitcode").code == 0

    old = tmp_path / "old-web.pem"
    old.write_bytes(cert_path.read_bytes())
    revoked = workspace.ok("revoke", "web", "--reason", "keyCompromise")
    assert "the next apply lists it in authority.issuing's CRL" in revoked.out
    plan = workspace.run("plan")
    assert "1 revocation(s) since CRL #1" in plan.out
    assert "revoked on" in plan.out
    workspace.ok("apply", "--auto-approve")
    crl = x509.load_pem_x509_crl((workspace.root / "crl/issuing.crl.pem").read_bytes())
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 2
    entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
    assert entry is not None
    reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
    assert reason == x509.ReasonFlags.key_compromise
    revoked = _verify(workspace, old)
    assert revoked.returncode != 0 and "certificate revoked" in revoked.stdout + revoked.stderr
    renewed = _verify(workspace, cert_path)
    assert renewed.returncode == 0, renewed.stdout + renewed.stderr
    assert workspace.run("plan", "--detailed-exitcode").code == 0


def test_republish_in_last_third_and_when_files_are_gone(workspace: Workspace) -> None:
    workspace.write(_config())
    workspace.ok("apply", "--auto-approve")
    assert "crl.issuing" not in workspace.run("plan", "--at", "+4d").out
    later = workspace.run("plan", "--at", "+5d")
    assert "CRL #1 is in the last third of its validity" in later.out
    (workspace.root / "crl/issuing.crl").unlink()
    drift = workspace.run("plan", "--detailed-exitcode")
    assert drift.code == 2 and "issuing.crl missing" in drift.out
    workspace.ok("apply", "--auto-approve")
    assert (workspace.root / "crl/issuing.crl").exists()
    assert workspace.run("plan", "--detailed-exitcode").code == 0


def test_rotation_never_keeps_the_key_and_revoke_replaced_lists_the_old_one(
    workspace: Workspace, tmp_path: Path
) -> None:
    from cryptography.hazmat.primitives import serialization

    text = _config().replace(
        "    tags: {team: web}\n",
        "    tags: {team: web}\n    private_key: {rotation: never}\n    revoke_replaced: true\n",
    )
    workspace.write(text)
    workspace.ok("apply", "--auto-approve")
    cert_path = workspace.root / "out/web/cert.pem"
    old_cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    old = tmp_path / "old.pem"
    old.write_bytes(cert_path.read_bytes())
    key_before = (workspace.root / "out/web/key.pem").read_bytes()

    # Renewal (validity changed): same key, the superseded certificate revoked and in the CRL.
    workspace.write(
        text.replace(
            "    validity: 90d\n    renew_before: 30d\n",
            "    validity: 60d\n    renew_before: 20d\n",
        )
    )
    plan = workspace.run("plan")
    assert "certificate.web will be renewed" in plan.out
    assert "1 superseded certificate(s) to revoke (revoke_replaced)" in plan.out
    result = workspace.ok("apply", "--auto-approve")
    assert "revoked (superseded)" in result.out
    assert (workspace.root / "out/web/key.pem").read_bytes() == key_before
    new_cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    assert new_cert.serial_number != old_cert.serial_number
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    assert new_cert.public_key().public_bytes(serialization.Encoding.DER, spki) == (
        old_cert.public_key().public_bytes(serialization.Encoding.DER, spki)
    )
    crl = x509.load_pem_x509_crl((workspace.root / "crl/issuing.crl.pem").read_bytes())
    entry = crl.get_revoked_certificate_by_serial_number(old_cert.serial_number)
    assert entry is not None
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason == (
        x509.ReasonFlags.superseded
    )
    rejected = _verify(workspace, old)
    assert rejected.returncode != 0 and "certificate revoked" in rejected.stdout + rejected.stderr
    assert _verify(workspace, cert_path).returncode == 0
    assert workspace.run("plan", "--detailed-exitcode").code == 0


def test_revoking_a_subordinate_ca_lists_it_in_the_root_crl_and_rotates_it(
    workspace: Workspace,
) -> None:
    root_crl = "    crl: {publish: {directory: crl}, validity: 30d, url: 'http://crl.example.test/root.crl'}\n"
    text = _config().replace("    validity: 3650d\n", "    validity: 3650d\n" + root_crl, 1)
    workspace.write(text)
    workspace.ok("apply", "--auto-approve")
    old_issuing = x509.load_pem_x509_certificate(
        (workspace.root / "out/web/chain.pem").read_bytes()
    )
    points = old_issuing.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert points[0].full_name[0].value == "http://crl.example.test/root.crl"

    refused = workspace.run("revoke", "authority.root")
    assert refused.code == 1 and "is a root" in refused.err
    workspace.ok("revoke", "authority.issuing", "--reason", "cACompromise")
    plan = workspace.run("plan")
    assert "authority.issuing must be replaced" in plan.out and "revoked on" in plan.out
    assert "crl.root will be published" in plan.out
    assert "This plan needs `apply --force`" in plan.out
    workspace.ok("apply", "--auto-approve", "--force")
    crl = x509.load_pem_x509_crl((workspace.root / "crl/root.crl.pem").read_bytes())
    entry = crl.get_revoked_certificate_by_serial_number(old_issuing.serial_number)
    assert entry is not None
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason == (
        x509.ReasonFlags.ca_compromise
    )
    new_issuing = x509.load_pem_x509_certificate(
        (workspace.root / "out/web/chain.pem").read_bytes()
    )
    assert new_issuing.serial_number != old_issuing.serial_number
    assert new_issuing.public_key() != old_issuing.public_key()
    good = _verify(workspace, workspace.root / "out/web/cert.pem")
    assert good.returncode == 0, good.stdout + good.stderr
    assert workspace.run("plan", "--detailed-exitcode").code == 0


def test_ca_rotation_keeps_the_old_key_crl_published(workspace: Workspace, tmp_path: Path) -> None:
    url = "http://crl.example.test/issuing-{key_id}.crl"
    block = f"    crl: {{publish: {{directory: crl}}, validity: 7d, url: '{url}'}}\n"
    text = EXAMPLE.replace(
        "    name_constraints: {permitted: [example.test]}\n",
        "    name_constraints: {permitted: [example.test]}\n" + block,
    )
    workspace.write(text)
    workspace.ok("apply", "--auto-approve")
    cert_path = workspace.root / "out/web/cert.pem"
    old_leaf = x509.load_pem_x509_certificate(cert_path.read_bytes())
    old_url = (
        old_leaf.extensions.get_extension_for_class(x509.CRLDistributionPoints)
        .value[0]
        .full_name[0]
        .value
    )
    old_file = workspace.root / "crl" / old_url.rsplit("/", 1)[1]
    assert old_file.exists() and "{key_id}" not in old_url
    old_ca = x509.load_pem_x509_certificate((workspace.root / "out/web/chain.pem").read_bytes())
    (tmp_path / "old-leaf.pem").write_bytes(cert_path.read_bytes())
    (tmp_path / "old-chain.pem").write_bytes((workspace.root / "out/web/chain.pem").read_bytes())

    # Rotate the issuing CA (new key): certificates re-issued under it (needs --force).
    workspace.write(
        text.replace("    validity: 1825d\n", "    validity: 1825d\n    key: ec-p256\n")
    )
    result = workspace.ok("apply", "--auto-approve", "--force")
    assert "final CRL" in result.out
    new_leaf = x509.load_pem_x509_certificate(cert_path.read_bytes())
    new_url = (
        new_leaf.extensions.get_extension_for_class(x509.CRLDistributionPoints)
        .value[0]
        .full_name[0]
        .value
    )
    assert new_url != old_url
    assert (workspace.root / "crl" / new_url.rsplit("/", 1)[1]).exists()
    # The old key's CRL is still there, signed by the old CA, valid as long as it is.
    final = x509.load_der_x509_crl(old_file.read_bytes())
    assert final.is_signature_valid(old_ca.public_key())
    assert final.next_update_utc == old_ca.not_valid_after_utc
    checked = subprocess.run(
        ["openssl", "verify", "-crl_check", "-CRLfile", str(old_file.with_suffix(".crl.pem")),
         "-CAfile", str(workspace.root / "out/web/ca.pem"),
         "-untrusted", str(tmp_path / "old-chain.pem"), str(tmp_path / "old-leaf.pem")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert workspace.run("plan", "--detailed-exitcode").code == 0
