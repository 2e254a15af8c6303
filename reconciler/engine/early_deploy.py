"""Binding deploys started while certificates are still being signed, in a forked
process: the second core writes files while this one signs.

Why a process and not a thread: signing holds the GIL (``cryptography`` does not
release it), and a thread deploying files gives the GIL back at every system call
(about 25 per ``files`` binding), then waits up to the switch interval to get it
again while the signer runs.  Measured on 2 cores, a deploy thread beside signing
made apply slower, not faster; a forked process has its own interpreter.

What runs where:

* this process, after each batch of the certificates phase is recorded, takes the
  bindings whose certificate is now issued (``ready``) and whose target deploys
  locally without shared state (``Step.prepare_early``: ``Target.deploys_in_fork``),
  prepares them and journals them in one commit, as ``run_batch`` would, then forks;
* the child waits until the child before it is done deploying (children take
  turns through a "baton" pipe each holds open while it deploys), acts on them
  exactly as ``run_batch`` would (the runner's ``_act_all``: lanes in threads,
  fault points), makes what it wrote durable, passes the baton, sends the
  outcomes back through a pipe and exits without running any exit handler (the
  state's connection is never touched in the child);
* the bindings phase, in plan order, takes these outcomes instead of acting
  (``Launched.collect``), then records and reports them like any other batch;
  before it deploys anything itself it waits for the last child to be done
  (``settle``).  Taking turns keeps the deploys running at once within
  ``--parallelism``, as without early deploys.

Crash safety is the runner's: every early deploy is journaled before the fork,
files are durable before their outcome is sent, the state records them only
later.  The child asks the kernel to kill it when this process dies
(``PR_SET_PDEATHSIG``), so a killed apply leaves no writer behind; the next run
recovers its journaled steps like any other.  Linux only, and never with
``--parallelism 1``.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from reconciler.engine.context import ApplyContext
from reconciler.engine.step import Prepared, Step
from reconciler.errors import ProviderError
from reconciler.forked import ForkedCall, ForkedFailure, fork_call, fork_supported
from reconciler.fsutil import deferred_sync
from reconciler.plan.model import Change

ActAll = Callable[[ApplyContext, Sequence[Any]], list[list[Any]]]


@dataclass
class _Child:
    call: ForkedCall
    addresses: list[str]
    outcomes: dict[str, Any] | None = None

    def outcome(self, address: str) -> Any:
        """``address``'s outcome (each is asked for once)."""
        if self.outcomes is None:
            self.outcomes = _answers(self)
        return self.outcomes.pop(address)


@dataclass
class Launched:
    """An early deploy: what ``run_batch`` needs instead of preparing and journaling."""

    prepared: Prepared
    entry: int
    address: str
    child: _Child = field(repr=False)

    def collect(self) -> Any:
        """What ``act`` returned in the child, or the step error it raised (waits for
        the child's answer)."""
        return self.child.outcome(self.address)


def early_deploys_supported(ctx: ApplyContext) -> bool:
    """Forking is Linux-only here (``forked.py``), and ``--parallelism 1`` asks for
    one thing at a time."""
    return fork_supported() and ctx.parallelism >= 2


class EarlyDeploys:
    """The early deploys of one apply, by binding address."""

    def __init__(
        self,
        ctx: ApplyContext,
        act_all: ActAll,
        candidates: Sequence[tuple[Change, Step]],
        group: Callable[[Step], Any],
    ) -> None:
        """``candidates``: the apply's changes whose step may start early, in plan
        order; ``group`` makes the runner's group for a step (``runner._Group``)."""
        self._ctx = ctx
        self._act_all = act_all
        self._waiting = list(candidates)
        self._group = group
        self._planned = {change.address for change in ctx.plan.changes}
        self._children: list[_Child] = []
        self._baton: int | None = None
        """The read end of the newest child's baton pipe (see ``launch``)."""
        self.launched: dict[str, Launched] = {}

    def launch(self) -> None:
        """Fork one child for the candidates that are ready now (see the module doc).
        Children deploy one after another (each waits for the one before it to be
        done), so that no more than ``--parallelism`` deploys ever run at once, and
        this process does not wait for them here."""
        ctx = self._ctx
        chosen: list[tuple[Change, Step, Prepared]] = []
        waiting: list[tuple[Change, Step]] = []
        done = set(ctx.result.done)
        for change, step in self._waiting:
            if not self._ready(change, done):
                waiting.append((change, step))
                continue
            try:
                prepared = step.prepare_early(ctx, change)
            except Exception:  # its phase prepares it again, and reports what failed
                continue
            if prepared is not None:
                chosen.append((change, step, prepared))
        self._waiting = waiting
        if not chosen:
            return
        entries = ctx.store.journal_start_many(
            ctx.run_id, [(c.address, c.action.value, p.key_der) for c, _, p in chosen]
        )
        ready = [(self._group(step), [(change, prepared)]) for change, step, prepared in chosen]
        # Lanes in threads help deploys that wait (a command, a handshake).  Ones that
        # only write files would take the GIL back after every system call, and CPU
        # from the signing on the other core: 0.1-0.2 s of 1,000 bindings' apply.
        waits = any(step.waits(ctx, change, prepared) for change, step, prepared in chosen)
        lanes = ctx.parallelism if waits else 1
        baton_read, baton_write = os.pipe()  # end of file: this child's deploys are done
        previous, act_all = self._baton, self._act_all

        def deploy() -> tuple[str, Any]:  # in the child
            os.close(baton_read)
            if previous is not None:
                _wait_for_end(previous)
            ctx.parallelism = lanes  # this process's copy
            try:
                with deferred_sync() as written:
                    outcomes = act_all(ctx, ready)
                    written.flush()
                return ("ok", [_portable(group[0]) for group in outcomes])
            except OSError as exc:  # the flush: raised where the runner would raise it
                return ("error", exc)
            finally:
                os.close(baton_write)  # the next child's turn, whatever happened

        call = fork_call(deploy)
        os.close(baton_write)
        if previous is not None:
            os.close(previous)
        self._baton = baton_read
        assert call is not None  # early_deploys_supported said so
        child = _Child(call, [change.address for change, _, _ in chosen])
        self._children.append(child)
        for (change, _, prepared), entry in zip(chosen, entries, strict=True):
            self.launched[change.address] = Launched(prepared, entry, change.address, child)

    def settle(self) -> None:
        """Wait until every child is done deploying (before this process deploys
        anything itself: together they stay within ``--parallelism``)."""
        if self._baton is not None:
            _wait_for_end(self._baton)
            os.close(self._baton)
            self._baton = None

    def _ready(self, change: Change, done: set[str]) -> bool:
        """Every dependency done in this run, or not a change of this plan at all."""
        planned = self._planned
        return all(
            any(a in done or a not in planned for a in alternatives)
            for alternatives in change.depends_on
        )

    def close(self) -> None:
        """Wait for every child still running (an apply stopped by an error): none is
        left writing behind this process's back."""
        self.settle()
        for child in self._children:
            if child.outcomes is None:
                try:
                    child.outcomes = _answers(child)
                except Exception:  # the error that stopped apply says more
                    child.outcomes = {}


def _wait_for_end(fd: int) -> None:
    """Read ``fd`` until every writer has closed it."""
    while os.read(fd, 4096):
        pass


def _answers(child: _Child) -> dict[str, Any]:
    """Each address's outcome; a child that died fails each of its steps (the next
    apply redoes them), one whose code raised stops apply like a bug in a thread."""
    try:
        kind, payload = child.call.result()
    except ForkedFailure as exc:
        if exc.died:
            failure = ProviderError(f"the process deploying it died ({exc})")
            return dict.fromkeys(child.addresses, failure)
        raise RuntimeError(f"an early deploy failed unexpectedly:\n{exc}") from None
    if kind == "error":
        raise payload
    return dict(zip(child.addresses, payload, strict=True))


def _portable(outcome: Any) -> Any:
    """``outcome`` as it survives pickling; an exception that does not becomes a
    ProviderError with its message."""
    try:
        pickle.loads(pickle.dumps(outcome))
    except Exception:
        return ProviderError(str(outcome))
    return outcome
