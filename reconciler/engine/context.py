"""What apply's steps share: one explicit context instead of an object's attributes.

``ApplyContext`` holds the inputs of a run (store, plan, recorded state, where
output goes, the config root, run id, actor) and its results; ``RunMemory``
the little a run remembers between steps (material issued in this run, copies
to retire, certificates superseded, revocations made, issuers' caches).  Step
functions and issuers receive it; nothing else is shared.
"""

from __future__ import annotations

import getpass
import os
import socket
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reconciler.model.material import CertificateMaterial
from reconciler.model.records import CertificateRecord, RecordedState, RevocationRecord
from reconciler.pki.keys import (
    PrivateKey,
    generate_private_key,
    private_key_from_der,
    private_key_to_der,
)
from reconciler.plan.model import Action, Change, Plan
from reconciler.plan.specs import CertificateSpec
from reconciler.state.store import StateStore

Reporter = Callable[[str], None]


@dataclass
class ApplyResult:
    done: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    waiting: dict[str, str] = field(default_factory=dict)
    """Steps waiting for someone else (a domain owner's approval), and the steps
    that need them: neither done nor failed, and no reason for apply to fail."""
    covered: dict[str, str] = field(default_factory=dict)
    """Failed steps whose every dependant was done through a fallback (a first ACME
    CA that is down while the next one issued everything): a warning, not a
    failure; still unrecorded, so the next apply tries them again."""

    @property
    def ok(self) -> bool:
        return not self.failed and not self.skipped


@dataclass
class RunMemory:
    """What one run remembers between its steps (in memory only; never secrets
    beyond the deployable material of certificates issued in this run)."""

    fresh: dict[str, CertificateMaterial] = field(default_factory=dict)
    """Certificates issued in this run, ready to deploy without reading state again."""
    retirable: dict[str, list[tuple[Mapping[str, Any], dict[str, Any]]]] = field(
        default_factory=dict
    )
    """Per certificate: (target settings, facts) of unbound copies to delete with it."""
    replaced: dict[str, tuple[CertificateRecord, str]] = field(default_factory=dict)
    """Per certificate: the record and PEM a renewal supersedes (``revoke_replaced``)."""
    revoked_now: list[RevocationRecord] = field(default_factory=list)
    caches: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Issuers' own run-scoped caches (``scratch``)."""
    generated: dict[bytes, PrivateKey] = field(default_factory=dict, repr=False)
    """Keys ``new_key`` generated, by their DER, until the issuer takes them
    (``key_object``): the act signs with the object instead of parsing the DER
    it was just serialised to."""


@dataclass
class ApplyContext:
    """One run of apply: its inputs, its results and its memory."""

    store: StateStore
    plan: Plan
    recorded: RecordedState
    report: Reporter
    root: Path
    run_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    actor: str = field(default_factory=lambda: actor())
    parallelism: int = 10
    result: ApplyResult = field(default_factory=ApplyResult)
    memory: RunMemory = field(default_factory=RunMemory)

    # -- what issuers may use (``issuers.base.ApplyAccess``) -------------------------
    def scratch(self, name: str) -> dict[str, Any]:
        return self.memory.caches.setdefault(name, {})

    @property
    def revoked_now(self) -> list[RevocationRecord]:
        return self.memory.revoked_now

    def failed(self, address: str) -> bool:
        result = self.result
        return address in result.failed or address in result.skipped or address in result.waiting

    def key_for(self, change: Change, spec: CertificateSpec) -> bytes:
        """A new key, unless this is a renewal of a certificate whose policy keeps it."""
        if change.action == Action.RENEW and spec.key_rotation == "never":
            record = self.recorded.certificates.get(change.name)
            if record is not None and record.has_key:
                return self.store.private_key("certificate", change.name)
        return self.new_key(change, spec.key)

    def new_key(self, change: Change, algorithm: str) -> bytes:
        """A key for a new issuance: the one an interrupted run generated, if any."""
        reused = self.store.journaled_key(change.address)
        if reused is not None:
            return reused
        key = generate_private_key(algorithm)
        der = private_key_to_der(key)
        self.memory.generated[der] = key
        return der

    def key_object(self, der: bytes) -> PrivateKey:
        """The key of ``der`` (a prepared step's journaled key): the object this run
        generated it as, taken once, or parsed (a reused or kept key)."""
        key = self.memory.generated.pop(der, None)
        return key if key is not None else private_key_from_der(der)

    def remember_replaced(self, change: Change) -> None:
        """Keep the certificate a renewal supersedes, to revoke it once nothing serves it."""
        after = change.after
        replaced = self.memory.replaced
        if not isinstance(after, CertificateSpec) or not after.revoke_replaced:
            return
        if change.name in replaced:
            return
        record = self.recorded.certificates.get(change.name)
        if record is None or record.revoked_at is not None:
            return
        pem = self.store.material("certificate", change.name).certificate_pem
        replaced[change.name] = (record, pem)


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
