"""``plan --out`` and ``apply PLANFILE``: writing a plan authenticated for its state,
and reading one back only once it is proven to be that.

What apply executes from a saved plan is exactly what certform wrote for this
state (MAC, ``plan/signing.py``), made for this state (its lineage) at the state's
current serial, and still within the state's guards and the policy of the
configuration apply was given (``policy/recheck.py``).  An attacker who can edit
the plan file but not the state can therefore only make apply refuse.

Plans travel between CI jobs: a plan names its state by lineage and serial, not
by a path, and where files are written comes from the configuration apply loaded
(its root, at whatever checkout path), never from the file.  The plan carries
the template variables it was made with; apply renders the configuration with
them (to find the state and the policy) *before* the MAC can be checked — the
only use of unverified content, harmless because rendering is sandboxed and
bounded and changes nothing — and the MAC then authenticates those variables.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from reconciler.config.validate import ValidatedConfig
from reconciler.engine.apply import check_applicable
from reconciler.errors import PlanError
from reconciler.fsutil import write_atomic
from reconciler.plan.model import FORMAT_VERSION, Plan
from reconciler.plan.signing import (
    PLAN_MAC_LABEL,
    TAMPERED,
    PlanTampered,
    parse_plan_file,
    signed_plan,
    verify_plan_document,
)
from reconciler.policy.recheck import recheck_plan, require_force
from reconciler.state.store import KeyVault, StateStore


def prepare_state_for_saved_plan(store: StateStore, lock_timeout: float) -> None:
    """A saved plan is MACed under the state's key, so ``plan --out`` creates a state
    that does not exist yet (data key, lineage; no certificate) as Terraform saves a
    plan against an empty state; the plan is then bound to that lineage.  Created
    under the lock, like every state, so a concurrent first apply is never raced."""
    if store.exists:
        return
    store.lock("plan", lock_timeout)
    try:
        store.open()
    finally:
        store.unlock()


def save_plan(plan: Plan, store: KeyVault, out: Path) -> None:
    """Write ``plan`` with its MAC under ``store``'s plan key (no secret in it: 0644)."""
    write_atomic(out, signed_plan(plan, store.derived_key(PLAN_MAC_LABEL)), 0o644)


def load_plan_document(path: Path) -> dict[str, Any]:
    """The JSON object in the plan file ``path``, not yet verified."""
    return parse_plan_file(_read_bounded(path), str(path))


def planned_variables(document: dict[str, Any], path: Path) -> dict[str, Any]:
    """The template variables an (unverified) plan says it was made with; only ever
    used to render the configuration before the MAC is checked (see above)."""
    variables = document.get("variables") or {}
    if not isinstance(variables, dict) or not all(isinstance(k, str) for k in variables):
        raise PlanTampered(f"{path}: {TAMPERED}; nothing was applied.")
    return variables


def read_saved_plan(
    path: Path,
    document: dict[str, Any],
    store: StateStore,
    validated: ValidatedConfig,
    force: bool,
) -> Plan:
    """The plan in ``document`` (read from ``path``), verified and re-checked against
    the state as it is now.

    Runs before apply takes the lock and only reads: a refused plan leaves the state
    byte-for-byte as it was.  Apply checks serial and policy again under the lock.
    """
    where = str(path)
    if not store.exists:  # no key to verify with, and nothing is created to get one
        raise PlanTampered(
            f"{where}: {TAMPERED} (there is no state at {store.where}); nothing was applied."
        )
    store.open()
    plan = verify_plan_document(document, store.derived_key(PLAN_MAC_LABEL), where)
    if plan.format_version != FORMAT_VERSION:
        raise PlanError(f"{where} has plan format {plan.format_version}; expected {FORMAT_VERSION}")
    if plan.variables != dict(validated.variables):  # rendered with what it says
        raise PlanTampered(f"{where}: {TAMPERED}; nothing was applied.")
    recorded = store.read()
    check_applicable(plan, recorded)
    plan = recheck_plan(plan, recorded, validated.settings.policy)
    if plan.has_changes:
        require_force(plan, force)
    return plan


MAX_PLAN_BYTES = 256 << 20
"""A plan for 10,000 certificates is tens of MB; anything this big is not one."""


def _read_bounded(path: Path) -> bytes:
    """The bytes of a regular file of sane size (not a FIFO or ``/dev/zero`` someone
    put in the plan's place, which would hang apply or exhaust its memory)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO must not block the open
        with os.fdopen(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise PlanError(f"{path} is not a regular file, not a certform plan")
            content = handle.read(MAX_PLAN_BYTES + 1)
    except FileNotFoundError:
        raise PlanError(f"no plan file at {path}") from None
    except OSError as exc:
        raise PlanError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(content) > MAX_PLAN_BYTES:
        raise PlanError(f"{path} is larger than {MAX_PLAN_BYTES >> 20} MiB, not a certform plan")
    return content
