"""The ``aws-acm`` issuer: ACM issues the certificate and keeps its private key
(it never leaves AWS), renews it in place, and serves it only to AWS targets in
its region.  certform requests it, writes the DNS validation records and
records the ARN and the public certificate (``aws_acm_request.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reconciler.errors import PlanError
from reconciler.issuers.base import ApplyAccess, Issuance, Issuer, IssuerAccess, Prepared
from reconciler.model.material import IssuedMaterial
from reconciler.model.records import CertificateRecord
from reconciler.plan.model import Change
from reconciler.plan.specs import AuthoritySpec, CertificateSpec
from reconciler.policy.reissue import ACM_CERTIFICATE_CHECKS

if TYPE_CHECKING:
    from reconciler.providers.aws.iam import Statement
    from reconciler.providers.base import Target

ACM_REQUEST_KEYS = {"rsa-2048": "RSA_2048", "ec-p256": "EC_prime256v1", "ec-p384": "EC_secp384r1"}
"""Key algorithms ACM issues itself: certform's name -> RequestCertificate's KeyAlgorithm.

Kept here, not with the ACM client, so that the pure diff (which looks issuers
up) never imports a provider."""

ACM_KEYS = frozenset(ACM_REQUEST_KEYS)
"""What ACM's RequestCertificate issues (no Ed25519, no ML-DSA)."""


@dataclass(frozen=True, eq=False)
class AcmAuthoritySpec(AuthoritySpec):
    provider: Mapping[str, Any] = field(default_factory=dict)
    region: str | None = None
    validation: Mapping[str, Any] = field(default_factory=dict)
    certificate_transparency: bool = True
    timeout: str | None = None


@dataclass(frozen=True, eq=False)
class AcmLeafSpec(CertificateSpec):
    issuer_type = "aws-acm"
    acm: Mapping[str, Any] = field(default_factory=dict)
    """The issuer's settings (provider, region, validation, timeout)."""


class AwsAcmIssuer(Issuer):
    types = ("aws-acm",)
    authority_spec_class = AcmAuthoritySpec
    certificate_spec_class = AcmLeafSpec
    certificate_checks = ACM_CERTIFICATE_CHECKS

    # -- config ---------------------------------------------------------------------
    def authority_spec(self, name: str, authority: Any, config: Any) -> AcmAuthoritySpec:
        provider = config.providers[authority.provider]
        return AcmAuthoritySpec.parse(
            {
                "type": authority.type,
                "provider": provider.model_dump(mode="json", exclude_none=True),
                "region": authority.region or provider.region,
                "validation": authority.validation.model_dump(mode="json"),
                "certificate_transparency": authority.certificate_transparency,
                "timeout": authority.timeout,
            }
        )

    def certificate_fields(
        self, name: str, certificate: Any, authority: Any, config: Any, root: Path
    ) -> dict[str, Any]:
        # Apply needs the issuer's settings; the diff knows the key stays in ACM.
        fields = super().certificate_fields(name, certificate, authority, config, root)
        acm = self.authority_spec(certificate.primary_issuer, authority, config).to_json()
        fields["issuer_type"] = AcmLeafSpec.issuer_type
        fields["acm"] = {k: v for k, v in acm.items() if k != "type"}
        return fields

    def key_error(self, key: str) -> str | None:
        if key in ACM_KEYS:
            return None
        return f"ACM issues {', '.join(sorted(ACM_KEYS))} keys only, not {key}"

    def binding_error(
        self, certificate: str, issuer: str, authority: Any, config: Any, target: Target
    ) -> str | None:
        """ACM keeps the key: its certificates go only to AWS targets in its region
        (which region a target reads ACM from is the target's to say: ``acm_region``)."""
        provider = config.providers.get(authority.provider)
        region = authority.region or getattr(provider, "region", None)
        needed = target.acm_region()
        if needed is None:
            return (
                f"certificate {certificate!r} is issued by ACM ({issuer}), "
                f"which never releases its private key: it can only be bound to AWS targets, "
                f"not {target.type_name}"
            )
        if region != needed:
            hint = (
                " (CloudFront and edge API Gateway use us-east-1)" if needed == "us-east-1" else ""
            )
            return (
                f"certificate {certificate!r} is issued by ACM in {region}, but "
                f"{target.type_name} needs its certificate in {needed}{hint}"
            )
        return None

    def iam_statements(self, name: str, authority: Any, config: Any) -> list[Statement]:
        """Requests for the names of the certificates this authority issues, in its
        region (``aws_acm_request.iam_statements``)."""
        from reconciler.issuers.aws_acm_request import iam_statements

        provider = config.providers[authority.provider]
        names = [n for c in config.certificates.values() if name in c.issuers for n in c.names]
        return iam_statements(
            provider, authority.region or provider.region, authority.validation, names
        )

    # -- apply ----------------------------------------------------------------------
    def prepare(self, ctx: ApplyAccess, change: Change) -> Prepared:
        return Prepared()  # ACM generates and keeps the key: nothing to journal

    def issue(self, ctx: ApplyAccess, change: Change, prepared: Prepared) -> Issuance:
        """ACM issues and keeps the key; we record the ARN and the public certificate."""
        from reconciler.issuers.aws_acm_request import request_certificate

        spec = change.after
        assert isinstance(spec, AcmLeafSpec)
        tags = dict(spec.tags)
        previous = ctx.recorded.certificates.get(change.name)
        issued = request_certificate(
            spec, change.address, tags, previous.external_id if previous else None, ctx.report
        )
        record = CertificateRecord(
            name=change.name,
            spec=spec.recorded(),
            serial=issued.serial,
            not_before=issued.not_before,
            not_after=issued.not_after,
            issuer_key_id="aws-acm",
            fingerprint=issued.fingerprint,
            prevent_destroy=spec.prevent_destroy,
            tags=tags,
            has_key=False,
            external_id=issued.arn,
        )
        return Issuance(
            record,
            IssuedMaterial(issued.certificate_pem, issued.chain_pem, ""),
            None,
            b"",
            f"{issued.arn} serial {issued.serial}",
            f" ({issued.arn}, expires {issued.not_after:%Y-%m-%d})",
        )

    def revoke_refusal(self, record: CertificateRecord) -> str | None:
        return f"certificate.{record.name} was issued by ACM, which keeps its key: revoke it in ACM"

    def revoke(
        self, access: IssuerAccess, record: CertificateRecord, certificate_pem: str, reason: str
    ) -> str:
        raise PlanError(self.revoke_refusal(record) or "")
