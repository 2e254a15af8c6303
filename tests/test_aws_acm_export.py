"""ACM certificates used outside AWS, against a moto server over HTTP: exportable
public certificates and private ones (AWS Private CA) exported with a one-time
passphrase and deployed to files next to an ALB, ACM's renewal redeploying the
files only, the non-exportable refusal, and email validation waiting for the
domain owner.

The moto server runs in this test process (``ThreadedMotoServer``); certform
talks to it over HTTP from its own process exactly as to the ``aws`` lab.  It is
in-process for what moto 5.2.1 cannot do through its API, done here on its
backend instead: ACM's renewal of a certificate (moto has no RenewCertificate,
and re-importing turns the certificate into a non-exportable import), the domain
owner's approval of an email validation, and seeing the passphrase certform
sends to ExportCertificate (to prove it appears in no output and not in the
state).  moto signs ACM-issued and private certificates with their own key
(issuer "Amazon", or no relation to the Private CA), so ``openssl verify``
cannot check a chain here: the tests check that the exported key matches the
certificate and that the deployed chain is the one ACM returned.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.aws_lab import CREDENTIALS, REGION, AwsLab, free_port
from tests.conftest import Result, Workspace

ACCOUNT = "123456789012"
ALB_BINDING = "binding.aws-alb-listener:aws/prod-alb:443/default"
FILES_BINDING = "binding.files:out/site"

EXPORTABLE = """\
authorities:
  acm:
    type: aws-acm
    provider: aws
    exportable: true
    validation: {route53: false}
    timeout: 60s
certificates:
  site:
    names: [www.example.test, example.test]
    issuer: acm
    key: rsa-2048
bindings:
  - certificate: site
    target: {type: files, directory: out/site}
  - certificate: site
    target: {type: aws-alb-listener, provider: aws, load_balancer: prod-alb}
"""


@pytest.fixture(scope="module")
def moto_inprocess() -> Iterator[AwsLab]:
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield AwsLab(f"http://127.0.0.1:{port}", None)  # type: ignore[arg-type]
    server.stop()


@pytest.fixture
def lab(moto_inprocess: AwsLab, workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> AwsLab:
    import moto.settings

    moto_inprocess.reset()
    monkeypatch.setattr(moto.settings, "ACM_VALIDATION_WAIT", 0)  # ISSUED at once
    for key, value in CREDENTIALS.items():
        workspace.env[key] = value
        monkeypatch.setenv(key, value)
    workspace.env.pop("AWS_PROFILE", None)
    return moto_inprocess


@pytest.fixture
def passphrases(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every passphrase ExportCertificate received (as it travels: base64)."""
    from moto.acm.models import AWSCertificateManagerBackend

    seen: list[str] = []
    original = AWSCertificateManagerBackend.export_certificate

    def spy(self: Any, certificate_arn: str, passphrase: str) -> Any:
        seen.append(passphrase)
        return original(self, certificate_arn, passphrase)

    monkeypatch.setattr(AWSCertificateManagerBackend, "export_certificate", spy)
    return seen


def _bundle(arn: str) -> Any:
    from moto.acm.models import acm_backends

    return acm_backends[ACCOUNT][REGION]._certificates[arn]


def renew_in_moto(arn: str) -> str:
    """What ACM's managed renewal does: a new certificate and key at the same ARN,
    same type and options.  Returns the new serial (lowercase hex)."""
    from moto.acm.models import CertBundle, acm_backends

    backend = acm_backends[ACCOUNT][REGION]
    old = backend._certificates[arn]
    sans = [str(n.value) for n in old._cert.extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value]  # fmt: skip
    new = CertBundle.generate_cert(
        old.common_name, ACCOUNT, REGION, sans=sans, cert_authority_arn=old.cert_authority_arn
    )
    new.arn, new.status, new.cert_options = arn, "ISSUED", old.cert_options
    new.tags, new.in_use_by, new.created_at = old.tags, old.in_use_by, old.created_at
    backend._certificates[arn] = new
    return format(new._cert.serial_number, "x")


def config(lab: AwsLab, body: str) -> str:
    return body + "providers:\n" + lab.provider_yaml()


def _public(pem: bytes, key: bool = False) -> bytes:
    if key:
        public = serialization.load_pem_private_key(pem, None).public_key()
    else:
        public = x509.load_pem_x509_certificate(pem).public_key()
    return public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _assert_deployed(ws: Workspace, serial: str) -> None:
    out = ws.root / "out" / "site"
    cert = x509.load_pem_x509_certificate((out / "cert.pem").read_bytes())
    assert format(cert.serial_number, "x") == serial
    assert _public((out / "key.pem").read_bytes(), key=True) == _public(
        (out / "cert.pem").read_bytes()
    ), "the exported key belongs to the certificate"
    assert ws.deployed_key_der("out/site") == ws.private_key_der("certificate", "site")


def _assert_no_secrets(ws: Workspace, outputs: list[Result], passphrases: list[str]) -> None:
    """Neither a passphrase (as sent or decoded) nor the key appears in any output,
    nor in the state file (where the key is sealed)."""
    text = "\n".join(r.out + r.err for r in outputs)
    key_pem = (ws.root / "out" / "site" / "key.pem").read_text()
    key_lines = [line for line in key_pem.splitlines() if line and "-----" not in line]
    state = ws.state_db.read_bytes()
    assert passphrases
    for sent in passphrases:
        for form in (sent, base64.b64decode(sent).decode()):
            assert form not in text and form.encode() not in state
    assert "PRIVATE KEY" not in text
    for line in key_lines:
        assert line not in text and line.encode() not in state
    assert ws.deployed_key_der("out/site") not in state


def test_exportable_certificate_goes_to_files_and_an_alb_and_follows_renewal(
    workspace: Workspace, lab: AwsLab, passphrases: list[str]
) -> None:
    ws = workspace
    listener, placeholder = lab.https_load_balancer()
    ws.write(config(lab, EXPORTABLE))
    outputs = [ws.ok("validate"), ws.ok("plan")]
    applied = ws.ok("apply", "--auto-approve")
    outputs.append(applied)

    arn = lab.arn_for("certificate.site")
    assert arn is not None
    detail = lab.client("acm").describe_certificate(CertificateArn=arn)["Certificate"]
    assert detail["Type"] == "AMAZON_ISSUED" and detail["Options"]["Export"] == "ENABLED"
    assert f"certificate.site: exported {arn} (key sealed in the state)" in applied.out
    serial = lab.acm_serial(arn)
    _assert_deployed(ws, serial)
    chain = lab.client("acm").get_certificate(CertificateArn=arn)["CertificateChain"]
    assert (ws.root / "out/site/chain.pem").read_text().strip() == chain.strip()
    assert lab.listener_certificates(listener)[0] == arn != placeholder, "ACM's own ARN"
    rows = ws.query("SELECT sealed_key IS NOT NULL, external_id FROM certificates")
    assert rows == [(1, arn)]
    outputs.append(ws.run("plan", "--detailed-exitcode"))
    assert outputs[-1].code == 0, "nothing to export again while the serial holds"
    assert len(passphrases) == 1

    # ACM renews the certificate at the same ARN: the files follow, the ALB is untouched.
    new_serial = renew_in_moto(arn)
    planned = ws.ok("plan", "--json")
    plan = json.loads(planned.out)
    changes = {c["address"]: c for c in plan["changes"]}
    assert set(changes) == {"certificate.site", FILES_BINDING}
    assert changes["certificate.site"]["action"] == "renew"
    assert changes["certificate.site"]["reasons"][0].startswith("ACM renewed the certificate")
    assert changes[FILES_BINDING]["action"] == "rebind"
    assert changes[FILES_BINDING]["reasons"] == ["ACM renewed the certificate"]
    shown = ws.ok("plan")
    assert re.search(r"binding\.files:out/site.*\n.*ACM renewed the certificate", shown.out)
    assert "aws-alb-listener" not in shown.out
    renewed = ws.ok("apply", "--auto-approve")
    outputs += [planned, shown, renewed]
    assert ALB_BINDING not in renewed.out
    assert lab.acm_serial(arn) == new_serial
    _assert_deployed(ws, new_serial)
    assert lab.listener_certificates(listener)[0] == arn
    assert ws.query("SELECT serial FROM bindings ORDER BY address") == [
        (new_serial,),
        (new_serial,),
    ], "the ALB serves the renewal in place; the state says so"
    assert ws.run("plan", "--detailed-exitcode").code == 0
    assert len(passphrases) == 2
    _assert_no_secrets(ws, outputs, passphrases)


PRIVATE = """\
authorities:
  internal:
    type: aws-acm
    provider: aws
    certificate_authority_arn: {ca}
    timeout: 60s
certificates:
  site:
    names: [api.internal.example.test]
    issuer: internal
    key: rsa-2048
bindings:
  - certificate: site
    target: {{type: files, directory: out/site}}
"""


def _private_ca(lab: AwsLab) -> str:
    pca = lab.client("acm-pca")
    arn = pca.create_certificate_authority(
        CertificateAuthorityConfiguration={
            "KeyAlgorithm": "RSA_2048",
            "SigningAlgorithm": "SHA256WITHRSA",
            "Subject": {"CommonName": "Internal Root", "Organization": "Example"},
        },
        CertificateAuthorityType="ROOT",
    )["CertificateAuthorityArn"]
    csr = pca.get_certificate_authority_csr(CertificateAuthorityArn=arn)["Csr"]
    issued = pca.issue_certificate(
        CertificateAuthorityArn=arn,
        Csr=csr.encode(),
        SigningAlgorithm="SHA256WITHRSA",
        TemplateArn="arn:aws:acm-pca:::template/RootCACertificate/V1",
        Validity={"Value": 10, "Type": "YEARS"},
    )["CertificateArn"]
    pem = pca.get_certificate(CertificateAuthorityArn=arn, CertificateArn=issued)["Certificate"]
    pca.import_certificate_authority_certificate(CertificateAuthorityArn=arn, Certificate=pem)
    return str(arn)


def test_private_certificate_from_a_private_ca_is_exported_to_files(
    workspace: Workspace, lab: AwsLab, passphrases: list[str]
) -> None:
    ws = workspace
    ca = _private_ca(lab)
    ws.write(config(lab, PRIVATE.format(ca=ca)))
    applied = ws.ok("apply", "--auto-approve")
    assert "validation record" not in applied.out, "a private certificate needs no validation"
    arn = lab.arn_for("certificate.site")
    assert arn is not None
    detail = lab.client("acm").describe_certificate(CertificateArn=arn)["Certificate"]
    assert detail["Type"] == "PRIVATE" and detail["CertificateAuthorityArn"] == ca
    _assert_deployed(ws, lab.acm_serial(arn))
    assert ws.run("plan", "--detailed-exitcode").code == 0

    new_serial = renew_in_moto(arn)
    plan = json.loads(ws.ok("plan", "--json").out)
    assert [(c["address"], c["action"]) for c in plan["changes"]] == [
        ("certificate.site", "renew"),
        (FILES_BINDING, "rebind"),
    ]
    renewed = ws.ok("apply", "--auto-approve")
    _assert_deployed(ws, new_serial)
    _assert_no_secrets(ws, [applied, renewed], passphrases)


def test_non_exportable_acm_certificate_outside_aws_is_a_validate_error(
    workspace: Workspace, lab: AwsLab
) -> None:
    ws = workspace
    body = EXPORTABLE.replace("    exportable: true\n", "")
    ws.write(config(lab, body))
    result = ws.run("validate")
    assert result.code == 1 and "Traceback" not in result.err
    line = body.splitlines().index("  - certificate: site") + 2  # the files target
    assert (
        f"certform.yaml:{line}: bindings[0].target: certificate 'site' is issued by ACM "
        "(acm), which never releases its private key: it can only be bound to AWS targets, "
        "not files; set exportable: true on authority 'acm'" in result.err
    ), result.err
    assert "bindings[1]" not in result.err, "the ALB binding is fine"
    assert not ws.state_exists()

    ws.write(config(lab, PRIVATE.format(ca="arn:aws:acm:eu-west-1:1:certificate/x")))
    result = ws.run("validate")
    assert result.code == 1 and "certificate_authority_arn" in result.err, result.err

    both = PRIVATE.format(ca=f"arn:aws:acm-pca:{REGION}:{ACCOUNT}:certificate-authority/abc-1")
    ws.write(config(lab, both.replace("    timeout: 60s\n", "    validation: email\n")))
    result = ws.run("validate")
    assert result.code == 1
    assert "validation: email is for public certificates" in result.err, result.err

    ws.write(config(lab, EXPORTABLE.replace("validation: {route53: false}", "validation: phone")))
    result = ws.run("validate")
    assert result.code == 1
    assert (
        "authorities.acm.validation: expected dns, email or DNS settings "
        "({route53_zone_id, route53}), got 'phone'" in result.err
    ), result.err


def test_turning_exportable_on_requests_a_new_certificate(
    workspace: Workspace, lab: AwsLab, passphrases: list[str]
) -> None:
    """Export is decided when ACM issues: a certificate ACM keeps is replaced, not exported."""
    ws = workspace
    listener, _ = lab.https_load_balancer()
    alb_only = EXPORTABLE.replace("    exportable: true\n", "").replace(
        "  - certificate: site\n    target: {type: files, directory: out/site}\n", ""
    )
    ws.write(config(lab, alb_only))
    ws.ok("apply", "--auto-approve")
    kept = lab.arn_for("certificate.site")
    assert ws.query("SELECT sealed_key IS NULL FROM certificates") == [(1,)]

    ws.write(config(lab, EXPORTABLE))
    plan = json.loads(ws.ok("plan", "--json").out)
    changes = {c["address"]: c for c in plan["changes"]}
    assert changes["certificate.site"]["action"] == "replace"
    assert "exportable changed: none → True" in changes["certificate.site"]["reasons"]
    assert changes[FILES_BINDING]["action"] == "bind"
    ws.ok("apply", "--auto-approve")
    rows = ws.query("SELECT sealed_key IS NOT NULL, external_id FROM certificates")
    assert rows[0][0] == 1 and rows[0][1] != kept
    assert lab.listener_certificates(listener)[0] == rows[0][1]
    _assert_deployed(ws, lab.acm_serial(rows[0][1]))
    assert len(passphrases) == 1


EMAIL = EXPORTABLE.replace("validation: {route53: false}", "validation: email").replace(
    "  - certificate: site\n    target: {type: aws-alb-listener, provider: aws, "
    "load_balancer: prod-alb}\n",
    "",
)


def test_email_validation_waits_for_the_domain_owner(
    workspace: Workspace, lab: AwsLab, monkeypatch: pytest.MonkeyPatch
) -> None:
    import moto.settings

    monkeypatch.setattr(moto.settings, "ACM_VALIDATION_WAIT", 10**6)  # nobody approves
    ws = workspace
    ws.write(config(lab, EMAIL))
    first = ws.run("apply", "--auto-approve")
    assert first.code == 0, first.text
    arn = lab.arn_for("certificate.site")
    assert arn is not None
    assert f"{arn} is waiting for the domain owner's approval" in first.out
    assert f"{FILES_BINDING}: not yet (certificate.site is waiting for approval)" in first.out
    assert "2 waiting for approval" in first.out and "FAILED" not in first.text
    assert not (ws.root / "out" / "site").exists()

    plan = ws.run("plan", "--detailed-exitcode")
    assert plan.code == 2
    assert "waiting for the domain owner's approval" in plan.out
    check = ws.run("check")
    assert check.code == 2, check.text
    assert re.search(
        rf"PROBLEM +certificate\.site: ACM PENDING_VALIDATION: {re.escape(arn)} is waiting "
        "for the domain owner's approval",
        check.out,
    ), check.out

    again = ws.run("apply", "--auto-approve")
    assert again.code == 0 and "requested" not in again.out, "no second request, no second mail"
    acm = lab.client("acm")
    assert [c["CertificateArn"] for c in acm.list_certificates()["CertificateSummaryList"]] == [arn]

    _bundle(arn).status = "ISSUED"  # the domain owner clicked the link
    approved = ws.ok("apply", "--auto-approve")
    assert "certificate.site: issue done" in approved.out
    _assert_deployed(ws, lab.acm_serial(arn))
    assert ws.run("plan", "--detailed-exitcode").code == 0
    assert "PENDING_VALIDATION" not in ws.run("check").out
