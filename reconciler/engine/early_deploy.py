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
  locally without shared state (``Target.deploys_in_fork``), prepares them and
  journals them in one commit, as ``run_batch`` would, then forks;
* the child acts on them exactly as ``run_batch`` would (``runner.act_all``: lanes
  in threads, fault points), makes what it wrote durable, sends the outcomes
  back through a pipe and exits without running any exit handler (the state's
  SQLite connection is never touched in the child);
* the bindings phase, in plan order, takes these outcomes instead of acting
  (``collect``), then records and reports them like any other batch.

Crash safety is the runner's: every early deploy is journaled before the fork,
files are durable before their outcome is sent, the state records them only
later.  The child asks the kernel to kill it when this process dies
(``PR_SET_PDEATHSIG``), so a killed apply leaves no writer behind; the next run
recovers its journaled steps like any other.  Linux only, and never with
``--parallelism 1``.
"""

from __future__ import annotations

import ctypes
import os
import pickle
import signal
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from reconciler.engine.context import ApplyContext
from reconciler.engine.step import Prepared, Step
from reconciler.errors import ProviderError
from reconciler.fsutil import deferred_sync
from reconciler.plan.model import Change

_PR_SET_PDEATHSIG = 1

ActAll = Callable[[ApplyContext, Sequence[Any]], list[list[Any]]]


@dataclass
class _Child:
    pid: int
    read_fd: int
    addresses: list[str]
    outcomes: dict[str, Any] | None = None

    def outcome(self, address: str) -> Any:
        """``address``'s outcome (each is asked for once)."""
        if self.outcomes is None:
            self.outcomes = _wait(self)
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
    """Forking is Linux-only here (the death signal), and ``--parallelism 1`` asks
    for one thing at a time."""
    return sys.platform.startswith("linux") and hasattr(os, "fork") and ctx.parallelism >= 2


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
        done, ``_run_child``), so that no more than ``--parallelism`` deploys ever
        run at once, and this process does not wait for them here."""
        ctx = self._ctx
        chosen: list[tuple[Change, Step, Prepared]] = []
        waiting: list[tuple[Change, Step]] = []
        done = set(ctx.result.done)
        for change, step in self._waiting:
            if not self._ready(change, done):
                waiting.append((change, step))
                continue
            try:
                prepared = step.prepare(ctx, change)
            except Exception:  # its phase prepares it again, and reports what failed
                continue
            target = getattr(prepared.data, "target", None)
            if getattr(target, "deploys_in_fork", False):
                chosen.append((change, step, prepared))
        self._waiting = waiting
        if not chosen:
            return
        entries = ctx.store.journal_start_many(
            ctx.run_id, [(c.address, c.action.value, p.key_der) for c, _, p in chosen]
        )
        ready = [(self._group(step), [(change, prepared)]) for change, step, prepared in chosen]
        read_fd, write_fd = os.pipe()
        baton_read, baton_write = os.pipe()  # end of file: this child's deploys are done
        previous, parent = self._baton, os.getpid()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child; covered through its outcomes
            os.close(read_fd)
            os.close(baton_read)
            _run_child(ctx, ready, write_fd, parent, self._act_all, previous, baton_write)
        os.close(write_fd)
        os.close(baton_write)
        if previous is not None:
            os.close(previous)
        self._baton = baton_read
        child = _Child(pid, read_fd, [change.address for change, _, _ in chosen])
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
                    child.outcomes = _wait(child)
                except Exception:  # the error that stopped apply says more
                    child.outcomes = {}


def _wait_for_end(fd: int) -> None:
    """Read ``fd`` until every writer has closed it."""
    while os.read(fd, 4096):
        pass


def _wait(child: _Child) -> dict[str, Any]:
    chunks = []
    with os.fdopen(child.read_fd, "rb") as pipe:
        while chunk := pipe.read(1 << 16):
            chunks.append(chunk)
    _, status = os.waitpid(child.pid, 0)
    try:
        kind, payload = pickle.loads(b"".join(chunks))
    except Exception:
        reason = f"the deploy process ended with status {os.waitstatus_to_exitcode(status)}"
        return dict.fromkeys(child.addresses, ProviderError(reason))
    if kind == "bug":
        raise RuntimeError(f"an early deploy failed unexpectedly:\n{payload}")
    if kind == "error":
        raise payload
    return dict(zip(child.addresses, payload, strict=True))


def _run_child(
    ctx: ApplyContext,
    ready: Sequence[Any],
    write_fd: int,
    parent: int,
    act_all: ActAll,
    previous: int | None,
    baton: int,
) -> None:  # pragma: no cover - runs in the forked child
    """Deploy ``ready`` once the child before this one is done (``previous``: its
    baton), make it durable, let the next child go (close ``baton``), then send the
    outcomes (which may wait for the parent to read them) and exit without running
    any exit handler."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # died before the signal was asked for
            os._exit(1)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent answers ^C
        if previous is not None:
            _wait_for_end(previous)
            os.close(previous)
        try:
            with deferred_sync() as written:
                outcomes = act_all(ctx, ready)
                written.flush()
            message: tuple[str, Any] = ("ok", [_portable(group[0]) for group in outcomes])
        except OSError as exc:
            message = ("error", exc)
        except BaseException as exc:  # reported to the parent as a bug
            message = ("bug", "".join(traceback.format_exception(exc)))
        os.close(baton)
        data = pickle.dumps(message)
        view = memoryview(data)
        while view:
            view = view[os.write(write_fd, view) :]
    finally:
        os._exit(0)


def _portable(outcome: Any) -> Any:
    """``outcome`` as it survives pickling; an exception that does not becomes a
    ProviderError with its message."""
    try:
        pickle.loads(pickle.dumps(outcome))
    except Exception:
        return ProviderError(str(outcome))
    return outcome
