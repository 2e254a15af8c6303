"""Make a plan: read the state, refresh targets, diff.  Changes nothing but the lock."""

from __future__ import annotations

from datetime import UTC, datetime

from reconciler.config.validate import ValidatedConfig
from reconciler.engine.refresh import refresh
from reconciler.engine.renewal_info import CertificatePem, has_renewal_info, renewal_windows
from reconciler.model.records import RecordedState
from reconciler.plan.diff import diff
from reconciler.plan.model import KEY_STORE_ADDRESS, Plan, StateUpdate
from reconciler.plan.moves import apply_moves
from reconciler.policy.guards import ChangeLimit, force_reasons
from reconciler.state.store import StateReader, StateStore


def make_plan(validated: ValidatedConfig, store: StateStore, at: datetime | None = None) -> Plan:
    """The plan for ``validated`` against ``store`` as of ``at`` (default: now).

    The caller holds the state lock when the state exists.
    """
    now = at or datetime.now(UTC)
    recorded = store.read()
    return plan_from(validated, recorded, store.where, now, certificate_pem=pem_reader(store))


def pem_reader(store: StateReader) -> CertificatePem:
    return lambda name: store.material("certificate", name).certificate_pem


def plan_from(
    validated: ValidatedConfig,
    recorded: RecordedState,
    state_path: str,
    now: datetime,
    key_store_change: tuple[str, str] | None = None,
    certificate_pem: CertificatePem | None = None,
    replace: frozenset[str] = frozenset(),
    running: str | None = None,
) -> Plan:
    """``certificate_pem`` reads a recorded certificate (for ACME renewal information);
    without it, ACME certificates are scheduled by ``renew_before`` alone.  ``replace``
    names certificates to re-key and re-issue whatever their state (``--replace``)."""
    moved = list(validated.moves)
    recorded, moves, move_warnings = apply_moves(moved, recorded)
    if moves and certificate_pem is not None:  # recorded under the old names until apply
        old_names = {m.target.split(".", 1)[1]: m.source.split(".", 1)[1] for m in moves}
        read_pem = certificate_pem
        certificate_pem = lambda name: read_pem(old_names.get(name, name))  # noqa: E731
    observed = refresh(validated.desired, recorded, validated.root)
    windows: dict = {}
    ari_warnings: list[str] = []
    if certificate_pem is not None and has_renewal_info(validated.desired):
        windows, ari_warnings = renewal_windows(
            validated.desired, recorded, certificate_pem, validated.root
        )
    result = diff(validated.desired, recorded, observed, now, windows, replace)
    warnings = [*move_warnings, *result.warnings, *ari_warnings]
    if recorded.interrupted and running is not None:
        steps = ", ".join(f"{s.address} ({s.action})" for s in recorded.interrupted[:5])
        warnings.append(
            f"an apply is running ({running}): {steps} in progress; this plan shows the "
            "state as it was before them"
        )
    elif recorded.interrupted:
        steps = ", ".join(f"{s.address} ({s.action})" for s in recorded.interrupted[:5])
        warnings.append(
            f"a previous apply was interrupted during {steps}; apply recovers it "
            "(generated keys are reused)"
        )
    updates = result.state_updates
    if key_store_change is not None:
        before, after = key_store_change
        updates = (
            *updates,
            StateUpdate(KEY_STORE_ADDRESS, {"key_store": before}, {"key_store": after}),
        )
    policy = validated.settings.policy.change_limit
    needs_force = force_reasons(
        result.changes,
        len(recorded.certificates),
        ChangeLimit(policy.percent, policy.minimum_certificates),
    )
    return Plan(
        requires_force=tuple(needs_force),
        changes=result.changes,
        state_updates=updates,
        planned_at=now,
        lineage=recorded.lineage,
        state_serial=recorded.serial,
        state_path=state_path,
        config_root=str(validated.root),
        warnings=tuple(warnings),
        created_at=datetime.now(UTC),
        interrupted=tuple(s.address for s in recorded.interrupted),
        variables=dict(validated.variables),
        moves=moves,
        endpoint_drift=result.endpoint_drift,
    )
