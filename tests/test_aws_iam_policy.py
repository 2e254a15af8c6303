"""``certform iam-policy``: the policy a configuration needs, and nothing more.

The main test records every AWS call a full cycle makes — apply, plan, check
(EventBridge + CloudWatch), renew, a CRL deleted by hand and republished, and
destroy — of a configuration using ALB default + SNI, CloudFront, API Gateway,
aws-acm with Route 53 validation, the KMS key store, a CRL in S3, the
EventBridge sink and the cloudwatch block.  The certform processes talk to a moto
server through bench/aws.py's CountingProxy, which hands each request to
``tests/iam_lab.py``; that turns it into the IAM permissions it needs.  Then:
each one is allowed by the printed policy (actions and resources, wildcards
matched as IAM does), and the policy allows no action that was never needed.
moto 5.2 answers UpdateDomainName with 500: the update is recorded, then the
domain is recreated pointing at certform's ARN as test_aws_apigateway.py does.
moto does not enforce IAM, so conditions (the ``managed-by`` tag, the KMS
alias, the CloudWatch namespace, the record types) are pinned by exact
expectations instead.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from functools import cache

import pytest

from bench.aws import CountingProxy, Request
from tests import iam_lab
from tests.aws_lab import REGION, AwsLab
from tests.conftest import EXAMPLE, Workspace
from tests.test_aws_apigateway import arn_for, create_domain, placeholder
from tests.test_aws_cloudfront import create_distribution

AUTHORITIES = """\
authorities:
  root:
    type: private-root
    subject: {common_name: IAM Test Root}
  issuing:
    type: private-subordinate
    parent: root
    subject: {common_name: IAM Test Issuing}
    crl:
      publish: {s3: {provider: aws, bucket: crls, key: ca/issuing.crl}}
      validity: 7d
      url: http://crls.example.test/issuing.crl
  acm: {type: aws-acm, provider: aws, timeout: 60s}
"""
CERTIFICATES = """\
certificates:
  web: {names: [web.example.test], issuer: issuing, key: ec-p256, validity: 90d, renew_before: 30d}
  api: {names: [api.example.test], issuer: issuing, key: rsa-2048, validity: 90d, renew_before: 30d}
  site: {names: [www.example.test], issuer: acm, key: ec-p256}
"""
BINDINGS = """\
bindings:
  - certificate: web
    target: {type: aws-alb-listener, provider: aws, load_balancer: prod-alb}
  - certificate: api
    target: {type: aws-alb-listener, provider: aws, load_balancer: prod-alb, sni: true}
  - certificate: site
    target: {type: aws-alb-listener, provider: aws, load_balancer: prod-alb, sni: true}
  - certificate: web
    target: {type: aws-cloudfront, provider: aws, distribution_id: DISTRIBUTION}
  - certificate: api
    target: {type: aws-apigateway, provider: aws, domain_name: api.example.test, endpoint: regional}
"""
SIGNALS = """\
notifications:
  days: 397
  sinks: [{type: eventbridge, provider: aws}]
cloudwatch: {provider: aws, namespace: Certs/Prod}
state:
  key_store: {type: aws-kms, key_id: alias/certform, provider: aws}
"""


def _config(endpoint: str, distribution: str, *, destroyed: bool = False) -> str:
    body = AUTHORITIES + ("certificates: {}\n" if destroyed else CERTIFICATES + BINDINGS)
    provider = f"providers:\n  aws: {{type: aws, region: {REGION}, endpoint_url: '{endpoint}'}}\n"
    return body.replace("DISTRIBUTION", distribution) + SIGNALS + provider


def _world(aws: AwsLab) -> str:
    """What exists before certform runs: ALB + listener, distribution, API domain,
    hosted zone, KMS key and alias, CRL bucket.  Made directly, not through the proxy."""
    aws.https_load_balancer()
    distribution = create_distribution(aws)
    create_domain(aws, placeholder(aws, REGION))
    aws.client("route53").create_hosted_zone(Name="example.test", CallerReference="iam")
    kms = aws.client("kms")
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    kms.create_alias(AliasName="alias/certform", TargetKeyId=key)
    aws.client("s3").create_bucket(
        Bucket="crls", CreateBucketConfiguration={"LocationConstraint": REGION}
    )
    return distribution


@pytest.fixture
def recorded(aws: AwsLab) -> Iterator[tuple[CountingProxy, list[Request]]]:
    requests: list[Request] = []
    proxy = CountingProxy(aws.url, observe=requests.append)
    yield proxy, requests
    proxy.stop()


def test_policy_allows_every_call_of_a_full_cycle_and_nothing_else(
    workspace: Workspace, aws: AwsLab, recorded: tuple[CountingProxy, list[Request]]
) -> None:
    ws = workspace
    proxy, requests = recorded
    del ws.env["CERTFORM_MASTER_KEY"]  # the data key is wrapped by KMS
    distribution = _world(aws)
    ws.write(_config(proxy.url, distribution))
    printed = ws.ok("iam-policy")
    assert requests == [], "iam-policy itself calls no AWS API"
    policy = json.loads(printed.out)

    # The cycle: first apply, no-change plan, check with both signals, renewal,
    # a CRL deleted by hand (HeadObject 404) and republished, destroy.
    # moto answers UpdateDomainName with 500 (see test_aws_apigateway.py): the call is
    # made (and recorded), then the domain's owner points it at certform's ARN.
    applied = ws.run("apply", "--auto-approve", timeout=180)
    assert applied.code == 1 and "updating API Gateway v1 domain" in applied.text, applied.text
    create_domain(aws, str(arn_for(aws, "certificate.api", REGION)))
    applied = ws.run("apply", "--auto-approve", timeout=180)
    assert applied.code == 0, applied.text
    assert ws.run("plan", "--detailed-exitcode").code == 0
    checked = ws.run("check")
    assert checked.code in (0, 2), checked.text
    assert "eventbridge default (aws): 3 sent, 0 failed" in checked.err
    assert "cloudwatch Certs/Prod (aws): 3 sent, 0 failed" in checked.err
    ws.ok("plan", "--at", "+61d", "--out", "renew.plan")
    renewed = ws.run("apply", "renew.plan", timeout=180)
    assert renewed.code == 0, renewed.text
    aws.client("s3").delete_object(Bucket="crls", Key="ca/issuing.crl")
    assert "s3://crls/ca/issuing.crl missing" in ws.run("plan").out
    ws.ok("apply", "--auto-approve")
    ws.write(_config(proxy.url, distribution, destroyed=True))
    destroyed = ws.run("apply", "--auto-approve")
    assert destroyed.code == 0, destroyed.text
    assert "deleted ACM certificate" in destroyed.out

    needed = sorted(
        {
            permission
            for r in requests
            for permission in iam_lab.permissions(
                r.method, r.path, r.headers, r.body, r.status, _kms_key(aws)
            )
        }
    )
    denied = [f"{a} on {r}" for a, r in needed if not iam_lab.allows(policy, a, r)]
    assert not denied, "calls the printed policy does not allow:\n  " + "\n  ".join(denied)
    unused = sorted(iam_lab.policy_actions(policy) - {a for a, _ in needed})
    assert not unused, "actions the policy allows but no call needed:\n  " + "\n  ".join(unused)

    # What the proxy cannot check: the scoping conditions.
    statements = {s["Sid"]: s for s in policy["Statement"]}
    tagged = statements["AcmCertformCertificates"]
    assert tagged["Condition"] == {"StringEquals": {"aws:ResourceTag/managed-by": "certform"}}
    new = statements["AcmNewCertformCertificates"]
    assert new["Condition"] == {"StringEquals": {"aws:RequestTag/managed-by": "certform"}}
    assert new["Action"] == ["acm:AddTagsToCertificate", "acm:ImportCertificate"]
    assert statements["AcmRequest"]["Condition"] == {
        "ForAllValues:StringEquals": {"acm:DomainNames": "www.example.test"},
        "StringEquals": {"acm:ValidationMethod": "DNS", "aws:RequestTag/managed-by": "certform"},
    }
    assert statements["KmsStateKey"]["Condition"] == {
        "StringEquals": {"kms:RequestAlias": "alias/certform"}
    }
    assert statements["CloudWatchMetrics"]["Condition"] == {
        "StringEquals": {"cloudwatch:namespace": "Certs/Prod"}
    }
    assert statements["ElbListeners"]["Resource"] == [
        f"arn:aws:elasticloadbalancing:{REGION}:*:listener/app/prod-alb/*",
        f"arn:aws:elasticloadbalancing:{REGION}:*:listener/net/prod-alb/*",
    ]
    ws.write(_config(proxy.url, distribution))
    assert ws.ok("iam-policy").out == printed.out, "the same config prints the same policy"


def _kms_key(aws: AwsLab):  # type: ignore[no-untyped-def]
    """IAM evaluates a KMS call on the key an alias names: ask moto which."""

    @cache
    def resolve(region: str, key_id: str) -> str:
        return str(aws.client("kms", region).describe_key(KeyId=key_id)["KeyMetadata"]["Arn"])

    return resolve


def test_config_without_aws_prints_an_empty_policy(workspace: Workspace) -> None:
    result = workspace.run("iam-policy")
    assert result.code == 0, result.text
    assert json.loads(result.out) == {"Version": "2012-10-17", "Statement": []}
    assert "this configuration makes no AWS call; the policy has no statement" in result.err


def test_bad_config_exits_1_with_the_usual_error(workspace: Workspace) -> None:
    text = EXAMPLE.replace("    key: rsa-2048\n", "    key: rsa-2048\n    colour: blue\n")
    workspace.write(text)
    line = text.splitlines().index("    colour: blue") + 1
    result = workspace.run("iam-policy")
    assert result.code == 1
    assert "Error: the configuration is invalid" in result.err
    assert f"certform.yaml:{line}" in result.err and "colour" in result.err
    assert result.out == "" and "Traceback" not in result.text


SHAPES = """\
providers:
  aws: {type: aws, region: cn-north-1}
  gov: {type: aws, region: us-gov-west-1}
  std: {type: aws, region: eu-west-1}
authorities:
  le:
    type: acme
    directory: https://acme.example.test/directory
    contact: [mailto:ops@example.test]
    terms_of_service_agreed: true
    solvers: [{dns01: {route53: {provider: aws, zone_id: /hostedzone/Z1}}}]
  ca:
    type: private-root
    subject: {common_name: Root}
    crl: {publish: {s3: {provider: gov, bucket: crls, key: "ca/{key_id}.crl"}},
          url: "http://crl.example.test/{key_id}.crl"}
certificates:
  web: {names: [web.example.test], issuer: le}
bindings:
  - certificate: web
    target: {type: aws-alb-listener, provider: gov, sni: true,
             load_balancer: "LB_ARN"}
  - certificate: web
    target: {type: aws-apigateway, provider: std, domain_name: api.example.test, endpoint: edge}
notifications:
  sinks: [{type: eventbridge, provider: aws, bus: "BUS_ARN"}]
state:
  key_store: {type: aws-kms, provider: aws,
              key_id: "KEY_ARN"}
"""
LB_ARN = (
    "arn:aws-us-gov:elasticloadbalancing:us-gov-west-1:111122223333:"
    "loadbalancer/net/edge/50dc6c495c0c9188"
)
BUS_ARN = "arn:aws-cn:events:cn-north-1:111122223333:event-bus/ops"
KEY_ARN = "arn:aws-cn:kms:cn-north-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def test_resources_follow_what_the_config_names(workspace: Workspace) -> None:
    """ARNs and ids given in the config, partitions, a zone id, {key_id}, an edge
    domain, the ACME TXT writer's read, and --cloudwatch without a block."""
    arns = {"LB_ARN": LB_ARN, "BUS_ARN": BUS_ARN, "KEY_ARN": KEY_ARN}
    workspace.write(re.sub("LB_ARN|BUS_ARN|KEY_ARN", lambda m: arns[m[0]], SHAPES))
    result = workspace.run("iam-policy", "--cloudwatch")
    assert result.code == 0, result.text
    grants = {
        action: (sorted(s["Resource"]), s.get("Condition"))
        for s in json.loads(result.out)["Statement"]
        for action in s["Action"]
    }
    assert grants["elasticloadbalancing:AddListenerCertificates"][0] == [
        "arn:aws-us-gov:elasticloadbalancing:us-gov-west-1:111122223333:listener/net/edge/"
        "50dc6c495c0c9188/*"
    ]
    assert grants["acm:ListTagsForCertificate"][0] == [
        "arn:aws-us-gov:acm:us-gov-west-1:*:certificate/*",
        "arn:aws:acm:us-east-1:*:certificate/*",  # the edge domain's copy
    ]
    assert grants["apigateway:PATCH"][0] == [
        "arn:aws:apigateway:eu-west-1::/domainnames/api.example.test"
    ]
    assert grants["cloudfront:UpdateDistribution"] == (["*"], None)
    assert grants["route53:ChangeResourceRecordSets"] == (
        ["arn:aws-cn:route53:::hostedzone/Z1"],
        {"ForAllValues:StringEquals": {"route53:ChangeResourceRecordSetsRecordTypes": "TXT"}},
    )
    assert grants["route53:ListResourceRecordSets"][0] == ["arn:aws-cn:route53:::hostedzone/Z1"]
    assert "route53:ListHostedZones" not in grants  # the zone id is given
    assert grants["s3:PutObject"][0] == ["arn:aws-us-gov:s3:::crls/ca/*.crl"]
    assert grants["events:PutEvents"][0] == [BUS_ARN]
    assert grants["kms:Decrypt"] == ([KEY_ARN], None)
    assert grants["cloudwatch:PutMetricData"][1] == {
        "StringEquals": {"cloudwatch:namespace": "certform"}
    }
    assert "acm:RequestCertificate" not in grants and "route53:GetChange" in grants
