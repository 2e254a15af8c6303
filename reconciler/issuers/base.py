"""The interface every issuer implements (private CA, ACME, aws-acm, imported).

An issuer is stateless; the registry keeps one instance per kind.  It is asked,
in this order and nothing else:

* at config time: ``authority_spec`` / ``certificate_spec`` build the typed,
  frozen specs from the validated config (once), ``key_error`` says
  which keys it cannot issue and ``binding_error`` which targets cannot serve
  its certificates; ``iam_statements`` what its AWS calls need (``iam-policy``);
* at plan time: ``observe_authority`` (refresh: what the authority looks like
  where it lives, for issuers that keep it elsewhere), ``authority_change``
  (does the authority itself need a step?) and ``authority_observed`` (what the
  observation changes about that),
  ``certificate_checks`` (why a certificate needs a new issuance),
  ``renewal_windows`` (the CA's own schedule, when it publishes one) and
  ``policy_violations`` (what apply re-checks against the policy);
* at apply time: ``prepare`` (pick the key to journal, read inputs: no side
  effect), then ``issue`` (the act), or ``issue_together`` for a batch the
  issuer runs in parallel; ``prepare_authority`` / ``act_authority`` for the
  authority's own steps; ``destroy_authority``; ``revoke``.

Apply's runner journals what ``prepare`` chose before ``issue`` runs and
records what ``issue`` returns in one transaction: issuers never touch the
journal or write state.
"""

from __future__ import annotations

from abc import ABC
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from reconciler.errors import PlanError
from reconciler.plan.specs import AuthoritySpec, CertificateSpec
from reconciler.policy.reissue import Check
from reconciler.policy.rules import Policy, domain_violation, key_violations, validity_violation

if TYPE_CHECKING:
    from cryptography import x509

    from reconciler.model.desired import DesiredAuthority, DesiredCertificate
    from reconciler.model.material import IssuedMaterial
    from reconciler.model.observed import Observation
    from reconciler.model.records import (
        AuthorityRecord,
        CertificateRecord,
        RecordedState,
        RevocationRecord,
    )
    from reconciler.pki.keys import PrivateKey
    from reconciler.plan.model import Change
    from reconciler.providers.aws.iam import Statement
    from reconciler.providers.base import Target
    from reconciler.state.store import StateStore

Reporter = Callable[[str], None]
CertificatePem = Callable[[str], str]


class IssuerAccess(Protocol):
    """What an issuer may use outside apply's steps (``certform revoke``, and apply):
    the state it reads keys from, the recorded state and the config root."""

    @property
    def store(self) -> StateStore: ...
    @property
    def recorded(self) -> RecordedState: ...
    @property
    def root(self) -> Path: ...

    def scratch(self, name: str) -> dict[str, Any]:
        """A run-scoped dict an issuer keeps its own caches in (accounts, CA keys)."""
        ...


class ApplyAccess(IssuerAccess, Protocol):
    """What an issuer may use during apply, on top of ``IssuerAccess``."""

    @property
    def report(self) -> Reporter: ...
    @property
    def parallelism(self) -> int: ...

    def failed(self, address: str) -> bool:
        """True when the step of ``address`` failed or was skipped in this run."""
        ...

    def key_for(self, change: Change, spec: CertificateSpec) -> bytes:
        """The key to journal for a certificate issuance (kept, reused or new)."""
        ...

    def new_key(self, change: Change, algorithm: str) -> bytes:
        """A new key, or the one an interrupted run journaled for ``change``."""
        ...

    def key_object(self, der: bytes) -> PrivateKey:
        """The key object of a prepared key (no second parse of one this run made)."""
        ...

    def remember_replaced(self, change: Change) -> None:
        """Keep what a renewal supersedes, for ``revoke_replaced`` after the bindings."""
        ...

    @property
    def revoked_now(self) -> Sequence[RevocationRecord]:
        """Revocations recorded in this run (a CRL published later lists them)."""
        ...


@dataclass(frozen=True)
class Prepared:
    """What a step decided before it acts: the key to journal (sealed), and inputs."""

    key_der: bytes | None = field(default=None, repr=False)
    data: Any = field(default=None, repr=False)


@dataclass(frozen=True)
class Issuance:
    """A certificate an issuer produced, ready to record and deploy."""

    record: CertificateRecord
    material: IssuedMaterial
    key_der: bytes | None = field(repr=False)
    """Stored with the record; None when the issuer keeps the key (ACM)."""
    key_pem: bytes = field(repr=False)
    """What targets deploy (empty when the issuer keeps the key)."""
    audit: str
    report: str


@dataclass(frozen=True)
class AuthorityIssuance:
    """An authority's own step result: the record, its public material, its key."""

    record: AuthorityRecord
    material: IssuedMaterial
    key_der: bytes | None = field(repr=False)
    """Stored with the record; None keeps the recorded key."""
    audit: str
    report: str


class Issuer(ABC):
    """Base of every issuer; subclasses register in ``registry``."""

    types: ClassVar[tuple[str, ...]]
    """The authority ``type`` values of the config this issuer serves."""
    authority_spec_class: ClassVar[type[AuthoritySpec]] = AuthoritySpec
    certificate_spec_class: ClassVar[type[CertificateSpec]] = CertificateSpec
    certificate_checks: ClassVar[tuple[Check, ...]] = ()
    """Why a recorded certificate needs a new issuance (``policy/reissue.py``)."""
    authority_has_certificate: ClassVar[bool] = True
    """False when the authority is no certificate (an ACME account): nothing expires."""
    signs_authorities: ClassVar[bool] = False
    """True for CAs certform signs itself (revocable, listed in a parent's CRL)."""
    renews: ClassVar[bool] = True
    """False when certform cannot renew the certificates (imported files)."""
    publishes_renewal_info: ClassVar[bool] = False
    """True when ``renewal_windows`` may ask the CA (ACME Renewal Information, ACM)."""
    renewal_in_place: ClassVar[str | None] = None
    """For an issuer that renews its certificates itself at the same identity (ACM,
    at the same ARN): the reason a ``RENEW`` gives the bindings that deploy the key
    themselves.  Bindings that serve the issuer's own copy
    (``DesiredBinding.acm_region``) are not redeployed.  None: a renewal redeploys
    every binding."""

    # -- config ---------------------------------------------------------------------
    def authority_spec(self, name: str, authority: Any, config: Any) -> AuthoritySpec:
        """The typed spec of the validated ``authority`` entry."""
        return self.authority_spec_class.parse({"type": authority.type})

    def certificate_spec(
        self, name: str, certificate: Any, authority: Any, config: Any, root: Path
    ) -> CertificateSpec:
        """The typed spec of a certificate this issuer signs (``authority`` is its
        primary issuer's validated entry)."""
        return self.certificate_spec_class.parse(
            self.certificate_fields(name, certificate, authority, config, root)
        )

    def certificate_fields(
        self, name: str, certificate: Any, authority: Any, config: Any, root: Path
    ) -> dict[str, Any]:
        """The JSON form every signed certificate shares; issuers add their fields."""
        defaults = config.defaults
        fields: dict[str, Any] = {
            "names": list(certificate.names),
            "issuer": certificate.primary_issuer,
            "key": certificate.key or defaults.key,
            "validity": certificate.validity or defaults.validity,
            "usages": list(certificate.usages),
        }
        if certificate.key_rotation != "always":
            fields["key_rotation"] = certificate.key_rotation
        if certificate.revoke_replaced:
            fields["revoke_replaced"] = True
        crl = getattr(authority, "crl", None)
        if crl is not None:
            fields["crl_url"] = crl.url
        return fields

    def renew_before(self, certificate: Any, config: Any) -> str | None:
        """The certificate's renewal window as the diff uses it."""
        return certificate.renew_before or config.defaults.renew_before

    def key_error(self, key: str) -> str | None:
        """Why this issuer cannot issue a certificate with ``key`` (None: it can)."""
        return None

    def binding_error(
        self, certificate: str, issuer: str, authority: Any, config: Any, target: Target
    ) -> str | None:
        """Why ``target`` cannot serve ``certificate``, which this issuer issues as
        authority ``issuer`` (its validated entry ``authority``); None: it can.

        Checked at validate time, so that an impossible binding is a config error
        at the binding's ``target``, not an apply that fails halfway."""
        return None

    def config_findings(
        self, name: str, authority: Any, config: Any
    ) -> Iterator[tuple[tuple[str | int, ...], str]]:
        """What is wrong with authority ``name`` (its validated entry ``authority``) and
        the certificates it signs, in relation to the rest of ``config``: (field path,
        message), reported by validate like every semantic check."""
        return iter(())

    def iam_statements(self, name: str, authority: Any, config: Any) -> list[Statement]:
        """The IAM statements the AWS calls made for authority ``name`` (its validated
        entry ``authority``) and its certificates need (``certform iam-policy``);
        none for an issuer that calls no AWS API."""
        return []

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
        """The step the authority itself needs (None: none, e.g. an external issuer)."""
        return None

    def observe_authority(
        self, authority: DesiredAuthority, record: AuthorityRecord | None
    ) -> Observation | None:
        """What the authority looks like where it lives (refresh, at plan time; I/O).
        None: nothing to observe (certform holds everything about it)."""
        return None

    def authority_observed(
        self,
        authority: DesiredAuthority,
        record: AuthorityRecord | None,
        change: Change | None,
        observation: Observation | None,
    ) -> tuple[Change | None, tuple[str, ...]]:
        """The authority's step given what refresh observed (drift repaired or
        warned about), and plan warnings.  Pure, like ``authority_change``."""
        return change, ()

    def renewal_windows(
        self,
        certificates: Sequence[DesiredCertificate],
        recorded: RecordedState,
        certificate_pem: CertificatePem,
        root: Path,
    ) -> tuple[dict[str, Any], list[str]]:
        """The CA's own renewal schedule by certificate address, and warnings."""
        return {}, []

    def policy_violations(self, spec: CertificateSpec, policy: Policy) -> list[str]:
        """What signing ``spec`` would break in the policy (names, key, validity)."""
        problems = [p for name in spec.names if (p := domain_violation(name, policy))]
        if spec.key:
            problems += key_violations(spec.key, policy)
        if spec.validity is not None:
            problem = validity_violation(spec.validity, policy)
            if problem:
                problems.append(problem)
        return problems

    def authority_policy_violations(self, spec: AuthoritySpec, policy: Policy) -> list[str]:
        return []

    # -- apply ----------------------------------------------------------------------
    def batch_key(self, change: Change) -> Hashable | None:
        """Issuances with the same key run together (``issue_together``); None: alone."""
        return None

    def prepare(self, ctx: ApplyAccess, change: Change) -> Prepared:
        """Choose the key to journal and read what ``issue`` needs; no side effect."""
        raise PlanError(f"{type(self).__name__} cannot issue {change.address}")

    def issue(self, ctx: ApplyAccess, change: Change, prepared: Prepared) -> Issuance:
        """Issue the certificate (the act); raise CertformError on failure."""
        raise PlanError(f"{type(self).__name__} cannot issue {change.address}")

    def issue_together(
        self, ctx: ApplyAccess, items: Sequence[tuple[Change, Prepared]]
    ) -> list[Issuance | Exception]:
        """Issue a batch (same ``batch_key``); one outcome or error per item, in order."""
        raise NotImplementedError

    def prepare_authority(self, ctx: ApplyAccess, change: Change) -> Prepared:
        raise PlanError(f"cannot {change.action.value} {change.address}")

    def act_authority(
        self, ctx: ApplyAccess, change: Change, prepared: Prepared
    ) -> AuthorityIssuance:
        raise PlanError(f"cannot {change.action.value} {change.address}")

    def destroy_authority(self, ctx: ApplyAccess, change: Change) -> str:
        """Delete what the authority is outside the state, before it is forgotten
        (a CA certform created in AWS); returns a note for the output ("" none)."""
        return ""

    def revoke_refusal(self, record: CertificateRecord) -> str | None:
        """Why certform cannot revoke ``record`` at all (None: it can)."""
        return None

    def revoke(
        self, access: IssuerAccess, record: CertificateRecord, certificate_pem: str, reason: str
    ) -> str:
        """Revoke at the issuer if it keeps revocations itself; returns where it was
        revoked, for the output.  Recording it in state is the caller's job."""
        return "recorded as revoked (listed in the issuing CA's CRL when it publishes one)"


def leaf_record(
    change: Change, spec: dict[str, Any], certificate: x509.Certificate, issuer_key_id: str
) -> CertificateRecord:
    """The state record of a leaf certform holds the key of, whoever signed it
    (private CA, ACME, import): dates, serial and fingerprint from the certificate,
    guard and tags from the change's spec."""
    from reconciler.model.records import CertificateRecord
    from reconciler.pki.builder import fingerprint_sha256

    after = change.after
    assert isinstance(after, CertificateSpec)
    return CertificateRecord(
        name=change.name,
        spec=spec,
        serial=format(certificate.serial_number, "x"),
        not_before=certificate.not_valid_before_utc,
        not_after=certificate.not_valid_after_utc,
        issuer_key_id=issuer_key_id,
        fingerprint=fingerprint_sha256(certificate),
        prevent_destroy=after.prevent_destroy,
        tags=dict(after.tags),
        has_key=True,
    )
