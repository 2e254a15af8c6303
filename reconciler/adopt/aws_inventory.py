"""What ACM holds in one region and where each certificate is in use, read for
``certform import --from-aws`` (``aws_proposal.py`` turns it into YAML).

Read-only: ListCertificates / DescribeCertificate; the load balancers'
HTTPS and TLS listeners with their default and SNI certificates; CloudFront
distributions (only for us-east-1, the one region CloudFront takes certificates
from); API Gateway v1 and v2 custom domains.  A service that cannot be read
(no permission, say) is a note, and the rest is still proposed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from reconciler.errors import CertformError
from reconciler.providers.aws.acm import ALL_KEY_TYPES
from reconciler.providers.aws.cloudfront import CLOUDFRONT_REGION

ACM_KEYS = {
    "RSA_2048": "rsa-2048",
    "RSA_3072": "rsa-3072",
    "RSA_4096": "rsa-4096",
    "EC_prime256v1": "ec-p256",
    "EC_secp384r1": "ec-p384",
}
"""ACM's key algorithm names -> certform's (the ones certform can declare)."""


@dataclass(frozen=True)
class AcmCertificate:
    arn: str
    kind: str
    """AMAZON_ISSUED, IMPORTED or PRIVATE."""
    status: str
    names: list[str]
    key: str | None
    """certform's name of the key algorithm; None for one it cannot declare."""
    not_after: datetime | None


@dataclass(frozen=True)
class Usage:
    """One place serving an ACM certificate, as the target settings of a binding."""

    arn: str
    target: dict[str, Any]


@dataclass
class Inventory:
    certificates: list[AcmCertificate] = field(default_factory=list)
    usages: list[Usage] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def read_inventory(provider: Any, region: str, provider_name: str) -> Inventory:
    """Every ACM certificate of ``region`` and its uses (targets name ``provider_name``)."""
    from reconciler.providers.aws.session import client

    inventory = Inventory()

    def connect(service: str, where: str = region) -> Any:
        return client(provider, service, where)

    _guarded(inventory, "ACM", lambda: _certificates(connect("acm"), inventory))
    readers: list[tuple[str, Callable[[], Iterator[Usage]]]] = [
        ("Elastic Load Balancing", lambda: _listeners(connect("elbv2"), provider_name)),
        ("API Gateway", lambda: _rest_domains(connect("apigateway"), provider_name)),
        ("API Gateway v2", lambda: _http_domains(connect("apigatewayv2"), provider_name)),
    ]
    if region == CLOUDFRONT_REGION:
        readers.append(("CloudFront", lambda: _distributions(connect("cloudfront"), provider_name)))
    known = {c.arn for c in inventory.certificates}
    domains: set[str] = set()
    for service, read in readers:

        def collect(read: Callable[[], Iterator[Usage]] = read) -> None:
            for usage in read():
                domain = usage.target.get("domain_name")
                if usage.arn in known and domain not in domains:
                    inventory.usages.append(usage)
                    domains.update([domain] if domain else [])

        _guarded(inventory, service, collect)
    return inventory


def _guarded(inventory: Inventory, service: str, read: Callable[[], None]) -> None:
    from botocore.exceptions import BotoCoreError, ClientError

    from reconciler.providers.aws.session import describe_error

    try:
        read()
    except (ClientError, BotoCoreError, CertformError) as exc:
        inventory.notes.append(f"could not read {service}: {describe_error(exc)}")


def _certificates(acm: Any, inventory: Inventory) -> None:
    pages = acm.get_paginator("list_certificates").paginate(Includes={"keyTypes": ALL_KEY_TYPES})
    for page in pages:
        for summary in page.get("CertificateSummaryList", []):
            arn = summary["CertificateArn"]
            detail = acm.describe_certificate(CertificateArn=arn)["Certificate"]
            domain = str(detail.get("DomainName", "")).lower()
            sans = [str(n).lower() for n in detail.get("SubjectAlternativeNames") or []]
            names = ([domain] if domain else []) + [n for n in sans if n != domain]
            inventory.certificates.append(
                AcmCertificate(
                    arn,
                    str(detail.get("Type")),
                    str(detail.get("Status")),
                    names,
                    ACM_KEYS.get(str(detail.get("KeyAlgorithm"))),
                    detail.get("NotAfter"),
                )
            )


def _listeners(elb: Any, provider: str) -> Iterator[Usage]:
    for page in elb.get_paginator("describe_load_balancers").paginate():
        for balancer in page["LoadBalancers"]:
            listeners = elb.get_paginator("describe_listeners").paginate(
                LoadBalancerArn=balancer["LoadBalancerArn"]
            )
            for listener in (item for p in listeners for item in p["Listeners"]):
                if listener.get("Protocol") not in ("HTTPS", "TLS"):
                    continue
                served = elb.get_paginator("describe_listener_certificates").paginate(
                    ListenerArn=listener["ListenerArn"]
                )
                for certificate in (item for p in served for item in p["Certificates"]):
                    target: dict[str, Any] = {
                        "type": "aws-alb-listener",
                        "provider": provider,
                        "load_balancer": balancer["LoadBalancerName"],
                        "port": listener["Port"],
                    }
                    if not certificate.get("IsDefault"):
                        target["sni"] = True
                    yield Usage(certificate["CertificateArn"], target)


def _distributions(cloudfront: Any, provider: str) -> Iterator[Usage]:
    for page in cloudfront.get_paginator("list_distributions").paginate():
        for distribution in page.get("DistributionList", {}).get("Items", []) or []:
            viewer = distribution.get("ViewerCertificate")
            if viewer is None:  # AWS lists it in the summary; moto only in the config
                answer = cloudfront.get_distribution_config(Id=distribution["Id"])
                viewer = answer["DistributionConfig"].get("ViewerCertificate") or {}
            arn = viewer.get("ACMCertificateArn")
            if not arn:
                continue
            target: dict[str, Any] = {
                "type": "aws-cloudfront",
                "provider": provider,
                "distribution_id": distribution["Id"],
            }
            # Only what differs from the target's defaults, so the YAML stays short
            # and the plan sees the distribution as it is.
            if viewer.get("MinimumProtocolVersion", "TLSv1.2_2021") != "TLSv1.2_2021":
                target["minimum_protocol_version"] = viewer["MinimumProtocolVersion"]
            if viewer.get("SSLSupportMethod", "sni-only") != "sni-only":
                target["ssl_support_method"] = viewer["SSLSupportMethod"]
            yield Usage(arn, target)


def _rest_domains(gateway: Any, provider: str) -> Iterator[Usage]:
    for page in gateway.get_paginator("get_domain_names").paginate():
        for domain in page.get("items", []):
            types = (domain.get("endpointConfiguration") or {}).get("types") or ["EDGE"]
            endpoint = "regional" if types[0] == "REGIONAL" else "edge"
            arn = domain.get(
                "regionalCertificateArn" if endpoint == "regional" else "certificateArn"
            )
            if arn:
                yield Usage(
                    arn,
                    {
                        "type": "aws-apigateway",
                        "provider": provider,
                        "domain_name": domain["domainName"],
                        "endpoint": endpoint,
                    },
                )


def _http_domains(gateway: Any, provider: str) -> Iterator[Usage]:
    for page in gateway.get_paginator("get_domain_names").paginate():
        for domain in page.get("Items", []):
            for configuration in domain.get("DomainNameConfigurations", []):
                if configuration.get("EndpointType", "REGIONAL") == "REGIONAL":
                    arn = configuration.get("CertificateArn")
                    if arn:
                        yield Usage(
                            arn,
                            {
                                "type": "aws-apigateway",
                                "provider": provider,
                                "domain_name": domain["DomainName"],
                                "endpoint": "regional",
                                "api": "v2",
                            },
                        )
