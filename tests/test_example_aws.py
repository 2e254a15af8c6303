"""examples/aws applied as a user would, against a moto server over HTTP: the
example directory is copied as is and pointed at the lab only through its template
variables (``aws_endpoint``, ``cloudfront_distribution``).

Checked: ACM issued the public certificates after certform wrote the validation
CNAMEs into the Route 53 zone it found by name; the ALB's listener serves ``www``
(ACM's ARN) as its default certificate and the private-CA ``admin`` certificate
(imported into ACM) in its SNI list; the CloudFront distribution's viewer
certificate is the us-east-1 ACM certificate; the API Gateway domain serves the
``api`` certificate; the next plan is empty.

moto 5.2 answers API Gateway's UpdateDomainName with HTTP 500 (see
tests/test_aws_apigateway.py): the first apply binds everything else and fails
cleanly on that one update; the test then plays the domain owner's part (the
domain recreated with certform's ARN, as a console change would) and the second
apply completes without needing the update.
"""

from __future__ import annotations

import json

from tests.aws_lab import REGION, AwsLab
from tests.conftest import Workspace
from tests.examples_lab import copy_example
from tests.test_aws_apigateway import placeholder
from tests.test_aws_cloudfront import US_EAST_1, create_distribution, viewer_certificate

API_DOMAIN = "api.example.com"


def _acm(aws: AwsLab, region: str, address: str) -> tuple[str, dict]:  # type: ignore[type-arg]
    """The ARN tagged with ``address`` in ``region`` and its description."""
    acm = aws.client("acm", region)
    for summary in acm.list_certificates()["CertificateSummaryList"]:
        arn = summary["CertificateArn"]
        tags = acm.list_tags_for_certificate(CertificateArn=arn)["Tags"]
        if {"Key": "certform:address", "Value": address} in tags:
            return arn, acm.describe_certificate(CertificateArn=arn)["Certificate"]
    raise AssertionError(f"no ACM certificate for {address} in {region}")


def test_the_aws_example_applies(workspace: Workspace, aws: AwsLab) -> None:
    ws = workspace
    copy_example(ws, "aws")
    zone = aws.client("route53").create_hosted_zone(Name="example.com", CallerReference="z")
    zone_id = zone["HostedZone"]["Id"].rsplit("/", 1)[-1]
    listener, listener_placeholder = aws.https_load_balancer("web-alb")
    distribution = create_distribution(aws)
    _api_domain(aws, placeholder(aws, REGION))
    lab = (
        *("--var", f"aws_endpoint={aws.url}"),  # also one attempt per call: moto's 500s
        *("--var", f"cloudfront_distribution={distribution}"),
    )

    ws.ok("validate", *lab)
    plan = json.loads(ws.ok("plan", "--json", *lab).out)
    assert {c["address"] for c in plan["changes"] if c["action"] == "bind"} == {
        "binding.aws-alb-listener:aws/web-alb:443/default",
        "binding.aws-alb-listener:aws/web-alb:443/sni/admin",
        f"binding.aws-cloudfront:aws/{distribution}",
        "binding.aws-apigateway:aws/api.example.com",
    }

    first = ws.run("apply", "--auto-approve", *lab, timeout=180)
    assert first.code == 1, first.text  # moto's UpdateDomainName: HTTP 500
    assert "updating API Gateway v1 domain api.example.com" in first.text
    assert "Traceback" not in first.text and "PRIVATE KEY" not in first.text
    assert "validation record(s) written to Route 53" in first.out

    # ACM issued the public certificates, validated through the zone found by name.
    www_arn, www = _acm(aws, REGION, "certificate.www")
    static_arn, static = _acm(aws, US_EAST_1, "certificate.static")
    api_arn, api = _acm(aws, REGION, "certificate.api")
    admin_arn, admin = _acm(aws, REGION, "certificate.admin")
    issued = {(c["Type"], c["Status"]) for c in (www, static, api)}
    assert issued == {("AMAZON_ISSUED", "ISSUED")}
    assert sorted(www["SubjectAlternativeNames"]) == ["example.com", "www.example.com"]
    assert admin["Type"] == "IMPORTED"
    records = aws.client("route53").list_resource_record_sets(HostedZoneId=zone_id)
    cnames = {r["Name"] for r in records["ResourceRecordSets"] if r["Type"] == "CNAME"}
    options = [o for c in (www, static, api) for o in c["DomainValidationOptions"]]
    wanted = {o["ResourceRecord"]["Name"] for o in options}
    assert wanted and wanted <= cnames

    # ALB: default and SNI; CloudFront: the us-east-1 certificate.
    assert aws.listener_certificates(listener) == (www_arn, {admin_arn})
    assert www_arn != listener_placeholder
    viewer = viewer_certificate(aws, distribution)
    assert viewer["ACMCertificateArn"] == static_arn and viewer["SSLSupportMethod"] == "sni-only"

    # API Gateway: the owner points the domain at certform's ARN (moto cannot update).
    _api_domain(aws, api_arn)
    second = ws.run("apply", "--auto-approve", *lab, timeout=180)
    assert second.code == 0, second.text
    domain = aws.client("apigateway").get_domain_name(domainName=API_DOMAIN)
    assert domain["regionalCertificateArn"] == api_arn
    assert ws.run("plan", "--detailed-exitcode", *lab).code == 0


def _api_domain(aws: AwsLab, arn: str) -> None:
    """(Re)create the regional api.example.com domain serving ``arn``."""
    v1 = aws.client("apigateway")
    if API_DOMAIN in {d["domainName"] for d in v1.get_domain_names()["items"]}:
        v1.delete_domain_name(domainName=API_DOMAIN)
    v1.create_domain_name(
        domainName=API_DOMAIN,
        regionalCertificateArn=arn,
        endpointConfiguration={"types": ["REGIONAL"]},
    )
