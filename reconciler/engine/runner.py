"""The write side: execute a plan's changes phase by phase, in journaled batches.

``run_batch`` below is the one place that sequences prepare → journal → fault
point → act → fault point → flush → record → audit, for a batch of steps:

1. every step of the batch is prepared (its new private key chosen) and the
   batch is journaled in one durable commit (``StateStore.journal_start_many``:
   one ``started`` entry per step, its key sealed and bound to the entry);
2. the steps act (sign, order, deploy), files written with their durability
   deferred (``fsutil.deferred_sync``); the acts of ``parallel`` steps (binding
   deploys and removes) run in worker threads, up to ``--parallelism`` lanes at
   once (``_act_all``), each change still fault point → act → fault point;
3. the written files and their directories are made durable at once (one
   ``syncfs`` per file system, or an fsync pass);
4. the batch is recorded, with its audit records, in one transaction that closes
   its journal entries (``StateStore.transaction(*entries)``).

Durability model: the state never records a deployment before its files are on
disk (3 before 4), and never a step that was not journaled first (1 before 2).
A process killed anywhere leaves either nothing, or ``started`` entries whose
keys the next run reuses (so nothing is issued twice with different keys) and
deployments the state does not know yet, which the next plan sees as drift and
rebinds.  What batching changes is only how much one crash leaves to redo: up
to a batch (``BATCH_SIZE`` steps) instead of one step.  A record that fails
(say, a tampered row) fails its own step only: the batch is then recorded step
by step.  Output and records follow the plan's order whatever order the acts
finished in.

Phases run in order (authorities, ACME accounts, certificates, bindings,
revocations and CRLs, destroys), each step in the plan's order within its
phase.  One overlap: after each batch of certificates is recorded, the binding
deploys it made ready (local files) are prepared, journaled and started in a
forked process (``early_deploy.py``), so that the disk works while the next
batch is signed; the bindings phase then takes their outcomes and records and
reports them in plan order, as if they had acted there.

A batch holds consecutive steps of one phase none of which depends on another
of the batch (a subordinate CA waits for its parent's batch to be recorded).
Steps with the same ``batch_key`` act together (ACME orders in
parallel), at the position of the first of them.  A failed step does not stop
independent ones; a step whose dependencies (``Change.depends_on``, from its spec
in the plan) failed or were skipped is skipped: certificates under a failed CA,
bindings of a failed certificate.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The step modules register themselves in STEPS.
from reconciler.engine import authority_steps, binding_steps, certificate_steps  # noqa: F401
from reconciler.engine.context import ApplyContext, ApplyResult, Reporter
from reconciler.engine.early_deploy import EarlyDeploys, early_deploys_supported
from reconciler.engine.faults import BATCH_SIZE_ENV, fault_point
from reconciler.engine.revocation_steps import revoke_replaced
from reconciler.engine.step import Done, Phase, Prepared, Step, step_for
from reconciler.errors import AwaitingApproval, CertformError, ProviderError
from reconciler.fsutil import deferred_sync, unsafe_key_directory
from reconciler.model.records import RecordedState
from reconciler.plan.model import KEY_STORE_ADDRESS, Change, Plan
from reconciler.plan.specs import BindingSpec
from reconciler.providers.catalog import target_from_settings
from reconciler.state.store import StateStore, StateWriter

STEP_ERRORS = (CertformError, OSError, ValueError)
"""What fails one step (and not the run): anything else is a bug and stops apply."""

BATCH_SIZE = 256
"""Most steps journaled, acted and recorded as one batch: bounds one transaction
(and what one crash leaves to redo) while progress output still flows."""


def batch_size() -> int:
    """``BATCH_SIZE``, or the test hook's smaller value (``CERTFORM_TEST_BATCH_SIZE``)."""
    wanted = os.environ.get(BATCH_SIZE_ENV, "")
    if wanted.isdigit() and int(wanted) > 0:
        return min(int(wanted), BATCH_SIZE)
    return BATCH_SIZE


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
    early = _early_deploys(ctx, steps)
    try:
        for phase in Phase:
            if phase == Phase.REVOCATIONS:
                revoke_replaced(ctx)  # before any CRL: a CRL lists what was revoked
            run_phase(ctx, [(c, s) for c, s in steps if s.phase == phase], early)
    finally:
        if early is not None:
            early.close()
    apply_state_updates(ctx)
    ctx.store.prune_journal()
    _covered_by_fallbacks(ctx)
    return ctx.result


def _covered_by_fallbacks(ctx: ApplyContext) -> None:
    """Demote to ``covered`` each failure that only ever was one alternative among
    several (fallback issuers) of changes that were all done: the fallback did its
    job.  A failure something needed alone, or with nothing depending on it (the
    step was what was asked for), stays a failure."""
    done = set(ctx.result.done)
    for address in list(ctx.result.failed):
        needing = [
            (change, alternatives)
            for change in ctx.plan.changes
            for alternatives in change.depends_on
            if address in alternatives
        ]
        if needing and all(
            len(alternatives) > 1 and change.address in done for change, alternatives in needing
        ):
            ctx.result.covered[address] = ctx.result.failed.pop(address)


@dataclass
class _Group:
    """Changes of one step that act together (same batch key), or one change alone."""

    step: Step
    together: bool
    changes: list[Change]


def _early_deploys(ctx: ApplyContext, steps: Sequence[tuple[Change, Step]]) -> EarlyDeploys | None:
    """Early deploys for this apply (``early_deploy.py``), when it has certificates to
    sign and bindings that may start before their phase."""
    if not early_deploys_supported(ctx):
        return None
    if not any(s.phase == Phase.CERTIFICATES for _, s in steps):
        return None
    candidates = [(c, s) for c, s in steps if s.early]
    if not candidates:
        return None
    return EarlyDeploys(ctx, _act_all, candidates, lambda step: _Group(step, False, []))


def run_phase(
    ctx: ApplyContext, steps: Sequence[tuple[Change, Step]], early: EarlyDeploys | None = None
) -> None:
    """The phase's steps in plan order, in batches (see ``batches``).  After each batch
    of certificates, the bindings it made ready start deploying (``early``)."""
    for batch in batches(ctx, steps, batch_size()):
        run_batch(ctx, batch, early)
        if early is not None and batch[0].step.phase == Phase.CERTIFICATES:
            early.launch()


def batches(
    ctx: ApplyContext, steps: Sequence[tuple[Change, Step]], size: int
) -> Iterator[list[_Group]]:
    """Consecutive groups of at most ``size`` changes, none depending on another of
    its batch.  Changes with the same batch key form one group at the position of
    the first of them (split in pieces of ``size``)."""
    groups: dict[Hashable, _Group] = {}
    order: list[_Group] = []
    for index, (change, step) in enumerate(steps):
        key = step.batch_key(ctx, change)
        name: Hashable = (id(step), key) if key is not None else index
        group = groups.get(name)
        if group is None:
            group = groups[name] = _Group(step, key is not None, [])
            order.append(group)
        group.changes.append(change)
    batch: list[_Group] = []
    count = 0
    inside: set[str] = set()
    for group in order:
        for start in range(0, len(group.changes), size):
            piece = _Group(group.step, group.together, group.changes[start : start + size])
            needs = {a for c in piece.changes for alts in c.depends_on for a in alts}
            if batch and (count + len(piece.changes) > size or needs & inside):
                yield batch
                batch, count, inside = [], 0, set()
            batch.append(piece)
            count += len(piece.changes)
            inside.update(c.address for c in piece.changes)
    if batch:
        yield batch


@dataclass
class _Started:
    step: Step
    change: Change
    prepared: Prepared
    entry: int
    outcome: Any = None


def run_batch(
    ctx: ApplyContext, batch: Sequence[_Group], early: EarlyDeploys | None = None
) -> None:
    """Prepare → journal (one commit) → act → flush files → record (one commit) →
    finish, for one batch.  Every change is journaled before any of them acts.  A
    change that ``early`` already prepared, journaled and deployed (in a forked
    process, while certificates were signed) takes its outcome from there."""
    launched = early.launched if early is not None else {}
    ready: list[tuple[_Group, list[tuple[Change, Prepared]]]] = []
    for group in batch:
        prepared_group: list[tuple[Change, Prepared]] = []
        for change in group.changes:
            known = launched.get(change.address)
            if known is not None:  # its dependencies were done when it was launched
                ctx.report(f"{change.address}: {change.action.value}…")
                prepared_group.append((change, known.prepared))
                continue
            blocker = blocked_by(ctx, change)
            if blocker and blocker in ctx.result.waiting:
                ctx.result.waiting[change.address] = f"waits for {blocker}"
                ctx.report(f"{change.address}: not yet ({blocker} is waiting for approval)")
                continue
            if blocker:
                ctx.result.skipped[change.address] = f"{blocker} failed"
                ctx.report(f"{change.address}: skipped ({blocker} failed)")
                continue
            ctx.report(f"{change.address}: {change.action.value}…")
            try:
                prepared_group.append((change, group.step.prepare(ctx, change)))
            except STEP_ERRORS as exc:
                _failed(ctx, change, None, exc)
        if prepared_group:
            ready.append((group, prepared_group))
    flat = [(group, change, prepared) for group, items in ready for change, prepared in items]
    if not flat:
        return
    entries = {c.address: launched[c.address].entry for _, c, _ in flat if c.address in launched}
    fresh = [(change, prepared) for _, change, prepared in flat if change.address not in entries]
    if fresh:
        opened = ctx.store.journal_start_many(
            ctx.run_id, [(c.address, c.action.value, p.key_der) for c, p in fresh]
        )
        entries.update(zip((c.address for c, _ in fresh), opened, strict=True))
    to_act = [
        (group, [(c, p) for c, p in items if c.address not in launched]) for group, items in ready
    ]
    to_act = [(group, items) for group, items in to_act if items]
    outcomes: dict[str, Any] = {}
    if early is not None and any(group.step.parallel for group, _ in to_act):
        early.settle()  # deploys here start when the forked ones are done
    with deferred_sync() as written:
        for (_, items), acted_group in zip(to_act, _act_all(ctx, to_act), strict=True):
            for (change, _), outcome in zip(items, acted_group, strict=True):
                outcomes[change.address] = outcome
        for _, change, _ in flat:
            if change.address in launched:  # taken once: what it holds is freed after
                outcomes[change.address] = launched.pop(change.address).collect()
        # What the steps wrote is on disk before the state says it was deployed.
        written.flush()
    started = [
        _Started(group.step, change, prepared, entries[change.address], outcomes[change.address])
        for group, change, prepared in flat
    ]
    acted = [s for s in started if not isinstance(s.outcome, BaseException)]
    for s in started:
        if isinstance(s.outcome, BaseException):
            _failed(ctx, s.change, s.entry, s.outcome)
    for s, done in _record(ctx, acted):
        if isinstance(done, BaseException):
            _failed(ctx, s.change, s.entry, done)
            continue
        s.step.finish(ctx, s.change, s.prepared, s.outcome)
        if done.failed is not None:  # recorded as it is, and still a failure
            ctx.result.failed[s.change.address] = done.failed
            ctx.report(f"{s.change.address}: {s.change.action.value} FAILED: {done.failed}")
            continue
        ctx.result.done.append(s.change.address)
        ctx.report(f"{s.change.address}: {s.change.action.value} done{done.report}")


_Ready = Sequence[tuple[_Group, Sequence[tuple[Change, Prepared]]]]


def _act_all(ctx: ApplyContext, ready: _Ready) -> list[list[Any]]:
    """Each group's outcomes (or the exceptions its acts raised), in plan order.

    Changes of ``parallel`` steps act in worker threads, one thread per lane at a
    time (``Step.lane``), up to ``ctx.parallelism`` lanes at once; the rest act in
    this thread, in plan order.  With fewer than two lanes everything acts here.
    Whatever the order of the acts, the caller records and reports in plan order."""
    outcomes: list[list[Any]] = [[None] * len(items) for _, items in ready]
    lanes: dict[Hashable, list[tuple[int, int]]] = {}
    here: list[int] = []
    for g, (group, items) in enumerate(ready):
        step = group.step
        if ctx.parallelism < 2 or not step.parallel or (group.together and len(items) > 1):
            here.append(g)
            continue
        for i, (change, prepared) in enumerate(items):
            lanes.setdefault(step.lane(ctx, change, prepared), []).append((g, i))
    if len(lanes) < 2:
        return [_act(ctx, group, items) for group, items in ready]
    pool = ThreadPoolExecutor(min(ctx.parallelism, len(lanes)), thread_name_prefix="certform-act")
    try:
        futures = [pool.submit(_act_lane, ctx, ready, lane, outcomes) for lane in lanes.values()]
        for g in here:
            outcomes[g] = _act(ctx, *ready[g])
        for future in futures:
            future.result()  # a bug in an act (not a step error) stops apply here
    finally:
        # On the way out with an error: lanes not started yet never start.
        pool.shutdown(wait=True, cancel_futures=True)
    return outcomes


def _act_lane(
    ctx: ApplyContext, ready: _Ready, lane: Sequence[tuple[int, int]], outcomes: list[list[Any]]
) -> None:
    """One lane's changes, one after another (in a worker thread)."""
    for g, i in lane:
        group, items = ready[g]
        change, prepared = items[i]
        outcomes[g][i] = _act_one(ctx, group.step, change, prepared)


def _act(ctx: ApplyContext, group: _Group, items: Sequence[tuple[Change, Prepared]]) -> list[Any]:
    """Each change's outcome, or the exception its act raised."""
    step = group.step
    if group.together and len(items) > 1:
        for change, _ in items:
            fault_point(change.address, "journaled")
        try:
            outcomes = step.act_together(ctx, items)
        except STEP_ERRORS as exc:
            return [exc] * len(items)
        for change, _ in items:
            fault_point(change.address, "acted")
        return outcomes
    return [_act_one(ctx, step, change, prepared) for change, prepared in items]


def _act_one(ctx: ApplyContext, step: Step, change: Change, prepared: Prepared) -> Any:
    """Fault point, act, fault point: the outcome, or the step error the act raised."""
    fault_point(change.address, "journaled")
    try:
        outcome = step.act(ctx, change, prepared)
    except STEP_ERRORS as exc:
        return exc
    fault_point(change.address, "acted")
    return outcome


def _record(ctx: ApplyContext, acted: Sequence[_Started]) -> list[tuple[_Started, Any]]:
    """Record the acted steps in one transaction that closes their journal entries;
    when one of them cannot be recorded, each in its own (so only that one fails).
    Each step with its ``Done``, or the exception its record raised."""
    if not acted:
        return []
    if len(acted) > 1:
        try:
            with ctx.store.transaction(*(s.entry for s in acted)) as writer:
                return [(s, _record_one(ctx, s, writer)) for s in acted]
        except STEP_ERRORS:
            pass  # rolled back: find out which one it was
    results: list[tuple[_Started, Any]] = []
    for s in acted:
        try:
            with ctx.store.transaction(s.entry) as writer:
                results.append((s, _record_one(ctx, s, writer)))
        except STEP_ERRORS as exc:
            results.append((s, exc))
    return results


def _record_one(ctx: ApplyContext, s: _Started, writer: StateWriter) -> Done:
    done = s.step.record(ctx, s.change, s.prepared, s.outcome, writer)
    action = s.change.action.value
    result = "ok" if done.failed is None else "failed"
    writer.audit(ctx.actor, "apply", s.change.address, action, result, done.audit)
    return done


def _failed(ctx: ApplyContext, change: Change, entry: int | None, exc: BaseException) -> None:
    if entry is not None:
        ctx.store.journal_finish(entry, "failed")
    if isinstance(exc, AwaitingApproval):
        ctx.result.waiting[change.address] = str(exc)
        ctx.store.audit(ctx.actor, "apply", change.address, change.action.value, "waiting",
                        str(exc))  # fmt: skip
        ctx.report(f"{change.address}: waiting: {exc}")
        return
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
