"""A certform session: one configuration, its state, and every operation on them.

Why a session: the commands share one way to load the configuration, to open
the state and to take its lock (before the state is created or read), and that
logic must not live in the CLI, where only a subprocess could test it.  A
``Session`` does the work and returns results (dataclasses, plans, rows); it
never prints, prompts or exits.  What a user must be told comes back as a
``CertformError`` (the CLI prints it and exits 1), and the few moments where a
person is involved mid-operation (show the plan, ask for "yes", report
progress, a note on stderr) are callbacks the caller passes in.

Heavy modules (apply and its steps, saved plans, checks, exports,
notifications) are imported by the operation that needs them, so that
``certform plan`` imports no more than it runs.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from reconciler.config.loader import load_var_file, parse_var_assignments
from reconciler.config.validate import ValidatedConfig, load_and_validate
from reconciler.engine.planning import pem_reader, plan_from
from reconciler.engine.workspace import open_store
from reconciler.errors import ConfigError, PlanError, StateError, UsageError
from reconciler.model.desired import DesiredState
from reconciler.model.records import RecordedState
from reconciler.plan.model import Plan
from reconciler.state.store import StateStore
from reconciler.timeparse import parse_at, parse_within

if TYPE_CHECKING:
    from reconciler.adopt.acm_record import Adopted
    from reconciler.adopt.proposal import Proposal
    from reconciler.config.imported import ImportedMaterial
    from reconciler.config.models import CertformConfig
    from reconciler.engine.apply import ApplyResult
    from reconciler.engine.check import Finding
    from reconciler.engine.export import ExportFile
    from reconciler.issuers.aws_acm import AcmLeafSpec
    from reconciler.monitoring.cloudwatch import CloudWatchConfig
    from reconciler.monitoring.notifications import DeliveryReport
    from reconciler.monitoring.prometheus import CertificateMetric
    from reconciler.report.model import Report
    from reconciler.state.copy import CopyReport
    from reconciler.state.store import AuditVerification

log = logging.getLogger(__name__)

DEFAULT_CONFIG = Path("certform.yaml")  # also the CLI's, which imports this module lazily
UPGRADE_NOTE = (
    "Note: this state was written by an earlier certform; its records are "
    "authenticated (tamper-evident) from the next apply on."
)


def _ignore(_: Any) -> None:
    """The default for callbacks nobody listens to."""


def _move(store: StateStore, the_plan: Plan, progress: Callable[[str], None]) -> RecordedState:
    """Rename the plan's moved certificates in the state (one transaction, audited)
    before any step runs; the state as the steps then see it."""
    from reconciler.engine.context import actor

    who = actor()
    with store.transaction() as writer:
        for move in the_plan.moves:
            writer.rename_certificate(move.source.split(".", 1)[1], move.target.split(".", 1)[1])
            writer.audit(who, "apply", move.target, "move", "ok", f"moved from {move.source}")
    for move in the_plan.moves:
        progress(f"{move.source}: moved to {move.target}")
    return store.read()


def variables_from(pairs: Sequence[str] = (), files: Sequence[Path] = ()) -> dict[str, Any]:
    """Template variables: the files in order, then ``key=value`` pairs on top."""
    variables: dict[str, Any] = {}
    for path in files:
        variables.update(load_var_file(path))
    variables.update(parse_var_assignments(list(pairs)))
    if variables:
        from reconciler.config.templating import reserved_names

        for name in sorted(set(variables) & reserved_names()):
            raise UsageError(
                f"template variable {name!r} is reserved: templates call {name}() by that "
                "name; choose another name"
            )
    return variables


def tag_filter(pairs: Sequence[str] | None) -> dict[str, str]:
    """``key=value`` tag filters as a mapping; raises UsageError on anything else."""
    wanted: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--tag takes key=value, got {pair!r}")
        wanted[key] = value
    return wanted


def tagged(tags: Mapping[str, str] | None, wanted: Mapping[str, str]) -> bool:
    """Whether a resource's tags carry every wanted key with the wanted value."""
    return all((tags or {}).get(key) == value for key, value in wanted.items())


def _moment(text: str | None, now: datetime) -> datetime:
    """``--at`` as a time; a bad value is a usage error, not a traceback."""
    try:
        return parse_at(text, now) if text else now
    except ValueError as exc:
        raise UsageError(str(exc)) from None


@dataclass(frozen=True)
class ValidateResult:
    """What a valid configuration declares."""

    authorities: int
    certificates: int
    bindings: int


@dataclass(frozen=True)
class ApplyHooks:
    """Where apply involves a person.  ``confirm`` None means nobody can be asked
    (no terminal): apply then refuses unless approved up front."""

    show_plan: Callable[[Plan], None] = _ignore
    progress: Callable[[str], None] = _ignore
    confirm: Callable[[], bool] | None = None
    starting: Callable[[Plan], None] = _ignore
    """Called with the plan about to run (after the re-check): a progress bar's total."""


@dataclass(frozen=True)
class ReadingView:
    """What read-only commands read with: the desired state (empty when the
    configuration is invalid and only its ``state:`` settings could be used)."""

    desired: DesiredState
    config: CertformConfig
    root: Path
    degraded: bool = False


@dataclass(frozen=True)
class ApplyOutcome:
    """The plan that was applied (re-checked under the lock) and what the run did;
    ``result`` is None when there was nothing to do."""

    plan: Plan
    result: ApplyResult | None
    from_saved_plan: bool

    @property
    def ok(self) -> bool:
        return self.result is None or self.result.ok


@dataclass(frozen=True)
class CheckResult:
    """What ``check`` found, and the gauges for monitoring."""

    findings: list[Finding]
    metrics: list[CertificateMetric]
    checked: int
    now: datetime

    @property
    def problems(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "problem"]

    def exit_status(self, reports: Sequence[DeliveryReport] | None = None) -> int:
        """1 when a notification was not delivered, 2 when something needs
        attention, 0 when all is well."""
        if any(not report.ok for report in reports or ()):
            return 1
        return 2 if self.problems else 0


@dataclass(frozen=True)
class ImportResult:
    """A checked certificate that runs somewhere, and the config that adopts it."""

    cert: Path
    material: ImportedMaterial
    document: dict[str, Any]


@dataclass(frozen=True)
class RevokeResult:
    message: str


@dataclass(frozen=True)
class ExportResult:
    files: list[ExportFile] = field(default_factory=list)


class Session:
    """One configuration (loaded on first use) and its state.

    Every operation opens the state afresh and holds its lock only as long as it
    needs; the validated configuration is loaded once and kept.
    """

    def __init__(
        self,
        config: Path = DEFAULT_CONFIG,
        *,
        var: Sequence[str] = (),
        var_files: Sequence[Path] = (),
        variables: Mapping[str, Any] | None = None,
        lock_timeout: float = 0.0,
        note: Callable[[str], None] = _ignore,
    ) -> None:
        self.config = config
        self.lock_timeout = lock_timeout
        self._var = list(var)
        self._var_files = list(var_files)
        self._variables = dict(variables or {})
        self._note = note

    @cached_property
    def variables(self) -> dict[str, Any]:
        """The template variables: ``--var-file`` files, ``--var`` pairs, then the
        ``variables`` mapping given to the session."""
        return variables_from(self._var, self._var_files) | self._variables

    @cached_property
    def validated(self) -> ValidatedConfig:
        """The configuration, loaded and validated (raises ConfigError)."""
        started = time.perf_counter()
        validated = load_and_validate(self.config, self.variables)
        desired = validated.desired
        log.info(
            "loaded %s in %.2fs: %d authorities, %d certificates, %d bindings",
            self.config, time.perf_counter() - started,
            len(desired.authorities), len(desired.certificates), len(desired.bindings),
        )  # fmt: skip
        if validated.unused_variables:
            names = ", ".join(validated.unused_variables)
            self._note(f"Warning: template variable(s) {names} given but used by no template.")
        return validated

    def _render_as_planned(self, plan_file: Path) -> dict[str, Any]:
        """The saved plan's document; the configuration is then rendered with the
        variables the plan was made with (a CI job applying it passes none)."""
        from reconciler.engine.saved_plan import load_plan_document, planned_variables

        document = load_plan_document(plan_file)
        planned = planned_variables(document, plan_file)
        if self.variables and self.variables != planned:
            raise PlanError(
                f"{plan_file} was made with other template variables than --var/--var-file "
                "give now; apply it without them (the plan carries its own), or run plan again"
            )
        self.__dict__["variables"] = planned  # before the configuration is loaded
        self.__dict__.pop("validated", None)
        return document

    def open_store(self) -> StateStore:
        """The configuration's state store (not created until written)."""
        validated = self.validated
        return open_store(validated.settings.state, validated.root, validated.settings.providers)

    @cached_property
    def reading(self) -> ReadingView:
        """What the read-only commands (show, check, report) work from: the validated
        configuration, or, when an unrelated part of it is invalid, its ``state:``
        settings alone (said in a warning): the state can still be read."""
        try:
            validated = self.validated
        except ConfigError as exc:
            from reconciler.config.validate import state_settings_only

            reduced = state_settings_only(self.config, self.variables)
            if reduced is None:
                raise
            config, root = reduced
            self._note(
                f"Warning: the configuration is invalid ({len(exc.issues)} problem(s); "
                "`certform validate` lists them): showing what the state records."
            )
            return ReadingView(DesiredState((), (), ()), config, root, degraded=True)
        return ReadingView(validated.desired, validated.settings, validated.root)

    def _reading_store(self) -> StateStore:
        reading = self.reading
        return open_store(reading.config.state, reading.root, reading.config.providers)

    # -- state access -----------------------------------------------------------
    @staticmethod
    def _read_state(store: StateStore) -> RecordedState:
        """Read a consistent snapshot of the state, without the lock (an apply may
        hold it meanwhile); a state that does not exist yet is empty."""
        if not store.exists:
            log.debug("no state yet: planning against an empty one")
            return RecordedState(lineage="", serial=0)
        with store.snapshot():
            store.open()
            recorded = store.read()
        log.debug("read state serial %d: %d certificates, %d bindings", recorded.serial,
                  len(recorded.certificates), len(recorded.bindings))  # fmt: skip
        return recorded

    @classmethod
    def _read_and_close(cls, store: StateStore) -> RecordedState:
        """``_read_state`` for an operation that needs nothing else of the store: its
        connection is closed here, not left to the garbage collector (a long-lived
        caller of ``Session`` would otherwise hold it, and SQLite's ``-wal`` file
        with it)."""
        try:
            return cls._read_state(store)
        finally:
            store.close()

    @contextlib.contextmanager
    def _existing_state(self, operation: str) -> Iterator[tuple[StateStore, RecordedState]]:
        """The state, opened and locked for ``operation``, for operations that act on
        what was issued (revoke, export); no state yet is an error, never a new state."""
        store = self.open_store()
        if not store.exists:
            raise StateError(f"there is no state yet: nothing was issued, nothing to {operation}")
        store.lock(operation, self.lock_timeout)
        try:
            store.open()
            yield store, store.read()
        finally:
            store.unlock()
            store.close()

    def _plan_against(
        self,
        store: StateStore,
        recorded: RecordedState,
        when: datetime,
        change: tuple[str, str] | None = None,
        replace: frozenset[str] = frozenset(),
        running: str | None = None,
    ) -> Plan:
        return plan_from(
            self.validated, recorded, store.where, when, change, pem_reader(store), replace,
            running,
        )  # fmt: skip

    def _replacing(self, addresses: Sequence[str]) -> frozenset[str]:
        """``--replace`` addresses, each a declared certificate (UsageError otherwise)."""
        declared = {c.address for c in self.validated.desired.certificates}
        for address in addresses:
            if address not in declared:
                raise UsageError(
                    f"--replace {address}: not a certificate of the configuration "
                    "(expected certificate.NAME; authorities are re-keyed by changing "
                    "their key or subject)"
                )
        return frozenset(addresses)

    # -- operations -------------------------------------------------------------
    def validate(self) -> ValidateResult:
        desired = self.validated.desired
        return ValidateResult(
            len(desired.authorities), len(desired.certificates), len(desired.bindings)
        )

    def plan(
        self,
        at: str | None = None,
        *,
        out: Path | None = None,
        show: Callable[[Plan], None] = _ignore,
        replace: Sequence[str] = (),
    ) -> Plan:
        """The plan as of ``at`` (default: now); changes nothing.  With ``out`` the
        plan is saved with its MAC, after ``show`` has seen it (a plan for a new
        state creates the state first, under the lock: the MAC needs its key)."""
        when = _moment(at, datetime.now(UTC))
        replacing = self._replacing(replace)
        with contextlib.closing(self.open_store()) as store:
            if out is not None:
                from reconciler.engine.saved_plan import prepare_state_for_saved_plan, save_plan

                prepare_state_for_saved_plan(store, self.lock_timeout)
            recorded = self._read_state(store)
            change = store.key_store_change if store.exists else None
            if store.exists and store.upgrade_pending:
                self._note(UPGRADE_NOTE)
            running = None
            if recorded.interrupted:  # steps in progress: dead run, or one still going?
                holder = store.lock_holder()
                running = holder.describe() if holder is not None else None
            the_plan = self._plan_against(store, recorded, when, change, replacing, running)
            show(the_plan)
            if out is not None:
                save_plan(the_plan, store, out)
        return the_plan

    def apply(
        self,
        plan_file: Path | None = None,
        *,
        auto_approve: bool = False,
        force: bool = False,
        parallelism: int = 10,
        hooks: ApplyHooks | None = None,
        replace: Sequence[str] = (),
    ) -> ApplyOutcome:
        """Issue, renew, deploy and remove until the world matches the configuration
        (or apply the saved plan in ``plan_file`` exactly)."""
        from reconciler.engine.apply import check_applicable, run_apply
        from reconciler.engine.saved_plan import read_saved_plan
        from reconciler.policy.recheck import recheck_plan, require_force

        hooks = hooks or ApplyHooks()
        if plan_file is not None and replace:
            raise UsageError("--replace makes a new plan; it cannot change a saved one")
        document = self._render_as_planned(plan_file) if plan_file else None
        validated = self.validated
        replacing = self._replacing(replace)
        store = self.open_store()
        # A saved plan is verified (MAC, lineage, serial, guards, policy, force)
        # before the lock is taken: a refused one changes nothing at all.
        saved = None
        if plan_file is not None and document is not None:
            saved = read_saved_plan(plan_file, document, store, validated, force)
        asked = saved is None and not auto_approve
        if asked and hooks.confirm is None:
            # Decide before touching the state: a CI job without approval changes nothing.
            recorded = self._read_state(store)
            hooks.show_plan(self._plan_against(store, recorded, datetime.now(UTC), None, replacing))
            raise UsageError(
                "refusing to apply without confirmation: no terminal to ask; pass --auto-approve"
            )
        # The lock comes before the state is read or created, so that of two applies
        # racing on a new directory only one creates the state (the other fails naming
        # the holder, or waits and then plans against what the first one made).  Only
        # an interactive apply of a new state waits for the "yes" before it creates
        # anything at all (the lock file included).
        locked_early = store.exists or auto_approve or saved is not None
        if locked_early:
            store.lock("apply", self.lock_timeout)
        existed = store.exists
        log.debug("apply: %s state (%s)", "existing" if existed else "new", type(store).__name__)
        try:
            if existed:
                store.open()
            recorded = store.read()
            if saved is not None:
                check_applicable(saved, recorded)
                the_plan = saved
            else:
                change = store.key_store_change if existed else None
                the_plan = self._plan_against(store, recorded, datetime.now(UTC), change, replacing)
                hooks.show_plan(the_plan)
            # Guards, policy and --force reasons once more, under the lock.
            the_plan = recheck_plan(the_plan, recorded, validated.settings.policy)
            if not the_plan.has_changes and not recorded.interrupted:
                return ApplyOutcome(the_plan, None, saved is not None)
            require_force(the_plan, force)
            if asked and not (hooks.confirm is not None and hooks.confirm()):
                raise UsageError("apply cancelled; nothing was changed")
            if not locked_early:  # another apply may have created the state meanwhile
                store.lock("apply", self.lock_timeout)
                recorded = store.read()
                check_applicable(the_plan, recorded)
            store.open()  # creates a new state, under the lock, exclusively
            log.info("applying %d step(s) to state serial %d", len(the_plan.changes),
                     recorded.serial)  # fmt: skip
            hooks.starting(the_plan)
            if the_plan.moves:
                recorded = _move(store, the_plan, hooks.progress)
            result = run_apply(
                store, the_plan, recorded, hooks.progress, parallelism, root=validated.root
            )
        finally:
            store.unlock()
            store.close()
        return ApplyOutcome(the_plan, result, saved is not None)

    def show(self, tags: Sequence[str] | None = None) -> dict[str, Any]:
        """Inventory rows (``authorities``, ``certificates``), certificates filtered
        by ``key=value`` tags."""
        from reconciler.inventory import inventory

        recorded = self._read_and_close(self._reading_store())
        rows = inventory(self.reading.desired, recorded, datetime.now(UTC))
        wanted = tag_filter(tags)
        rows["certificates"] = [c for c in rows["certificates"] if tagged(c["tags"], wanted)]
        return rows

    def report(self, at: str | None = None, tags: Sequence[str] | None = None) -> Report:
        """The HTML report's data: the inventory, the CA tree and the audit summary,
        read from one lock-free snapshot (an apply may run meanwhile); no network."""
        from reconciler.report.model import build_report

        now = _moment(at, datetime.now(UTC))
        reading = self.reading
        store = self._reading_store()
        recorded, audit = RecordedState(lineage="", serial=0), []
        if store.exists:
            try:
                with store.snapshot():
                    store.open()
                    recorded, audit = store.read(), store.audit_log()
            finally:
                store.close()
        return build_report(
            reading.desired, recorded, audit, now, config=str(self.config), state=store.where,
            wanted=tag_filter(tags),
        )  # fmt: skip

    def show_certificate(self, address: str) -> dict[str, Any]:
        """One certificate or CA in full: config, state, PEM details, bindings and
        history (``certificate_view.py``); lock-free, public data only."""
        from reconciler.certificate_view import details, resolve

        desired = self.reading.desired
        store = self._reading_store()
        if not store.exists:
            recorded = RecordedState(lineage="", serial=0)
            kind, name = resolve(address, desired, recorded)
            return details(kind, name, desired, recorded, None, [], datetime.now(UTC))
        try:
            with store.snapshot():
                store.open()
                recorded = store.read()
                kind, name = resolve(address, desired, recorded)
                records = recorded.certificates if kind == "certificate" else recorded.authorities
                material = store.material(kind, name) if name in records else None
                audit = store.audit_log()
        finally:
            store.close()
        return details(kind, name, desired, recorded, material, audit, datetime.now(UTC))

    def check(
        self,
        within: str | None = None,
        at: str | None = None,
        tags: Sequence[str] | None = None,
        textfile: Path | None = None,
    ) -> CheckResult:
        """Expiring certificates, ACM renewal health and what TLS endpoints really
        serve; with ``textfile``, the Prometheus gauges are written there atomically.
        Notifications are sent separately (``notify``), after the caller has shown
        the findings."""
        wanted = tag_filter(tags)
        try:
            window = parse_within(within) if within else None
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        now = _moment(at, datetime.now(UTC))
        reading = self.reading
        with contextlib.closing(self._reading_store()) as store:
            return self._check_against(store, reading, now, window, wanted, textfile)

    def _check_against(
        self,
        store: StateStore,
        reading: ReadingView,
        now: datetime,
        window: timedelta | None,
        wanted: dict[str, str],
        textfile: Path | None,
    ) -> CheckResult:
        """``check`` with the state store open (endpoint watches read from it)."""
        from reconciler.engine.check import acm_findings, endpoint_findings, expiry_findings
        from reconciler.engine.watches import endpoint_watches
        from reconciler.monitoring.prometheus import (
            certificate_metrics,
            render_prometheus,
            write_textfile,
        )

        recorded = self._read_state(store)
        desired = reading.desired
        renew_before = {c.address: c.renew_before for c in desired.certificates} | {
            a.address: a.renew_before for a in desired.authorities
        }
        findings = expiry_findings(recorded, now, window, renew_before)
        if any(r.external_id for r in recorded.certificates.values()):
            from reconciler.providers.aws.acm import describe_for_check

            findings += acm_findings(recorded, describe_for_check)
        findings += self._pending_acm_findings(desired, recorded)
        endpoints = reading.config.endpoints
        watches = endpoint_watches(desired, recorded, store, endpoints, reading.root)
        findings += endpoint_findings(watches, now, window)
        if wanted:  # only certificates carry tags: the filter keeps theirs
            chosen = {c.address for c in desired.certificates if tagged(c.tags, wanted)}
            findings = [f for f in findings if f.address in chosen]
        metrics = [m for m in certificate_metrics(recorded, desired) if tagged(m.tags, wanted)]
        metrics.sort(key=lambda metric: metric.name)
        if textfile is not None:
            try:
                write_textfile(textfile, render_prometheus(metrics, now))
            except OSError as exc:
                raise UsageError(f"cannot write {textfile}: {exc.strerror or exc}") from None
        checked = len(recorded.certificates) + len(recorded.authorities) + len(watches)
        # One stable order in every format: by address (a finding's own order kept).
        findings.sort(key=lambda finding: finding.address)
        return CheckResult(findings, metrics, checked, now)

    @staticmethod
    def _pending_acm_findings(desired: DesiredState, recorded: RecordedState) -> list[Finding]:
        """ACM requests waiting for the domain owner's approval (email validation)."""
        from reconciler.engine.check import pending_findings

        def read(spec: AcmLeafSpec, address: str) -> str | None:
            from reconciler.issuers.aws_acm_status import pending_approval  # ACM requests only

            return pending_approval(spec, address)

        return pending_findings(desired, recorded, read)

    def notify(self, result: CheckResult, out: TextIO | None = None) -> list[DeliveryReport] | None:
        """Deliver the expiry notifications due for ``result`` (the ``stdout`` sink
        writes to ``out``); None when the configuration has no notifications."""
        from reconciler.monitoring.notifications import notify

        reading = self.reading
        notifications = reading.config.notifications
        if notifications is None:
            return None
        return notify(
            notifications,
            result.metrics,
            result.now,
            root=reading.root,
            out=out or sys.stdout,
            providers=reading.config.providers,
        )

    def cloudwatch_settings(self, requested: bool = False) -> CloudWatchConfig | None:
        """Where ``check`` publishes DaysToExpiry: the ``cloudwatch:`` block; with
        ``requested`` (``check --cloudwatch``) and no block, namespace ``certform``
        through the first aws provider.  None when neither asks for it.  Asked
        before the check runs, so that a flag that cannot work changes nothing."""
        from reconciler.monitoring.cloudwatch import DEFAULT_NAMESPACE, CloudWatchConfig

        config = self.reading.config
        if config.cloudwatch is not None or not requested:
            return config.cloudwatch
        first = next((n for n, p in config.providers.items() if p.type == "aws"), None)
        if first is None:
            raise UsageError(
                "check --cloudwatch: no aws provider under providers: to publish with "
                "(declare one, or a cloudwatch: {provider, namespace} block)"
            )
        return CloudWatchConfig(provider=first, namespace=DEFAULT_NAMESPACE)

    def publish_metrics(
        self, result: CheckResult, settings: CloudWatchConfig | None
    ) -> DeliveryReport | None:
        """``DaysToExpiry`` per certificate in ``result`` to CloudWatch (None: not asked)."""
        from reconciler.monitoring.cloudwatch import publish

        if settings is None:
            return None
        return publish(settings, self.reading.config.providers, result.metrics, result.now)

    def iam_policy(self, cloudwatch: bool = False) -> dict[str, Any]:
        """The IAM policy document this configuration's AWS calls need (no
        statement when it makes none); ``cloudwatch`` as ``check --cloudwatch``."""
        from reconciler.providers.aws.iam_policy import document, statements_for

        settings = self.cloudwatch_settings(requested=cloudwatch)
        return document(statements_for(self.validated, settings))

    def import_certificate(
        self, name: str, cert: Path, key: Path, chain: Path | None = None, issuer: str = "imported"
    ) -> ImportResult:
        """Check a certificate that already runs somewhere and build the config that
        adopts it as ``name``; paths are relative to the config's directory, as in
        the config the result is pasted into."""
        from reconciler.adopt.context import config_root
        from reconciler.config.imported import ImportError_, load_imported

        try:
            material = load_imported(
                config_root(self.config), str(cert), str(chain) if chain else None, str(key), None
            )
        except ImportError_ as exc:
            raise UsageError(str(exc)) from None
        entry: dict[str, Any] = {
            "issuer": issuer,
            "names": material.names,
            "certificate": str(cert),
        }
        if chain:
            entry["chain"] = str(chain)
        entry["private_key"] = str(key)
        document = {"authorities": {issuer: {"type": "imported"}}, "certificates": {name: entry}}
        return ImportResult(cert, material, document)

    def scan_for_import(self, directory: Path, issuer: str = "imported") -> Proposal:
        """``import --scan``: YAML adopting every certificate/key pair under ``directory``."""
        from reconciler.adopt.context import config_root, declared
        from reconciler.adopt.proposal import propose
        from reconciler.adopt.scan import scan

        root = config_root(self.config)
        tree = root / directory  # relative to the config's directory, like --cert
        if not tree.is_dir():
            raise UsageError(f"--scan {directory}: not a directory (under {root})")
        certificates, _ = declared(self)
        return propose(scan(tree), root, issuer, certificates)

    def aws_for_import(self, region: str) -> Proposal:
        """``import --from-aws``: YAML declaring every ACM certificate of ``region`` and
        the places already serving it."""
        from pydantic import ValidationError

        from reconciler.adopt.aws_inventory import read_inventory
        from reconciler.adopt.aws_proposal import propose_from_aws
        from reconciler.adopt.context import aws_provider, declared

        try:
            name, provider, block = aws_provider(self, region)
        except ValidationError:
            raise UsageError(f"--region {region!r} is not an AWS region (e.g. eu-west-1)") from None
        certificates, _ = declared(self)
        inventory = read_inventory(provider, region, name)
        return propose_from_aws(inventory, region, name, block, certificates)

    def adopt_acm(self, name: str, arn: str, key: Path | None = None) -> Adopted:
        """``import ADDRESS --acm-arn ARN``: record a certificate ACM holds, and the
        declared AWS bindings already serving it, without re-issuing anything."""
        from reconciler.adopt.acm_record import adopt_acm

        validated = self.validated
        return adopt_acm(validated, self.open_store(), name, arn, key, self.lock_timeout)

    def revoke(self, name: str, reason: str = "unspecified") -> RevokeResult:
        """Revoke a certificate (or ``authority.NAME``); the next apply re-issues it."""
        from reconciler.acme.client import REVOCATION_REASONS
        from reconciler.engine.revoke import revoke_certificate

        if reason not in REVOCATION_REASONS:  # before the state is opened: nothing changes
            raise UsageError(
                f"unknown revocation reason {reason!r}; expected one of: "
                + ", ".join(REVOCATION_REASONS)
            )
        root = self.validated.root
        with self._existing_state("revoke") as (store, recorded):
            return RevokeResult(revoke_certificate(store, recorded, name, reason, root))

    def export(
        self, name: str, passphrase_file: Path, fmt: str = "pem", out: Path = Path(".")
    ) -> ExportResult:
        """Export an ``exportable`` certificate with its chain and encrypted key; audited."""
        from reconciler.engine.export import FORMATS, export_certificate, read_passphrase

        validated = self.validated
        # Bad input is refused before the state is even opened: nothing in it changes.
        if fmt not in FORMATS:
            raise UsageError(
                f"unknown export format {fmt!r}; expected one of: {', '.join(FORMATS)}"
            )
        passphrase = read_passphrase(passphrase_file)  # once: it may be standard input
        certificates = validated.config.certificates
        with self._existing_state("export") as (store, recorded):
            files = export_certificate(store, recorded, certificates, name, passphrase, fmt, out)
        return ExportResult(files)

    def state_list(self) -> list[dict[str, Any]]:
        """Every recorded resource (address, kind, status, serial), lock-free."""
        from reconciler.state_view import addresses

        return addresses(self._read_and_close(self.open_store()))

    def state_show(self, address: str) -> dict[str, Any]:
        """What the state records about ``address`` (public data only), lock-free."""
        from reconciler.state_view import details

        return details(self._read_and_close(self.open_store()), address)

    def state_migrate(self, source: Path, master_key_file: Path | None = None) -> CopyReport:
        """Copy the SQLite state at ``source`` into the configured (empty) backend, with
        its lineage, serial, history and audit chain, keys re-wrapped for the
        configured key store; verified after the copy (see ``state/copy.py``)."""
        from reconciler.engine.context import actor
        from reconciler.state.copy import copy_state
        from reconciler.state.sealing import MasterKeySource
        from reconciler.state.sqlite import SqliteStateStore

        if not source.is_file():
            raise UsageError(f"--from {source}: no SQLite state file there")
        if master_key_file is not None:
            if not master_key_file.is_file():
                raise UsageError(f"--from-master-key-file {master_key_file}: no such file")
            key = MasterKeySource(master_key_file, explicit_file=True, file_only=True)
        else:
            key = MasterKeySource(source.parent / "master.key")
        origin = SqliteStateStore(source, key)
        target = self.open_store()
        if origin.where == target.where:
            raise UsageError("--from names the configured state itself; nothing to copy")
        origin.lock("state migrate", self.lock_timeout)
        try:
            target.lock("state migrate", self.lock_timeout)
            try:
                report = copy_state(origin, target)
                target.audit(actor(), "state migrate", "state", "migrate", "ok",
                             f"copied from {source} (lineage {report.lineage})")  # fmt: skip
                return report
            finally:
                target.unlock()
                target.close()
        finally:
            origin.unlock()
            origin.close()

    def state_mv(self, source: str, target: str) -> str:
        """Rename a recorded certificate without re-issuing it (key, bindings and
        history follow), audited; the world is not touched."""
        from reconciler.engine.context import actor
        from reconciler.state_view import record_of

        if not (source.startswith("certificate.") and target.startswith("certificate.")):
            raise UsageError(
                "state mv renames certificates: certificate.OLD certificate.NEW "
                "(bindings follow their certificate; authorities cannot be renamed)"
            )
        if source == target:
            raise UsageError(f"{source} and {target} are the same address")
        with self._existing_state("state mv") as (store, recorded):
            record_of(recorded, source)
            if target.split(".", 1)[1] in recorded.certificates:
                raise UsageError(f"{target} is already in the state; nothing was moved")
            with store.transaction() as writer:
                writer.rename_certificate(source.split(".", 1)[1], target.split(".", 1)[1])
                writer.audit(actor(), "state mv", target, "move", "ok", f"moved from {source}")
        return f"Moved {source} to {target}."

    def state_rm(self, addresses: Sequence[str]) -> list[str]:
        """Forget recorded resources without touching the world (certificates' and
        authorities' keys are erased from the state), audited; one transaction."""
        from reconciler.engine.context import actor
        from reconciler.state_view import record_of

        if not addresses:
            raise UsageError("state rm needs at least one address (see `certform state list`)")
        with self._existing_state("state rm") as (store, recorded):
            for address in addresses:
                record_of(recorded, address)  # all of them exist, or nothing is removed
            who = actor()
            with store.transaction() as writer:
                for address in dict.fromkeys(addresses):
                    kind, name = address.split(".", 1)
                    if kind == "binding":
                        writer.delete_binding(address)
                    else:
                        writer.forget(kind, name)
                    writer.audit(who, "state rm", address, "forget", "ok", "removed from the state")
        return [f"Removed {address} from the state." for address in dict.fromkeys(addresses)]

    def force_unlock(self, lock_id: str) -> str:
        """Release the lock ``lock_id`` left by a dead run; what was done."""
        store = self.open_store()
        if not store.exists:
            return "there is no state yet; nothing to release"
        try:
            return store.force_unlock(lock_id)
        finally:
            store.close()

    def audit_log(self) -> list[dict[str, Any]]:
        """The audit records, oldest first (needs no master key); none without a state."""
        store = self.open_store()
        if not store.exists:
            return []
        try:
            with store.snapshot():
                return store.audit_log()
        finally:
            store.close()

    def verify_audit(self) -> AuditVerification:
        """Check the audit log's keyed hash chain (needs the master key)."""
        from reconciler.state.store import verify_audit_rows

        store = self.open_store()
        if not store.exists:
            return verify_audit_rows([], None, None, 0)
        try:
            with store.snapshot():
                return store.verify_audit()
        finally:
            store.close()
