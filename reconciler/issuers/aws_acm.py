"""The ``aws-acm`` issuer: ACM issues the certificate and renews it in place (at
the same ARN).  certform requests it, writes the DNS validation records (or lets
ACM email the domain's contacts) and records the ARN (``aws_acm_request.py``).

By default ACM keeps the private key: such certificates are served only by AWS
targets in their region.  An exportable public certificate (``exportable: true``)
or a private one from AWS Private CA (``certificate_authority_arn``) is exported
after issuance (``aws_acm_export.py``), its key sealed in the state like any
other, so that it can be bound to any target; when ACM renews it, the bindings
that deploy the key themselves are redeployed and the AWS ones, which serve
ACM's own copy, are left alone (``renewal_in_place``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reconciler.errors import PlanError
from reconciler.issuers.base import (
    ApplyAccess,
    CertificatePem,
    Issuance,
    Issuer,
    IssuerAccess,
    Prepared,
)
from reconciler.model.material import IssuedMaterial
from reconciler.model.records import CertificateRecord
from reconciler.plan.model import Action, Change
from reconciler.plan.specs import AuthoritySpec, CertificateSpec
from reconciler.policy.reissue import (
    ACM_CERTIFICATE_CHECKS,
    RENEW,
    REPLACE,
    Check,
    ReissueInput,
    Violation,
)

if TYPE_CHECKING:
    from reconciler.model.desired import DesiredCertificate
    from reconciler.model.records import RecordedState
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
    exportable: bool = False
    certificate_authority_arn: str | None = None
    timeout: str | None = None


@dataclass(frozen=True)
class AcmStatus:
    """What ACM says about one certificate at plan time (``renewal_windows``)."""

    serial: str | None = None
    """The serial ACM holds at the recorded ARN now (exported certificates only)."""
    pending: str | None = None
    """For a certificate not issued yet: why (a request waits for approval)."""


ACM_RENEWED = "ACM renewed the certificate"


def acm_renewed(i: ReissueInput) -> Violation | None:
    """ACM renewed an exported certificate at its ARN (a new serial): export it again."""
    status = i.renewal_window
    if not isinstance(status, AcmStatus) or status.serial is None or i.issued.serial is None:
        return None
    if status.serial == i.issued.serial:
        return None
    return Violation(
        RENEW, f"{ACM_RENEWED} (serial {i.issued.serial[:16]}… → {status.serial[:16]}…)"
    )


def releases_key(acm: Mapping[str, Any]) -> bool:
    """True when ACM lets certform export the key (the issuer settings of a spec)."""
    return bool(acm.get("exportable") or acm.get("certificate_authority_arn"))


def acm_kind_changed(i: ReissueInput) -> Violation | None:
    """Exportable, and which Private CA, are fixed when ACM issues: a change needs a
    new request (turning ``exportable`` on for a certificate ACM keeps, say)."""
    old, new = i.issued.spec.get("acm") or {}, i.desired_spec.get("acm") or {}
    for key in ("exportable", "certificate_authority_arn"):
        before, after = old.get(key) or None, new.get(key) or None
        if before != after:
            return Violation(REPLACE, f"{key} changed: {before or 'none'} → {after or 'none'}")
    return None


@dataclass(frozen=True, eq=False)
class AcmLeafSpec(CertificateSpec):
    issuer_type = "aws-acm"
    acm: Mapping[str, Any] = field(default_factory=dict)
    """The issuer's settings (provider, region, validation, timeout)."""


class AwsAcmIssuer(Issuer):
    types = ("aws-acm",)
    authority_spec_class = AcmAuthoritySpec
    certificate_spec_class = AcmLeafSpec
    certificate_checks: tuple[Check, ...] = (*ACM_CERTIFICATE_CHECKS, acm_kind_changed, acm_renewed)
    publishes_renewal_info = True  # ACM's renewals of exported certificates, its pending requests
    renewal_in_place = ACM_RENEWED

    # -- config ---------------------------------------------------------------------
    def authority_spec(self, name: str, authority: Any, config: Any) -> AcmAuthoritySpec:
        provider = config.providers[authority.provider]
        validation = authority.dns_validation.model_dump(mode="json")
        if authority.validation_method == "EMAIL":
            validation = {"method": "email"}
        fields: dict[str, Any] = {
            "type": authority.type,
            "provider": provider.model_dump(mode="json", exclude_none=True),
            "region": authority.region or provider.region,
            "validation": validation,
            "certificate_transparency": authority.certificate_transparency,
            "timeout": authority.timeout,
        }
        # Only what is set: the recorded specs of existing certificates stay as they were.
        if authority.exportable:
            fields["exportable"] = True
        if authority.certificate_authority_arn:
            fields["certificate_authority_arn"] = authority.certificate_authority_arn
        return AcmAuthoritySpec.parse(fields)

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
        """Unless ACM lets the key be exported, its certificates go only to AWS
        targets in its region (which region a target reads ACM from is the target's
        to say: ``acm_region``); exported ones go anywhere."""
        provider = config.providers.get(authority.provider)
        region = authority.region or getattr(provider, "region", None)
        needed = target.acm_region()
        if needed is None:
            if getattr(authority, "releases_key", False):
                return None
            return (
                f"certificate {certificate!r} is issued by ACM ({issuer}), "
                f"which never releases its private key: it can only be bound to AWS targets, "
                f"not {target.type_name}; set exportable: true on authority {issuer!r} "
                "for a certificate that can be exported and deployed anywhere"
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

    # -- plan -----------------------------------------------------------------------
    def renewal_windows(
        self,
        certificates: Sequence[DesiredCertificate],
        recorded: RecordedState,
        certificate_pem: CertificatePem,
        root: Path,
    ) -> tuple[dict[str, Any], list[str]]:
        """What ACM holds now, asked only where it matters: the serial at the ARN of
        each exported certificate (ACM renews in place) and the request of each
        email-validated one not issued yet (waiting for approval).  A region that
        cannot be read is a warning: the plan goes on without it."""
        from reconciler.issuers.aws_acm_status import acm_statuses

        return acm_statuses(certificates, recorded)

    def iam_statements(self, name: str, authority: Any, config: Any) -> list[Statement]:
        """Requests for the names of the certificates this authority issues, in its
        region (``aws_acm_request.iam_statements``)."""
        from reconciler.issuers.aws_acm_request import iam_statements

        provider = config.providers[authority.provider]
        names = [n for c in config.certificates.values() if name in c.issuers for n in c.names]
        return iam_statements(provider, authority.region or provider.region, authority, names)

    # -- apply ----------------------------------------------------------------------
    def prepare(self, ctx: ApplyAccess, change: Change) -> Prepared:
        return Prepared()  # ACM generates the key: nothing to journal (an export is repeatable)

    def issue(self, ctx: ApplyAccess, change: Change, prepared: Prepared) -> Issuance:
        """Request (or, for ACM's own renewal, re-read) the certificate; export it when
        ACM lets the key go.  A renewal (``RENEW``) of an ACM certificate is always
        ACM's: it keeps the ARN, which is read and exported again."""
        from reconciler.issuers.aws_acm_request import read_issued, request_certificate

        spec = change.after
        assert isinstance(spec, AcmLeafSpec)
        tags = dict(spec.tags)
        previous = ctx.recorded.certificates.get(change.name)
        if change.action == Action.RENEW and previous is not None and previous.external_id:
            issued = read_issued(spec.acm, previous.external_id)
        else:
            issued = request_certificate(
                spec, change.address, tags, previous.external_id if previous else None, ctx.report
            )
        material = IssuedMaterial(issued.certificate_pem, issued.chain_pem, "")
        key_der: bytes | None = None
        key_pem = b""
        if releases_key(spec.acm):
            from reconciler.issuers.aws_acm_export import export_certificate

            exported = export_certificate(spec.acm, issued.arn, issued.certificate_pem)
            material = IssuedMaterial(issued.certificate_pem, exported.chain_pem, "")
            key_der, key_pem = exported.key_der, exported.key_pem
            ctx.report(f"{change.address}: exported {issued.arn} (key sealed in the state)")
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
            has_key=key_der is not None,
            external_id=issued.arn,
        )
        return Issuance(
            record,
            material,
            key_der,
            key_pem,
            f"{issued.arn} serial {issued.serial}",
            f" ({issued.arn}, expires {issued.not_after:%Y-%m-%d})",
        )

    def revoke_refusal(self, record: CertificateRecord) -> str | None:
        return f"certificate.{record.name} was issued by ACM, which keeps its key: revoke it in ACM"

    def revoke(
        self, access: IssuerAccess, record: CertificateRecord, certificate_pem: str, reason: str
    ) -> str:
        raise PlanError(self.revoke_refusal(record) or "")
