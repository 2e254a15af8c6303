"""The small interface every deployment target implements.

Adding a target is adding one module (its config model and its ``Target``
subclass) and one line in ``catalog.TARGETS``.  The engine only ever talks to
this interface; targets never see other certificates, the state store or the
plan.

What a new target implements
----------------------------
Required:

* ``type_name`` — the ``type:`` key of its config (and ``provider_type`` when it
  needs a provider entry, e.g. ``"aws"``).
* ``identity()`` — a stable key for the place it writes to; two bindings with
  the same identity are a config error, and the binding's address is built
  from it (``per_certificate`` when one place serves several certificates).
* ``read(facts)`` and ``compare(seen, facts)`` — the two halves of observing.
  ``read`` asks the target what is there now, read-only, given the facts
  ``deploy`` returned last time; it raises ``Missing`` when the deployment is
  gone and ``Unreachable`` when the target cannot be asked (network down,
  credentials missing: that says nothing about the deployment).  ``compare``
  turns what was read into drift messages (empty: in sync).  The base class's
  ``observe`` does the rest, once for every target: missing and drifted
  deployments become changes, unreachable ones a warning, never a change.
* ``deploy(material, previous, snapshot)`` — put the certificate in place, all
  or nothing, and return the facts to remember.  ``previous`` are the facts of
  the last deploy of this binding (None for a new one), so a target can update
  in place (e.g. re-import into the same ACM ARN); ``snapshot`` is what
  ``snapshot()`` captured just before (None when the caller took none), so a
  target that undoes its own partial deploy need not read everything twice.
  Idempotent; raises ProviderError on failure.
* ``remove(facts)`` — take the deployment away.  Idempotent: removing what is
  already gone succeeds.  Returns True when the target no longer uses what
  deploy put in place (False when, e.g., a listener must keep its certificate).

Optional (the defaults suit a target that has nothing to say):

* ``recorded_facts(material, facts)`` — what apply records for a verified
  deploy: ``deploy``'s facts plus what the target needs to recognise its own
  deployment on the next refresh (AWS targets: the validity window ACM lists
  an imported copy with, no serial for a certificate ACM renews itself).
  Default: the facts unchanged.
* ``copy_id(facts)`` and ``retire(facts)`` — for targets whose deploy makes a
  copy besides the deployment (an ACM import): ``copy_id`` names it (None: no
  copy, the default), and after the certificate itself is destroyed,
  ``retire`` deletes each copy that only bindings whose ``remove`` returned
  True used, returning a note for the output.
* ``snapshot`` / ``restore`` / ``verify_deployed`` — rollback and read-back,
  see below.
* ``key_directories()`` — local directories it writes keys into (checked for
  safe permissions before apply).
* ``parallel_deploys`` and ``deploy_lane()`` — apply deploys (and removes) the
  bindings of a batch in worker threads, up to ``apply --parallelism`` at once:
  deploys in different lanes run at the same time, deploys in one lane one
  after another.  The default lane is the place the binding writes to
  (``identity()``).  A kind whose deploys share something that is not safe to
  use from two threads at once (one runtime socket, a process-wide cache, a
  reload of one server, read-modify-write of one remote resource) sets
  ``parallel_deploys = False``: all its bindings then share one lane per
  provider type.  A remote target lanes by host, so that different hosts
  deploy in parallel and one host one binding at a time.
* Validation, at ``validate``/``plan`` time, without touching the target:
  ``compatibility_error(key_algorithm)`` (a key it cannot serve),
  ``local_problems()`` (files the config points at), ``acm_region()`` (for AWS
  targets: where a certificate ACM holds must live), and for checks beyond
  those ``validate(context)`` (one binding) and ``validate_together(bound)``
  (all bindings of this type at once, e.g. a per-listener quota).  Config
  problems are ``(field path under the binding, message)`` pairs;
  ``config/semantic.py`` calls these generically through the registry.

Verification (see ``engine/verify.py``): before ``deploy`` the engine takes a
``snapshot(material, previous)`` of what is served now and passes it to
``deploy``; after it, ``verify_deployed`` (the target's own read-back, e.g.
HAProxy's ``show ssl cert``) and, when the binding has ``verify_endpoint``, a
real TLS handshake must both show the new serial.  Otherwise
``restore(snapshot)`` puts the previous certificate back and the binding fails:
a deploy that cannot be confirmed never stays half in.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, final

from pydantic import BaseModel

from reconciler.errors import ProviderError
from reconciler.model.material import CertificateMaterial
from reconciler.model.observed import UNFINISHED, Facts, Missing, Observation, Unreachable
from reconciler.providers.hosts import LOCAL, Host
from reconciler.suggest import expected_one_of

if TYPE_CHECKING:
    from reconciler.providers.aws.iam import Statement
    from reconciler.providers.endpoint import EndpointSettings

Seen = TypeVar("Seen")


def observation_of(read: Callable[[], Seen], compare: Callable[[Seen], list[str]]) -> Observation:
    """The observe skeleton: read, then missing / unreachable / drifted / in sync.

    Every target goes through it (``Target.observe``), and so does the
    handshake with a binding's ``verify_endpoint``."""
    try:
        seen = read()
    except Missing as exc:
        return Observation("missing", (str(exc),))
    except Unreachable as exc:
        return Observation("unreachable", (str(exc),))
    problems = compare(seen)
    return Observation("drifted", tuple(problems)) if problems else IN_SYNC


IN_SYNC = Observation("in_sync")
"""The observation of every deployment found as deployed (frozen, so shared: a plan
over 10,000 bindings need not keep 10,000 equal ones)."""


FieldPath = tuple[str | int, ...]
Problem = tuple[FieldPath, str]
"""A config problem found by a target: the field path under its binding (e.g.
``("target", "provider")``) and the message; semantic.py adds file and line."""


@dataclass(frozen=True)
class BindingContext:
    """What a target may know about its binding when validating it."""

    certificate: str
    key_algorithm: str | None
    """The certificate's key algorithm; None when the certificate is not declared."""
    providers: Mapping[str, BaseModel]


class Target(ABC):
    """Base of every deployment target; subclasses register in ``catalog``."""

    type_name: ClassVar[str]
    provider_type: ClassVar[str | None] = None
    """The ``type`` of the provider entry this target needs (None: takes none)."""
    watch_only: ClassVar[bool] = False
    """True for a target certform only looks at (``tls-endpoint``): its bindings are
    checked at plan time, never planned as a change apply could make."""
    parallel_deploys: ClassVar[bool] = True
    """Whether deploys and removes of this kind may run in worker threads beside each
    other (see ``deploy_lane``); False puts all of them in one lane."""

    @property
    def deploys_in_fork(self) -> bool:
        """Whether a deploy may run in a forked copy of apply while certificates are
        still being signed (``engine/early_deploy.py``): only a deploy that needs
        nothing but this machine's file system and commands, and keeps nothing in
        memory that later steps read.  Default: no."""
        return False

    @property
    def deploy_waits(self) -> bool:
        """Whether a deploy waits on something besides this machine's CPU and disk (a
        command, a handshake, the network): see ``Step.waits``.  Default: yes."""
        return True

    def __init__(
        self,
        config: BaseModel,
        root: Path,
        provider: BaseModel | None = None,
        via: tuple[str, BaseModel] | None = None,
    ) -> None:
        self.config = config
        self.root = root
        self.provider = provider
        self.via = via
        """``(name, ssh provider config)`` when the target (or its provider) says
        ``via: NAME``: its files and commands are on that host."""
        self._host: Host | None = None

    @property
    def host(self) -> Host:
        """Where this target's files and commands are: this machine, or the ``via`` host
        (one shared connection per host per run)."""
        if self._host is None:
            if self.via is None:
                self._host = LOCAL
            else:
                from reconciler.providers.ssh.host import SshHost

                name, ssh = self.via
                self._host = SshHost(name, ssh, self.root)  # type: ignore[arg-type]
        return self._host

    def prefetch(self, facts: Facts) -> None:
        """Announce what ``read(facts)`` will read, before any target on a host reads
        (refresh calls it first for every binding whose target has ``via``, and never
        for a local one): a target on an SSH host names its files, so that one
        command per host stamps them all.  Default: nothing."""
        return None

    @property
    def per_certificate(self) -> bool:
        """True when one place serves several certificates side by side (an SNI
        list), so the binding's identity must include the certificate."""
        return False

    @abstractmethod
    def identity(self) -> str:
        """Stable key of the place this target writes to (e.g. the directory)."""

    # -- observe: the skeleton is here, targets fill in read and compare ------------
    @final
    def observe(self, facts: Facts) -> Observation:
        """Compare what is deployed now with ``facts`` from the last deploy; read-only.

        Never raises for a missing or altered deployment (that is drift) nor for
        an unreachable target (that is a warning); a ProviderError from ``read``
        (e.g. access denied) goes through.  A deployment the last apply left
        unfinished (its post_deploy failed) is that, not drift."""
        unfinished = facts.get(UNFINISHED)
        if unfinished:
            return Observation("unfinished", (str(unfinished),))
        return observation_of(lambda: self.read(facts), lambda seen: self.compare(seen, facts))

    @abstractmethod
    def read(self, facts: Facts) -> Any:
        """What the target holds now for the deployment ``facts`` describe.

        Read-only.  Raise ``Missing`` when the deployment is gone, ``Unreachable``
        when the target cannot be asked."""

    @abstractmethod
    def compare(self, seen: Any, facts: Facts) -> list[str]:
        """How ``seen`` (from ``read``) differs from the deployment ``facts``
        describe: one message per difference, empty when in sync."""

    # -- change -------------------------------------------------------------------
    @abstractmethod
    def deploy(
        self, material: CertificateMaterial, previous: Facts | None, snapshot: Any = None
    ) -> Facts:
        """Deploy ``material`` atomically and return facts to record; raise ProviderError.

        ``snapshot`` is what ``snapshot(material, previous)`` returned just before
        (None when the caller took none)."""

    @abstractmethod
    def remove(self, facts: Facts) -> bool:
        """Remove the deployment described by ``facts``; succeed if already gone.
        True when nothing deploy put in place is used by this target any more."""

    def recorded_facts(self, material: CertificateMaterial, facts: Facts) -> Facts:
        """The facts apply records for a verified deploy of ``material``: ``facts``
        as ``deploy`` returned them, plus what this target needs to recognise its
        own deployment later (AWS targets: ACM's validity stamp)."""
        return facts

    def deploy_lane(self) -> Hashable:
        """Deploys (and removes) in one lane run one after another, in plan order;
        lanes run at the same time (``apply --parallelism``).  Default: the place
        written to, or one lane per provider type for a kind that is not
        ``parallel_deploys``."""
        if type(self).parallel_deploys:
            return (self.type_name, self.identity())
        return ("one at a time", self.provider_type or self.type_name)

    def key_directories(self) -> tuple[Path, ...]:
        """Local directories this target writes a private key into; apply refuses to
        start when one of them is writable by others (``fsutil.unsafe_key_directory``)."""
        return ()

    @classmethod
    def copy_id(cls, facts: Facts) -> str | None:
        """The copy a deploy with these ``facts`` made besides the deployment itself
        (an imported ACM certificate's ARN), None when it made none.

        Bindings whose facts name the same copy share it: destroying a
        certificate retires a copy only when no remaining binding names it."""
        return None

    def retire(self, facts: Facts) -> str | None:
        """Delete the copy ``copy_id(facts)`` names, unless still in use; a note for
        the output.  Only called when ``copy_id`` names one."""
        return None

    def snapshot(self, material: CertificateMaterial, previous: Facts | None) -> Any:
        """What is served now, kept in memory to restore if verification fails.

        None means the target cannot restore (verification failures are still
        reported).  May hold private keys: never logged, never stored."""
        return None

    def restore(self, snapshot: Any) -> str:
        """Put back what ``snapshot`` captured; returns a note for the output."""
        raise ProviderError(f"{self.type_name} targets cannot restore a previous deployment")

    def verify_deployed(self, material: CertificateMaterial, facts: Facts) -> None:
        """The target's own read-back after deploy; raise ProviderError on a mismatch."""
        return None

    def verify_endpoint(self) -> EndpointSettings | None:
        """Where clients connect, when the binding asks for handshake verification."""
        return getattr(self.config, "verify_endpoint", None)

    # -- validation (config time, without touching the target) ----------------------
    def validate(self, context: BindingContext) -> list[Problem]:
        """Config problems of this binding: its provider entry, a key the target
        cannot serve, files it points at.  Subclasses extend (call super)."""
        problems = self._provider_problems(context.providers)
        problems += self._via_problems(context.providers)
        if context.key_algorithm is not None:
            error = self.compatibility_error(context.key_algorithm)
            if error:
                problems.append(
                    (
                        ("target",),
                        f"certificate {context.certificate!r} has a {context.key_algorithm} "
                        f"key, but {error}",
                    )
                )
        problems += [(("target", *path), message) for path, message in self.local_problems()]
        return problems

    @classmethod
    def validate_together(cls, bound: Sequence[tuple[int, Target]]) -> list[tuple[int, Problem]]:
        """Problems only visible across bindings (a quota per listener): ``bound``
        are all bindings of this type as (binding index, target); the answer is
        (binding index, problem) pairs."""
        return []

    def compatibility_error(self, key_algorithm: str) -> str | None:
        """Why this target cannot serve a certificate with ``key_algorithm`` (None: it can).

        Checked at validate time so that an incompatible pair is a config error,
        not an apply that fails halfway."""
        return None

    def local_problems(self) -> list[tuple[tuple[str, ...], str]]:
        """Problems with files the config points at, checked at validate time
        without touching the target (a template that does not compile, a CA
        bundle that is not PEM): ``(field path under target, message)``."""
        return []

    def acm_region(self) -> str | None:
        """The ACM region this target serves certificates from (None: not an AWS
        target, so it cannot serve a certificate whose key stays in ACM)."""
        return None

    def iam_statements(self) -> list[Statement]:
        """The IAM statements this binding's AWS calls need (``certform iam-policy``):
        declared by each AWS target next to its calls; none for the others."""
        return []

    def _provider_problems(self, providers: Mapping[str, BaseModel]) -> list[Problem]:
        # Asked of the model's declared fields first: a ``getattr`` miss goes through
        # pydantic's slow ``__getattr__`` (once per binding of a large validate).
        fields = getattr(type(self.config), "model_fields", None)
        if fields is not None and "provider" not in fields:
            return []
        name: str | None = getattr(self.config, "provider", None)
        if name is None:
            return []
        provider = providers.get(name)
        if provider is None:
            message = f"unknown provider {name!r}; {expected_one_of(name, providers)}"
            return [(("target", "provider"), message)]
        provider_type = getattr(provider, "type", None)
        if self.provider_type and provider_type != self.provider_type:
            return [
                (
                    ("target", "provider"),
                    f"provider {name!r} is of type {provider_type}; "
                    f"{self.type_name} needs {self.provider_type}",
                )
            ]
        return []

    def via_name(self) -> str | None:
        """The ``via:`` of this target's config, else of its provider entry."""
        return via_name(self.config, self.provider)

    def _via_problems(self, providers: Mapping[str, BaseModel]) -> list[Problem]:
        name = self.via_name()
        if name is None:
            return []
        own = "via" in type(self.config).model_fields and getattr(self.config, "via", None)
        field: FieldPath = ("target", "via") if own else ("target", "provider")
        where = "" if own else f"provider {getattr(self.config, 'provider', '')!r}: "
        entry = providers.get(name)
        if entry is None:
            return [(field, f"{where}unknown ssh provider {name!r} in via; "
                     + expected_one_of(name, providers))]  # fmt: skip
        if getattr(entry, "type", None) != "ssh":
            return [(field, f"{where}via names provider {name!r} of type "
                     f"{getattr(entry, 'type', None)}; via needs an ssh provider")]  # fmt: skip
        problems: list[Problem] = []
        for holder, path in ((self.config, ("target",)), (self.provider, ("target", "provider"))):
            if holder is not None and getattr(holder, "pass_env", None):
                problems.append(
                    (
                        (*path, "pass_env") if path == ("target",) else path,
                        f"{where if holder is self.provider else ''}pass_env cannot be used "
                        "with via: commands on an SSH host see none of certform's environment",
                    )
                )
        return problems

    def settings(self) -> dict[str, Any]:
        """The target's settings as recorded in plans and state (no secrets).

        The provider's connection settings travel with them, so a saved plan and
        the recorded state are enough to reach the target again."""
        settings = self.config.model_dump(mode="json", exclude_none=True)
        if self.provider is not None:
            settings[PROVIDER_SETTINGS] = self.provider.model_dump(mode="json", exclude_none=True)
        if self.via is not None:
            settings[VIA_SETTINGS] = self.via[1].model_dump(mode="json", exclude_none=True)
        return settings


PROVIDER_SETTINGS = "provider_settings"
VIA_SETTINGS = "via_settings"
"""The ``ssh`` provider a ``via`` names, recorded with the target's settings (no
secret in it: a key file's path or an environment variable's name)."""


def via_name(config: BaseModel, provider: BaseModel | None) -> str | None:
    """The ``via:`` a target config (``files``) or its provider entry (``nginx``) names.
    Asked of the declared fields (see ``_provider_problems``)."""
    if "via" in type(config).model_fields:
        return config.via  # type: ignore[attr-defined,no-any-return]
    if provider is not None and "via" in type(provider).model_fields:
        return provider.via  # type: ignore[attr-defined,no-any-return]
    return None


def post_quantum_refusal(key_algorithm: str, server: str) -> str | None:
    """Why a TLS server built on OpenSSL 3.0 cannot serve an ML-DSA certificate."""
    if key_algorithm.startswith("ml-dsa-"):
        return (
            f"{server} built on OpenSSL 3.0 (Debian 12, Ubuntu 24.04) cannot load ML-DSA "
            "keys (OpenSSL 3.5+ can); use a files target for post-quantum certificates"
        )
    return None
