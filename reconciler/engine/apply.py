"""Apply's entry points: refuse a stale plan, then run it (``runner.run_apply``).

The steps live in ``*_steps.py`` (registered by kind and action in
``step.STEPS``), the sequencing in ``runner.py``, what a run shares in
``context.py``.
"""

from __future__ import annotations

from reconciler.engine.context import ApplyResult, actor
from reconciler.engine.runner import run_apply
from reconciler.errors import PlanError
from reconciler.model.records import RecordedState
from reconciler.plan.model import Plan

__all__ = ["ApplyResult", "actor", "check_applicable", "run_apply"]


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
