"""``aws-cloudfront``: the viewer certificate of one CloudFront distribution.

CloudFront only serves ACM certificates held in us-east-1, whatever region the
provider names: deploy always imports there (re-importing into the same ARN on
renewal, so the distribution itself is untouched by a renewal) and points the
distribution's ``ViewerCertificate`` at that ARN with the configured SSL support
method and minimum protocol version (GetDistributionConfig, then
UpdateDistribution with ``IfMatch`` set to the ETag just read).

Observe reads the distribution's config and the ACM certificate: another ARN
(or CloudFront's default certificate) swapped in by hand, a changed minimum
protocol version or SSL support method, or an ARN re-imported or deleted by
hand, is drift.  A deleted distribution is missing.
"""

from __future__ import annotations

from typing import Any, Literal

from cryptography import x509
from pydantic import Field

from reconciler.config.types import EntryName, StrictModel
from reconciler.errors import ProviderError
from reconciler.model.material import CertificateMaterial
from reconciler.model.observed import Facts, Missing
from reconciler.providers.aws import acm
from reconciler.providers.aws.config import AwsProviderConfig
from reconciler.providers.aws.iam import Statement, partition
from reconciler.providers.aws.session import aws_errors, client, error_code
from reconciler.providers.batch import memo

CLOUDFRONT_REGION = "us-east-1"
"""CloudFront takes ACM certificates from this region only."""

# Certificates imported into ACM for CloudFront: RSA 2048-4096 or ECDSA P-256.
CLOUDFRONT_KEYS = frozenset({"rsa-2048", "rsa-3072", "rsa-4096", "ec-p256"})

MinimumProtocolVersion = Literal[
    "TLSv1",
    "TLSv1_2016",
    "TLSv1.1_2016",
    "TLSv1.2_2018",
    "TLSv1.2_2019",
    "TLSv1.2_2021",
    "TLSv1.2_2025",
    "TLSv1.3_2025",
]

# How often UpdateDistribution is retried when someone else changed the
# distribution between our read and our write (PreconditionFailed on IfMatch).
UPDATE_ATTEMPTS = 3


class CloudFrontTargetConfig(StrictModel):
    """The viewer certificate of a CloudFront distribution."""

    type: Literal["aws-cloudfront"]
    provider: EntryName = Field(description="Name of an `aws` entry under providers.")
    distribution_id: str = Field(
        pattern=r"^[A-Z0-9]{1,128}$", description="Distribution ID, e.g. E2QWRUHEXAMPLE."
    )
    minimum_protocol_version: MinimumProtocolVersion = Field(
        default="TLSv1.2_2021",
        description="Oldest TLS version (and ciphers) CloudFront accepts from viewers.",
    )
    ssl_support_method: Literal["sni-only", "vip"] = Field(
        default="sni-only",
        description="sni-only (every modern client), or vip (dedicated IP addresses, "
        "billed by AWS).",
    )


def _region_of(arn: str) -> str:
    parts = arn.split(":")
    return parts[3] if len(parts) > 3 else ""


def _covers(names: list[str], alias: str) -> bool:
    """True when a certificate with DNS ``names`` is valid for ``alias``."""
    alias = alias.lower().rstrip(".")
    for name in (n.lower().rstrip(".") for n in names):
        if name == alias:
            return True
        if name.startswith("*.") and not alias.startswith("*."):
            head, _, rest = alias.partition(".")
            if head and rest == name[2:]:
                return True
    return False


def _dns_names(certificate_pem: str) -> list[str]:
    certificate = x509.load_pem_x509_certificate(certificate_pem.encode())
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return list(san.value.get_values_for_type(x509.DNSName))


class CloudFrontTarget(acm.AcmCopyTarget):
    """Serves one certificate as the viewer certificate of one distribution."""

    type_name = "aws-cloudfront"
    provider_type = "aws"
    config: CloudFrontTargetConfig
    provider: AwsProviderConfig

    def identity(self) -> str:
        return f"{self.config.provider}/{self.config.distribution_id}"

    def compatibility_error(self, key_algorithm: str) -> str | None:
        if key_algorithm not in CLOUDFRONT_KEYS:
            return (
                f"CloudFront distributions cannot serve {key_algorithm} certificates "
                "(imported certificates must be RSA 2048, 3072 or 4096, or ECDSA P-256; "
                f"accepted: {', '.join(sorted(CLOUDFRONT_KEYS))})"
            )
        return None

    # -- IAM: what the calls below need -------------------------------------------
    def iam_statements(self) -> list[Statement]:
        """The distribution's config, read and updated; the ACM copy in us-east-1."""
        where = partition(self.provider.region)
        distribution = f"arn:{where}:cloudfront::*:distribution/{self.config.distribution_id}"
        actions = ["cloudfront:GetDistributionConfig", "cloudfront:UpdateDistribution"]
        return [
            Statement.of("CloudFrontDistributions", actions, [distribution]),
            *acm.copy_statements(CLOUDFRONT_REGION),
        ]

    # -- AWS calls ----------------------------------------------------------------
    def _cloudfront(self) -> Any:
        return client(self.provider, "cloudfront", CLOUDFRONT_REGION)

    def _acm(self) -> Any:
        # Never the provider's region: CloudFront only sees us-east-1 certificates.
        return client(self.provider, "acm", CLOUDFRONT_REGION)

    def _endpoint_key(self) -> tuple[str, str | None, str | None]:
        return (CLOUDFRONT_REGION, self.provider.endpoint_url, self.provider.profile)

    def _distribution_config(self) -> tuple[dict[str, Any], str]:
        """The distribution's config and its ETag; Missing when gone."""
        try:
            response = self._cloudfront().get_distribution_config(Id=self.config.distribution_id)
        except Exception as exc:
            if error_code(exc) == "NoSuchDistribution":
                raise Missing(f"distribution {self.config.distribution_id} not found") from None
            raise
        return response["DistributionConfig"], str(response["ETag"])

    def _wanted_viewer_certificate(self, arn: str) -> dict[str, Any]:
        # A fresh dict: IAMCertificateId must go, and the deprecated
        # Certificate/CertificateSource pair is derived by CloudFront.
        return {
            "CloudFrontDefaultCertificate": False,
            "ACMCertificateArn": arn,
            "SSLSupportMethod": self.config.ssl_support_method,
            "MinimumProtocolVersion": self.config.minimum_protocol_version,
        }

    def _differences(self, viewer: dict[str, Any], arn: str | None) -> list[str]:
        """How the distribution's ViewerCertificate differs from what we deploy.

        Reads the ARN, never CloudFrontDefaultCertificate/CertificateSource (some
        endpoints report those flags even when an ACM certificate is set)."""
        distribution = self.config.distribution_id
        problems = []
        served = viewer.get("ACMCertificateArn") or None
        if served != arn:
            if served is None and viewer.get("IAMCertificateId"):
                served = f"IAM certificate {viewer['IAMCertificateId']}"
            elif served is None:
                served = "the CloudFront default certificate"
            problems.append(f"distribution {distribution} serves {served} instead of {arn}")
        version = viewer.get("MinimumProtocolVersion")
        if version != self.config.minimum_protocol_version:
            problems.append(
                f"distribution {distribution} has minimum protocol version {version}, "
                f"not {self.config.minimum_protocol_version}"
            )
        method = viewer.get("SSLSupportMethod")
        if method != self.config.ssl_support_method:
            problems.append(
                f"distribution {distribution} has SSL support method {method}, "
                f"not {self.config.ssl_support_method}"
            )
        return problems

    def _check_aliases(self, config: dict[str, Any], material: CertificateMaterial) -> None:
        """CloudFront refuses a certificate that does not cover every alias (CNAME)."""
        aliases = (config.get("Aliases") or {}).get("Items") or []
        names = _dns_names(material.certificate_pem)
        uncovered = [alias for alias in aliases if not _covers(names, alias)]
        if uncovered:
            raise ProviderError(
                f"distribution {self.config.distribution_id} has aliases "
                f"{', '.join(uncovered)} that {material.address} does not cover "
                f"(its names: {', '.join(names) or 'none'}); CloudFront requires a "
                "certificate valid for every alias"
            )

    def _point_at(self, arn: str, config: dict[str, Any], etag: str) -> None:
        """Point the distribution at ``arn`` unless it already serves it as configured.

        UpdateDistribution carries the ETag just read (IfMatch): if someone
        changed the distribution in between, read it again and retry."""
        for attempt in range(UPDATE_ATTEMPTS):
            if not self._differences(config.get("ViewerCertificate") or {}, arn):
                return
            config["ViewerCertificate"] = self._wanted_viewer_certificate(arn)
            try:
                self._cloudfront().update_distribution(
                    Id=self.config.distribution_id, IfMatch=etag, DistributionConfig=config
                )
                return
            except Exception as exc:
                if error_code(exc) != "PreconditionFailed" or attempt + 1 == UPDATE_ATTEMPTS:
                    raise
            config, etag = self._distribution_config()

    def acm_region(self) -> str | None:
        return CLOUDFRONT_REGION

    # -- contract -----------------------------------------------------------------
    def read(self, facts: Facts) -> tuple[dict[str, Any], list[str]]:
        """The distribution's config, and the drift of the ACM copy it should serve."""
        arn = facts.get("certificate_arn")
        distribution = self.config.distribution_id
        with aws_errors(f"observing distribution {distribution}", reading=True):
            config, _ = memo(
                ("cloudfront-config", self._endpoint_key(), distribution),
                self._distribution_config,
            )
            in_region = arn if arn and _region_of(arn) == CLOUDFRONT_REGION else None
            copy_problems = acm.copy_drift(self._acm, self._endpoint_key(), in_region, facts)
        return config, copy_problems

    def compare(self, seen: tuple[dict[str, Any], list[str]], facts: Facts) -> list[str]:
        config, copy_problems = seen
        arn = facts.get("certificate_arn")
        problems = self._differences(config.get("ViewerCertificate") or {}, arn)
        if arn and _region_of(arn) != CLOUDFRONT_REGION:
            problems.append(f"ACM certificate {arn} is not in {CLOUDFRONT_REGION}")
        else:
            problems += copy_problems
        return problems

    def deploy(
        self, material: CertificateMaterial, previous: Facts | None, snapshot: Any = None
    ) -> Facts:
        distribution = self.config.distribution_id
        # Read the distribution first: a missing one or an alias the certificate
        # does not cover fails before anything is imported.
        try:
            with aws_errors(f"reading distribution {distribution}"):
                config, etag = self._distribution_config()
        except Missing as exc:
            raise ProviderError(str(exc)) from None
        self._check_aliases(config, material)

        arn = acm.place(self._acm(), material, (previous or {}).get("certificate_arn"))

        try:
            with aws_errors(f"updating distribution {distribution}"):
                self._point_at(arn, config, etag)
        except Missing as exc:
            raise ProviderError(str(exc)) from None
        return {
            "region": CLOUDFRONT_REGION,
            "distribution_id": distribution,
            "certificate_arn": arn,
            "serial": material.serial,
        }

    def remove(self, facts: Facts) -> bool:
        """Leave the distribution and its certificate as they are.

        A distribution with aliases cannot do without a certificate that covers
        them, and reverting to CloudFront's default certificate would break every
        alias; so removing the binding only stops certform from managing it (the
        ACM certificate stays in us-east-1, as for load balancers).  Not even an
        alias-less distribution is reverted: bindings are applied before
        unbindings, so another binding (the same certificate under a renamed
        provider, say) may have pointed this distribution at the very same ARN a
        moment ago."""
        return False
