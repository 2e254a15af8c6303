"""One flow across AWS targets: the same certificate on an ALB listener (eu-west-1)
and a CloudFront distribution (us-east-1), plus an SNI certificate; issue → import →
bind → no changes → renew with --at (ARNs unchanged, new serials in ACM) → a
certificate swapped by hand → drift (exit 2) → apply restores it."""

from __future__ import annotations

import json

from tests.aws_lab import AwsLab
from tests.conftest import Workspace
from tests.test_aws_alb import PKI
from tests.test_aws_cloudfront import create_distribution, viewer_certificate


def config(aws: AwsLab, distribution: str) -> str:
    return (
        PKI
        + "providers:\n"
        + aws.provider_yaml()
        + "bindings:\n"
        + "  - certificate: web\n"
        + "    target: {type: aws-alb-listener, provider: aws, load_balancer: prod-alb}\n"
        + "  - certificate: api\n"
        + "    target: {type: aws-alb-listener, provider: aws, load_balancer: prod-alb, "
        + "sni: true}\n"
        + "  - certificate: web\n"
        + f"    target: {{type: aws-cloudfront, provider: aws, distribution_id: {distribution}}}\n"
    )


def acm_copies(aws: AwsLab, region: str, address: str) -> list[str]:
    acm = aws.client("acm", region)
    return [
        s["CertificateArn"]
        for s in acm.list_certificates()["CertificateSummaryList"]
        if {"Key": "certform:address", "Value": address}
        in acm.list_tags_for_certificate(CertificateArn=s["CertificateArn"])["Tags"]
    ]


def test_one_certificate_in_two_regions_renewed_in_place(workspace: Workspace, aws: AwsLab) -> None:
    ws = workspace
    listener, placeholder = aws.https_load_balancer()
    distribution = create_distribution(aws)
    ws.write(config(aws, distribution))
    ws.ok("apply", "--auto-approve")

    (web_eu,) = acm_copies(aws, "eu-west-1", "certificate.web")
    (web_us,) = acm_copies(aws, "us-east-1", "certificate.web")
    (api_eu,) = acm_copies(aws, "eu-west-1", "certificate.api")
    assert acm_copies(aws, "us-east-1", "certificate.api") == []
    assert aws.listener_certificates(listener) == (web_eu, {api_eu})
    assert viewer_certificate(aws, distribution)["ACMCertificateArn"] == web_us
    assert ws.run("plan", "--detailed-exitcode").code == 0

    ws.ok("plan", "--at", "+61d", "--out", "renew.plan")
    ws.ok("apply", "renew.plan")
    rows = json.loads(ws.ok("show", "--json").out)
    serials = {r["address"]: r["serial"] for r in rows["certificates"]}
    assert acm_copies(aws, "eu-west-1", "certificate.web") == [web_eu]
    assert acm_copies(aws, "us-east-1", "certificate.web") == [web_us]
    assert aws.acm_serial(web_eu) == serials["certificate.web"]
    assert aws.acm_serial(api_eu) == serials["certificate.api"]
    us_pem = aws.client("acm", "us-east-1").get_certificate(CertificateArn=web_us)
    assert (
        aws.client("acm").get_certificate(CertificateArn=web_eu)["Certificate"]
        == (us_pem["Certificate"])
    )
    assert ws.run("plan", "--detailed-exitcode").code == 0

    aws.client("elbv2").modify_listener(
        ListenerArn=listener, Certificates=[{"CertificateArn": placeholder}]
    )
    drift = ws.run("plan", "--detailed-exitcode")
    assert drift.code == 2
    assert "binding.aws-alb-listener:aws/prod-alb:443/default" in drift.out
    assert f"listener serves {placeholder} instead of {web_eu}" in drift.out
    ws.ok("apply", "--auto-approve")
    assert aws.listener_certificates(listener)[0] == web_eu
    assert ws.run("plan", "--detailed-exitcode").code == 0


def test_destroy_deletes_detached_acm_copies_and_keeps_used_ones(
    workspace: Workspace, aws: AwsLab
) -> None:
    """moto never records SNI use in InUseBy: certform's own reference check decides."""
    ws = workspace
    listener, _ = aws.https_load_balancer()
    distribution = create_distribution(aws)
    ws.write(config(aws, distribution))
    ws.ok("apply", "--auto-approve")
    (api_eu,) = acm_copies(aws, "eu-west-1", "certificate.api")
    (web_eu,) = acm_copies(aws, "eu-west-1", "certificate.web")

    without_api = config(aws, distribution).replace(
        "  - certificate: api\n    target: {type: aws-alb-listener, provider: aws, "
        "load_balancer: prod-alb, sni: true}\n",
        "",
    )
    without_api = without_api.replace(PKI.split("  api:\n")[1], "").replace("  api:\n", "")
    ws.write(without_api)
    result = ws.run("apply", "--auto-approve")
    assert result.code == 0, result.text
    assert f"deleted ACM certificate {api_eu}" in result.out
    assert acm_copies(aws, "eu-west-1", "certificate.api") == []
    assert aws.listener_certificates(listener) == (web_eu, set())

    # web's copies stay with their listener default and distribution: never deleted.
    only_pki = without_api.split("  web:\n")[0] + "providers:\n" + aws.provider_yaml()
    ws.write(only_pki)
    result = ws.run("apply", "--auto-approve")
    assert result.code == 0, result.text
    assert "deleted ACM certificate" not in result.out
    assert acm_copies(aws, "eu-west-1", "certificate.web") == [web_eu]
    assert aws.listener_certificates(listener)[0] == web_eu
