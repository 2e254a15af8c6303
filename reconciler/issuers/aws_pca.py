"""The ``aws-pca`` issuer: AWS Private CA signs, certform keeps the leaf keys.

An authority is either an existing CA (``certificate_authority_arn``) or one
certform creates and manages (``create``: AWS Private CA as code).  For leaves,
certform generates the key and a CSR, ``IssueCertificate`` signs it, and the
key is sealed in the state like every other key.  A created CA is recorded as
an authority whose ``key_id`` is its ARN (as an ACME account's is its URL): the
ARN is what certificates it issued name as their issuer, so a CA created anew
re-issues everything below it.

This module is the issuer's pure side (specs, config rules, plan decisions,
drift); the AWS calls are in ``aws_pca_calls.py``, imported when a step runs.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reconciler.durations import parse_duration, parse_renew_before
from reconciler.issuers.base import (
    ApplyAccess,
    AuthorityIssuance,
    Issuance,
    Issuer,
    IssuerAccess,
    Prepared,
)
from reconciler.model.observed import Observation
from reconciler.model.records import AuthorityRecord, CertificateRecord
from reconciler.plan.model import Action, Change
from reconciler.plan.specs import AuthoritySpec, CertificateSpec
from reconciler.policy.reissue import (
    CERTIFICATE_CHECKS,
    RENEW,
    REPLACE,
    IssuedFacts,
    ReissueInput,
    Violation,
    expiring,
)

if TYPE_CHECKING:
    from reconciler.model.desired import DesiredAuthority
    from reconciler.providers.aws.iam import Statement

Finding = tuple[tuple[str | int, ...], str]

PCA_KEYS = frozenset({"rsa-2048", "rsa-3072", "rsa-4096", "ec-p256", "ec-p384"})
"""Keys AWS Private CA signs CSRs for (no Ed25519; ML-DSA not through certform yet)."""

REVOCATION_REASONS = {
    "unspecified": "UNSPECIFIED",
    "keyCompromise": "KEY_COMPROMISE",
    "cACompromise": "CERTIFICATE_AUTHORITY_COMPROMISE",
    "affiliationChanged": "AFFILIATION_CHANGED",
    "superseded": "SUPERSEDED",
    "cessationOfOperation": "CESSATION_OF_OPERATION",
    "privilegeWithdrawn": "PRIVILEGE_WITHDRAWN",
    "aACompromise": "A_A_COMPROMISE",
}
"""certform's (RFC 5280) reason -> RevokeCertificate's RevocationReason; AWS has no
certificateHold or removeFromCRL."""

DEFAULT_VALIDITY = {"ROOT": "3650d", "SUBORDINATE": "1825d"}

_REPLACING_FIELDS = (
    ("type", "CA type"),
    ("subject", "subject"),
    ("key_algorithm", "key algorithm"),
    ("signing_algorithm", "signing algorithm"),
)
"""What AWS Private CA never changes on an existing CA: a change is a new CA."""


@dataclass(frozen=True, eq=False)
class PcaAuthoritySpec(AuthoritySpec):
    provider: Mapping[str, Any] = field(default_factory=dict)
    region: str | None = None
    certificate_authority_arn: str | None = None
    """An existing CA (absent when certform creates it)."""
    template_arn: str | None = None
    signing_algorithm: str | None = None
    timeout: str | None = None
    create: Mapping[str, Any] | None = None
    """The CA certform creates: subject, algorithms, type, validity, crl, path_length."""


@dataclass(frozen=True, eq=False)
class PcaLeafSpec(CertificateSpec):
    issuer_type = "aws-pca"
    pca: Mapping[str, Any] = field(default_factory=dict)
    """The issuer's settings: provider, region, CA ARN (an existing CA),
    template_arn, signing_algorithm, timeout."""


@dataclass(frozen=True)
class CaObservation(Observation):
    """What DescribeCertificateAuthority said about a CA (refresh, at plan time)."""

    ca_status: str = ""
    revocation_drift: tuple[str, ...] = ()


def _ca_check(field_name: str, label: str) -> Any:
    """A leaf's CA or template changed: the certificate comes from somewhere else now."""

    def check(i: ReissueInput) -> Violation | None:
        old = (i.issued.spec.get("pca") or {}).get(field_name)
        new = (i.desired_spec.get("pca") or {}).get(field_name)
        if old == new:
            return None
        return Violation(REPLACE, f"{label} changed: {old or 'default'} → {new or 'default'}")

    check.__name__ = f"pca_{field_name}_changed"
    return check


PCA_CERTIFICATE_CHECKS = (
    *CERTIFICATE_CHECKS,
    _ca_check("certificate_authority_arn", "certificate_authority_arn"),
    _ca_check("template_arn", "template_arn"),
)


class AwsPcaIssuer(Issuer):
    types = ("aws-pca",)
    authority_spec_class = PcaAuthoritySpec
    certificate_spec_class = PcaLeafSpec
    certificate_checks = PCA_CERTIFICATE_CHECKS

    # -- config ---------------------------------------------------------------------
    def authority_spec(self, name: str, authority: Any, config: Any) -> PcaAuthoritySpec:
        provider = config.providers[authority.provider]
        spec: dict[str, Any] = {
            "type": authority.type,
            "provider": provider.model_dump(mode="json", exclude_none=True),
            "region": provider.region,
            "timeout": authority.timeout,
        }
        for key in ("certificate_authority_arn", "template_arn", "signing_algorithm"):
            if getattr(authority, key) is not None:
                spec[key] = getattr(authority, key)
        create = authority.create
        if create is not None:
            spec["create"] = {
                "subject": create.subject.model_dump(exclude_none=True),
                "key_algorithm": create.key_algorithm,
                "signing_algorithm": create.signing_algorithm,
                "type": create.type,
                "validity": create.validity or DEFAULT_VALIDITY[create.type],
                "crl": create.crl.model_dump(mode="json") if create.crl else None,
                "path_length": _path_length(name, config),
            }
            if create.parent is not None:
                spec["parent"] = create.parent
                parent = config.authorities[create.parent]
                if parent.certificate_authority_arn is not None:
                    spec["create"]["parent_arn"] = parent.certificate_authority_arn
        return PcaAuthoritySpec.parse(spec)

    def certificate_fields(
        self, name: str, certificate: Any, authority: Any, config: Any, root: Path
    ) -> dict[str, Any]:
        fields = super().certificate_fields(name, certificate, authority, config, root)
        authority_spec = self.authority_spec(certificate.primary_issuer, authority, config)
        pca: dict[str, Any] = {
            "provider": dict(authority_spec.provider),
            "region": authority_spec.region,
            "timeout": authority_spec.timeout,
        }
        if authority_spec.certificate_authority_arn:
            pca["certificate_authority_arn"] = authority_spec.certificate_authority_arn
        if authority_spec.template_arn:
            pca["template_arn"] = authority_spec.template_arn
        signing = authority_spec.signing_algorithm or (authority_spec.create or {}).get(
            "signing_algorithm"
        )
        if signing:
            pca["signing_algorithm"] = signing
        fields["issuer_type"] = PcaLeafSpec.issuer_type
        fields["pca"] = pca
        return fields

    def key_error(self, key: str) -> str | None:
        if key in PCA_KEYS:
            return None
        return f"AWS Private CA signs {', '.join(sorted(PCA_KEYS))} keys only, not {key}"

    def iam_statements(self, name: str, authority: Any, config: Any) -> list[Statement]:
        """What this authority's AWS Private CA calls need (``pca_iam_statements``)."""
        from reconciler.issuers.aws_pca_calls import pca_iam_statements

        provider = config.providers[authority.provider]
        parent = None
        if authority.create is not None and authority.create.parent is not None:
            parent = config.authorities[authority.create.parent].certificate_authority_arn
        return pca_iam_statements(provider, authority.certificate_authority_arn, parent)

    def config_findings(self, name: str, authority: Any, config: Any) -> Iterator[Finding]:
        """The provider, the parent (an aws-pca authority, no cycle), and the keys and
        validity of the certificates it signs (as a private CA's)."""
        where = ("authorities", name)
        provider = config.providers.get(authority.provider)
        if provider is None or provider.type != "aws":
            yield (
                (*where, "provider"),
                f"unknown aws provider {authority.provider!r}; expected one of: "
                + _choices(p for p, entry in config.providers.items() if entry.type == "aws"),
            )
        create = authority.create
        if create is not None:
            yield from _parent_findings(name, create.parent, config)
        validity = (create.validity or DEFAULT_VALIDITY[create.type]) if create else None
        if create is not None and authority.renew_before is not None:
            window = parse_renew_before(authority.renew_before).duration
            if window is not None and window >= parse_duration(str(validity)):
                yield (
                    (*where, "renew_before"),
                    f"renew_before {authority.renew_before} must be shorter than the "
                    f"validity {validity}",
                )
        parent = config.authorities.get(create.parent) if create and create.parent else None
        parent_create = getattr(parent, "create", None) if parent is not None else None
        if validity and parent_create is not None:
            parent_validity = parent_create.validity or DEFAULT_VALIDITY[parent_create.type]
            if parse_duration(validity) > parse_duration(parent_validity):
                yield (
                    (*where, "create", "validity"),
                    f"validity {validity} is longer than the parent's validity {parent_validity}",
                )
        for certificate_name, certificate in config.certificates.items():
            if certificate.primary_issuer != name:
                continue
            problem = self.key_error(certificate.key or config.defaults.key)
            if problem:
                yield (("certificates", certificate_name, "key"), problem)
            leaf_validity = certificate.validity or config.defaults.validity
            if validity and parse_duration(leaf_validity) > parse_duration(validity):
                yield (
                    ("certificates", certificate_name, "validity"),
                    f"validity {leaf_validity} is longer than the issuer's validity {validity}",
                )

    # -- plan -----------------------------------------------------------------------
    def authority_change(
        self,
        authority: DesiredAuthority,
        record: AuthorityRecord | None,
        parent: AuthorityRecord | None,
        parent_rekeyed: bool,
        now: datetime,
        revoked_at: datetime | None,
    ) -> Change | None:
        """An existing CA needs no step; a created one is created, signed again
        (renew: same CA, new certificate), replaced (a new CA) or updated (CRL)."""
        spec = authority.spec
        assert isinstance(spec, PcaAuthoritySpec)
        if spec.create is None:
            return None
        after = spec.extended(
            renew_before=authority.renew_before, prevent_destroy=authority.prevent_destroy
        )
        if record is None:
            reason = f"not created yet ({spec.create['type']} CA in AWS Private CA)"
            return Change(authority.address, Action.ISSUE, (reason,), None, after)
        violations = _ca_violations(authority, record, parent, parent_rekeyed, now)
        if not violations:
            return None
        action = _strongest(violations)
        return Change(
            authority.address,
            action,
            tuple(v.reason for v in violations),
            authority_before(record),
            after,
        )

    def observe_authority(
        self, authority: DesiredAuthority, record: AuthorityRecord | None
    ) -> Observation | None:
        spec = authority.spec
        assert isinstance(spec, PcaAuthoritySpec)
        if spec.create is not None and record is None:
            return None  # nothing to look at until it is created
        arn = record.key_id if record is not None else spec.certificate_authority_arn
        if not arn:
            return None
        from reconciler.issuers.aws_pca_calls import observe

        expected = None
        if spec.create is not None and record is not None:
            # Compared with what certform last set: a changed config is its own reason.
            expected = (record.spec.get("create") or {}).get("crl")
        return observe(spec.to_json(), arn, expected, spec.create is not None)

    def authority_observed(
        self,
        authority: DesiredAuthority,
        record: AuthorityRecord | None,
        change: Change | None,
        observation: Observation | None,
    ) -> tuple[Change | None, tuple[str, ...]]:
        """Drift of a created CA becomes a change; of an existing one, a warning."""
        if not isinstance(observation, Observation) or observation.status == "in_sync":
            return change, ()
        address = authority.address
        details = "; ".join(observation.details)
        if observation.status == "unreachable":
            return change, (f"{address} unreachable: {details}",)
        spec = authority.spec
        assert isinstance(spec, PcaAuthoritySpec)
        if spec.create is None or record is None:
            return change, (f"{address}: {details}",)
        after = spec.extended(
            renew_before=authority.renew_before, prevent_destroy=authority.prevent_destroy
        )
        previous = change.reasons if change is not None else ()
        if observation.status == "missing":
            reasons = (
                *observation.details,
                "apply creates a new CA (new key): everything it issued is issued again",
                *previous,
            )
            replacement = Change(
                address, Action.REPLACE, reasons, authority_before(record), after, (), True
            )
            return replacement, ()
        if change is None:
            return (
                Change(
                    address,
                    Action.UPDATE,
                    observation.details,
                    authority_before(record),
                    after,
                    (),
                    True,
                ),
                (),
            )
        merged = Change(
            address, change.action, (*previous, *observation.details), change.before,
            change.after, change.bindings, True,
        )  # fmt: skip
        return merged, ()

    # -- apply: leaves --------------------------------------------------------------
    def prepare(self, ctx: ApplyAccess, change: Change) -> Prepared:
        spec = _leaf(change)
        ctx.remember_replaced(change)
        return Prepared(ctx.key_for(change, spec))

    def issue(self, ctx: ApplyAccess, change: Change, prepared: Prepared) -> Issuance:
        from reconciler.issuers.aws_pca_calls import issue_leaf

        assert prepared.key_der is not None
        return issue_leaf(ctx, change, _leaf(change), prepared.key_der)

    # -- apply: created CAs ---------------------------------------------------------
    def prepare_authority(self, ctx: ApplyAccess, change: Change) -> Prepared:
        return Prepared()  # AWS generates and keeps the CA key: nothing to journal

    def act_authority(
        self, ctx: ApplyAccess, change: Change, prepared: Prepared
    ) -> AuthorityIssuance:
        from reconciler.issuers.aws_pca_calls import act_on_ca

        return act_on_ca(ctx, change, _authority(change))

    def destroy_authority(self, ctx: ApplyAccess, change: Change) -> str:
        from reconciler.issuers.aws_pca_calls import delete_ca

        before = change.before or {}
        arn = before.get("key_id")  # the diff's ``before`` of a destroyed authority
        if not arn or not before.get("create"):
            return ""
        return delete_ca(before, str(arn))

    # -- revocation -----------------------------------------------------------------
    def revoke(
        self, access: IssuerAccess, record: CertificateRecord, certificate_pem: str, reason: str
    ) -> str:
        from reconciler.issuers.aws_pca_calls import revoke_leaf

        return revoke_leaf(record, reason)


def authority_before(record: AuthorityRecord) -> dict[str, Any]:
    """A created CA's ``before``: its recorded spec, certificate and ARN."""
    return {
        **record.spec,
        "serial": record.serial,
        "not_after": record.not_after.isoformat(),
        "certificate_authority_arn": record.key_id,
    }


def _ca_violations(
    authority: DesiredAuthority,
    record: AuthorityRecord,
    parent: AuthorityRecord | None,
    parent_rekeyed: bool,
    now: datetime,
) -> list[Violation]:
    spec = authority.spec
    assert isinstance(spec, PcaAuthoritySpec) and spec.create is not None
    old, new = record.spec.get("create") or {}, dict(spec.create)
    violations = [
        Violation(
            REPLACE,
            f"{label} changed: {_show(old.get(key))} → {_show(new.get(key))} "
            "(fixed for the life of an AWS Private CA: a new CA)",
        )
        for key, label in _REPLACING_FIELDS
        if old.get(key) != new.get(key)
    ]
    if record.spec.get("parent") != spec.parent:
        violations.append(Violation(
            RENEW, f"parent changed: {record.spec.get('parent')} → {spec.parent}"
        ))  # fmt: skip
    elif parent_rekeyed:
        violations.append(Violation(RENEW, f"parent authority.{spec.parent} becomes a new CA"))
    elif parent is not None and record.issuer_key_id not in (None, parent.key_id):
        violations.append(Violation(RENEW, f"parent authority.{spec.parent} is another CA now"))
    if old.get("path_length") != new.get("path_length"):
        violations.append(Violation(
            RENEW, f"path length changed: {old.get('path_length')} → {new.get('path_length')}"
        ))  # fmt: skip
    if parse_duration(str(old.get("validity"))) != parse_duration(str(new["validity"])):
        violations.append(
            Violation(RENEW, f"validity changed: {old.get('validity')} → {new['validity']}")
        )
    facts = IssuedFacts(record.spec, record.not_before, record.not_after, None, True)
    due = expiring(ReissueInput(new, authority.renew_before, facts, None, False, now))
    if due is not None:
        violations.append(due)
    if old.get("crl") != new.get("crl"):
        violations.append(Violation(
            Action.UPDATE.value, f"crl changed: {_show(old.get('crl'))} → {_show(new.get('crl'))}"
        ))  # fmt: skip
    return violations


def _strongest(violations: list[Violation]) -> Action:
    actions = {v.action for v in violations}
    for action in (REPLACE, RENEW):
        if action in actions:
            return Action(action)
    return Action.UPDATE


def _show(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_show(v)}" for k, v in sorted(value.items()))
    return str(value)


def _path_length(name: str, config: Any) -> int:
    """How many created CAs are below ``name`` at most (its certificate's path length)."""
    children = [
        child
        for child, authority in config.authorities.items()
        if getattr(authority, "type", None) == "aws-pca" and authority.parent == name
    ]
    depth = 0
    seen = {name}
    level = children
    while level and depth < 4:
        depth += 1
        seen.update(level)
        level = [
            child
            for child, authority in config.authorities.items()
            if getattr(authority, "type", None) == "aws-pca"
            and authority.parent in level
            and child not in seen
        ]
    return depth


def _parent_findings(name: str, parent: str | None, config: Any) -> Iterator[Finding]:
    if parent is None:
        return
    where = ("authorities", name, "create", "parent")
    entry = config.authorities.get(parent)
    if entry is None:
        yield (where, f"unknown authority {parent!r}; expected one of: "
                      + _choices(config.authorities))  # fmt: skip
    elif parent == name:
        yield (where, "an authority cannot be its own parent")
    elif getattr(entry, "type", None) != "aws-pca":
        yield (
            where,
            f"authority {parent!r} is {entry.type} and cannot sign an AWS Private CA; the "
            "parent must be an aws-pca authority",
        )
    else:
        chain = [name]
        current: str | None = parent
        while current is not None and current in config.authorities:
            if current == name:
                yield (where, "CA parent cycle: " + " → ".join([*chain, name]))
                return
            if current in chain:
                return
            chain.append(current)
            current = getattr(config.authorities[current], "parent", None)


def _choices(names: Any) -> str:
    return ", ".join(sorted(names)) or "(none)"


def _leaf(change: Change) -> PcaLeafSpec:
    assert isinstance(change.after, PcaLeafSpec)
    return change.after


def _authority(change: Change) -> PcaAuthoritySpec:
    assert isinstance(change.after, PcaAuthoritySpec)
    return change.after
