"""The write side: execute a plan's changes phase by phase, each step journaled.

Every step writes a journal entry before it acts (with the new private key,
sealed, when it generates one) and records its result together with closing
that entry in one transaction: ``run_batch`` below is the one place that
sequences journal → fault point → act → fault point → record → audit.  A
process killed anywhere leaves either nothing or an open entry whose key the
next run reuses; targets are re-observed on the next plan, so a half-deployed
binding shows up as drift.

Phases run in order (authorities, ACME accounts, certificates, bindings,
revocations and CRLs, destroys), each step in the plan's order within its
phase.  A failed step does not stop independent ones; a step whose
dependencies (``Change.depends_on``, from its spec in the plan) failed or were
skipped is skipped: certificates under a failed CA, bindings of a failed
certificate.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any

# The step modules register themselves in STEPS.
from reconciler.engine import authority_steps, binding_steps, certificate_steps  # noqa: F401
from reconciler.engine.context import ApplyContext, ApplyResult, Reporter
from reconciler.engine.faults import fault_point
from reconciler.engine.revocation_steps import revoke_replaced
from reconciler.engine.step import Phase, Prepared, Step, step_for
from reconciler.errors import CertformError, ProviderError
from reconciler.fsutil import unsafe_key_directory
from reconciler.model.records import RecordedState
from reconciler.plan.model import KEY_STORE_ADDRESS, Change, Plan
from reconciler.plan.specs import BindingSpec
from reconciler.providers.catalog import target_from_settings
from reconciler.state.store import StateStore

STEP_ERRORS = (CertformError, OSError, ValueError)
"""What fails one step (and not the run): anything else is a bug and stops apply."""


def run_apply(
    store: StateStore,
    plan: Plan,
    recorded: RecordedState,
    report: Reporter,
    parallelism: int = 10,
    *,
    root: Path | None = None,
) -> ApplyResult:
    """Apply ``plan`` to ``store``.  ``root`` is where relative target paths and
    imported files resolve (the loaded config's root); ``plan.config_root`` only
    for a plan made in this process (benches)."""
    ctx = ApplyContext(
        store=store,
        plan=plan,
        recorded=recorded,
        report=report,
        root=root if root is not None else Path(plan.config_root),
        parallelism=parallelism,
    )
    return run(ctx)


def run(ctx: ApplyContext) -> ApplyResult:
    steps = [(change, step_for(change)) for change in ctx.plan.changes]
    check_key_directories(ctx)
    if ctx.recorded.interrupted:
        ctx.report(
            f"Recovering from an interrupted apply ({len(ctx.recorded.interrupted)} "
            "unfinished step(s)); generated keys are reused."
        )
        ctx.store.mark_interrupted()
    for phase in Phase:
        if phase == Phase.REVOCATIONS:
            revoke_replaced(ctx)  # before any CRL: a CRL lists what was revoked
        run_phase(ctx, [(c, s) for c, s in steps if s.phase == phase])
    apply_state_updates(ctx)
    ctx.store.prune_journal()
    return ctx.result


def run_phase(ctx: ApplyContext, steps: Sequence[tuple[Change, Step]]) -> None:
    """The phase's steps in plan order; steps with the same batch key run as one
    batch, at the position of the first of them."""
    batches: dict[Hashable, list[Change]] = {}
    order: list[tuple[Step, Hashable]] = []
    for index, (change, step) in enumerate(steps):
        key = step.batch_key(ctx, change)
        group: Hashable = (id(step), key) if key is not None else index
        if group not in batches:
            batches[group] = []
            order.append((step, group))
        batches[group].append(change)
    for step, group in order:
        run_batch(ctx, step, batches[group])


def run_batch(ctx: ApplyContext, step: Step, changes: Sequence[Change]) -> None:
    """Journal → fault point → act → fault point → record → audit, for one batch
    of one step kind.  Every change is journaled before any of them acts."""
    started: list[tuple[Change, Prepared, int]] = []
    for change in changes:
        blocker = blocked_by(ctx, change)
        if blocker:
            ctx.result.skipped[change.address] = f"{blocker} failed"
            ctx.report(f"{change.address}: skipped ({blocker} failed)")
            continue
        ctx.report(f"{change.address}: {change.action.value}…")
        try:
            prepared = step.prepare(ctx, change)
        except STEP_ERRORS as exc:
            _failed(ctx, change, None, exc)
            continue
        entry = ctx.store.journal_start(
            ctx.run_id, change.address, change.action.value, prepared.key_der
        )
        started.append((change, prepared, entry))
    if not started:
        return
    for (change, prepared, entry), outcome in zip(started, _act(ctx, step, started), strict=True):
        if isinstance(outcome, BaseException):
            _failed(ctx, change, entry, outcome)
            continue
        fault_point(change.address, "acted")
        try:
            with ctx.store.transaction(entry) as writer:
                done = step.record(ctx, change, prepared, outcome, writer)
                writer.audit(
                    ctx.actor, "apply", change.address, change.action.value, "ok", done.audit
                )
        except STEP_ERRORS as exc:
            _failed(ctx, change, entry, exc)
            continue
        step.finish(ctx, change, prepared, outcome)
        ctx.result.done.append(change.address)
        ctx.report(f"{change.address}: {change.action.value} done{done.report}")


def _act(
    ctx: ApplyContext, step: Step, started: Sequence[tuple[Change, Prepared, int]]
) -> list[Any]:
    """Each change's outcome, or the exception its act raised."""
    if len(started) > 1:
        for change, _, _ in started:
            fault_point(change.address, "journaled")
        try:
            return step.act_together(ctx, [(change, prepared) for change, prepared, _ in started])
        except STEP_ERRORS as exc:
            return [exc] * len(started)
    outcomes: list[Any] = []
    for change, prepared, _ in started:
        fault_point(change.address, "journaled")
        try:
            outcomes.append(step.act(ctx, change, prepared))
        except STEP_ERRORS as exc:
            outcomes.append(exc)
    return outcomes


def _failed(ctx: ApplyContext, change: Change, entry: int | None, exc: BaseException) -> None:
    if entry is not None:
        ctx.store.journal_finish(entry, "failed")
    message = str(exc) if isinstance(exc, CertformError) else type(exc).__name__
    if isinstance(exc, OSError):
        message = f"{exc.strerror or exc}"
    ctx.result.failed[change.address] = message
    ctx.store.audit(ctx.actor, "apply", change.address, change.action.value, "failed", message)
    ctx.report(f"{change.address}: {change.action.value} FAILED: {message}")


def blocked_by(ctx: ApplyContext, change: Change) -> str | None:
    """The dependency that failed or was skipped, if any (None: the step may run).
    Of alternatives (fallback issuers), one that did not fail is enough."""
    for alternatives in change.depends_on:
        if alternatives and all(ctx.failed(address) for address in alternatives):
            return alternatives[0]
    return None


def check_key_directories(ctx: ApplyContext) -> None:
    """Before anything changes: refuse to deploy a private key into a directory
    others can write to or that another user owns (they could swap the key)."""
    checked: set[Path] = set()
    for change in ctx.plan.changes:
        if not isinstance(change.after, BindingSpec):
            continue
        try:
            target = target_from_settings(dict(change.after.target), ctx.root)
        except (CertformError, ValueError, KeyError):
            continue  # the step itself reports it, with its address
        for directory in target.key_directories():
            if directory in checked:
                continue
            checked.add(directory)
            problem = unsafe_key_directory(directory)
            if problem is not None:
                raise ProviderError(f"{change.address}: {problem}. Nothing was changed.")


def apply_state_updates(ctx: ApplyContext) -> None:
    """Remembered settings (guards, tags, the key store) that touch no certificate."""
    for update in ctx.plan.state_updates:
        if update.address == KEY_STORE_ADDRESS:
            ctx.store.rewrap_data_key()
            ctx.store.audit(
                ctx.actor, "apply", update.address, "update", "ok",
                f"data key re-wrapped under {update.after['key_store']}",
            )  # fmt: skip
            ctx.result.done.append(update.address)
            ctx.report(f"{update.address}: data key re-wrapped under {update.after['key_store']}")
            continue
        kind, name = update.address.split(".", 1)
        with ctx.store.transaction() as writer:
            writer.set_guard(
                kind, name, bool(update.after.get("prevent_destroy")), update.after.get("tags")
            )
            writer.audit(ctx.actor, "apply", update.address, "update", "ok", "state only")
        ctx.result.done.append(update.address)
        ctx.report(f"{update.address}: settings recorded")
