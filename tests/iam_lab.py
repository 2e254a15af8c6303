"""What an AWS request needs from IAM, and whether a policy allows it: the lab side of
``certform iam-policy``'s test.

``permissions(request)`` turns one HTTP request that bench/aws.py's CountingProxy
forwarded to moto into the IAM permissions it needs: ``(action, resource)`` pairs,
the action from the SigV4 scope plus ``X-Amz-Target``, ``Action`` or the REST path
(the service authorization reference's mapping), the resource from the request's
parameters (``*`` for actions without resource-level permissions).  Besides the
call's own action, some calls need others that AWS checks implicitly; they are
added here, each with its reason:

* ImportCertificate / RequestCertificate with ``Tags``: ``acm:AddTagsToCertificate``;
* HeadObject is ``s3:GetObject``; answered 404, it also needed ``s3:ListBucket``
  on the bucket (S3 answers 403 without it).

``allows(policy, action, resource)``: an Allow statement whose Action and Resource
patterns match (``*`` and ``?`` wildcards, actions case-insensitively).  Conditions
are not evaluated (the proxy cannot know resource tags or aliases as IAM sees
them): the test checks actions and resources, the conditions are reviewed in
``tests/test_aws_iam_policy.py``'s exact expectations.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any

from reconciler.providers.aws.iam_policy import arn_matches

ACCOUNT = "123456789012"
"""moto's default account."""

_SCOPE = re.compile(r"Credential=[^/]+/\d{8}/([^/]+)/([^/]+)/aws4_request")
_PREFIX = {"monitoring": "cloudwatch"}
"""SigV4 signing name -> IAM service prefix, where they differ."""

Permission = tuple[str, str]


def permissions(
    method: str,
    path: str,
    headers: Mapping[str, str],
    body: bytes,
    status: int,
    kms_key: Callable[[str, str], str],
) -> list[Permission]:
    """The IAM permissions one request needed.  ``kms_key(region, key_id)``: the
    key ARN a KeyId (an alias) names, as IAM evaluates KMS calls on the key."""
    headers = {k.lower(): v for k, v in headers.items()}
    scope = _SCOPE.search(headers.get("authorization", ""))
    if scope is None:
        raise AssertionError(f"unsigned request {method} {path}")
    region, service = scope.group(1), scope.group(2)
    prefix = _PREFIX.get(service, service)
    url = urllib.parse.urlsplit(path)
    target = headers.get("x-amz-target")
    if target:  # JSON protocol: acm, kms, events
        data = json.loads(body or b"{}")
        return _json_call(prefix, target.rsplit(".", 1)[-1], data, region, kms_key)
    query = dict(urllib.parse.parse_qsl(body.decode(errors="replace")))
    query |= dict(urllib.parse.parse_qsl(url.query))
    if "Action" in query:  # query protocol: elasticloadbalancing, cloudwatch
        return [(f"{prefix}:{query['Action']}", _query_resource(query))]
    if "/operation/" in url.path:  # RPC v2 CBOR (cloudwatch in newer botocore)
        return [(f"{prefix}:{url.path.rsplit('/', 1)[-1]}", "*")]
    return _rest_call(prefix, method, urllib.parse.unquote(url.path), status, region)


def _json_call(
    prefix: str,
    operation: str,
    data: dict[str, Any],
    region: str,
    kms_key: Callable[[str, str], str],
) -> list[Permission]:
    action = f"{prefix}:{operation}"
    if prefix == "acm":
        arn = data.get("CertificateArn") or (
            f"arn:aws:acm:{region}:{ACCOUNT}:certificate/new" if "Create" in operation
            or operation in ("ImportCertificate", "RequestCertificate") else "*"
        )  # fmt: skip
        found = [(action, arn)]
        if data.get("Tags") and operation in ("ImportCertificate", "RequestCertificate"):
            found.append(("acm:AddTagsToCertificate", arn))
        return found
    if prefix == "acm-pca":
        arn = data.get("CertificateAuthorityArn") or (
            f"arn:aws:acm-pca:{region}:{ACCOUNT}:certificate-authority/new"
            if operation == "CreateCertificateAuthority" else "*"
        )  # fmt: skip
        found = [(action, arn)]
        if data.get("Tags") and operation == "CreateCertificateAuthority":
            found.append(("acm-pca:TagCertificateAuthority", arn))
        return found
    if prefix == "kms":
        return [(action, kms_key(region, data["KeyId"]))]
    if prefix == "events":
        buses = {e.get("EventBusName", "default") for e in data["Entries"]}
        return [
            (
                action,
                b if b.startswith("arn:") else f"arn:aws:events:{region}:{ACCOUNT}:event-bus/{b}",
            )
            for b in sorted(buses)
        ]
    return [(action, "*")]


def _query_resource(query: Mapping[str, str]) -> str:
    for key in ("ListenerArn", "LoadBalancerArn"):
        if key in query:
            return query[key]
    return "*"


_CLOUDFRONT = re.compile(r"^/\d{4}-\d\d-\d\d/distribution/([^/]+)/config$")
_DOMAIN = re.compile(r"^(?:/v2)?/domainnames/([^/]+)$")
_ZONE = re.compile(r"^/\d{4}-\d\d-\d\d/hostedzone(?:/([^/]+)(/rrset)?)?/?$")
_CHANGE = re.compile(r"^/\d{4}-\d\d-\d\d/change/([^/]+)$")


def _rest_call(prefix: str, method: str, path: str, status: int, region: str) -> list[Permission]:
    if prefix == "cloudfront" and (match := _CLOUDFRONT.match(path)):
        action = {"GET": "GetDistributionConfig", "PUT": "UpdateDistribution"}[method]
        return [(f"cloudfront:{action}", f"arn:aws:cloudfront::{ACCOUNT}:distribution/{match[1]}")]
    if prefix == "apigateway" and (match := _DOMAIN.match(path)):
        return [(f"apigateway:{method}", f"arn:aws:apigateway:{region}::/domainnames/{match[1]}")]
    if prefix == "route53" and (match := _ZONE.match(path)):
        if match[1] is None:
            return [("route53:ListHostedZones", "*")]
        zone = f"arn:aws:route53:::hostedzone/{match[1]}"
        action = {"POST": "ChangeResourceRecordSets", "GET": "ListResourceRecordSets"}[method]
        return [(f"route53:{action}", zone)]
    if prefix == "route53" and (match := _CHANGE.match(path)):
        return [("route53:GetChange", f"arn:aws:route53:::change/{match[1]}")]
    if prefix == "s3":
        bucket, _, key = path.lstrip("/").partition("/")
        if key:
            action = {"GET": "GetObject", "HEAD": "GetObject", "PUT": "PutObject"}[method]
            found = [(f"s3:{action}", f"arn:aws:s3:::{bucket}/{key}")]
            if method == "HEAD" and status == 404:
                found.append(("s3:ListBucket", f"arn:aws:s3:::{bucket}"))
            return found
    raise AssertionError(f"unknown {prefix} request {method} {path}: teach tests/iam_lab.py")


def allows(policy: Mapping[str, Any], action: str, resource: str) -> bool:
    """True when an Allow statement matches ``action`` and ``resource`` (no condition
    is evaluated)."""
    for statement in policy["Statement"]:
        if statement["Effect"] != "Allow":
            continue
        actions = _list(statement["Action"])
        if not any(arn_matches(a.lower(), action.lower()) for a in actions):
            continue
        if any(arn_matches(r, resource) for r in _list(statement["Resource"])):
            return True
    return False


def policy_actions(policy: Mapping[str, Any]) -> set[str]:
    return {a for s in policy["Statement"] for a in _list(s["Action"])}


def _list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)
