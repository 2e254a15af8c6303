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

import getpass
import os
import socket
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives import serialization

from reconciler.engine.acme_orders import OrderOutcome
from reconciler.engine.acme_steps import AcmeSteps
from reconciler.engine.faults import fault_point
from reconciler.engine.revocation_steps import RevocationSteps
from reconciler.engine.step_material import deployable, issued_material, leaf_record, spec_of
from reconciler.engine.verify import deploy_verified
from reconciler.errors import CertformError, PlanError, ProviderError, StateError
from reconciler.fsutil import unsafe_key_directory
from reconciler.pki.builder import certificate_from_pem
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
from reconciler.providers.private_ca import (
    SigningAuthority,
    issue_authority,
    issue_leaf,
    key_id_of,
)
from reconciler.state.records import (
    AuthorityRecord,
    BindingRecord,
    CertificateRecord,
    IssuedMaterial,
    RecordedState,
    RevocationRecord,
)
from reconciler.state.store import StateStore

if TYPE_CHECKING:
    pass

Reporter = Callable[[str], None]


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


class Applier(AcmeSteps, RevocationSteps):
    """Executes one plan against one state store."""

    def __init__(
        self,
        store: StateStore,
        plan: Plan,
        recorded: RecordedState,
        report: Reporter,
        parallelism: int = 10,
        *,
        root: Path | None = None,
    ) -> None:
        self.store = store
        self.plan = plan
        self.recorded = recorded
        self.report = report
        # Where relative target paths and imported files resolve: the loaded config's
        # root.  ``plan.config_root`` only for a plan made in this process (benches).
        self.root = root if root is not None else Path(plan.config_root)
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
        self._check_key_directories()
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
    def _check_key_directories(self) -> None:
        """Before anything changes: refuse to deploy a private key into a directory
        others can write to or that another user owns (they could swap the key)."""
        checked: set[Path] = set()
        for change in self.plan.changes:
            if change.kind != "binding" or change.action not in (Action.BIND, Action.REBIND):
                continue
            try:
                assert change.after is not None
                target = target_from_settings(change.after["target"], self.root)
            except (CertformError, ValueError, KeyError, AssertionError):
                continue  # the step itself reports it, with its address
            for directory in target.key_directories():
                if directory in checked:
                    continue
                checked.add(directory)
                problem = unsafe_key_directory(directory)
                if problem is not None:
                    raise ProviderError(f"{change.address}: {problem}. Nothing was changed.")

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
        spec = spec_of(change.after, ("renew_before", "prevent_destroy"))
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
            writer.put_authority(record, issued_material(issued), None if keep_key else key_der)
            self._audit(writer, change, f"serial {issued.serial}{final}")
        self._authorities.pop(change.name, None)
        return f" (serial {issued.serial[:16]}…{final})"

    def _authority_destroy(self, change: Change) -> str:
        entry = self._journal(change)
        with self.store.transaction(entry) as writer:
            writer.destroy("authority", change.name)
            self._audit(writer, change)
        return ""

    # -- certificates -------------------------------------------------------------
    def _certificate_issue(self, change: Change) -> str:
        spec = spec_of(change.after, ("renew_before", "prevent_destroy", "tags"))
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
        record = leaf_record(change, spec, issued.certificate, issuer.key_id)
        with self.store.transaction(entry) as writer:
            writer.put_certificate(record, issued_material(issued), key_der)
            self._audit(writer, change, f"serial {issued.serial}")
        self._fresh[change.name] = deployable(
            record, issued_material(issued), private_key_to_pem(key)
        )
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
        record = leaf_record(change, spec, material.certificate, "imported")
        issued = IssuedMaterial(material.certificate_pem, material.chain_pem, material.root_pem)
        with self.store.transaction(entry) as writer:
            writer.put_certificate(record, issued, key_der)
            self._audit(writer, change, f"imported serial {material.serial}")
        self._fresh[change.name] = deployable(record, issued, material.key_pem)
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
        self._fresh[change.name] = deployable(record, material, b"")
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
            return deployable(record, material, b"")
        key = private_key_from_der(self.store.private_key("certificate", name))
        return deployable(record, material, private_key_to_pem(key))

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
