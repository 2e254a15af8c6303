"""The small interface every deployment target implements.

A target is built from its validated config model and the config's root
directory.  The engine calls, in this order and nothing else:

* ``identity()`` — a stable key for the place it writes to; two bindings with
  the same identity are a config error, and the binding's address is built
  from it.
* ``observe(facts)`` — read-only: what is there now, compared with the facts
  ``deploy`` returned last time.  Must not change anything; must not raise for
  a missing or altered deployment (that is drift, reported as an Observation).
* ``deploy(material, previous)`` — put the certificate in place, all or
  nothing, and return the facts to remember.  ``previous`` are the facts of the
  last deploy of this binding (None for a new one), so a target can update in
  place (e.g. re-import into the same ACM ARN).  Idempotent: deploying the same
  material twice leaves the same result.  Raises ProviderError on failure.
* ``remove(facts)`` — take the deployment away.  Idempotent: removing what is
  already gone succeeds.  Returns True when the target no longer uses what
  deploy put in place (False when, e.g., a listener must keep its certificate).
* ``retire(facts)`` — after the certificate itself is destroyed, for bindings
  whose ``remove`` returned True: delete copies deploy made (an ACM import)
  when nothing uses them any more.  Returns a note for the output.

Verification (see ``engine/verify.py``): before ``deploy`` the engine takes a
``snapshot(material, previous)`` of what is served now; after it, ``verify_deployed``
(the target's own read-back, e.g. HAProxy's ``show ssl cert``) and, when the
binding has ``verify_endpoint``, a real TLS handshake must both show the new
serial.  Otherwise ``restore(snapshot)`` puts the previous certificate back
and the binding fails: a deploy that cannot be confirmed never stays half in.

Targets never see other certificates, the state store or the plan.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel

from reconciler.errors import ProviderError

if TYPE_CHECKING:
    from reconciler.providers.endpoint import EndpointSettings

ObservationStatus = Literal["in_sync", "drifted", "missing", "unreachable"]


@dataclass(frozen=True)
class CertificateMaterial:
    """Everything a target may need to serve one certificate.

    ``private_key_pem`` is secret: it is excluded from ``repr`` so that it can
    never reach a log line or a traceback through this object.
    """

    address: str
    name: str
    serial: str
    not_after: datetime
    certificate_pem: str
    chain_pem: str
    root_pem: str
    private_key_pem: bytes = field(repr=False)
    tags: dict[str, str] = field(default_factory=dict)
    acm_arn: str | None = None
    """Set for certificates ACM issued: the key stays in ACM, targets use this ARN."""
    not_before: datetime | None = None

    @property
    def fullchain_pem(self) -> str:
        return self.certificate_pem + self.chain_pem


@dataclass(frozen=True)
class Observation:
    """What a target saw: in sync, drifted (with the reasons), missing, or unreachable."""

    status: ObservationStatus
    details: tuple[str, ...] = ()

    @property
    def needs_redeploy(self) -> bool:
        return self.status in ("drifted", "missing")


Facts = dict[str, Any]


class Target(ABC):
    """Base of every deployment target; subclasses register in ``catalog``."""

    type_name: ClassVar[str]
    provider_type: ClassVar[str | None] = None
    """The ``type`` of the provider entry this target needs (None: takes none)."""

    def __init__(self, config: BaseModel, root: Path, provider: BaseModel | None = None) -> None:
        self.config = config
        self.root = root
        self.provider = provider
        self._taken: tuple[str, Any] | None = None

    @property
    def per_certificate(self) -> bool:
        """True when one place serves several certificates side by side (an SNI
        list), so the binding's identity must include the certificate."""
        return False

    @abstractmethod
    def identity(self) -> str:
        """Stable key of the place this target writes to (e.g. the directory)."""

    @abstractmethod
    def observe(self, facts: Facts) -> Observation:
        """Compare what is deployed now with ``facts`` from the last deploy; read-only."""

    @abstractmethod
    def deploy(self, material: CertificateMaterial, previous: Facts | None) -> Facts:
        """Deploy ``material`` atomically and return facts to record; raise ProviderError."""

    @abstractmethod
    def remove(self, facts: Facts) -> bool:
        """Remove the deployment described by ``facts``; succeed if already gone.
        True when nothing deploy put in place is used by this target any more."""

    def recorded_facts(self, material: CertificateMaterial, facts: Facts) -> Facts:
        """The facts apply records for a verified deploy of ``material``: ``facts``
        as ``deploy`` returned them, plus what this target needs to recognise its
        own deployment later (AWS targets: ACM's validity stamp)."""
        return facts

    def key_directories(self) -> tuple[Path, ...]:
        """Local directories this target writes a private key into; apply refuses to
        start when one of them is writable by others (``fsutil.unsafe_key_directory``)."""
        return ()

    def retire(self, facts: Facts) -> str | None:
        """Delete what deploy created besides the deployment itself, if unused."""
        return None

    def snapshot(self, material: CertificateMaterial, previous: Facts | None) -> Any:
        """What is served now, kept in memory to restore if verification fails.

        None means the target cannot restore (verification failures are still
        reported).  May hold private keys: never logged, never stored."""
        return None

    def take_snapshot(self, material: CertificateMaterial, previous: Facts | None) -> Any:
        """``snapshot``, remembered for the ``deploy`` that follows (the engine calls
        this just before deploying)."""
        self._taken = (material.address, self.snapshot(material, previous))
        return self._taken[1]

    def prior_snapshot(self, material: CertificateMaterial, previous: Facts | None) -> Any:
        """The snapshot taken just before this deploy, else a fresh one: a target that
        undoes its own partial deploy uses this rather than reading everything twice."""
        taken, self._taken = self._taken, None
        if taken is not None and taken[0] == material.address:
            return taken[1]
        return self.snapshot(material, previous)

    def restore(self, snapshot: Any) -> str:
        """Put back what ``snapshot`` captured; returns a note for the output."""
        raise ProviderError(f"{self.type_name} targets cannot restore a previous deployment")

    def verify_deployed(self, material: CertificateMaterial, facts: Facts) -> None:
        """The target's own read-back after deploy; raise ProviderError on a mismatch."""
        return None

    def verify_endpoint(self) -> EndpointSettings | None:
        """Where clients connect, when the binding asks for handshake verification."""
        return getattr(self.config, "verify_endpoint", None)

    def local_problems(self) -> list[tuple[tuple[str, ...], str]]:
        """Problems with files the config points at, checked at validate time
        without touching the target (a template that does not compile, a CA
        bundle that is not PEM): ``(field path under target, message)``."""
        return []

    def compatibility_error(self, key_algorithm: str) -> str | None:
        """Why this target cannot serve a certificate with ``key_algorithm`` (None: it can).

        Checked at validate time so that an incompatible pair is a config error,
        not an apply that fails halfway."""
        return None

    def settings(self) -> dict[str, Any]:
        """The target's settings as recorded in plans and state (no secrets).

        The provider's connection settings travel with them, so a saved plan and
        the recorded state are enough to reach the target again."""
        settings = self.config.model_dump(mode="json", exclude_none=True)
        if self.provider is not None:
            settings[PROVIDER_SETTINGS] = self.provider.model_dump(mode="json", exclude_none=True)
        return settings


PROVIDER_SETTINGS = "provider_settings"


def post_quantum_refusal(key_algorithm: str, server: str) -> str | None:
    """Why a TLS server built on OpenSSL 3.0 cannot serve an ML-DSA certificate."""
    if key_algorithm.startswith("ml-dsa-"):
        return (
            f"{server} built on OpenSSL 3.0 (Debian 12, Ubuntu 24.04) cannot load ML-DSA "
            "keys (OpenSSL 3.5+ can); use a files target for post-quantum certificates"
        )
    return None
