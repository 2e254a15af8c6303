"""The ACME issuer: an authority is an account at a CA's directory; certificates
are ordered from it (in parallel, each trying its fallback issuers in order),
revoked there, and renewed when the CA suggests (ACME Renewal Information).

The ACME client and its dependencies are imported only when an ACME step runs,
so plans without ACME never pay for them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reconciler.errors import CertformError, PlanError, StateError
from reconciler.issuers.base import (
    ApplyAccess,
    AuthorityIssuance,
    CertificatePem,
    Issuance,
    Issuer,
    IssuerAccess,
    Prepared,
    leaf_record,
)
from reconciler.model.material import IssuedMaterial
from reconciler.model.records import AuthorityRecord, CertificateRecord
from reconciler.pki.keys import private_key_to_pem
from reconciler.plan.model import Action, Change
from reconciler.plan.specs import AuthoritySpec, CertificateSpec
from reconciler.policy.reissue import ACME_CERTIFICATE_CHECKS

if TYPE_CHECKING:
    from reconciler.acme.client import AcmeAccount
    from reconciler.model.desired import DesiredAuthority, DesiredCertificate
    from reconciler.model.records import RecordedState
    from reconciler.providers.aws.iam import Statement

ACCOUNT_NOT_AFTER = datetime(9999, 12, 31, tzinfo=UTC)
"""ACME accounts do not expire; their records carry this date so expiry checks pass."""

ACME_KEYS = frozenset({"rsa-2048", "rsa-3072", "rsa-4096", "ec-p256", "ec-p384"})
"""What public ACME CAs sign (no Ed25519, no ML-DSA)."""

_URLS = "acme-urls"
"""``scratch`` name of the account URLs registered in this run."""


@dataclass(frozen=True, eq=False)
class AcmeAccountSpec(AuthoritySpec):
    directory: str = ""
    contact: tuple[str, ...] = ()


@dataclass(frozen=True, eq=False)
class AcmeLeafSpec(CertificateSpec):
    issuer_type = "acme"
    issuers: tuple[str, ...] = ()
    acme: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Each issuer's account settings (no secrets: environment variable names)."""

    @property
    def authorities(self) -> tuple[str, ...]:
        return self.issuers or (self.issuer,)


class AcmeIssuer(Issuer):
    types = ("acme",)
    authority_spec_class = AcmeAccountSpec
    certificate_spec_class = AcmeLeafSpec
    certificate_checks = ACME_CERTIFICATE_CHECKS
    authority_has_certificate = False
    publishes_renewal_info = True

    # -- config ---------------------------------------------------------------------
    def authority_spec(self, name: str, authority: Any, config: Any) -> AcmeAccountSpec:
        spec = authority.model_dump(mode="json", exclude={"lifecycle"}, exclude_none=True)
        for solver in spec["solvers"]:
            route53 = (solver.get("dns01") or {}).get("route53")
            if route53 is not None:  # apply needs the connection settings, not just the name
                provider = config.providers[route53["provider"]]
                route53["provider_settings"] = provider.model_dump(mode="json", exclude_none=True)
        return AcmeAccountSpec.parse(spec)

    def certificate_fields(
        self, name: str, certificate: Any, authority: Any, config: Any, root: Path
    ) -> dict[str, Any]:
        # Apply tries the issuers in order and needs each one's settings.
        fields = super().certificate_fields(name, certificate, authority, config, root)
        fields["issuer_type"] = AcmeLeafSpec.issuer_type
        fields["issuers"] = certificate.issuers
        fields["acme"] = {
            issuer: self.authority_spec(issuer, config.authorities[issuer], config).to_json()
            for issuer in certificate.issuers
        }
        return fields

    def key_error(self, key: str) -> str | None:
        if key in ACME_KEYS:
            return None
        return f"ACME CAs issue certificates for {', '.join(sorted(ACME_KEYS))} keys, not {key}"

    def iam_statements(self, name: str, authority: Any, config: Any) -> list[Statement]:
        """The TXT records of each Route 53 dns-01 solver (``route53.iam_statements``)."""
        from reconciler.providers.aws.route53 import iam_statements

        statements: list[Statement] = []
        for solver in authority.solvers:
            route53 = solver.dns01.route53 if solver.dns01 is not None else None
            if route53 is not None:
                provider = config.providers[route53.provider]
                statements += iam_statements(provider, route53.zone_id, "TXT", reads=True)
        return statements

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
        """An account: registered once, updated when its contact changes, registered
        anew at a new directory."""
        spec = authority.spec
        assert isinstance(spec, AcmeAccountSpec)
        after = spec.extended(
            renew_before=authority.renew_before, prevent_destroy=authority.prevent_destroy
        )
        directory = spec.directory
        if record is None:
            reason = f"no account at {directory} yet"
            return Change(authority.address, Action.REGISTER, (reason,), None, after)
        recorded = AcmeAccountSpec.parse(record.spec)
        before = {**record.spec, "account": record.key_id}
        if recorded.directory != directory:
            reason = f"directory changed: {record.spec.get('directory')} → {directory}"
            return Change(authority.address, Action.REGISTER, (reason,), before, after)
        if recorded.contact != spec.contact:
            old, new = recorded.contact, spec.contact
            reason = f"contact changed: {', '.join(old)} → {', '.join(new)}"
            return Change(authority.address, Action.UPDATE, (reason,), before, after)
        return None

    def renewal_windows(
        self,
        certificates: Sequence[DesiredCertificate],
        recorded: RecordedState,
        certificate_pem: CertificatePem,
        root: Path,
    ) -> tuple[dict[str, Any], list[str]]:
        from reconciler.issuers.acme_renewal_info import acme_renewal_windows

        return acme_renewal_windows(certificates, recorded, certificate_pem, root)

    # -- apply: certificates --------------------------------------------------------
    def batch_key(self, change: Change) -> Hashable | None:
        return "acme-orders"  # every ACME order of a run is placed in parallel

    def prepare(self, ctx: ApplyAccess, change: Change) -> Prepared:
        ctx.remember_replaced(change)
        return Prepared(ctx.key_for(change, _leaf(change)))

    def issue(self, ctx: ApplyAccess, change: Change, prepared: Prepared) -> Issuance:
        (outcome,) = self.issue_together(ctx, [(change, prepared)])
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def issue_together(
        self, ctx: ApplyAccess, items: Sequence[tuple[Change, Prepared]]
    ) -> list[Issuance | Exception]:
        """Run the orders in parallel, up to ``parallelism`` at a time; each tries its
        issuers in order.  Keys were journaled by the runner before this."""
        from reconciler.issuers.acme_orders import OrderJob, failure, run_orders

        accounts: dict[str, AcmeAccount] = {}
        jobs = []
        key_pems: dict[str, bytes] = {}
        for change, prepared in items:
            spec = _leaf(change)
            for issuer in spec.authorities:
                if issuer not in accounts and not ctx.failed(f"authority.{issuer}"):
                    # A missing account is reported per certificate ("no ACME account").
                    with contextlib.suppress(CertformError):
                        accounts[issuer] = account(ctx, issuer, spec.acme[issuer])
            assert prepared.key_der is not None
            key_pem = private_key_to_pem(ctx.key_object(prepared.key_der))
            key_pems[change.address] = key_pem
            jobs.append(OrderJob(change.address, list(spec.names), list(spec.authorities), key_pem))
        ctx.report(f"Placing {len(jobs)} ACME order(s), up to {ctx.parallelism} at a time…")
        outcomes = run_orders(jobs, accounts, ctx.parallelism, ctx.report)
        results: list[Issuance | Exception] = []
        for change, prepared in items:
            outcome = outcomes[change.address]
            if outcome.issued is None:
                results.append(failure(outcome))
                continue
            issued = outcome.issued
            spec = {**_leaf(change).recorded(), "issued_by": issued.authority}
            record = leaf_record(change, spec, issued.certificate, f"acme:{issued.authority}")
            assert prepared.key_der is not None
            results.append(
                Issuance(
                    record,
                    IssuedMaterial(issued.certificate_pem, issued.chain_pem, ""),
                    prepared.key_der,
                    key_pems[change.address],
                    f"serial {issued.serial}, {outcome.note}",
                    f" (serial {issued.serial[:16]}…, {outcome.note}, "
                    f"expires {record.not_after:%Y-%m-%d})",
                )
            )
        return results

    # -- apply: accounts ------------------------------------------------------------
    def prepare_authority(self, ctx: ApplyAccess, change: Change) -> Prepared:
        if change.action == Action.UPDATE:
            return Prepared()
        from reconciler.acme.client import new_account_key_der

        return Prepared(ctx.store.journaled_key(change.address) or new_account_key_der())

    def act_authority(
        self, ctx: ApplyAccess, change: Change, prepared: Prepared
    ) -> AuthorityIssuance:
        spec = _account(change)
        if change.action == Action.UPDATE:
            client = account(ctx, change.name, spec.recorded())
            client.update_contact()
            url, detail = str(client.url), f" (contact {', '.join(spec.contact)})"
        else:
            from reconciler.acme.client import AcmeAccount

            assert prepared.key_der is not None
            url = AcmeAccount(change.name, spec.recorded(), ctx.root, prepared.key_der).register()
            detail = f" ({url})"
        ctx.scratch(_URLS)[change.name] = url
        record = AuthorityRecord(
            name=change.name,
            spec=spec.recorded(),
            serial="",
            not_before=datetime.now(UTC),
            not_after=ACCOUNT_NOT_AFTER,
            key_id=url,
            issuer_key_id=None,
            prevent_destroy=spec.prevent_destroy,
        )
        return AuthorityIssuance(
            record, IssuedMaterial("", "", ""), prepared.key_der, f"account {url}", detail
        )

    # -- revocation -----------------------------------------------------------------
    def revoke(
        self, access: IssuerAccess, record: CertificateRecord, certificate_pem: str, reason: str
    ) -> str:
        """Revoke at the CA that issued it, with the account that ordered it."""
        spec = AcmeLeafSpec.parse(record.spec)
        issuer = spec.issuing_authority
        account_record = access.recorded.authorities.get(issuer)
        if account_record is None and issuer not in access.scratch(_URLS):
            raise PlanError(
                f"authority.{issuer} (the ACME account that ordered it) is not in the state"
            )
        settings = spec.acme.get(issuer) or (account_record.spec if account_record else {})
        account(access, issuer, settings).revoke(certificate_pem, reason)
        return f"revoked at {issuer} ({settings['directory']})"


def account(access: IssuerAccess, name: str, settings: Mapping[str, Any]) -> AcmeAccount:
    """The ACME account ``name``: registered in this run, else as recorded."""
    from reconciler.acme.client import AcmeAccount

    url = access.scratch(_URLS).get(name)
    if url is None:
        record = access.recorded.authorities.get(name)
        if record is None:
            raise StateError(f"authority.{name}: no ACME account in the state")
        url = record.key_id
    key_der = access.store.private_key("authority", name)
    return AcmeAccount(name, dict(settings), access.root, key_der, url)


def _leaf(change: Change) -> AcmeLeafSpec:
    assert isinstance(change.after, AcmeLeafSpec)
    return change.after


def _account(change: Change) -> AcmeAccountSpec:
    assert isinstance(change.after, AcmeAccountSpec)
    return change.after
