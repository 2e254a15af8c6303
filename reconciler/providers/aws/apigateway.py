"""``aws-apigateway``: the certificate of an API Gateway custom domain name.

The custom domain itself (its API mappings, base paths, DNS alias) is managed
elsewhere; certform only keeps its certificate current.  Where the certificate
lives depends on the endpoint:

* ``endpoint: edge`` (API v1 only): served by CloudFront, so the certificate
  must be in ACM **us-east-1** whatever the provider's region; the domain
  references it as ``certificateArn``.
* ``endpoint: regional``: ACM in the provider's region; API v1 references it as
  ``regionalCertificateArn``, API v2 (HTTP and WebSocket APIs) as
  ``DomainNameConfigurations[].CertificateArn``.

Renewal never touches the domain: the certificate is re-imported into the same
ACM ARN (the one recorded last time, else the one tagged with the certificate's
address), so the domain keeps serving that ARN and picks the new certificate
up by itself.  UpdateDomainName is called only when the domain references
another ARN: the first bind, or repairing drift (a certificate swapped or
deleted by hand).  The request it sends is built by :func:`update_request`.

Observe reads the domain (GetDomainName) and the ACM certificate: another ARN
on the domain, an ARN that holds another serial, or an ARN that is gone is
drift; a domain that does not exist is missing.

Remove leaves the domain's certificate in place: a custom domain cannot exist
without one, so it keeps serving the last certificate until another binding
(or whoever owns the domain) replaces it.  The ACM certificate is not deleted
either, since the domain still references it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from reconciler.config.types import EntryName, StrictModel
from reconciler.errors import ProviderError
from reconciler.model.material import CertificateMaterial
from reconciler.model.observed import Facts, Missing
from reconciler.providers.aws import acm
from reconciler.providers.aws.config import AwsProviderConfig
from reconciler.providers.aws.iam import Statement, partition
from reconciler.providers.aws.session import aws_errors, client, error_code

EDGE_REGION = "us-east-1"
"""Edge-optimized domains are served by CloudFront, which reads ACM in us-east-1 only."""

# Edge-optimized domains follow CloudFront: RSA 2048-4096 and ECDSA P-256.
EDGE_KEYS = frozenset({"rsa-2048", "rsa-3072", "rsa-4096", "ec-p256"})
# Regional domains follow ACM in the region: RSA 2048-4096, ECDSA P-256 and P-384.
REGIONAL_KEYS = frozenset({"rsa-2048", "rsa-3072", "rsa-4096", "ec-p256", "ec-p384"})

_DOMAIN = re.compile(r"^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{2,63}$")

# Settings of a v2 domain configuration that an update must carry over unchanged
# (UpdateDomainName replaces the whole configuration).  The others in the shape
# are read-only (status, hosted zone, gateway name) or describe the old
# certificate (name, upload date).
_V2_KEPT = (
    "EndpointType",
    "SecurityPolicy",
    "IpAddressType",
    "OwnershipVerificationCertificateArn",
)


class ApiGatewayTargetConfig(StrictModel):
    """An existing API Gateway custom domain name whose certificate certform keeps current."""

    type: Literal["aws-apigateway"]
    provider: EntryName = Field(description="Name of an `aws` entry under providers.")
    domain_name: str = Field(
        min_length=1,
        max_length=253,
        description="The custom domain name, e.g. api.example.com (it must exist).",
    )
    endpoint: Literal["edge", "regional"] = Field(
        description="The domain's endpoint type: edge (certificate in ACM us-east-1) or "
        "regional (certificate in the provider's region)."
    )
    api: Literal["v1", "v2"] = Field(
        default="v1",
        description="API Gateway API the domain is managed with: v1 (REST APIs) or "
        "v2 (HTTP and WebSocket APIs; regional only).",
    )

    @field_validator("domain_name")
    @classmethod
    def _dns_name(cls, value: str) -> str:
        if not _DOMAIN.match(value):
            raise ValueError(
                f"{value!r} is not a lowercase DNS name such as api.example.com "
                "(a wildcard *.example.com is allowed)"
            )
        return value

    @model_validator(mode="after")
    def _v2_is_regional(self) -> ApiGatewayTargetConfig:
        if self.api == "v2" and self.endpoint == "edge":
            raise ValueError(
                "API Gateway v2 custom domains are regional only: use endpoint: regional, "
                "or api: v1 for an edge-optimized domain"
            )
        return self


def endpoint_type(domain: Mapping[str, Any], api: str) -> str:
    """EDGE, REGIONAL or PRIVATE: the endpoint type of a GetDomainName answer."""
    if api == "v2":
        types = [
            c.get("EndpointType", "REGIONAL") for c in domain.get("DomainNameConfigurations", [])
        ]
        return "REGIONAL" if not types or "REGIONAL" in types else str(types[0])
    types_v1 = domain.get("endpointConfiguration", {}).get("types") or ["EDGE"]
    return str(types_v1[0])


def referenced_arn(domain: Mapping[str, Any], api: str, endpoint: str) -> str | None:
    """The ACM ARN a GetDomainName answer says the domain serves for ``endpoint``."""
    if api == "v2":
        for configuration in domain.get("DomainNameConfigurations", []):
            if configuration.get("EndpointType", "REGIONAL") == "REGIONAL":
                return configuration.get("CertificateArn")
        return None
    return domain.get("certificateArn" if endpoint == "edge" else "regionalCertificateArn")


def update_request(
    config: ApiGatewayTargetConfig, arn: str, domain: Mapping[str, Any]
) -> dict[str, Any]:
    """The UpdateDomainName arguments that point ``config``'s domain at ``arn``.

    v1 patches the one certificate field of the endpoint.  v2 replaces the domain's
    configurations, so each one is sent back with its settings kept (security
    policy, mutual TLS ownership certificate, IP address type) and the regional
    one's certificate replaced.  ``domain`` is the current GetDomainName answer.
    """
    if config.api == "v1":
        path = "/certificateArn" if config.endpoint == "edge" else "/regionalCertificateArn"
        return {
            "domainName": config.domain_name,
            "patchOperations": [{"op": "replace", "path": path, "value": arn}],
        }
    configurations = []
    for current in domain.get("DomainNameConfigurations") or [{"EndpointType": "REGIONAL"}]:
        kept = {key: current[key] for key in _V2_KEPT if current.get(key)}
        kept.setdefault("EndpointType", "REGIONAL")
        if kept["EndpointType"] == "REGIONAL":
            kept["CertificateArn"] = arn
        elif current.get("CertificateArn"):
            kept["CertificateArn"] = current["CertificateArn"]
        configurations.append(kept)
    return {"DomainName": config.domain_name, "DomainNameConfigurations": configurations}


def _arn_region(arn: str) -> str | None:
    parts = arn.split(":")
    return parts[3] if len(parts) > 5 and parts[2] == "acm" else None


class ApiGatewayTarget(acm.AcmCopyTarget):
    """Keeps the certificate of one API Gateway custom domain name current."""

    type_name = "aws-apigateway"
    provider_type = "aws"
    config: ApiGatewayTargetConfig
    provider: AwsProviderConfig

    def identity(self) -> str:
        return f"{self.config.provider}/{self.config.domain_name}"

    def compatibility_error(self, key_algorithm: str) -> str | None:
        if self.config.endpoint == "edge" and key_algorithm not in EDGE_KEYS:
            return (
                f"edge-optimized API Gateway domains (served by CloudFront) cannot serve "
                f"{key_algorithm} certificates (accepted: {', '.join(sorted(EDGE_KEYS))})"
            )
        if key_algorithm not in REGIONAL_KEYS:
            return (
                f"regional API Gateway domains cannot serve {key_algorithm} certificates "
                f"(accepted: {', '.join(sorted(REGIONAL_KEYS))})"
            )
        return None

    def acm_region(self) -> str | None:
        return (
            EDGE_REGION
            if self.config.endpoint == "edge"
            else getattr(self.provider, "region", None)
        )

    # -- IAM: what the calls below need -------------------------------------------
    def iam_statements(self) -> list[Statement]:
        """GetDomainName is ``apigateway:GET`` and UpdateDomainName ``apigateway:PATCH``
        on the domain name, whose IAM resource is ``/domainnames/NAME`` for both API
        versions.  Updating an edge-optimized domain's certificate also updates the
        CloudFront distribution API Gateway owns (in its own account, so that
        permission cannot name it: AWS documents ``Resource: *``)."""
        region = self.provider.region
        domain = (
            f"arn:{partition(region)}:apigateway:{region}::/domainnames/{self.config.domain_name}"
        )
        statements = [
            Statement.of("ApiGatewayDomainNames", ["apigateway:GET", "apigateway:PATCH"], [domain])
        ]
        if self.config.endpoint == "edge":
            statements.append(
                Statement.of(
                    "ApiGatewayEdgeDistributions", ["cloudfront:UpdateDistribution"], ["*"]
                )
            )
        return statements + acm.copy_statements(self.acm_region() or region)

    # -- AWS calls ----------------------------------------------------------------
    @property
    def _service(self) -> str:
        return "apigateway" if self.config.api == "v1" else "apigatewayv2"

    @property
    def _where(self) -> str:
        return f"API Gateway {self.config.api} domain {self.config.domain_name}"

    def _gateway(self) -> Any:
        return client(self.provider, self._service)

    def _acm(self) -> Any:
        return client(self.provider, "acm", self.acm_region())

    def _endpoint_key(self) -> tuple[str, str | None, str | None]:
        return (self.provider.region, self.provider.endpoint_url, self.provider.profile)

    def _domain(self) -> dict[str, Any]:
        """The GetDomainName answer; Missing when there is no such domain."""
        gateway = self._gateway()
        try:
            if self.config.api == "v1":
                answer = gateway.get_domain_name(domainName=self.config.domain_name)
            else:
                answer = gateway.get_domain_name(DomainName=self.config.domain_name)
        except Exception as exc:
            if error_code(exc) == "NotFoundException":
                raise Missing(f"{self._where} not found in {self.provider.region}") from None
            raise
        return dict(answer)

    def _endpoint_mismatch(self, domain: Mapping[str, Any]) -> str | None:
        actual = endpoint_type(domain, self.config.api)
        if actual != self.config.endpoint.upper():
            return (
                f"{self._where} is a {actual} endpoint, not {self.config.endpoint.upper()} "
                f"(set endpoint: {actual.lower()} if that is intended)"
            )
        return None

    # -- contract -----------------------------------------------------------------
    def read(self, facts: Facts) -> tuple[dict[str, Any], list[str]]:
        """The domain (GetDomainName), and the drift of the ACM copy it should serve."""
        with aws_errors(f"reading {self._where}", reading=True):
            domain = self._domain()
            arn = facts.get("certificate_arn")
            copy_problems = acm.copy_drift(self._acm, self._endpoint_key(), arn, facts)
        return domain, copy_problems

    def compare(self, seen: tuple[dict[str, Any], list[str]], facts: Facts) -> list[str]:
        domain, copy_problems = seen
        arn = facts.get("certificate_arn")
        problems = []
        mismatch = self._endpoint_mismatch(domain)
        if mismatch:
            problems.append(mismatch)
        served = referenced_arn(domain, self.config.api, self.config.endpoint)
        if served != arn:
            problems.append(f"{self._where} serves {served} instead of {arn}")
        return problems + copy_problems

    def deploy(
        self, material: CertificateMaterial, previous: Facts | None, snapshot: Any = None
    ) -> Facts:
        # Check the domain before importing anything: a missing domain or a wrong
        # endpoint type changes nothing.
        domain = self._existing_domain()
        arn = acm.place(self._acm(), material, (previous or {}).get("certificate_arn"))
        if referenced_arn(domain, self.config.api, self.config.endpoint) != arn:
            request = update_request(self.config, arn, domain)
            with aws_errors(f"updating {self._where} to use {arn}"):
                self._gateway().update_domain_name(**request)
        return {
            "region": self.provider.region,
            "domain_name": self.config.domain_name,
            "certificate_arn": arn,
            "serial": material.serial,
        }

    def _existing_domain(self) -> dict[str, Any]:
        try:
            with aws_errors(f"reading {self._where}"):
                domain = self._domain()
        except Missing as exc:
            raise ProviderError(
                f"{exc}: certform binds certificates to existing custom domains; "
                "create the domain first"
            ) from None
        mismatch = self._endpoint_mismatch(domain)
        if mismatch:
            raise ProviderError(mismatch)
        return domain

    def remove(self, facts: Facts) -> bool:
        """Leave the domain as it is.

        A custom domain cannot exist without a certificate, so the last one
        deployed stays (and its ACM certificate with it, as the domain references
        it) until another binding, or the domain's owner, replaces it."""
        return False
