"""The ``aws-pca`` issuer and AWS Private CA as code, against moto server over HTTP.

What moto 5.2.1's acm-pca does and does not do (and so what these tests can see):
it creates, describes, lists, tags, updates (status, revocation configuration),
deletes (status DELETED), returns a CA's CSR, issues from a CSR and imports CA
certificates.  It keeps revocations per CA but shows them through no call (its
GetCertificate check expects another serial format than AWS documents), and it
ignores IdempotencyToken, Validity (every certificate is valid 365 days) and
SigningAlgorithm (it always signs with its own RSA key and SHA-512): so the
tests read what certform sent through a recording proxy (``FaultProxy.bodies``)
for the revocation, the idempotency token and the validity.  Its
SubordinateCACertificate templates add no extensions: a subordinate CA it signs
has no basicConstraints, so OpenSSL will not verify a leaf below it, and the
subordinate test checks each signature link with cryptography's
``verify_directly_issued_by`` instead of ``openssl verify``.  No call here
needs botocore's Stubber except the GetCertificate timeout (moto issues at
once, so "still in progress" cannot be produced with it).
"""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.aws_lab import AwsLab
from tests.conftest import Workspace, certform_argv, openssl_verify
from tests.fault_proxy import FaultProxy
from tests.test_crash_recovery import journaled_public_key, kill, wait_for

ROOT_TEMPLATE = "arn:aws:acm-pca:::template/RootCACertificate/V1"

ROOT = """\
authorities:
  root:
    type: aws-pca
    provider: aws
    create:
      subject: {common_name: Example Internal Root, organization: Example}
      type: ROOT
      key_algorithm: RSA_2048
      signing_algorithm: SHA256WITHRSA
      crl: {s3_bucket: example-crl, expiration_days: 7}
certificates:
  api:
    names: [api.internal.example.test, api2.internal.example.test]
    issuer: root
    validity: 30d
bindings:
  - certificate: api
    target: {type: files, directory: out/api}
"""


def config(aws: AwsLab | FaultProxy, body: str = ROOT) -> str:
    return (
        body + f"providers:\n  aws: {{type: aws, region: eu-west-1, endpoint_url: '{aws.url}'}}\n"
    )


def ca_arn(ws: Workspace, name: str) -> str:
    ((arn,),) = ws.query("SELECT key_id FROM authorities WHERE name = ?", (name,))
    return str(arn)


def describe(aws: AwsLab, arn: str) -> dict:  # type: ignore[type-arg]
    return aws.client("acm-pca").describe_certificate_authority(CertificateAuthorityArn=arn)[
        "CertificateAuthority"
    ]


def spki(public_key: object) -> bytes:
    return public_key.public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def deployed(ws: Workspace, directory: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate((ws.root / directory / "cert.pem").read_bytes())


@pytest.fixture
def proxy(aws: AwsLab) -> Iterator[FaultProxy]:
    recording = FaultProxy(aws.url)
    yield recording
    recording.stop()


def sent(proxy: FaultProxy, action: str) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(body) for name, body in proxy.bodies if name == action]


def test_created_root_issues_certificates_that_verify_and_revoke_reaches_aws(
    workspace: Workspace, aws: AwsLab, proxy: FaultProxy
) -> None:
    ws = workspace
    ws.write(config(proxy))
    result = ws.run("apply", "--auto-approve")
    assert result.code == 0, result.text
    assert "PRIVATE KEY" not in result.text

    arn = ca_arn(ws, "root")
    detail = describe(aws, arn)
    assert detail["Status"] == "ACTIVE" and detail["Type"] == "ROOT"
    assert detail["CertificateAuthorityConfiguration"]["Subject"]["CommonName"] == (
        "Example Internal Root"
    )
    assert detail["RevocationConfiguration"]["CrlConfiguration"]["S3BucketName"] == "example-crl"
    tags = aws.client("acm-pca").list_tags(CertificateAuthorityArn=arn)["Tags"]
    assert {"Key": "certform:address", "Value": "authority.root"} in tags

    # The leaf chains to the CA certificate AWS holds, and certform's key is in it.
    verified = openssl_verify(ws.root / "out/api")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    ca_pem = aws.client("acm-pca").get_certificate_authority_certificate(
        CertificateAuthorityArn=arn
    )["Certificate"]
    assert (ws.root / "out/api/ca.pem").read_text().strip() == ca_pem.strip()
    leaf = deployed(ws, "out/api")
    key = serialization.load_pem_private_key((ws.root / "out/api/key.pem").read_bytes(), None)
    assert spki(key.public_key()) == spki(leaf.public_key())
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == [
        "api.internal.example.test",
        "api2.internal.example.test",
    ]
    ((issuer_key_id, spec),) = ws.query(
        "SELECT issuer_key_id, spec FROM certificates WHERE name = 'api'"
    )
    assert issuer_key_id == arn
    certificate_arn = json.loads(spec)["certificate_arn"]
    assert certificate_arn.startswith(arn + "/certificate/")
    assert ws.run("plan", "--detailed-exitcode").code == 0

    refused = ws.run("revoke", "api", "--reason", "certificateHold")
    assert refused.code == 1
    assert "AWS Private CA has no revocation reason 'certificateHold'" in refused.err
    assert ws.query("SELECT count(*) FROM revocations") == [(0,)]

    revoked = ws.run("revoke", "api", "--reason", "keyCompromise")
    assert revoked.code == 0, revoked.text
    assert f"revoked at AWS Private CA {arn} (KEY_COMPROMISE)" in revoked.out
    # What reached moto (which accepted it): AWS's reason, the serial as openssl shows it.
    (request,) = sent(proxy, "RevokeCertificate")
    serial = format(leaf.serial_number, "x")
    serial = serial if len(serial) % 2 == 0 else "0" + serial
    assert request == {
        "CertificateAuthorityArn": arn,
        "CertificateSerial": ":".join(serial[i : i + 2] for i in range(0, len(serial), 2)),
        "RevocationReason": "KEY_COMPROMISE",
    }
    plan = ws.run("plan")
    assert "revoked on" in plan.out


def existing_root(aws: AwsLab) -> str:
    """A CA made outside certform, as an operator would with the console."""
    pca = aws.client("acm-pca")
    arn = pca.create_certificate_authority(
        CertificateAuthorityConfiguration={
            "KeyAlgorithm": "RSA_2048",
            "SigningAlgorithm": "SHA256WITHRSA",
            "Subject": {"CommonName": "Existing Root"},
        },
        CertificateAuthorityType="ROOT",
    )["CertificateAuthorityArn"]
    csr = pca.get_certificate_authority_csr(CertificateAuthorityArn=arn)["Csr"]
    issued = pca.issue_certificate(
        CertificateAuthorityArn=arn,
        Csr=csr.encode(),
        SigningAlgorithm="SHA256WITHRSA",
        TemplateArn=ROOT_TEMPLATE,
        Validity={"Type": "YEARS", "Value": 10},
    )["CertificateArn"]
    pem = pca.get_certificate(CertificateAuthorityArn=arn, CertificateArn=issued)["Certificate"]
    pca.import_certificate_authority_certificate(
        CertificateAuthorityArn=arn, Certificate=pem.encode()
    )
    return str(arn)


def test_existing_ca_by_arn_issues_and_warns_when_disabled(
    workspace: Workspace, aws: AwsLab, proxy: FaultProxy
) -> None:
    ws = workspace
    arn = existing_root(aws)
    body = f"""\
authorities:
  corp:
    type: aws-pca
    provider: aws
    certificate_authority_arn: {arn}
    template_arn: arn:aws:acm-pca:::template/EndEntityCertificate/V1
certificates:
  svc:
    names: [svc.corp.example.test]
    issuer: corp
    key: ec-p384
    validity: 12h
bindings:
  - certificate: svc
    target: {{type: files, directory: out/svc}}
"""
    ws.write(config(proxy, body))
    result = ws.run("apply", "--auto-approve")
    assert result.code == 0, result.text
    assert ws.query("SELECT count(*) FROM authorities") == [(0,)], "an existing CA is not recorded"
    verified = openssl_verify(ws.root / "out/svc")
    assert verified.returncode == 0, verified.stdout + verified.stderr

    (request,) = sent(proxy, "IssueCertificate")
    assert request["CertificateAuthorityArn"] == arn
    assert request["TemplateArn"].endswith("template/EndEntityCertificate/V1")
    assert request["SigningAlgorithm"] == "SHA256WITHRSA", "the CA's own algorithm by default"
    assert request["Validity"]["Type"] == "ABSOLUTE", "12h is not whole days"
    assert len(request["IdempotencyToken"]) == 32
    csr = x509.load_pem_x509_csr(base64.b64decode(request["Csr"]))
    assert spki(csr.public_key()) == spki(deployed(ws, "out/svc").public_key())

    aws.client("acm-pca").update_certificate_authority(
        CertificateAuthorityArn=arn, Status="DISABLED"
    )
    plan = ws.run("plan", "--detailed-exitcode")
    assert plan.code == 0, "certform does not manage this CA: a warning, no change"
    assert f"authority.corp: AWS Private CA {arn} is DISABLED: it cannot issue" in plan.text


SUBORDINATE = ROOT.replace(
    "certificates:",
    """\
  issuing:
    type: aws-pca
    provider: aws
    create:
      subject: {common_name: Example Issuing CA}
      type: SUBORDINATE
      parent: root
      key_algorithm: EC_prime256v1
      signing_algorithm: SHA256WITHECDSA
      validity: 1000d
certificates:
  web:
    names: [web.internal.example.test]
    issuer: issuing
""",
).replace(
    "bindings:\n",
    "bindings:\n  - certificate: web\n    target: {type: files, directory: out/web}\n",
)


def test_subordinate_is_signed_by_its_parent_and_imported_with_the_chain(
    workspace: Workspace, aws: AwsLab, proxy: FaultProxy
) -> None:
    ws = workspace
    ws.write(config(proxy, SUBORDINATE))
    result = ws.run("apply", "--auto-approve")
    assert result.code == 0, result.text
    root, issuing = ca_arn(ws, "root"), ca_arn(ws, "issuing")
    assert describe(aws, issuing)["Type"] == "SUBORDINATE"
    assert describe(aws, issuing)["Status"] == "ACTIVE"

    (signed,) = [
        r for r in sent(proxy, "IssueCertificate") if "Subordinate" in r.get("TemplateArn", "")
    ]
    assert signed["CertificateAuthorityArn"] == root
    assert signed["TemplateArn"].endswith("SubordinateCACertificate_PathLen0/V1")
    assert signed["Validity"] == {"Type": "DAYS", "Value": 1000}
    (imported,) = [r for r in sent(proxy, "ImportCertificateAuthorityCertificate")
                   if r["CertificateAuthorityArn"] == issuing]  # fmt: skip
    assert "CertificateChain" in imported, "a subordinate is imported with its chain"

    pca = aws.client("acm-pca")
    root_cert = x509.load_pem_x509_certificate(
        pca.get_certificate_authority_certificate(CertificateAuthorityArn=root)[
            "Certificate"
        ].encode()
    )
    issuing_cert = x509.load_pem_x509_certificate(
        pca.get_certificate_authority_certificate(CertificateAuthorityArn=issuing)[
            "Certificate"
        ].encode()
    )
    issuing_cert.verify_directly_issued_by(root_cert)
    leaf = deployed(ws, "out/web")
    leaf.verify_directly_issued_by(issuing_cert)
    chain = x509.load_pem_x509_certificates((ws.root / "out/web/chain.pem").read_bytes())
    assert chain == [issuing_cert]
    assert x509.load_pem_x509_certificate((ws.root / "out/web/ca.pem").read_bytes()) == root_cert
    ((parent_arn,),) = ws.query("SELECT issuer_key_id FROM authorities WHERE name = 'issuing'")
    assert parent_arn == root
    assert ws.run("plan", "--detailed-exitcode").code == 0


def test_drift_is_planned_and_repaired(workspace: Workspace, aws: AwsLab) -> None:
    ws = workspace
    ws.write(config(aws))
    assert ws.run("apply", "--auto-approve").code == 0
    arn = ca_arn(ws, "root")
    pca = aws.client("acm-pca")
    pca.update_certificate_authority(
        CertificateAuthorityArn=arn,
        Status="DISABLED",
        RevocationConfiguration={
            "CrlConfiguration": {
                "Enabled": True,
                "S3BucketName": "someone-elses-bucket",
                "ExpirationInDays": 30,
            }
        },
    )
    plan = ws.run("plan", "--json")
    changes = json.loads(plan.out)["changes"]
    assert [(c["address"], c["action"], c["drift"]) for c in changes] == [
        ("authority.root", "update", True)
    ]
    reasons = changes[0]["reasons"]
    assert reasons[0] == "disabled outside certform (status DISABLED): apply enables it again"
    assert reasons[1] == (
        "revocation configuration changed outside certform (CRL bucket example-crl → "
        "someone-elses-bucket; CRL expiration 7 → 30 days): apply sets it back"
    )
    result = ws.run("apply", "--auto-approve")
    assert result.code == 0, result.text
    assert "enabled again, CRL configuration set" in result.out
    detail = describe(aws, arn)
    assert detail["Status"] == "ACTIVE"
    assert detail["RevocationConfiguration"]["CrlConfiguration"]["S3BucketName"] == "example-crl"
    assert ws.run("plan", "--detailed-exitcode").code == 0

    # A changed CRL setting in the config is an update too, without drift.
    ws.write(config(aws, ROOT.replace("expiration_days: 7", "expiration_days: 3")))
    changes = json.loads(ws.run("plan", "--json").out)["changes"]
    assert [(c["action"], c["drift"]) for c in changes] == [("update", False)]
    assert changes[0]["reasons"][0].startswith("crl changed: expiration_days=7")
    assert ws.run("apply", "--auto-approve").code == 0
    crl = describe(aws, arn)["RevocationConfiguration"]["CrlConfiguration"]
    assert crl["ExpirationInDays"] == 3

    # Deleted behind certform's back: a new CA, which needs --force (new key).
    pca.update_certificate_authority(CertificateAuthorityArn=arn, Status="DISABLED")
    pca.delete_certificate_authority(CertificateAuthorityArn=arn)
    plan = ws.run("plan")
    assert "authority.root must be replaced" in plan.out
    assert f"AWS Private CA {arn} was deleted outside certform (status DELETED" in plan.out
    refused = ws.run("apply", "--auto-approve")
    assert refused.code == 1 and "refusing to apply without --force" in refused.err
    replaced = ws.run("apply", "--auto-approve", "--force")
    assert replaced.code == 0, replaced.text
    new_arn = ca_arn(ws, "root")
    assert new_arn != arn and describe(aws, new_arn)["Status"] == "ACTIVE"
    ((issuer,),) = ws.query("SELECT issuer_key_id FROM certificates WHERE name = 'api'")
    assert issuer == new_arn, "everything the old CA issued is issued again"
    assert openssl_verify(ws.root / "out/api").returncode == 0


def test_destroy_is_refused_without_force_then_disables_and_deletes(
    workspace: Workspace, aws: AwsLab
) -> None:
    ws = workspace
    ws.write(config(aws))
    assert ws.run("apply", "--auto-approve").code == 0
    arn = ca_arn(ws, "root")
    ws.write(config(aws, "authorities: {}\ncertificates: {}\n"))
    plan = ws.run("plan")
    assert "authority.root will be destroyed" in plan.out
    refused = ws.run("apply", "--auto-approve")
    assert refused.code == 1
    assert "refusing to apply without --force: authority.root is a CA and would be destroyed" in (
        refused.err
    )
    assert describe(aws, arn)["Status"] == "ACTIVE", "nothing was changed"
    result = ws.run("apply", "--auto-approve", "--force")
    assert result.code == 0, result.text
    assert f"{arn} disabled and deleted" in result.out
    assert describe(aws, arn)["Status"] == "DELETED"
    assert ws.query("SELECT count(*) FROM authorities WHERE status = 'active'") == [(0,)]


def start_apply(ws: Workspace, pause_at: str, marker: Path) -> subprocess.Popen[bytes]:
    env = dict(ws.env, CERTFORM_TEST_PAUSE_AT=pause_at, CERTFORM_TEST_PAUSE_MARKER=str(marker))
    return subprocess.Popen(
        [*certform_argv(), "apply", "--auto-approve"],
        cwd=ws.root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def test_sigkill_after_issue_retries_with_the_same_token_and_key(
    workspace: Workspace, aws: AwsLab, proxy: FaultProxy
) -> None:
    """SIGKILL after IssueCertificate returned and before the state recorded it; then
    after the CA was created and before it was recorded."""
    ws = workspace
    ws.write(config(proxy))
    marker = ws.root / "paused"
    proc = start_apply(ws, "certificate.api:acted", marker)
    wait_for(marker, proc)
    kill(proc)
    pending = journaled_public_key(ws, "certificate.api")
    assert pending is not None

    result = ws.run("apply", "--auto-approve")
    assert result.code == 0, result.text
    assert "Recovering from an interrupted apply" in result.out
    first, retry = sent(proxy, "IssueCertificate")[-2:]
    assert first["IdempotencyToken"] == retry["IdempotencyToken"]
    for request in (first, retry):
        csr = x509.load_pem_x509_csr(base64.b64decode(request["Csr"]))
        assert spki(csr.public_key()) == pending
    assert spki(deployed(ws, "out/api").public_key()) == pending
    assert openssl_verify(ws.root / "out/api").returncode == 0
    assert ws.run("plan", "--detailed-exitcode").code == 0

    # A later issuance (a new key) sends another token.
    ws.write(config(proxy, ROOT.replace("api2.internal", "api3.internal")))
    assert ws.run("apply", "--auto-approve").code == 0
    assert sent(proxy, "IssueCertificate")[-1]["IdempotencyToken"] != first["IdempotencyToken"]


def test_sigkill_after_the_ca_was_created_resumes_the_same_ca(
    workspace: Workspace, aws: AwsLab
) -> None:
    ws = workspace
    ws.write(config(aws))
    marker = ws.root / "paused"
    proc = start_apply(ws, "authority.root:acted", marker)
    wait_for(marker, proc)
    kill(proc)
    (made,) = aws.client("acm-pca").list_certificate_authorities()["CertificateAuthorities"]
    result = ws.run("apply", "--auto-approve")
    assert result.code == 0, result.text
    assert f"resumed {made['Arn']}" in result.out
    listed = aws.client("acm-pca").list_certificate_authorities()["CertificateAuthorities"]
    assert [ca["Arn"] for ca in listed] == [made["Arn"]], "no second CA"
    assert ca_arn(ws, "root") == made["Arn"]
    assert openssl_verify(ws.root / "out/api").returncode == 0


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ("    validity: 30d", "certificates.api.key",
         "AWS Private CA signs ec-p256, ec-p384, rsa-2048, rsa-3072, rsa-4096 keys only, "
         "not ed25519"),
        ("    validity: 4000d", "certificates.api.validity",
         "validity 4000d is longer than the issuer's validity 3650d"),
        ("      type: ROOT\n      parent: root", "authorities.root.create",
         "parent is for SUBORDINATE CAs"),
        ("      type: SUBORDINATE", "authorities.root.create",
         "parent: a SUBORDINATE CA needs the aws-pca authority that signs it"),
        ("      signing_algorithm: SHA256WITHECDSA", "authorities.root.create",
         "signing_algorithm SHA256WITHECDSA does not match key_algorithm RSA_2048"),
        ("    provider: nope", "authorities.root.provider", "unknown aws provider 'nope'"),
        ("    provider: aws\n    certificate_authority_arn: "
         "arn:aws:acm-pca:eu-west-1:123456789012:certificate-authority/abc",
         "authorities.root", "give exactly one of certificate_authority_arn"),
    ],
)  # fmt: skip
def test_bad_config_is_a_located_error(
    workspace: Workspace, aws: AwsLab, change: str, field: str, message: str
) -> None:
    ws = workspace
    text = config(aws)
    if change.startswith("    validity: 30d"):
        text = text.replace("    validity: 30d", "    validity: 30d\n    key: ed25519")
    elif change.startswith("    validity"):
        text = text.replace("    validity: 30d", change)
    elif change.startswith("      type"):
        text = text.replace("      type: ROOT", change)
    elif change.startswith("      signing"):
        text = text.replace("      signing_algorithm: SHA256WITHRSA", change)
    else:
        text = text.replace("    provider: aws", change, 1)
    ws.write(text)
    result = ws.run("plan")
    assert result.code == 1, result.text
    assert "Traceback" not in result.text
    line = next(line for line in result.err.splitlines() if message in line)
    assert "certform.yaml:" in line and f"{field}" in line, result.err
    assert not ws.state_exists()
    assert aws.client("acm-pca").list_certificate_authorities()["CertificateAuthorities"] == []


def test_a_parent_must_be_an_aws_pca_authority(workspace: Workspace, aws: AwsLab) -> None:
    ws = workspace
    ws.write(config(aws, SUBORDINATE.replace("validity: 1000d", "validity: 4000d")))
    result = ws.run("validate")
    assert result.code == 1
    assert (
        "authorities.issuing.create.validity: validity 4000d is longer than the parent's "
        "validity 3650d" in result.err
    )
    body = SUBORDINATE.replace(
        "authorities:\n",
        "authorities:\n  private:\n    type: private-root\n    subject: {common_name: P}\n",
    ).replace("      parent: root", "      parent: private")
    ws.write(config(aws, body))
    result = ws.run("validate")
    assert result.code == 1
    assert "authorities.issuing.create.parent: authority 'private' is private-root and cannot " \
        "sign an AWS Private CA" in result.err  # fmt: skip


def test_waiting_for_the_certificate_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore's Stubber: moto issues at once, so it cannot answer GetCertificate with
    RequestInProgressException the way AWS does while it signs."""
    import boto3
    from botocore.stub import Stubber

    from reconciler.errors import ProviderError
    from reconciler.issuers import aws_pca_calls

    monkeypatch.setattr(aws_pca_calls, "POLL_SECONDS", 0.01)
    pca = boto3.client(
        "acm-pca", region_name="eu-west-1", aws_access_key_id="t", aws_secret_access_key="t"
    )
    ca = "arn:aws:acm-pca:eu-west-1:123456789012:certificate-authority/abc"
    issued = ca + "/certificate/def"
    with Stubber(pca) as stub:
        for _ in range(200):
            stub.add_client_error(
                "get_certificate",
                service_error_code="RequestInProgressException",
                service_message="The request is in progress.",
            )
        with pytest.raises(ProviderError) as failure:
            aws_pca_calls.wait_certificate(pca, ca, issued, 0.05, "certificate.api")
    assert str(failure.value) == (
        f"AWS Private CA has not issued {issued} for certificate.api after 0s (GetCertificate: "
        "request in progress); the next apply asks again with the same idempotency token"
    )
