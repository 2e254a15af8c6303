"""The aws-acm authority against moto server: ACM issues with DNS validation through
Route 53, the key never leaves ACM, listeners use ACM's own ARN, ACM renews."""

from __future__ import annotations

import json
import sqlite3

from tests.aws_lab import AwsLab
from tests.conftest import Workspace

ACM_CONFIG = """\
authorities:
  acm:
    type: aws-acm
    provider: aws
    timeout: 60s
certificates:
  site:
    names: [www.example.test, example.test]
    issuer: acm
    key: ec-p256
    tags: {team: edge}
bindings:
  - certificate: site
    target: {type: aws-alb-listener, provider: aws, load_balancer: prod-alb}
"""


def config(aws: AwsLab, body: str = ACM_CONFIG) -> str:
    return body + "providers:\n" + aws.provider_yaml()


def test_acm_issues_validates_and_serves(workspace: Workspace, aws: AwsLab) -> None:
    ws = workspace
    zone = aws.client("route53").create_hosted_zone(Name="example.test", CallerReference="z")
    zone_id = zone["HostedZone"]["Id"].split("/")[-1]
    listener, placeholder = aws.https_load_balancer()
    ws.write(config(aws))
    result = ws.run("apply", "--auto-approve", timeout=180)
    assert result.code == 0, result.text
    assert "validation record(s) written to Route 53" in result.out

    acm = aws.client("acm")
    arn = aws.arn_for("certificate.site")
    assert arn is not None
    detail = acm.describe_certificate(CertificateArn=arn)["Certificate"]
    assert detail["Type"] == "AMAZON_ISSUED" and detail["Status"] == "ISSUED"
    assert sorted(detail["SubjectAlternativeNames"]) == ["example.test", "www.example.test"]
    record_sets = aws.client("route53").list_resource_record_sets(HostedZoneId=zone_id)
    cnames = {r["Name"] for r in record_sets["ResourceRecordSets"] if r["Type"] == "CNAME"}
    wanted = {o["ResourceRecord"]["Name"] for o in detail["DomainValidationOptions"]}
    assert wanted and wanted <= cnames
    assert aws.listener_certificates(listener)[0] == arn != placeholder
    with sqlite3.connect(ws.state_db) as db:
        key, external = db.execute(
            "SELECT sealed_key, external_id FROM certificates WHERE name = 'site'"
        ).fetchone()
    assert key is None and external == arn, "the private key stays in ACM"

    assert ws.run("plan", "--detailed-exitcode").code == 0
    late = ws.run("plan", "--detailed-exitcode", "--at", "+400d")
    assert late.code == 0, "ACM renews its own certificates: nothing to plan"

    ws.write(config(aws, ACM_CONFIG.replace("example.test]", "example.test, api.example.test]")))
    plan = json.loads(ws.run("plan", "--json").out)
    assert [(c["address"], c["action"]) for c in plan["changes"]] == [
        ("certificate.site", "replace"),
        ("binding.aws-alb-listener:aws/prod-alb:443/default", "rebind"),
    ]
    assert ws.run("apply", "--auto-approve", timeout=180).code == 0
    with sqlite3.connect(ws.state_db) as db:
        (new_arn,) = db.execute(
            "SELECT external_id FROM certificates WHERE name = 'site'"
        ).fetchone()
    assert new_arn != arn
    detail = aws.client("acm").describe_certificate(CertificateArn=new_arn)["Certificate"]
    assert "api.example.test" in detail["SubjectAlternativeNames"]
    assert aws.listener_certificates(listener)[0] == new_arn
    assert ws.run("plan", "--detailed-exitcode").code == 0


def test_acm_certificates_only_go_to_aws_targets_in_their_region(
    workspace: Workspace, aws: AwsLab
) -> None:
    ws = workspace
    files = ACM_CONFIG.replace(
        "{type: aws-alb-listener, provider: aws, load_balancer: prod-alb}",
        "{type: files, directory: out/site}",
    )
    ws.write(config(aws, files))
    result = ws.run("validate")
    assert result.code == 1
    assert "never releases its private key" in result.err and "bindings[0].target" in result.err

    cloudfront = ACM_CONFIG.replace(
        "{type: aws-alb-listener, provider: aws, load_balancer: prod-alb}",
        "{type: aws-cloudfront, provider: aws, distribution_id: E2QWRUHEXAMPLE}",
    )
    ws.write(config(aws, cloudfront))
    result = ws.run("validate")
    assert result.code == 1
    assert "issued by ACM in eu-west-1, but aws-cloudfront needs its certificate in us-east-1" in (
        result.err
    )
    ws.write(config(aws, cloudfront.replace("timeout: 60s", "timeout: 60s\n    region: us-east-1")))
    assert ws.run("validate").code == 0

    ws.write(config(aws, ACM_CONFIG.replace("key: ec-p256", "key: rsa-4096")))
    result = ws.run("validate")
    assert result.code == 1
    assert "certificates.site.key: ACM issues" in result.err


def test_check_watches_acm_certificates(workspace: Workspace, aws: AwsLab) -> None:
    ws = workspace
    aws.client("route53").create_hosted_zone(Name="example.test", CallerReference="z")
    aws.https_load_balancer()
    ws.write(config(aws))
    assert ws.run("apply", "--auto-approve", timeout=180).code == 0
    assert ws.run("check").code == 0
    with sqlite3.connect(ws.state_db) as db:
        (arn,) = db.execute("SELECT external_id FROM certificates WHERE name = 'site'").fetchone()
    listener = aws.client("elbv2").describe_listeners(
        LoadBalancerArn=aws.client("elbv2").describe_load_balancers(Names=["prod-alb"])[
            "LoadBalancers"
        ][0]["LoadBalancerArn"]
    )["Listeners"][0]["ListenerArn"]
    aws.client("elbv2").modify_listener(
        ListenerArn=listener, Certificates=[{"CertificateArn": aws.placeholder_certificate()}]
    )
    aws.client("acm").delete_certificate(CertificateArn=arn)
    result = ws.run("check")
    assert result.code == 2
    assert "certificate.site: the ACM certificate no longer exists" in result.out
