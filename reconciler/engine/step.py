"""The shape of an apply step, and the registry of steps by (kind, action).

A step is split in the parts the runner sequences (``runner.run_batch``):

* ``prepare`` — decide, without side effects: the key to journal (sealed into
  the journal entry) and the inputs ``act`` needs;
* ``act`` — change the world (sign, order, deploy, remove, write a CRL);
  ``act_together`` when a batch of them runs at once (ACME orders in parallel);
* ``record`` — write the result into the state, inside the transaction that
  closes the journal entry; returns the audit and output details;
* ``finish`` — after the commit: in-memory bookkeeping (material to deploy
  later in the run, copies to retire).

Steps never journal, audit, fsync or catch errors themselves: the runner does,
in one place, for a batch of steps at a time (one commit to journal the batch,
one flush of the files it wrote, one commit to record it).  ``batch_key`` groups
steps of one phase that act together (ACME orders in parallel); a step whose
``parallel`` is set acts in worker threads, alongside the other changes of its
batch that are in other ``lane``s (binding deploys to different places).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, ClassVar

from reconciler.engine.context import ApplyContext
from reconciler.errors import PlanError
from reconciler.issuers.base import Prepared
from reconciler.plan.model import Action, Change
from reconciler.state.store import StateWriter

__all__ = ["STEPS", "Done", "Phase", "Prepared", "Step", "register", "step_for"]


class Phase(IntEnum):
    """Apply's phases, in order; a phase starts when the one before it is done."""

    AUTHORITIES = 1
    ACCOUNTS = 2
    CERTIFICATES = 3
    BINDINGS = 4
    REVOCATIONS = 5
    DESTROYS = 6


@dataclass(frozen=True)
class Done:
    """How a recorded step is described: in the audit log and in the output."""

    audit: str = ""
    report: str = ""
    failed: str | None = None
    """Recorded, yet the step failed (a deploy whose post_deploy failed: what is
    deployed is recorded as unfinished, and the step reports this failure)."""


class Step(ABC):
    """One (kind, action) of the plan's closed set."""

    phase: ClassVar[Phase]
    parallel: ClassVar[bool] = False
    """True: ``act`` may run in a worker thread, at the same time as the acts of the
    batch's other changes that are in other lanes (``lane``), up to ``apply
    --parallelism`` at once.  Such an ``act`` touches neither the state store (its
    connection belongs to the main thread) nor the output; ``prepare``, ``record``
    and ``finish`` stay in the main thread, in plan order."""

    early: ClassVar[bool] = False
    """True: a ``parallel`` step whose ``act`` may run before its phase, in a forked
    process, as soon as its dependencies are done (``engine/early_deploy.py``), for
    the changes ``prepare_early`` accepts."""

    def lane(self, ctx: ApplyContext, change: Change, prepared: Prepared) -> Hashable:
        """Changes of a batch in the same lane act one after another, in plan order;
        different lanes may act at the same time.  Only asked when ``parallel``."""
        return change.address

    def waits(self, ctx: ApplyContext, change: Change, prepared: Prepared) -> bool:
        """Whether ``act`` waits on something besides this machine's CPU and disk (a
        command, a handshake, the network), so that acts beside it in other lanes
        gain time.  An early deploy whose acts all do not wait runs them one after
        another (``early_deploy.py``).  Default: yes."""
        return True

    def batch_key(self, ctx: ApplyContext, change: Change) -> Hashable | None:
        """Changes of one phase with the same key act together; None: alone."""
        return None

    def prepare(self, ctx: ApplyContext, change: Change) -> Prepared:
        return Prepared()

    def prepare_early(self, ctx: ApplyContext, change: Change) -> Prepared | None:
        """``prepare`` for an act before the phase (only asked when ``early``), or None
        when this change waits for its phase; deciding costs no more than a look at
        the change (None reads no material)."""
        return None

    @abstractmethod
    def act(self, ctx: ApplyContext, change: Change, prepared: Prepared) -> Any:
        """Change the world; what it returns is passed to ``record``."""

    def act_together(
        self, ctx: ApplyContext, items: Sequence[tuple[Change, Prepared]]
    ) -> list[Any]:
        """Act on a batch at once; one outcome (or the exception) per item, in order."""
        raise NotImplementedError

    @abstractmethod
    def record(
        self, ctx: ApplyContext, change: Change, prepared: Prepared, outcome: Any,
        writer: StateWriter,
    ) -> Done:  # fmt: skip
        """Write the outcome into the state (the runner's transaction)."""

    def finish(self, ctx: ApplyContext, change: Change, prepared: Prepared, outcome: Any) -> None:
        """After the commit: in-memory bookkeeping for later steps of the run."""
        return None


STEPS: dict[tuple[str, Action], Step] = {}
"""Every step by (change kind, action): the plan's closed action set."""


def register(kind: str, *actions: Action) -> Any:
    """Class decorator: one instance of the step serves ``kind`` for ``actions``."""

    def add(cls: type[Step]) -> type[Step]:
        instance = cls()
        for action in actions:
            STEPS[(kind, action)] = instance
        return cls

    return add


def step_for(change: Change) -> Step:
    step = STEPS.get((change.kind, change.action))
    if step is None:
        raise PlanError(f"cannot {change.action.value} a {change.kind}")
    return step
