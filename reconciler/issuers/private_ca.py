"""The private CA issuer (``private-root``, ``private-subordinate``): certform keeps
the CA keys, signs the CA certificates and the leaves, and publishes CRLs.

Signing itself is pure (``private_ca_signing.py``); this module is the issuer's
side of config, plan and apply: its specs, its re-issue checks, the authority
steps (a renewal keeps the CA key, a replacement publishes a final CRL of the
old key first) and the CRL files.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography import x509

from reconciler.durations import parse_duration
from reconciler.filestamp import stamp_of
from reconciler.fsutil import PUBLIC_DIR_MODE, config_path, make_dirs, write_atomic
from reconciler.issuers.base import (
    ApplyAccess,
    AuthorityIssuance,
    Issuance,
    Issuer,
    IssuerAccess,
    Prepared,
    leaf_record,
)
from reconciler.issuers.private_ca_signing import (
    SigningAuthority,
    crl_key_id,
    issue_authority,
    issue_leaf,
    key_id_of,
)
from reconciler.model.records import AuthorityRecord, CertificateRecord
from reconciler.pki.builder import certificate_from_pem
from reconciler.pki.crl import Revoked, build_crl, crl_files
from reconciler.pki.keys import private_key_from_der, private_key_to_pem
from reconciler.plan.model import Action, Change
from reconciler.plan.specs import AuthoritySpec, CertificateSpec
from reconciler.policy.reissue import (
    AUTHORITY_CHECKS,
    CERTIFICATE_CHECKS,
    IssuedFacts,
    ReissueInput,
    evaluate,
    strongest,
)
from reconciler.policy.rules import Policy, key_violations

if TYPE_CHECKING:
    from reconciler.model.desired import DesiredAuthority
    from reconciler.providers.aws.iam import Statement

S3_PROVIDER = "aws"
"""Key of the provider's settings in a CRL spec's ``publish.s3`` (``s3_crl.PROVIDER``)."""

_CACHE = "private-ca"
"""``scratch`` name of the signing authorities loaded in this run."""


@dataclass(frozen=True, eq=False)
class PrivateCaSpec(AuthoritySpec):
    subject: Mapping[str, Any] = field(default_factory=dict)
    key: str = ""
    validity: str = ""
    path_length: int | None = None
    name_constraints: Mapping[str, Any] | None = None
    parent_crl_url: str | None = None


@dataclass(frozen=True, eq=False)
class PrivateLeafSpec(CertificateSpec):
    """A leaf a private CA signs: the shared fields only (no ``issuer_type``)."""


class PrivateCaIssuer(Issuer):
    types = ("private-root", "private-subordinate")
    authority_spec_class = PrivateCaSpec
    certificate_spec_class = PrivateLeafSpec
    certificate_checks = CERTIFICATE_CHECKS
    signs_authorities = True

    # -- config ---------------------------------------------------------------------
    def authority_spec(self, name: str, authority: Any, config: Any) -> PrivateCaSpec:
        spec: dict[str, Any] = {
            "type": authority.type,
            "subject": authority.subject.model_dump(exclude_none=True),
            "key": authority.key,
            "validity": authority.validity,
            "path_length": authority.path_length,
            "name_constraints": (
                authority.name_constraints.model_dump() if authority.name_constraints else None
            ),
        }
        if authority.crl is not None:
            spec["crl"] = _crl_settings(authority.crl, config)
        parent = getattr(authority, "parent", None)
        if parent is not None:
            spec["parent"] = parent
            parent_crl = getattr(config.authorities[parent], "crl", None)
            if parent_crl is not None:
                spec["parent_crl_url"] = parent_crl.url
        return PrivateCaSpec.parse(spec)

    def iam_statements(self, name: str, authority: Any, config: Any) -> list[Statement]:
        """The S3 object this CA's CRL is put to (``s3_crl.iam_statements``)."""
        s3 = authority.crl.publish.s3 if authority.crl is not None else None
        if s3 is None:
            return []
        from reconciler.providers.aws.s3_crl import iam_statements

        return iam_statements(config.providers[s3.provider], s3.bucket, s3.key)

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
        after = authority.spec.extended(
            renew_before=authority.renew_before, prevent_destroy=authority.prevent_destroy
        )
        if record is None:
            return Change(authority.address, Action.ISSUE, ("not issued yet",), None, after)
        facts = IssuedFacts(
            record.spec, record.not_before, record.not_after, record.issuer_key_id, True,
            revoked_at,
        )  # fmt: skip
        data = ReissueInput(
            authority.spec,
            authority.renew_before,
            facts,
            parent.key_id if parent else None,
            parent_rekeyed,
            now,
        )
        violations = evaluate(AUTHORITY_CHECKS, data)
        action = strongest(violations)
        if action is None:
            return None
        before = {
            **record.spec,
            "serial": record.serial,
            "not_after": record.not_after.isoformat(),
            "key_id": record.key_id,
        }
        return Change(
            authority.address, Action(action), tuple(v.reason for v in violations), before, after
        )

    def authority_policy_violations(self, spec: AuthoritySpec, policy: Policy) -> list[str]:
        assert isinstance(spec, PrivateCaSpec)
        return key_violations(str(spec.key), policy)

    # -- apply: leaves --------------------------------------------------------------
    def prepare(self, ctx: ApplyAccess, change: Change) -> Prepared:
        spec = _certificate(change)
        ctx.remember_replaced(change)
        return Prepared(ctx.key_for(change, spec))

    def issue(self, ctx: ApplyAccess, change: Change, prepared: Prepared) -> Issuance:
        spec = _certificate(change)
        assert prepared.key_der is not None
        issuer = signing_authority(ctx, spec.issuer)
        key = ctx.key_object(prepared.key_der)
        issued = issue_leaf(spec, key, issuer, datetime.now(UTC))
        record = leaf_record(change, spec.recorded(), issued.certificate, issuer.key_id)
        return Issuance(
            record,
            issued.material,
            prepared.key_der,
            private_key_to_pem(key),
            f"serial {issued.serial}",
            f" (serial {issued.serial[:16]}…, expires {record.not_after:%Y-%m-%d})",
        )

    def revoke(
        self, access: IssuerAccess, record: CertificateRecord, certificate_pem: str, reason: str
    ) -> str:
        """A private CA revokes by listing the serial in its CRL: say whether that will
        ever happen, since a CA without ``crl:`` publishes nothing relying parties see."""
        from reconciler.issuers.registry import certificate_spec

        issued_by = certificate_spec(record.spec).issuing_authority
        authority = access.recorded.authorities.get(issued_by)
        if authority is not None and authority.spec.get("crl"):
            return f"recorded as revoked; the next apply lists it in authority.{issued_by}'s CRL"
        return (
            f"recorded as revoked in the state only: authority.{issued_by} publishes no CRL, "
            "so clients that trust it will still accept this certificate until it expires. "
            f"To publish revocations, add `crl: {{publish: {{directory: DIR}}, url: URL}}` to "
            f"authority {issued_by} and apply: its CRL will list this serial"
        )

    # -- apply: the CA itself -------------------------------------------------------
    def prepare_authority(self, ctx: ApplyAccess, change: Change) -> Prepared:
        """A renewal keeps the CA key (not journaled: it is in state); issue and
        replace journal a new one."""
        spec = _authority(change)
        if change.action == Action.RENEW:
            return Prepared(None, ctx.store.private_key("authority", change.name))
        return Prepared(ctx.new_key(change, spec.key))

    def act_authority(
        self, ctx: ApplyAccess, change: Change, prepared: Prepared
    ) -> AuthorityIssuance:
        spec = _authority(change)
        keep_key = prepared.key_der is None
        key_der: bytes = prepared.data if keep_key else prepared.key_der  # type: ignore[assignment]
        parent = signing_authority(ctx, spec.parent) if spec.parent else None
        final = ""
        if not keep_key and spec.crl and change.name in ctx.recorded.authorities:
            final = final_crl(ctx, change.name, spec.crl)
        issued = issue_authority(spec, ctx.key_object(key_der), parent, datetime.now(UTC))
        record = AuthorityRecord(
            name=change.name,
            spec=spec.recorded(),
            serial=issued.serial,
            not_before=issued.certificate.not_valid_before_utc,
            not_after=issued.certificate.not_valid_after_utc,
            key_id=key_id_of(issued.certificate),
            issuer_key_id=parent.key_id if parent else None,
            prevent_destroy=spec.prevent_destroy,
        )
        ctx.scratch(_CACHE).pop(change.name, None)
        return AuthorityIssuance(
            record,
            issued.material,
            None if keep_key else key_der,
            f"serial {issued.serial}{final}",
            f" (serial {issued.serial[:16]}…{final})",
        )


def _crl_settings(crl: Any, config: Any) -> dict[str, Any]:
    """The CRL settings as the spec carries them; S3 publishing takes its aws
    provider's connection settings along (no secrets: credentials come from the
    AWS chain), as the ACM issuer does, so apply needs no config lookup."""
    settings: dict[str, Any] = crl.model_dump(mode="json", exclude_none=True)
    s3 = settings["publish"].get("s3")
    provider = config.providers.get(s3["provider"]) if s3 else None
    if s3 is not None and provider is not None and provider.type == "aws":
        s3[S3_PROVIDER] = provider.model_dump(mode="json", exclude_none=True)
    return settings


def _certificate(change: Change) -> CertificateSpec:
    assert isinstance(change.after, CertificateSpec)
    return change.after


def _authority(change: Change) -> PrivateCaSpec:
    assert isinstance(change.after, PrivateCaSpec)
    return change.after


# -- CA keys and CRLs -----------------------------------------------------------------
def signing_authority(ctx: ApplyAccess, name: str) -> SigningAuthority:
    """A CA ready to sign, loaded once per run (dropped when re-issued)."""
    cache: dict[str, SigningAuthority] = ctx.scratch(_CACHE)
    cached = cache.get(name)
    if cached is not None:
        return cached
    material = ctx.store.material("authority", name)
    authority = SigningAuthority(
        name=name,
        certificate=certificate_from_pem(material.certificate_pem),
        key=private_key_from_der(ctx.store.private_key("authority", name)),
        chain_pem=material.chain_pem,
        root_pem=material.root_pem,
    )
    cache[name] = authority
    return authority


def crl_contents(ctx: ApplyAccess, name: str) -> tuple[list[Revoked], int, datetime]:
    """Everything ``name`` ever revoked (recorded and in this run), the next CRL
    number and this update's time."""
    revoked = [
        Revoked(r.serial, r.revoked_at, r.reason)
        for r in (*ctx.recorded.revocations, *ctx.revoked_now)
        if r.issuer == name
    ]
    previous = ctx.recorded.crls.get(name)
    number = (previous.number if previous else 0) + 1
    return revoked, number, datetime.now(UTC).replace(microsecond=0)


def write_crl(
    root: Path,
    name: str,
    settings: Mapping[str, Any],
    authority: SigningAuthority,
    crl: x509.CertificateRevocationList,
) -> dict[str, list[int | str]]:
    """DER + PEM, atomically, to the directory; named per CA key when the URL has
    ``{key_id}``.  The DER CRL to S3 too when ``publish.s3`` is set (recorded as
    ``s3://bucket/key``).  Raises ProviderError when S3 refuses."""
    files: dict[str, list[int | str]] = {}
    der, pem = crl_files(crl)
    key_id = crl_key_id(authority.key_id)
    directory_setting = settings["publish"].get("directory")
    if directory_setting:
        directory = config_path(root, directory_setting)
        make_dirs(directory, PUBLIC_DIR_MODE)  # CRLs are public: served as they are
        stem = f"{name}-{key_id}" if "{key_id}" in settings["url"] else name
        for file_name, data in ((f"{stem}.crl", der), (f"{stem}.crl.pem", pem)):
            write_atomic(directory / file_name, data, 0o644)
            files[file_name] = stamp_of(directory / file_name, data)
    s3 = settings["publish"].get("s3")
    if s3:
        from reconciler.providers.aws.s3_crl import put_crl

        where, stamp = put_crl(s3, key_id, der)
        files[where] = stamp
    return files


def publish_crl(
    ctx: ApplyAccess, name: str, settings: Mapping[str, Any]
) -> tuple[int, datetime, datetime, int, dict[str, list[int | str]]]:
    """Sign the full CRL of CA ``name`` and write it: number, this and next update,
    entries, files."""
    authority = signing_authority(ctx, name)
    revoked, number, now = crl_contents(ctx, name)
    next_update = now + parse_duration(settings["validity"])
    crl = build_crl(authority.certificate, authority.key, revoked, number, now, next_update)
    files = write_crl(ctx.root, name, settings, authority, crl)
    return number, now, next_update, len(revoked), files


def final_crl(ctx: ApplyAccess, name: str, settings: Mapping[str, Any]) -> str:
    """Before a CA gets a new key: a last CRL for the old key, valid until the old
    CA certificate (and so everything it signed) expires, so relying parties
    can keep checking certificates that are still out there."""
    old = signing_authority(ctx, name)
    revoked, number, now = crl_contents(ctx, name)
    until = old.certificate.not_valid_after_utc
    crl = build_crl(old.certificate, old.key, revoked, number, now, until)
    files = write_crl(ctx.root, name, settings, old, crl)
    ctx.scratch(_CACHE).pop(name, None)
    where = ", ".join(files)
    return f"; final CRL #{number} of the old key published until {until:%Y-%m-%d} ({where})"
