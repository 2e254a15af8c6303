"""API Gateway custom domains through a real AWS API endpoint (moto server) and the
real ``certform`` CLI: import into ACM (us-east-1 for edge-optimized domains,
the provider's region for regional ones), renewal by re-import into the same
ARN without touching the domain, drift (another ARN on the domain, ACM
certificate deleted, domain gone), and the validate rules.

moto 5.2 answers UpdateDomainName (v1 and v2) with HTTP 500 NotImplemented.
The CLI tests therefore play the domain owner's part the way moto allows: after
certform's first bind imported the certificate and failed cleanly on the update,
they recreate the domain pointing at certform's ARN (as a console change or a
Terraform-managed domain would), and certform from then on never needs the
update.  The exact UpdateDomainName requests certform sends are checked with
botocore's Stubber in the ``test_update_request_*`` tests.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from reconciler.model.material import CertificateMaterial
from reconciler.pki.builder import Subject, build_ca_certificate, certificate_to_pem
from reconciler.pki.keys import generate_private_key, private_key_to_pem
from reconciler.providers.aws import apigateway
from reconciler.providers.aws.apigateway import (
    ApiGatewayTarget,
    ApiGatewayTargetConfig,
    update_request,
)
from reconciler.providers.aws.config import AwsProviderConfig
from reconciler.providers.aws.session import client as real_client
from tests.aws_lab import REGION, AwsLab, free_port
from tests.conftest import Workspace

DOMAIN = "api.example.test"
ADDRESS = f"binding.aws-apigateway:aws/{DOMAIN}"

PKI = """\
authorities:
  root:
    type: private-root
    subject: {common_name: AWS Test Root}
  issuing:
    type: private-subordinate
    parent: root
    subject: {common_name: AWS Test Issuing}
certificates:
  api:
    names: [api.example.test]
    issuer: issuing
    key: ec-p256
    validity: 90d
    renew_before: 30d
"""


def config(
    aws: AwsLab | None, *, endpoint: str = "regional", api: str = "v1", key: str = "ec-p256"
) -> str:
    # One attempt per call: moto's 500 for UpdateDomainName is not worth retrying.
    url = f", endpoint_url: '{aws.url}'" if aws else ""
    provider = f"  aws: {{type: aws, region: {REGION}{url}, max_attempts: 1}}\n"
    return (
        PKI.replace("key: ec-p256", f"key: {key}")
        + "providers:\n"
        + provider
        + "bindings:\n"
        + "  - certificate: api\n"
        + f"    target: {{type: aws-apigateway, provider: aws, domain_name: {DOMAIN}, "
        + f"endpoint: {endpoint}, api: {api}}}\n"
    )


def acm_region(endpoint: str) -> str:
    return "us-east-1" if endpoint == "edge" else REGION


def serial(ws: Workspace) -> str:
    rows = json.loads(ws.ok("show", "--json").out)
    return {r["address"]: r["serial"] for r in rows["certificates"]}["certificate.api"]


def arn_for(aws: AwsLab, address: str, region: str) -> str | None:
    acm = aws.client("acm", region)
    for summary in acm.list_certificates(
        Includes={"keyTypes": ["RSA_2048", "EC_prime256v1", "EC_secp384r1"]}
    )["CertificateSummaryList"]:
        tags = acm.list_tags_for_certificate(CertificateArn=summary["CertificateArn"])["Tags"]
        if {"Key": "certform:address", "Value": address} in tags:
            return str(summary["CertificateArn"])
    return None


def acm_serial(aws: AwsLab, arn: str, region: str) -> str:
    from cryptography import x509

    pem = aws.client("acm", region).get_certificate(CertificateArn=arn)["Certificate"]
    return format(x509.load_pem_x509_certificate(pem.encode()).serial_number, "x")


def self_signed(name: str) -> tuple[str, bytes]:
    key = generate_private_key("ec-p256")
    now = datetime.now(UTC)
    cert = build_ca_certificate(
        public_key=key.public_key(),
        subject=Subject(name),
        issuer_cert=None,
        issuer_key=key,
        not_before=now,
        not_after=now + timedelta(days=30),
        path_length=0,
    )
    return certificate_to_pem(cert), private_key_to_pem(key)


def placeholder(aws: AwsLab, region: str) -> str:
    """A certificate in ACM for the domain to start with (a domain needs one)."""
    pem, key = self_signed("placeholder.example.test")
    answer = aws.client("acm", region).import_certificate(Certificate=pem.encode(), PrivateKey=key)
    return str(answer["CertificateArn"])


def create_domain(aws: AwsLab, arn: str, *, endpoint: str = "regional", api: str = "v1") -> None:
    """(Re)create the custom domain serving ``arn``: what its owner does by hand."""
    if api == "v2":
        v2 = aws.client("apigatewayv2")
        if DOMAIN in {d["DomainName"] for d in v2.get_domain_names()["Items"]}:
            v2.delete_domain_name(DomainName=DOMAIN)
        v2.create_domain_name(
            DomainName=DOMAIN,
            DomainNameConfigurations=[{"CertificateArn": arn, "EndpointType": "REGIONAL"}],
        )
        return
    v1 = aws.client("apigateway")
    if DOMAIN in {d["domainName"] for d in v1.get_domain_names()["items"]}:
        v1.delete_domain_name(domainName=DOMAIN)
    if endpoint == "edge":
        v1.create_domain_name(domainName=DOMAIN, certificateArn=arn)
    else:
        v1.create_domain_name(
            domainName=DOMAIN,
            regionalCertificateArn=arn,
            endpointConfiguration={"types": ["REGIONAL"]},
        )


def served_arn(aws: AwsLab, *, endpoint: str = "regional", api: str = "v1") -> str | None:
    if api == "v2":
        domain = aws.client("apigatewayv2").get_domain_name(DomainName=DOMAIN)
        return domain["DomainNameConfigurations"][0]["CertificateArn"]
    domain = aws.client("apigateway").get_domain_name(domainName=DOMAIN)
    return domain.get("certificateArn" if endpoint == "edge" else "regionalCertificateArn")


def first_bind(ws: Workspace, aws: AwsLab, *, endpoint: str, api: str) -> tuple[str, str]:
    """Bind to a domain serving a placeholder: certform imports, then asks for the
    update moto lacks and fails cleanly; the owner points the domain at certform's
    ARN and the next apply completes.  Returns (certform's ARN, placeholder)."""
    region = acm_region(endpoint)
    other = placeholder(aws, region)
    create_domain(aws, other, endpoint=endpoint, api=api)
    failed = ws.run("apply", "--auto-approve")
    assert failed.code == 1, failed.text
    assert "Traceback" not in failed.text
    assert "<html" not in failed.text.lower()
    arn = arn_for(aws, "certificate.api", region)
    assert arn and arn != other
    assert f"updating API Gateway {api} domain {DOMAIN} to use {arn}: 500: " in failed.text
    assert "Internal Server Error" in failed.text
    assert served_arn(aws, endpoint=endpoint, api=api) == other

    create_domain(aws, arn, endpoint=endpoint, api=api)
    ws.ok("apply", "--auto-approve")  # moto would answer 500 to an update: none is made
    assert served_arn(aws, endpoint=endpoint, api=api) == arn
    assert acm_serial(aws, arn, region) == serial(ws)
    assert ws.run("plan", "--detailed-exitcode").code == 0
    return arn, other


def renew_in_place(ws: Workspace, aws: AwsLab, arn: str, *, endpoint: str, api: str) -> None:
    region = acm_region(endpoint)
    before = serial(ws)
    ws.ok("plan", "--at", "+61d", "--out", "renew.plan")
    ws.ok("apply", "renew.plan")  # a domain update would fail against moto
    after = serial(ws)
    assert after != before
    assert arn_for(aws, "certificate.api", region) == arn
    assert acm_serial(aws, arn, region) == after
    assert served_arn(aws, endpoint=endpoint, api=api) == arn
    assert ws.run("plan", "--detailed-exitcode").code == 0


def test_regional_v1_lifecycle(workspace: Workspace, aws: AwsLab) -> None:
    ws = workspace
    ws.write(config(aws))
    plan = json.loads(ws.run("plan", "--json").out)
    assert [c["address"] for c in plan["changes"] if c["action"] == "bind"] == [ADDRESS]

    # No such domain: a clear error, and nothing imported.
    missing = ws.run("apply", "--auto-approve")
    assert missing.code == 1
    assert f"API Gateway v1 domain {DOMAIN} not found in {REGION}" in missing.text
    assert "create the domain first" in missing.text
    assert "Traceback" not in missing.text
    assert arn_for(aws, "certificate.api", REGION) is None

    arn, other = first_bind(ws, aws, endpoint="regional", api="v1")
    assert arn.startswith(f"arn:aws:acm:{REGION}:")
    renew_in_place(ws, aws, arn, endpoint="regional", api="v1")

    # The domain is pointed at another certificate by hand: drift.
    create_domain(aws, other)
    drift = ws.run("plan", "--detailed-exitcode")
    assert drift.code == 2, drift.text
    assert f"API Gateway v1 domain {DOMAIN} serves {other} instead of {arn}" in drift.out
    create_domain(aws, arn)
    assert ws.run("plan", "--detailed-exitcode").code == 0

    # certform's ACM certificate is deleted by hand: drift; the repair imports a
    # new ARN, which needs the update moto lacks (clean failure), then completes
    # once the domain references the new ARN.
    aws.client("acm").delete_certificate(CertificateArn=arn)
    drift = ws.run("plan", "--detailed-exitcode")
    assert drift.code == 2, drift.text
    assert f"ACM certificate {arn} no longer exists" in drift.out
    repair = ws.run("apply", "--auto-approve")
    assert repair.code == 1
    assert "Traceback" not in repair.text
    new_arn = arn_for(aws, "certificate.api", REGION)
    assert new_arn and new_arn != arn
    assert f"updating API Gateway v1 domain {DOMAIN} to use {new_arn}" in repair.text
    create_domain(aws, new_arn)
    ws.ok("apply", "--auto-approve")
    assert arn_for(aws, "certificate.api", REGION) == new_arn  # no second import
    assert ws.run("plan", "--detailed-exitcode").code == 0

    # The domain is deleted: missing.
    aws.client("apigateway").delete_domain_name(domainName=DOMAIN)
    gone = ws.run("plan", "--detailed-exitcode")
    assert gone.code == 2
    assert f"API Gateway v1 domain {DOMAIN} not found in {REGION}" in gone.out


def test_edge_v1_uses_acm_in_us_east_1(workspace: Workspace, aws: AwsLab) -> None:
    ws = workspace
    ws.write(config(aws, endpoint="edge"))
    arn, other = first_bind(ws, aws, endpoint="edge", api="v1")
    assert arn.startswith("arn:aws:acm:us-east-1:")
    assert arn_for(aws, "certificate.api", REGION) is None  # nothing in the provider's region
    renew_in_place(ws, aws, arn, endpoint="edge", api="v1")

    create_domain(aws, other, endpoint="edge")
    drift = ws.run("plan", "--detailed-exitcode")
    assert drift.code == 2
    assert f"serves {other} instead of {arn}" in drift.out


def test_regional_v2_lifecycle(workspace: Workspace, aws: AwsLab) -> None:
    ws = workspace
    ws.write(config(aws, api="v2"))
    missing = ws.run("apply", "--auto-approve")
    assert missing.code == 1
    assert f"API Gateway v2 domain {DOMAIN} not found in {REGION}" in missing.text

    arn, other = first_bind(ws, aws, endpoint="regional", api="v2")
    assert arn.startswith(f"arn:aws:acm:{REGION}:")
    renew_in_place(ws, aws, arn, endpoint="regional", api="v2")

    create_domain(aws, other, api="v2")
    drift = ws.run("plan", "--detailed-exitcode")
    assert drift.code == 2
    assert f"API Gateway v2 domain {DOMAIN} serves {other} instead of {arn}" in drift.out


def test_endpoint_type_mismatch_changes_nothing(workspace: Workspace, aws: AwsLab) -> None:
    ws = workspace
    create_domain(aws, placeholder(aws, REGION), endpoint="regional")
    ws.write(config(aws, endpoint="edge"))
    result = ws.run("apply", "--auto-approve")
    assert result.code == 1
    assert f"API Gateway v1 domain {DOMAIN} is a REGIONAL endpoint, not EDGE" in result.text
    assert "Traceback" not in result.text
    assert arn_for(aws, "certificate.api", "us-east-1") is None


# -- the exact UpdateDomainName requests (Stubber) ---------------------------------


def material(address: str = "certificate.api") -> CertificateMaterial:
    pem, key = self_signed(DOMAIN)
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(pem.encode())
    return CertificateMaterial(
        address=address,
        name="api",
        serial=format(cert.serial_number, "x"),
        not_after=cert.not_valid_after_utc,
        certificate_pem=pem,
        chain_pem="",
        root_pem=pem,
        private_key_pem=key,
    )


def stubbed_target(
    aws: AwsLab, monkeypatch: pytest.MonkeyPatch, *, endpoint: str, api: str
) -> tuple[ApiGatewayTarget, Stubber]:
    """A target whose API Gateway client is stubbed; ACM stays the real moto server."""
    provider = AwsProviderConfig(type="aws", region=REGION, endpoint_url=aws.url, max_attempts=1)
    target = ApiGatewayTarget(
        ApiGatewayTargetConfig(
            type="aws-apigateway",
            provider="aws",
            domain_name=DOMAIN,
            endpoint=endpoint,  # type: ignore[arg-type]
            api=api,  # type: ignore[arg-type]
        ),
        Path("."),
        provider,
    )
    service = "apigateway" if api == "v1" else "apigatewayv2"
    gateway = boto3.client(
        service,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    stubber = Stubber(gateway)

    def fake_client(provider: AwsProviderConfig, name: str, region: str | None = None) -> Any:
        if name == service:
            return gateway
        return real_client(provider, name, region)

    monkeypatch.setattr(apigateway, "client", fake_client)
    return target, stubber


@pytest.mark.parametrize(
    ("endpoint", "field", "path"),
    [
        ("edge", "certificateArn", "/certificateArn"),
        ("regional", "regionalCertificateArn", "/regionalCertificateArn"),
    ],
)
def test_update_request_v1(
    aws: AwsLab, monkeypatch: pytest.MonkeyPatch, endpoint: str, field: str, path: str
) -> None:
    """The one place a stub is used: moto lacks UpdateDomainName, so botocore's
    Stubber checks the exact request certform sends for a v1 domain serving
    another ARN.  ACM calls go to the real moto server."""
    region = acm_region(endpoint)
    other = placeholder(aws, region)
    target, stubber = stubbed_target(aws, monkeypatch, endpoint=endpoint, api="v1")
    deployed = material()
    domain = {"domainName": DOMAIN, field: other}
    if endpoint == "regional":
        domain["endpointConfiguration"] = {"types": ["REGIONAL"]}
    stubber.add_response("get_domain_name", domain, {"domainName": DOMAIN})

    # The ARN certform will use is the one found by its address tag.
    pem, key = deployed.certificate_pem, deployed.private_key_pem
    arn = aws.client("acm", region).import_certificate(
        Certificate=pem.encode(),
        PrivateKey=key,
        Tags=[{"Key": "certform:address", "Value": deployed.address}],
    )["CertificateArn"]
    stubber.add_response(
        "update_domain_name",
        {"domainName": DOMAIN, field: arn},
        {
            "domainName": DOMAIN,
            "patchOperations": [{"op": "replace", "path": path, "value": arn}],
        },
    )
    with stubber:
        facts = target.deploy(deployed, None)
    stubber.assert_no_pending_responses()
    assert facts == {
        "region": REGION,
        "domain_name": DOMAIN,
        "certificate_arn": arn,
        "serial": deployed.serial,
    }
    assert acm_serial(aws, arn, region) == deployed.serial


def test_update_request_v2_keeps_domain_settings(
    aws: AwsLab, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stubber (moto lacks UpdateDomainName): a v2 update replaces the whole
    configuration, so certform sends back the security policy and mutual TLS
    ownership certificate, drops read-only fields, and swaps only the ARN."""
    other = placeholder(aws, REGION)
    ownership = placeholder(aws, REGION)
    target, stubber = stubbed_target(aws, monkeypatch, endpoint="regional", api="v2")
    previous_arn = placeholder(aws, REGION)  # recorded by an earlier deploy
    stubber.add_response(
        "get_domain_name",
        {
            "DomainName": DOMAIN,
            "DomainNameConfigurations": [
                {
                    "ApiGatewayDomainName": "d-abc123.execute-api.eu-west-1.amazonaws.com",
                    "CertificateArn": other,
                    "CertificateName": "old",
                    "DomainNameStatus": "AVAILABLE",
                    "EndpointType": "REGIONAL",
                    "HostedZoneId": "Z2FDTNDATAQYW2",
                    "SecurityPolicy": "TLS_1_2",
                    "OwnershipVerificationCertificateArn": ownership,
                }
            ],
        },
        {"DomainName": DOMAIN},
    )
    stubber.add_response(
        "update_domain_name",
        {"DomainName": DOMAIN},
        {
            "DomainName": DOMAIN,
            "DomainNameConfigurations": [
                {
                    "CertificateArn": previous_arn,
                    "EndpointType": "REGIONAL",
                    "SecurityPolicy": "TLS_1_2",
                    "OwnershipVerificationCertificateArn": ownership,
                }
            ],
        },
    )
    deployed = material()
    with stubber:
        facts = target.deploy(deployed, {"certificate_arn": previous_arn, "serial": "00"})
    stubber.assert_no_pending_responses()
    assert facts["certificate_arn"] == previous_arn  # re-imported in place
    assert acm_serial(aws, previous_arn, REGION) == deployed.serial


def test_no_update_when_the_domain_serves_the_arn(
    aws: AwsLab, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stubber: renewal is a re-import only; any UpdateDomainName call would fail
    the test (no response queued for it)."""
    target, stubber = stubbed_target(aws, monkeypatch, endpoint="regional", api="v1")
    arn = placeholder(aws, REGION)
    stubber.add_response(
        "get_domain_name",
        {
            "domainName": DOMAIN,
            "regionalCertificateArn": arn,
            "endpointConfiguration": {"types": ["REGIONAL"]},
        },
        {"domainName": DOMAIN},
    )
    deployed = material()
    with stubber:
        facts = target.deploy(deployed, {"certificate_arn": arn})
    stubber.assert_no_pending_responses()
    assert facts["certificate_arn"] == arn
    assert acm_serial(aws, arn, REGION) == deployed.serial


def test_update_request_is_pure() -> None:
    regional = ApiGatewayTargetConfig(
        type="aws-apigateway", provider="aws", domain_name=DOMAIN, endpoint="regional"
    )
    assert update_request(regional, "arn:new", {}) == {
        "domainName": DOMAIN,
        "patchOperations": [
            {"op": "replace", "path": "/regionalCertificateArn", "value": "arn:new"}
        ],
    }
    v2 = regional.model_copy(update={"api": "v2"})
    assert update_request(v2, "arn:new", {"DomainName": DOMAIN}) == {
        "DomainName": DOMAIN,
        "DomainNameConfigurations": [{"CertificateArn": "arn:new", "EndpointType": "REGIONAL"}],
    }


def test_unreachable_endpoint_is_reported_as_such(workspace: Workspace) -> None:
    provider = AwsProviderConfig(
        type="aws", region=REGION, endpoint_url=f"http://127.0.0.1:{free_port()}", max_attempts=1
    )
    target = ApiGatewayTarget(
        ApiGatewayTargetConfig(
            type="aws-apigateway", provider="aws", domain_name=DOMAIN, endpoint="regional"
        ),
        workspace.root,
        provider,
    )
    observation = target.observe({"certificate_arn": "arn:aws:acm:eu-west-1:1:certificate/x"})
    assert observation.status == "unreachable"


# -- validate ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("endpoint", "api", "key", "message"),
    [
        (
            "edge",
            "v1",
            "ec-p384",
            "certificate 'api' has a ec-p384 key, but edge-optimized API Gateway domains "
            "(served by CloudFront) cannot serve ec-p384 certificates",
        ),
        (
            "edge",
            "v2",
            "ec-p256",
            "API Gateway v2 custom domains are regional only: use endpoint: regional",
        ),
        (
            "edge",
            "v1",
            "ed25519",
            "edge-optimized API Gateway domains (served by CloudFront) cannot serve ed25519",
        ),
        ("regional", "v1", "ed25519", "regional API Gateway domains cannot serve ed25519"),
        ("regional", "v2", "ed25519", "regional API Gateway domains cannot serve ed25519"),
    ],
)
def test_validate_errors(
    workspace: Workspace, endpoint: str, api: str, key: str, message: str
) -> None:
    workspace.write(config(None, endpoint=endpoint, api=api, key=key))
    result = workspace.run("validate")
    assert result.code == 1, result.text
    assert "bindings[0].target" in result.err
    assert message in result.err


@pytest.mark.parametrize(
    ("endpoint", "api", "key"),
    [
        ("regional", "v1", "ec-p384"),
        ("regional", "v2", "rsa-4096"),
        ("edge", "v1", "rsa-3072"),
        ("edge", "v1", "ec-p256"),
    ],
)
def test_validate_accepts(workspace: Workspace, endpoint: str, api: str, key: str) -> None:
    workspace.write(config(None, endpoint=endpoint, api=api, key=key))
    result = workspace.run("validate")
    assert result.code == 0, result.text


def test_domain_name_must_be_a_dns_name(workspace: Workspace) -> None:
    workspace.write(config(None).replace(f"domain_name: {DOMAIN}", "domain_name: Api_Example"))
    result = workspace.run("validate")
    assert result.code == 1
    assert "bindings[0].target.domain_name" in result.err
    assert "is not a lowercase DNS name" in result.err
