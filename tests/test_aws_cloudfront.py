"""CloudFront distributions through a real AWS API endpoint (moto server): the
certificate goes to ACM in us-east-1 whatever the provider's region, renews in
place (same ARN), a viewer certificate swapped by hand is drift and is restored,
and keys CloudFront cannot serve are refused at validate."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509

from reconciler.pki.builder import Subject, build_ca_certificate, certificate_to_pem
from reconciler.pki.keys import generate_private_key, private_key_to_pem
from tests.aws_lab import AwsLab
from tests.conftest import Workspace

US_EAST_1 = "us-east-1"

PKI = """\
authorities:
  root:
    type: private-root
    subject: {common_name: CloudFront Test Root}
  issuing:
    type: private-subordinate
    parent: root
    subject: {common_name: CloudFront Test Issuing}
certificates:
  web:
    names: [web.example.test, "*.cdn.example.test"]
    issuer: issuing
    key: ec-p256
    validity: 90d
    renew_before: 30d
    tags: {team: web}
"""


def config(aws: AwsLab, distribution: str, extra: str = "") -> str:
    """The provider is in eu-west-1: the certificate must still go to us-east-1."""
    return (
        PKI
        + "providers:\n"
        + aws.provider_yaml()
        + "bindings:\n"
        + "  - certificate: web\n"
        + f"    target: {{type: aws-cloudfront, provider: aws, distribution_id: {distribution}"
        + extra
        + "}\n"
    )


def create_distribution(aws: AwsLab, aliases: tuple[str, ...] = ()) -> str:
    distribution_config: dict[str, Any] = {
        "CallerReference": f"certform-test-{len(aliases)}",
        "Origins": {
            "Quantity": 1,
            "Items": [
                {
                    "Id": "origin",
                    "DomainName": "origin.example.test",
                    "CustomOriginConfig": {
                        "HTTPPort": 80,
                        "HTTPSPort": 443,
                        "OriginProtocolPolicy": "https-only",
                    },
                }
            ],
        },
        "DefaultCacheBehavior": {
            "TargetOriginId": "origin",
            "ViewerProtocolPolicy": "redirect-to-https",
            "MinTTL": 0,
        },
        "Comment": "certform test",
        "Enabled": True,
    }
    if aliases:
        distribution_config["Aliases"] = {"Quantity": len(aliases), "Items": list(aliases)}
    response = aws.client("cloudfront", US_EAST_1).create_distribution(
        DistributionConfig=distribution_config
    )
    return str(response["Distribution"]["Id"])


def viewer_certificate(aws: AwsLab, distribution: str) -> dict[str, Any]:
    response = aws.client("cloudfront", US_EAST_1).get_distribution_config(Id=distribution)
    return dict(response["DistributionConfig"]["ViewerCertificate"])


def set_viewer_certificate(aws: AwsLab, distribution: str, **changes: Any) -> None:
    """Change the distribution by hand, as someone in the console would."""
    cloudfront = aws.client("cloudfront", US_EAST_1)
    response = cloudfront.get_distribution_config(Id=distribution)
    config = response["DistributionConfig"]
    viewer = config["ViewerCertificate"]
    for key in ("Certificate", "CertificateSource", "IAMCertificateId"):
        viewer.pop(key, None)
    viewer.update(changes)
    cloudfront.update_distribution(
        Id=distribution, IfMatch=response["ETag"], DistributionConfig=config
    )


def acm_arns(aws: AwsLab, region: str) -> list[str]:
    summaries = aws.client("acm", region).list_certificates(
        Includes={"keyTypes": ["RSA_2048", "EC_prime256v1", "EC_secp384r1"]}
    )["CertificateSummaryList"]
    return [s["CertificateArn"] for s in summaries]


def acm_serial(aws: AwsLab, arn: str) -> str:
    pem = aws.client("acm", US_EAST_1).get_certificate(CertificateArn=arn)["Certificate"]
    return format(x509.load_pem_x509_certificate(pem.encode()).serial_number, "x")


def placeholder_in_us_east_1(aws: AwsLab) -> str:
    """Another certificate in us-east-1 ACM, to swap in by hand."""
    key = generate_private_key("ec-p256")
    now = datetime.now(UTC)
    certificate = build_ca_certificate(
        public_key=key.public_key(),
        subject=Subject("placeholder.example.test"),
        issuer_cert=None,
        issuer_key=key,
        not_before=now,
        not_after=now + timedelta(days=30),
        path_length=0,
    )
    response = aws.client("acm", US_EAST_1).import_certificate(
        Certificate=certificate_to_pem(certificate).encode(), PrivateKey=private_key_to_pem(key)
    )
    return str(response["CertificateArn"])


def web_serial(ws: Workspace) -> str:
    rows = json.loads(ws.ok("show", "--json").out)
    return next(r["serial"] for r in rows["certificates"] if r["address"] == "certificate.web")


def test_cloudfront_lifecycle(workspace: Workspace, aws: AwsLab) -> None:
    ws = workspace
    distribution = create_distribution(aws, aliases=("web.example.test", "img.cdn.example.test"))
    ws.write(config(aws, distribution))
    plan = json.loads(ws.run("plan", "--json").out)
    assert [c["address"] for c in plan["changes"] if c["action"] == "bind"] == [
        f"binding.aws-cloudfront:aws/{distribution}"
    ]
    ws.ok("apply", "--auto-approve")

    # The certificate is in us-east-1 ACM, and not in the provider's eu-west-1.
    arns = acm_arns(aws, US_EAST_1)
    assert len(arns) == 1
    arn = arns[0]
    assert arn.startswith("arn:aws:acm:us-east-1:")
    assert acm_arns(aws, "eu-west-1") == []
    tags = aws.client("acm", US_EAST_1).list_tags_for_certificate(CertificateArn=arn)["Tags"]
    assert {"Key": "certform:address", "Value": "certificate.web"} in tags
    assert {"Key": "team", "Value": "web"} in tags

    viewer = viewer_certificate(aws, distribution)
    assert viewer["ACMCertificateArn"] == arn
    assert viewer["SSLSupportMethod"] == "sni-only"
    assert viewer["MinimumProtocolVersion"] == "TLSv1.2_2021"
    before = web_serial(ws)
    assert acm_serial(aws, arn) == before

    assert ws.run("plan", "--detailed-exitcode").code == 0

    # moto reports CloudFrontDefaultCertificate: true next to an ACM ARN; the
    # ARN is what counts.  certform would write false, so the flag staying true
    # below also shows that renewal never updates the distribution.
    set_viewer_certificate(aws, distribution, CloudFrontDefaultCertificate=True)
    assert viewer_certificate(aws, distribution)["CloudFrontDefaultCertificate"] is True
    assert ws.run("plan", "--detailed-exitcode").code == 0

    # Renewal re-imports into the same ARN: the distribution keeps pointing at it.
    ws.ok("plan", "--at", "+61d", "--out", "renew.plan")
    ws.ok("apply", "renew.plan")
    after = web_serial(ws)
    assert after != before
    assert acm_arns(aws, US_EAST_1) == [arn]
    assert acm_serial(aws, arn) == after
    viewer = viewer_certificate(aws, distribution)
    assert viewer["ACMCertificateArn"] == arn
    assert viewer["CloudFrontDefaultCertificate"] is True  # not updated: nothing to change
    assert ws.run("plan", "--detailed-exitcode").code == 0

    # Someone swaps the viewer certificate by hand: drift, then repair.
    placeholder = placeholder_in_us_east_1(aws)
    set_viewer_certificate(aws, distribution, ACMCertificateArn=placeholder)
    drift = ws.run("plan", "--detailed-exitcode")
    assert drift.code == 2, drift.text
    assert f"distribution {distribution} serves {placeholder} instead of {arn}" in drift.out
    ws.ok("apply", "--auto-approve")
    assert viewer_certificate(aws, distribution)["ACMCertificateArn"] == arn
    assert acm_serial(aws, arn) == after
    assert ws.run("plan", "--detailed-exitcode").code == 0

    # A weaker minimum protocol version set by hand is drift too.
    set_viewer_certificate(aws, distribution, MinimumProtocolVersion="TLSv1")
    drift = ws.run("plan", "--detailed-exitcode")
    assert drift.code == 2, drift.text
    assert (
        f"distribution {distribution} has minimum protocol version TLSv1, not TLSv1.2_2021"
        in drift.out
    )
    ws.ok("apply", "--auto-approve")
    assert viewer_certificate(aws, distribution)["MinimumProtocolVersion"] == "TLSv1.2_2021"
    assert ws.run("plan", "--detailed-exitcode").code == 0

    # Removing the binding leaves the distribution serving the certificate
    # (its aliases need one).
    ws.write(PKI)
    ws.ok("apply", "--auto-approve")
    assert viewer_certificate(aws, distribution)["ACMCertificateArn"] == arn


def test_configured_settings_are_deployed(workspace: Workspace, aws: AwsLab) -> None:
    ws = workspace
    distribution = create_distribution(aws)
    ws.write(
        config(
            aws,
            distribution,
            ", minimum_protocol_version: TLSv1.2_2019, ssl_support_method: vip",
        )
    )
    ws.ok("apply", "--auto-approve")
    viewer = viewer_certificate(aws, distribution)
    assert viewer["ACMCertificateArn"].startswith("arn:aws:acm:us-east-1:")
    assert viewer["SSLSupportMethod"] == "vip"
    assert viewer["MinimumProtocolVersion"] == "TLSv1.2_2019"
    assert not viewer.get("IAMCertificateId")
    assert ws.run("plan", "--detailed-exitcode").code == 0

    set_viewer_certificate(aws, distribution, SSLSupportMethod="sni-only")
    drift = ws.run("plan", "--detailed-exitcode")
    assert drift.code == 2, drift.text
    assert f"distribution {distribution} has SSL support method sni-only, not vip" in drift.out
    ws.ok("apply", "--auto-approve")
    assert viewer_certificate(aws, distribution)["SSLSupportMethod"] == "vip"

    # Changing the settings in the config updates the distribution (same ARN).
    arn = viewer_certificate(aws, distribution)["ACMCertificateArn"]
    ws.write(config(aws, distribution, ", minimum_protocol_version: TLSv1.2_2021"))
    change = ws.run("plan", "--detailed-exitcode")
    assert change.code == 2, change.text
    ws.ok("apply", "--auto-approve")
    viewer = viewer_certificate(aws, distribution)
    assert (viewer["ACMCertificateArn"], viewer["SSLSupportMethod"]) == (arn, "sni-only")
    assert viewer["MinimumProtocolVersion"] == "TLSv1.2_2021"
    assert ws.run("plan", "--detailed-exitcode").code == 0


def test_certificate_deleted_from_acm_is_drift(workspace: Workspace, aws: AwsLab) -> None:
    ws = workspace
    distribution = create_distribution(aws)
    ws.write(config(aws, distribution))
    ws.ok("apply", "--auto-approve")
    [arn] = acm_arns(aws, US_EAST_1)
    aws.client("acm", US_EAST_1).delete_certificate(CertificateArn=arn)
    result = ws.run("plan", "--detailed-exitcode")
    assert result.code == 2, result.text
    assert f"ACM certificate {arn} no longer exists" in result.out
    ws.ok("apply", "--auto-approve")
    [new_arn] = acm_arns(aws, US_EAST_1)
    assert new_arn != arn and new_arn.startswith("arn:aws:acm:us-east-1:")
    assert viewer_certificate(aws, distribution)["ACMCertificateArn"] == new_arn
    assert ws.run("plan", "--detailed-exitcode").code == 0


def test_missing_distribution(workspace: Workspace, aws: AwsLab) -> None:
    ws = workspace
    ws.write(config(aws, "E2QWRUHEXAMPLE"))
    result = ws.run("apply", "--auto-approve")
    assert result.code == 1
    assert "distribution E2QWRUHEXAMPLE not found" in result.text
    assert "Traceback" not in result.text
    assert acm_arns(aws, US_EAST_1) == []  # nothing imported for nothing

    # A distribution deleted after apply shows up as missing.
    distribution = create_distribution(aws)
    ws.write(config(aws, distribution))
    ws.ok("apply", "--auto-approve")
    cloudfront = aws.client("cloudfront", US_EAST_1)
    etag = cloudfront.get_distribution_config(Id=distribution)["ETag"]
    cloudfront.delete_distribution(Id=distribution, IfMatch=etag)
    result = ws.run("plan", "--detailed-exitcode")
    assert result.code == 2, result.text
    assert f"distribution {distribution} not found" in result.out
    assert "Traceback" not in result.text


def test_alias_not_covered_fails_before_import(workspace: Workspace, aws: AwsLab) -> None:
    ws = workspace
    distribution = create_distribution(aws, aliases=("shop.example.test", "a.b.cdn.example.test"))
    ws.write(config(aws, distribution))
    result = ws.run("apply", "--auto-approve")
    assert result.code == 1
    assert (
        f"distribution {distribution} has aliases shop.example.test, a.b.cdn.example.test "
        "that certificate.web does not cover" in result.text
    )
    assert "Traceback" not in result.text
    assert acm_arns(aws, US_EAST_1) == []
    assert not viewer_certificate(aws, distribution)["ACMCertificateArn"]


def test_incompatible_keys_are_validate_errors(workspace: Workspace, aws: AwsLab) -> None:
    ws = workspace
    for key in ("ec-p384", "ed25519"):
        ws.write(config(aws, "E2QWRUHEXAMPLE").replace("key: ec-p256", f"key: {key}"))
        result = ws.run("validate")
        assert result.code == 1, result.text
        assert "bindings[0].target" in result.err
        assert f"certificate 'web' has a {key} key" in result.err
        assert f"CloudFront distributions cannot serve {key} certificates" in result.err
        assert "RSA 2048, 3072 or 4096, or ECDSA P-256" in result.err
    for key in ("rsa-2048", "rsa-4096"):
        ws.write(config(aws, "E2QWRUHEXAMPLE").replace("key: ec-p256", f"key: {key}"))
        assert ws.run("validate").code == 0


def test_config_is_checked(workspace: Workspace, aws: AwsLab) -> None:
    ws = workspace
    ws.write(config(aws, "E2QWRUHEXAMPLE", ", ssl_support_method: static-ip"))
    result = ws.run("validate")
    assert result.code == 1
    assert "ssl_support_method" in result.err
    ws.write(config(aws, "E2QWRUHEXAMPLE").replace("provider: aws,", "provider: prod,"))
    result = ws.run("validate")
    assert result.code == 1
    assert "bindings[0].target.provider: unknown provider 'prod'" in result.err
