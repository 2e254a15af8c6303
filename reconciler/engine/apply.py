"""The write side: execute a plan's changes in order, each one journaled.

Every step writes a journal entry before it touches anything (with the new
private key, sealed, when it generates one) and records its result together
with closing that entry in one transaction.  A process killed anywhere leaves
either nothing or an open entry whose key the next run reuses; targets are
re-observed on the next plan, so a half-deployed binding shows up as drift.

A failed step does not stop independent ones; steps that depend on it
(certificates under a failed CA, bindings of a failed certificate) are skipped.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import socket
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from reconciler.durations import parse_duration
from reconciler.engine.acme_orders import OrderJob, OrderOutcome, run_orders
from reconciler.engine.acme_orders import failure as order_failure
from reconciler.engine.faults import fault_point
from reconciler.engine.verify import deploy_verified
from reconciler.errors import CertformError, PlanError, StateError
from reconciler.fsutil import write_atomic
from reconciler.pki.builder import certificate_from_pem
from reconciler.pki.crl import Revoked, build_crl, crl_files
from reconciler.pki.keys import (
    generate_private_key,
    private_key_from_der,
    private_key_to_der,
    private_key_to_pem,
)
from reconciler.plan.model import KEY_STORE_ADDRESS, Action, Change, Plan
from reconciler.providers.aws.acm import validity_stamp
from reconciler.providers.base import CertificateMaterial
from reconciler.providers.catalog import target_from_settings
from reconciler.providers.filestamp import stamp_of
from reconciler.providers.private_ca import (
    Issued,
    SigningAuthority,
    crl_key_id,
    issue_authority,
    issue_leaf,
    key_id_of,
)
from reconciler.state.records import (
    AuthorityRecord,
    BindingRecord,
    CertificateRecord,
    CrlRecord,
    IssuedMaterial,
    RecordedState,
    RevocationRecord,
)
from reconciler.state.store import StateStore

if TYPE_CHECKING:
    from reconciler.acme.client import AcmeAccount

Reporter = Callable[[str], None]
ACCOUNT_NOT_AFTER = datetime(9999, 12, 31, tzinfo=UTC)
"""ACME accounts do not expire; their records carry this date so expiry checks pass."""


@dataclass
class ApplyResult:
    done: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.skipped


def actor(environ: Mapping[str, str] | None = None) -> str:
    """Who acts, for the audit log: the CI system's identity when running in CI
    (GitHub Actions, GitLab CI, Jenkins, generic CI), else user@host."""
    env = os.environ if environ is None else environ
    if env.get("GITHUB_ACTIONS") == "true":
        return (
            f"{env.get('GITHUB_ACTOR', '?')} via GitHub Actions "
            f"{env.get('GITHUB_REPOSITORY', '?')} run {env.get('GITHUB_RUN_ID', '?')}"
        )
    if env.get("GITLAB_CI") == "true":
        return (
            f"{env.get('GITLAB_USER_LOGIN', '?')} via GitLab CI "
            f"{env.get('CI_PROJECT_PATH', '?')} job {env.get('CI_JOB_ID', '?')}"
        )
    if env.get("JENKINS_URL"):
        return f"Jenkins {env.get('JOB_NAME', '?')} build {env.get('BUILD_NUMBER', '?')}"
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    local = f"{user}@{socket.gethostname()}"
    if env.get("CI"):
        job = env.get("CI_JOB_ID") or env.get("BUILD_ID") or "?"
        return f"{local} (CI job {job})"
    return local


def check_applicable(plan: Plan, recorded: RecordedState) -> None:
    """Refuse a plan made against another state, or an older version of this one."""
    if plan.lineage and plan.lineage != recorded.lineage:
        raise PlanError(
            "the saved plan was made for another state (lineage differs); run plan again"
        )
    if not plan.lineage and recorded.lineage and recorded.serial:
        raise PlanError("the state was created after this plan was made; run plan again")
    if plan.state_serial != recorded.serial:
        raise PlanError(
            f"the state changed since this plan was made (serial {plan.state_serial} → "
            f"{recorded.serial}); nothing was applied. Run plan again."
        )


class Applier:
    """Executes one plan against one state store."""

    def __init__(
        self,
        store: StateStore,
        plan: Plan,
        recorded: RecordedState,
        report: Reporter,
        parallelism: int = 10,
    ) -> None:
        self.store = store
        self.plan = plan
        self.recorded = recorded
        self.report = report
        self.root = Path(plan.config_root)
        self.run_id = str(uuid.uuid4())
        self.actor = actor()
        self.result = ApplyResult()
        self._authorities: dict[str, SigningAuthority] = {}
        self._entry: int | None = None
        self._fresh: dict[str, CertificateMaterial] = {}
        self._retirable: dict[str, list[tuple[dict, dict]]] = {}
        self.parallelism = parallelism
        self._acme_urls: dict[str, str] = {}
        self._acme_orders: dict[str, tuple[int, bytes, OrderOutcome]] | None = None
        self._replaced: dict[str, tuple[CertificateRecord, str]] = {}
        self._revoked_now: list[RevocationRecord] = []
        self._replaced_revoked = False

    def run(self) -> ApplyResult:
        if self.recorded.interrupted:
            self.report(
                f"Recovering from an interrupted apply ({len(self.recorded.interrupted)} "
                "unfinished step(s)); generated keys are reused."
            )
            self.store.mark_interrupted()
        for change in self.plan.changes:
            if change.kind == "certificate" and self._acme_orders is None:
                self._place_acme_orders()
            if change.kind == "crl" and not self._replaced_revoked:
                self._revoke_replaced()
            blocker = self._blocked_by(change)
            if blocker:
                self.result.skipped[change.address] = f"{blocker} failed"
                self.report(f"{change.address}: skipped ({blocker} failed)")
                continue
            self._run_step(change)
        if not self._replaced_revoked:
            self._revoke_replaced()
        self._apply_state_updates()
        self.store.prune_journal()
        return self.result

    # -- orchestration ------------------------------------------------------------
    def _blocked_by(self, change: Change) -> str | None:
        after = change.after or {}
        dependencies: list[str] = []
        if change.kind == "binding" and after:
            dependencies.append(f"certificate.{after['certificate']}")
        elif change.kind == "certificate" and after:
            issuers = [f"authority.{i}" for i in after.get("issuers") or [after["issuer"]]]
            failed = self.result.failed.keys() | self.result.skipped.keys()
            if all(issuer in failed for issuer in issuers):
                return issuers[0]  # with fallback issuers, one that works is enough
            return None
        elif change.kind == "authority" and after.get("parent"):
            dependencies.append(f"authority.{after['parent']}")
        elif change.kind == "crl":
            dependencies.append(f"authority.{after['authority']}")
        for dependency in dependencies:
            if dependency in self.result.failed or dependency in self.result.skipped:
                return dependency
        return None

    def _run_step(self, change: Change) -> None:
        step = getattr(self, f"_{change.kind}_{change.action.value}", None)
        if step is None:
            raise PlanError(f"cannot {change.action.value} a {change.kind}")
        self.report(f"{change.address}: {change.action.value}…")
        self._entry = None
        try:
            detail = step(change)
        except (CertformError, OSError, ValueError) as exc:
            if self._entry is not None:
                self.store.journal_finish(self._entry, "failed")
            message = str(exc) if isinstance(exc, CertformError) else type(exc).__name__
            if isinstance(exc, OSError):
                message = f"{exc.strerror or exc}"
            self.result.failed[change.address] = message
            self.store.audit(
                self.actor, "apply", change.address, change.action.value, "failed", message
            )
            self.report(f"{change.address}: {change.action.value} FAILED: {message}")
            return
        self.result.done.append(change.address)
        self.report(f"{change.address}: {change.action.value} done{detail}")

    def _journal(self, change: Change, key_der: bytes | None = None) -> int:
        """Record the step before it acts; a failure closes the entry as failed."""
        self._entry = self.store.journal_start(
            self.run_id, change.address, change.action.value, key_der
        )
        return self._entry

    def _key_for(self, change: Change, spec: dict) -> bytes:
        """A new key, unless this is a renewal of a certificate whose policy keeps it."""
        if change.action == Action.RENEW and spec.get("key_rotation") == "never":
            record = self.recorded.certificates.get(change.name)
            if record is not None and record.has_key:
                return self.store.private_key("certificate", change.name)
        return self._new_key(change, spec["key"])

    def _new_key(self, change: Change, algorithm: str) -> bytes:
        """A key for a new issuance: the one an interrupted run generated, if any."""
        reused = self.store.journaled_key(change.address)
        if reused is not None:
            return reused
        return private_key_to_der(generate_private_key(algorithm))

    # -- authorities --------------------------------------------------------------
    def _signing_authority(self, name: str) -> SigningAuthority:
        cached = self._authorities.get(name)
        if cached is not None:
            return cached
        material = self.store.material("authority", name)
        authority = SigningAuthority(
            name=name,
            certificate=certificate_from_pem(material.certificate_pem),
            key=private_key_from_der(self.store.private_key("authority", name)),
            chain_pem=material.chain_pem,
            root_pem=material.root_pem,
        )
        self._authorities[name] = authority
        return authority

    def _authority_issue(self, change: Change) -> str:
        assert change.after is not None
        key_der = self._new_key(change, change.after["key"])
        return self._sign_authority(change, key_der, keep_key=False)

    _authority_replace = _authority_issue

    def _authority_renew(self, change: Change) -> str:
        key_der = self.store.private_key("authority", change.name)
        return self._sign_authority(change, key_der, keep_key=True)

    def _sign_authority(self, change: Change, key_der: bytes, *, keep_key: bool) -> str:
        spec = _spec(change.after, ("renew_before", "prevent_destroy"))
        entry = self._journal(change, None if keep_key else key_der)
        fault_point(change.address, "journaled")
        parent = self._signing_authority(spec["parent"]) if spec.get("parent") else None
        final = ""
        if not keep_key and spec.get("crl") and change.name in self.recorded.authorities:
            final = self._final_crl(change.name, spec["crl"])
        key = private_key_from_der(key_der)
        issued = issue_authority(spec, key, parent, datetime.now(UTC))
        fault_point(change.address, "acted")
        record = AuthorityRecord(
            name=change.name,
            spec=spec,
            serial=issued.serial,
            not_before=issued.certificate.not_valid_before_utc,
            not_after=issued.certificate.not_valid_after_utc,
            key_id=key_id_of(issued.certificate),
            issuer_key_id=parent.key_id if parent else None,
            prevent_destroy=bool(change.after and change.after.get("prevent_destroy")),
        )
        with self.store.transaction(entry) as writer:
            writer.put_authority(record, _material(issued), None if keep_key else key_der)
            self._audit(writer, change, f"serial {issued.serial}{final}")
        self._authorities.pop(change.name, None)
        return f" (serial {issued.serial[:16]}…{final})"

    # -- revoke_replaced ------------------------------------------------------------------
    def _remember_replaced(self, change: Change) -> None:
        """Keep the certificate a renewal supersedes, to revoke it once nothing serves it."""
        after = change.after or {}
        if not after.get("revoke_replaced") or change.name in self._replaced:
            return
        record = self.recorded.certificates.get(change.name)
        if record is None or record.revoked_at is not None:
            return
        pem = self.store.material("certificate", change.name).certificate_pem
        self._replaced[change.name] = (record, pem)

    def _revoke_replaced(self) -> None:
        """Create-before-destroy: revoke a superseded certificate only after every one of
        its bindings was moved to the successor in this run."""
        self._replaced_revoked = True
        for name, (record, pem) in self._replaced.items():
            address = f"certificate.{name}"
            if address not in self.result.done:
                continue
            stuck = [
                c.address
                for c in self.plan.changes
                if c.kind == "binding"
                and (c.after or {}).get("certificate") == name
                and c.address not in self.result.done
            ]
            if stuck:
                self.report(
                    f"{address}: previous serial {record.serial[:16]}… kept, not revoked: "
                    f"{', '.join(stuck)} did not move to the new certificate"
                )
                continue
            issuer = record.spec.get("issued_by") or record.spec["issuer"]
            try:
                if record.spec.get("issuer_type") == "acme":
                    spec = (record.spec.get("acme") or {}).get(issuer, {})
                    self._acme_account(issuer, spec).revoke(pem, "superseded")
            except CertformError as exc:
                self.store.audit(self.actor, "apply", address, "revoke", "failed", str(exc))
                self.report(f"{address}: revoking the previous certificate FAILED: {exc}")
                continue
            now = datetime.now(UTC).replace(microsecond=0)
            with self.store.transaction() as writer:
                writer.mark_revoked(name, record.serial, now, "superseded", issuer)
                writer.audit(
                    self.actor, "apply", address, "revoke", "ok",
                    f"previous serial {record.serial} revoked (superseded)",
                )  # fmt: skip
            self._revoked_now.append(
                RevocationRecord(address, record.serial, issuer, now, "superseded")
            )
            self.report(f"{address}: previous serial {record.serial[:16]}… revoked (superseded)")

    # -- CRLs ---------------------------------------------------------------------------
    def _crl_publish(self, change: Change) -> str:
        """Sign the full CRL of one CA and publish DER + PEM atomically."""
        assert change.after is not None
        name = change.after["authority"]
        settings = change.after["crl"]
        entry = self._journal(change)
        authority = self._signing_authority(name)
        revoked = [
            Revoked(r.serial, r.revoked_at, r.reason)
            for r in (*self.recorded.revocations, *self._revoked_now)
            if r.issuer == name
        ]
        previous = self.recorded.crls.get(name)
        number = (previous.number if previous else 0) + 1
        now = datetime.now(UTC).replace(microsecond=0)
        next_update = now + parse_duration(settings["validity"])
        crl = build_crl(authority.certificate, authority.key, revoked, number, now, next_update)
        files = self._write_crl(name, settings, authority, crl)
        fault_point(change.address, "acted")
        record = CrlRecord(name, number, now, next_update, len(revoked), files)
        with self.store.transaction(entry) as writer:
            writer.put_crl(record)
            self._audit(writer, change, f"CRL #{number}, {len(revoked)} revoked")
        return f" (CRL #{number}, {len(revoked)} revoked, next update {next_update:%Y-%m-%d})"

    def _write_crl(
        self,
        name: str,
        settings: dict,
        authority: SigningAuthority,
        crl: x509.CertificateRevocationList,
    ) -> dict[str, list[int | str]]:
        """DER + PEM, atomically; named per CA key when the URL has ``{key_id}``."""
        directory = Path(settings["publish"]["directory"])
        directory = directory if directory.is_absolute() else self.root / directory
        directory.mkdir(parents=True, exist_ok=True)
        stem = name
        if "{key_id}" in settings["url"]:
            stem = f"{name}-{crl_key_id(authority.key_id)}"
        files = {}
        for file_name, data in zip((f"{stem}.crl", f"{stem}.crl.pem"), crl_files(crl), strict=True):
            write_atomic(directory / file_name, data, 0o644)
            files[file_name] = stamp_of(directory / file_name, data)
        return files

    def _final_crl(self, name: str, settings: dict) -> str:
        """Before a CA gets a new key: a last CRL for the old key, valid until the old
        CA certificate (and so everything it signed) expires, so relying parties
        can keep checking certificates that are still out there."""
        old = self._signing_authority(name)
        revoked = [
            Revoked(r.serial, r.revoked_at, r.reason)
            for r in (*self.recorded.revocations, *self._revoked_now)
            if r.issuer == name
        ]
        previous = self.recorded.crls.get(name)
        number = (previous.number if previous else 0) + 1
        now = datetime.now(UTC).replace(microsecond=0)
        until = old.certificate.not_valid_after_utc
        crl = build_crl(old.certificate, old.key, revoked, number, now, until)
        files = self._write_crl(name, settings, old, crl)
        self._authorities.pop(name, None)
        where = ", ".join(files)
        return f"; final CRL #{number} of the old key published until {until:%Y-%m-%d} ({where})"

    # -- ACME accounts -------------------------------------------------------------------
    def _authority_register(self, change: Change) -> str:
        from reconciler.acme.client import AcmeAccount, new_account_key_der

        spec = _spec(change.after, ("renew_before", "prevent_destroy"))
        key_der = self.store.journaled_key(change.address) or new_account_key_der()
        entry = self._journal(change, key_der)
        fault_point(change.address, "journaled")
        url = AcmeAccount(change.name, spec, self.root, key_der).register()
        fault_point(change.address, "acted")
        self._record_account(change, spec, url, key_der, entry)
        return f" ({url})"

    def _authority_update(self, change: Change) -> str:
        spec = _spec(change.after, ("renew_before", "prevent_destroy"))
        account = self._acme_account(change.name, spec)
        entry = self._journal(change)
        account.update_contact()
        self._record_account(change, spec, str(account.url), None, entry)
        return f" (contact {', '.join(spec['contact'])})"

    def _record_account(
        self, change: Change, spec: dict, url: str, key_der: bytes | None, entry: int
    ) -> None:
        now = datetime.now(UTC)
        record = AuthorityRecord(
            name=change.name,
            spec=spec,
            serial="",
            not_before=now,
            not_after=ACCOUNT_NOT_AFTER,
            key_id=url,
            issuer_key_id=None,
            prevent_destroy=bool(change.after and change.after.get("prevent_destroy")),
        )
        with self.store.transaction(entry) as writer:
            writer.put_authority(record, IssuedMaterial("", "", ""), key_der)
            self._audit(writer, change, f"account {url}")
        self._acme_urls[change.name] = url

    def _acme_account(self, name: str, spec: dict) -> AcmeAccount:
        from reconciler.acme.client import AcmeAccount

        url = self._acme_urls.get(name)
        if url is None:
            record = self.recorded.authorities.get(name)
            if record is None:
                raise StateError(f"authority.{name}: no ACME account in the state")
            url = record.key_id
        key_der = self.store.private_key("authority", name)
        return AcmeAccount(name, spec, self.root, key_der, url)

    def _place_acme_orders(self) -> None:
        """Journal a key for every ACME issuance, then run the orders in parallel."""
        self._acme_orders = {}
        jobs: list[OrderJob] = []
        keys: dict[str, tuple[int, bytes]] = {}
        accounts: dict[str, AcmeAccount] = {}
        for change in self.plan.changes:
            after = change.after or {}
            if change.kind != "certificate" or after.get("issuer_type") != "acme":
                continue
            if change.action not in (Action.ISSUE, Action.RENEW, Action.REPLACE):
                continue
            if self._blocked_by(change):
                continue
            for issuer in after["issuers"]:
                if issuer not in accounts and f"authority.{issuer}" not in self.result.failed:
                    # A missing account is reported per certificate ("no ACME account").
                    with contextlib.suppress(CertformError):
                        accounts[issuer] = self._acme_account(issuer, after["acme"][issuer])
            self._remember_replaced(change)
            key_der = self._key_for(change, after)
            entry = self.store.journal_start(
                self.run_id, change.address, change.action.value, key_der
            )
            keys[change.address] = (entry, key_der)
            key_pem = private_key_to_pem(private_key_from_der(key_der))
            jobs.append(OrderJob(change.address, after["names"], after["issuers"], key_pem))
        if not jobs:
            return
        self.report(f"Placing {len(jobs)} ACME order(s), up to {self.parallelism} at a time…")
        outcomes = run_orders(jobs, accounts, self.parallelism, self.report)
        for address, outcome in outcomes.items():
            entry, key_der = keys[address]
            self._acme_orders[address] = (entry, key_der, outcome)

    def _certificate_from_acme(self, change: Change, spec: dict) -> str:
        assert self._acme_orders is not None
        entry, key_der, outcome = self._acme_orders[change.address]
        self._entry = entry
        fault_point(change.address, "journaled")
        if outcome.issued is None:
            raise order_failure(outcome)
        issued = outcome.issued
        fault_point(change.address, "acted")
        after = change.after or {}
        record = CertificateRecord(
            name=change.name,
            spec={**spec, "issued_by": issued.authority},
            serial=issued.serial,
            not_before=issued.certificate.not_valid_before_utc,
            not_after=issued.certificate.not_valid_after_utc,
            issuer_key_id=f"acme:{issued.authority}",
            fingerprint=issued.fingerprint,
            prevent_destroy=bool(after.get("prevent_destroy")),
            tags=dict(after.get("tags") or {}),
            has_key=True,
        )
        material = IssuedMaterial(issued.certificate_pem, issued.chain_pem, "")
        with self.store.transaction(entry) as writer:
            writer.put_certificate(record, material, key_der)
            self._audit(writer, change, f"serial {issued.serial}, {outcome.note}")
        key_pem = private_key_to_pem(private_key_from_der(key_der))
        self._fresh[change.name] = _deployable(record, material, key_pem)
        return (
            f" (serial {issued.serial[:16]}…, {outcome.note}, expires {record.not_after:%Y-%m-%d})"
        )

    def _authority_destroy(self, change: Change) -> str:
        entry = self._journal(change)
        with self.store.transaction(entry) as writer:
            writer.destroy("authority", change.name)
            self._audit(writer, change)
        return ""

    # -- certificates -------------------------------------------------------------
    def _certificate_issue(self, change: Change) -> str:
        assert change.after is not None
        after = change.after
        spec = _spec(after, ("renew_before", "prevent_destroy", "tags"))
        if spec.get("issuer_type") == "aws-acm":
            return self._certificate_request_from_acm(change, spec)
        if spec.get("issuer_type") == "acme":
            return self._certificate_from_acme(change, spec)
        if spec.get("issuer_type") == "imported":
            return self._certificate_import(change, spec)
        self._remember_replaced(change)
        key_der = self._key_for(change, spec)
        entry = self._journal(change, key_der)
        fault_point(change.address, "journaled")
        issuer = self._signing_authority(spec["issuer"])
        key = private_key_from_der(key_der)
        issued = issue_leaf(spec, key, issuer, datetime.now(UTC))
        fault_point(change.address, "acted")
        record = CertificateRecord(
            name=change.name,
            spec=spec,
            serial=issued.serial,
            not_before=issued.certificate.not_valid_before_utc,
            not_after=issued.certificate.not_valid_after_utc,
            issuer_key_id=issuer.key_id,
            fingerprint=issued.fingerprint,
            prevent_destroy=bool(after.get("prevent_destroy")),
            tags=dict(after.get("tags") or {}),
            has_key=True,
        )
        with self.store.transaction(entry) as writer:
            writer.put_certificate(record, _material(issued), key_der)
            self._audit(writer, change, f"serial {issued.serial}")
        self._fresh[change.name] = _deployable(record, _material(issued), private_key_to_pem(key))
        return f" (serial {issued.serial[:16]}…, expires {record.not_after:%Y-%m-%d})"

    _certificate_renew = _certificate_issue
    _certificate_replace = _certificate_issue

    def _certificate_import(self, change: Change, spec: dict) -> str:
        """Store an imported certificate and its key (read again from its files:
        the plan holds only their paths)."""
        from reconciler.config.imported import ImportError_, load_imported

        files = spec["import"]
        try:
            material = load_imported(
                self.root,
                files["certificate"],
                files.get("chain"),
                files.get("private_key"),
                files.get("private_key_env"),
            )
        except ImportError_ as exc:
            raise PlanError(f"cannot import certificate.{change.name}: {exc}") from None
        if material.fingerprint != spec["fingerprint"]:
            raise PlanError(
                f"{files['certificate']} changed since the plan was made; run plan again"
            )
        key = serialization.load_pem_private_key(material.key_pem, None)
        key_der = private_key_to_der(key)  # type: ignore[arg-type]
        entry = self._journal(change, key_der)
        after = change.after or {}
        cert = material.certificate
        record = CertificateRecord(
            name=change.name,
            spec=spec,
            serial=material.serial,
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
            issuer_key_id="imported",
            fingerprint=material.fingerprint,
            prevent_destroy=bool(after.get("prevent_destroy")),
            tags=dict(after.get("tags") or {}),
            has_key=True,
        )
        issued = IssuedMaterial(material.certificate_pem, material.chain_pem, material.root_pem)
        with self.store.transaction(entry) as writer:
            writer.put_certificate(record, issued, key_der)
            self._audit(writer, change, f"imported serial {material.serial}")
        self._fresh[change.name] = _deployable(record, issued, material.key_pem)
        return f" (imported serial {material.serial[:16]}…, expires {record.not_after:%Y-%m-%d})"

    def _certificate_request_from_acm(self, change: Change, spec: dict) -> str:
        """ACM issues and keeps the key; we record the ARN and the public certificate."""
        from reconciler.providers.aws.acm_issuer import request_certificate

        after = change.after or {}
        tags = dict(after.get("tags") or {})
        entry = self._journal(change)
        fault_point(change.address, "journaled")
        previous = self.recorded.certificates.get(change.name)
        issued = request_certificate(
            spec, change.address, tags, previous.external_id if previous else None, self.report
        )
        fault_point(change.address, "acted")
        record = CertificateRecord(
            name=change.name,
            spec=spec,
            serial=issued.serial,
            not_before=issued.not_before,
            not_after=issued.not_after,
            issuer_key_id="aws-acm",
            fingerprint=issued.fingerprint,
            prevent_destroy=bool(after.get("prevent_destroy")),
            tags=tags,
            has_key=False,
            external_id=issued.arn,
        )
        material = IssuedMaterial(issued.certificate_pem, issued.chain_pem, "")
        with self.store.transaction(entry) as writer:
            writer.put_certificate(record, material, None)
            self._audit(writer, change, f"{issued.arn} serial {issued.serial}")
        self._fresh[change.name] = _deployable(record, material, b"")
        return f" ({issued.arn}, expires {issued.not_after:%Y-%m-%d})"

    def _certificate_destroy(self, change: Change) -> str:
        entry = self._journal(change)
        with self.store.transaction(entry) as writer:
            writer.destroy("certificate", change.name)
            self._audit(writer, change)
        self._retire_copies(change)
        return ""

    def _retire_copies(self, change: Change) -> None:
        """Delete copies targets made (ACM imports) once every binding is gone; a
        failure here is reported, the destroy itself is already recorded."""
        retirable = self._retirable.pop(change.name, [])
        detached = {id(facts) for _, facts in retirable}
        # A copy another binding still uses (say, a listener's default certificate,
        # which stays on unbind) is never deleted, whatever AWS's InUseBy says.
        seen = {
            str(b.facts.get("certificate_arn"))
            for b in self.recorded.bindings.values()
            if b.certificate == change.name and id(b.facts) not in detached
        }
        for settings, facts in retirable:
            key = str(facts.get("certificate_arn") or facts)
            if key in seen:
                continue
            seen.add(key)
            try:
                note = target_from_settings(settings, self.root).retire(facts)
            except CertformError as exc:
                note = f"could not clean up after {change.address}: {exc}"
            if note:
                self.report(f"{change.address}: {note}")
                self.store.audit(self.actor, "apply", change.address, "retire", "ok", note)

    # -- bindings -----------------------------------------------------------------
    def _binding_bind(self, change: Change) -> str:
        assert change.after is not None
        name = change.after["certificate"]
        target = target_from_settings(change.after["target"], self.root)
        material = self._certificate_material(name)
        entry = self._journal(change)
        fault_point(change.address, "journaled")
        previous = self.recorded.bindings.get(change.address)
        facts, verified = deploy_verified(target, material, previous.facts if previous else None)
        if material.acm_arn:
            facts["serial"] = None  # ACM renews in place: its serial is not ours to pin
        elif "certificate_arn" in facts and material.not_before is not None:
            facts["validity"] = validity_stamp(material.not_before, material.not_after)
        fault_point(change.address, "acted")
        record = BindingRecord(
            address=change.address,
            certificate=name,
            target=change.after["target"],
            serial=material.serial,
            facts=facts,
            deployed_at=datetime.now(UTC),
        )
        with self.store.transaction(entry) as writer:
            writer.put_binding(record)
            self._audit(writer, change, f"serial {material.serial}{verified}")
        return f" (serial {material.serial[:16]}…{verified})"

    _binding_rebind = _binding_bind

    def _binding_unbind(self, change: Change) -> str:
        record = self.recorded.bindings.get(change.address)
        assert change.before is not None
        target = target_from_settings(change.before["target"], self.root)
        entry = self._journal(change)
        fault_point(change.address, "journaled")
        detached = target.remove(record.facts if record else {})
        fault_point(change.address, "acted")
        if detached and record is not None:
            self._retirable.setdefault(record.certificate, []).append(
                (change.before["target"], record.facts)
            )
        with self.store.transaction(entry) as writer:
            writer.delete_binding(change.address)
            self._audit(writer, change)
        return ""

    def _certificate_material(self, name: str) -> CertificateMaterial:
        """What to deploy: just issued in this run (kept in memory), else from state."""
        fresh = self._fresh.get(name)
        if fresh is not None:
            return fresh
        record = self.recorded.certificates.get(name)
        if record is None:
            raise StateError(f"certificate.{name} is not in the state")
        material = self.store.material("certificate", name)
        if record.external_id:  # ACM issued it and keeps the key
            return _deployable(record, material, b"")
        key = private_key_from_der(self.store.private_key("certificate", name))
        return _deployable(record, material, private_key_to_pem(key))

    # -- remembered settings ------------------------------------------------------
    def _apply_state_updates(self) -> None:
        for update in self.plan.state_updates:
            if update.address == KEY_STORE_ADDRESS:
                self.store.rewrap_data_key()
                self.store.audit(
                    self.actor, "apply", update.address, "update", "ok",
                    f"data key re-wrapped under {update.after['key_store']}",
                )  # fmt: skip
                self.result.done.append(update.address)
                self.report(
                    f"{update.address}: data key re-wrapped under {update.after['key_store']}"
                )
                continue
            kind, name = update.address.split(".", 1)
            with self.store.transaction() as writer:
                writer.set_guard(
                    kind, name, bool(update.after.get("prevent_destroy")), update.after.get("tags")
                )
                writer.audit(self.actor, "apply", update.address, "update", "ok", "state only")
            self.result.done.append(update.address)
            self.report(f"{update.address}: settings recorded")

    def _audit(self, writer, change: Change, detail: str = "") -> None:  # type: ignore[no-untyped-def]
        writer.audit(self.actor, "apply", change.address, change.action.value, "ok", detail)


def _spec(after: dict | None, drop: tuple[str, ...]) -> dict:
    assert after is not None
    return {k: v for k, v in after.items() if k not in drop}


def _deployable(
    record: CertificateRecord, material: IssuedMaterial, key_pem: bytes
) -> CertificateMaterial:
    """What a target deploys: the recorded certificate, its PEMs and its key (empty
    when ACM keeps the key, in which case targets use ``acm_arn``)."""
    return CertificateMaterial(
        address=record.address,
        name=record.name,
        serial=record.serial,
        not_after=record.not_after,
        not_before=record.not_before,
        certificate_pem=material.certificate_pem,
        chain_pem=material.chain_pem,
        root_pem=material.root_pem,
        private_key_pem=key_pem,
        tags=dict(record.tags),
        acm_arn=record.external_id,
    )


def _material(issued: Issued) -> IssuedMaterial:
    return IssuedMaterial(issued.certificate_pem, issued.chain_pem, issued.root_pem)
