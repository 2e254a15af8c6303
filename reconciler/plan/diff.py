"""The diff: (desired, recorded, observed, now) -> changes.  Pure: no I/O, no clock.

Ordering is part of the result: authorities parents-first, then certificates,
then bind/rebind (so a renewed or replaced certificate is in place everywhere
before anything old goes away), then unbind, then destroy of certificates,
then destroy of authorities children-first.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from reconciler.errors import PlanError
from reconciler.issuers.registry import authority_issuer, authority_spec, certificate_issuer
from reconciler.model.desired import DesiredBinding, DesiredCertificate, DesiredState
from reconciler.model.observed import Observation
from reconciler.model.records import (
    AuthorityRecord,
    BindingRecord,
    CertificateRecord,
    RecordedState,
    peek,
)
from reconciler.plan.crls import crl_changes, crl_warnings
from reconciler.plan.model import Action, Change, StateUpdate
from reconciler.plan.specs import BindingSpec, CertificateSpec
from reconciler.policy.reissue import (
    REPLACE,
    Check,
    IssuedFacts,
    ReissueInput,
    Violation,
    evaluate,
    strongest,
)

NEW_KEY_ACTIONS = (Action.ISSUE, Action.REPLACE)


@dataclass(frozen=True)
class DiffResult:
    changes: tuple[Change, ...]
    state_updates: tuple[StateUpdate, ...]
    warnings: tuple[str, ...]
    endpoint_drift: tuple[str, ...] = ()


def diff(
    desired: DesiredState,
    recorded: RecordedState,
    observed: Mapping[str, Observation],
    now: datetime,
    renewal_windows: Mapping[str, Any] | None = None,
    replace: frozenset[str] = frozenset(),
) -> DiffResult:
    """Compute the plan's changes; raise PlanError when a guard forbids them.

    ``renewal_windows`` are ACME Renewal Information windows by certificate
    address (gathered beforehand: the diff does no I/O)."""
    _refuse_guarded_destroys(desired, recorded)
    authority_changes, rekeyed, authority_warnings = _authority_changes(
        desired, recorded, observed, now
    )
    certificate_changes = _certificate_changes(
        desired, recorded, rekeyed, now, renewal_windows or {}, replace
    )
    changed_certs = {c.name: c for c in certificate_changes}
    binding_changes, warnings = _binding_changes(desired, recorded, observed, changed_certs)
    endpoint_drift, watch_warnings = _watched_endpoints(desired, observed)
    warnings = (*warnings, *watch_warnings)
    warnings = (*authority_warnings, *warnings)
    changes = (
        authority_changes
        + certificate_changes
        + binding_changes
        + _unbinds(desired, recorded)
        + _certificate_destroys(desired, recorded)
        + _authority_destroys(desired, recorded)
    )
    reissued = {c.name for c in authority_changes if c.action != Action.DESTROY}
    changes += crl_changes(desired, recorded, observed, reissued, now, certificate_changes)
    warnings += crl_warnings(desired, observed)
    touched = {c.address for c in changes}
    updates = _state_updates(desired, recorded, touched)
    return DiffResult(tuple(changes), updates, warnings, endpoint_drift)


# -- guards --------------------------------------------------------------------------
def _refuse_guarded_destroys(desired: DesiredState, recorded: RecordedState) -> None:
    wanted = {a.name for a in desired.authorities} | {c.name for c in desired.certificates}
    guarded = [
        record.address
        for record in (*recorded.authorities.values(), *recorded.certificates.values())
        if record.prevent_destroy and record.name not in wanted
    ]
    if guarded:
        raise PlanError(
            "refusing to destroy "
            + ", ".join(sorted(guarded))
            + ": lifecycle.prevent_destroy is set in the state. To destroy, put the block "
            "back with prevent_destroy: false, apply, then remove it."
        )


# -- authorities ---------------------------------------------------------------------
def _authority_changes(
    desired: DesiredState,
    recorded: RecordedState,
    observed: Mapping[str, Observation],
    now: datetime,
) -> tuple[list[Change], set[str], tuple[str, ...]]:
    """Each authority's issuer decides whether it needs a step (a private CA its
    re-issue checks, an ACME account its registration; external issuers none),
    and what its observed drift (an AWS Private CA disabled) adds to that."""
    changes: list[Change] = []
    rekeyed: set[str] = set()
    warnings: list[str] = []
    for authority in desired.authorities:
        record = recorded.authorities.get(authority.name)
        parent = recorded.authorities.get(authority.parent) if authority.parent else None
        revoked_at = None
        if record is not None:
            revoked_at = next(
                (
                    r.revoked_at
                    for r in recorded.revocations
                    if r.address == authority.address and r.serial == record.serial
                ),
                None,
            )
        issuer = authority_issuer(authority.spec)
        change = issuer.authority_change(
            authority, record, parent, authority.parent in rekeyed, now, revoked_at
        )
        observation = observed.get(authority.address)
        if observation is not None:
            change, seen = issuer.authority_observed(authority, record, change, observation)
            warnings.extend(seen)
        if change is None:
            continue
        changes.append(change)
        if change.action in NEW_KEY_ACTIONS:
            rekeyed.add(authority.name)
    return changes, rekeyed, tuple(warnings)


def _authority_before(record: AuthorityRecord) -> dict[str, Any]:
    return {
        **record.spec,
        "serial": record.serial,
        "not_after": record.not_after.isoformat(),
        "key_id": record.key_id,
    }


# -- certificates --------------------------------------------------------------------
def _certificate_changes(
    desired: DesiredState,
    recorded: RecordedState,
    rekeyed: set[str],
    now: datetime,
    renewal_windows: Mapping[str, Any],
    replace: frozenset[str] = frozenset(),
) -> list[Change]:
    radius = _blast_radius(desired)
    changes = []
    records, authorities = recorded.certificates, recorded.authorities
    key_ids = {name: a.key_id for name, a in authorities.items()}
    checks_of: dict[type, tuple[Check, ...]] = {}  # the issuer's, asked once per spec class
    for certificate in desired.certificates:
        issuer = certificate.issuer
        address = certificate.address
        kind = type(certificate.spec)
        checks = checks_of.get(kind)
        if checks is None:
            checks = checks_of[kind] = certificate_issuer(certificate.spec).certificate_checks
        change = _certificate_change(
            certificate,
            checks,
            records.get(certificate.name),
            key_ids.get(issuer),
            issuer in rekeyed,
            now,
            radius.get(certificate.name, ()),
            renewal_windows.get(address) if renewal_windows else None,
            address in replace,
        )
        if change is not None:
            changes.append(_touched_by_renewal_in_place(change, desired))
    return changes


def _blast_radius(desired: DesiredState) -> dict[str, tuple[str, ...]]:
    """The bindings a certificate change redeploys (not the endpoints only watched)."""
    radius: dict[str, list[str]] = {}
    for binding in desired.bindings:
        if not binding.watch_only:
            radius.setdefault(binding.certificate, []).append(binding.address)
    return {name: tuple(addresses) for name, addresses in radius.items()}


def _touched_by_renewal_in_place(change: Change, desired: DesiredState) -> Change:
    """A renewal its issuer made in place touches only the bindings that deploy the
    key themselves (``_rebind_reasons``); say so in ``bindings``."""
    if _renewal_in_place(change) is None:
        return change
    served = {b.address for b in desired.bindings if b.acm_region is not None}
    kept = tuple(address for address in change.bindings if address not in served)
    return replace(change, bindings=kept)


def _certificate_change(
    certificate: DesiredCertificate,
    checks: tuple[Check, ...],
    record: CertificateRecord | None,
    issuer_key_id: str | None,
    issuer_rekeyed: bool,
    now: datetime,
    bindings: tuple[str, ...],
    renewal_window: Any = None,
    replace: bool = False,
) -> Change | None:
    if record is None:
        after = _certificate_after(certificate)
        # An issuer's view may say why it is not issued yet (ACM: waiting for approval).
        reason = getattr(renewal_window, "pending", None) or "not issued yet"
        return Change(certificate.address, Action.ISSUE, (reason,), None, after, bindings)
    facts = IssuedFacts(
        peek(record, "spec"),  # not kept on the record: read once per plan
        record.not_before,
        record.not_after,
        record.issuer_key_id,
        record.has_key,
        record.revoked_at,
        record.serial,
    )
    data = ReissueInput(
        certificate.spec.raw,  # the JSON form the spec is a view of (plain dict lookups)
        certificate.renew_before,
        facts,
        issuer_key_id,
        issuer_rekeyed,
        now,
        renewal_window,
    )
    violations = evaluate(checks, data)
    if replace:
        violations.append(Violation(REPLACE, "a replacement was requested (--replace)"))
    action = strongest(violations)
    if action is None:
        return None
    before = {
        **record.spec,
        "serial": record.serial,
        "not_after": record.not_after.isoformat(),
        "fingerprint": record.fingerprint,
    }
    return Change(
        certificate.address,
        Action(action),
        tuple(v.reason for v in violations),
        before,
        _certificate_after(certificate),
        bindings,
    )


def _certificate_after(certificate: DesiredCertificate) -> CertificateSpec:
    """The change's spec: the desired spec plus its schedule, guard and tags."""
    return certificate.spec.extended(
        renew_before=certificate.renew_before,
        prevent_destroy=certificate.prevent_destroy,
        tags=certificate.tags,
    )


# -- bindings ------------------------------------------------------------------------
def _binding_changes(
    desired: DesiredState,
    recorded: RecordedState,
    observed: Mapping[str, Observation],
    changed_certs: dict[str, Change],
) -> tuple[list[Change], tuple[str, ...]]:
    changes: list[Change] = []
    warnings: list[str] = []
    for binding in desired.bindings:
        if binding.watch_only:
            continue  # checked (``_watched_endpoints``), never changed
        record = recorded.bindings.get(binding.address)
        if record is None:
            after = _binding_after(binding)
            changes.append(Change(binding.address, Action.BIND, ("new binding",), None, after))
            continue
        observation = observed.get(binding.address)
        reasons, drift = _rebind_reasons(binding, record, recorded, observation, changed_certs)
        if observation is not None and observation.status == "unreachable":
            warnings.append(f"{binding.address} unreachable: {'; '.join(observation.details)}")
        if reasons:
            before = {
                "certificate": record.certificate,
                "target": record.target,
                "serial": record.serial,
            }
            after = _binding_after(binding)
            changes.append(
                Change(binding.address, Action.REBIND, tuple(reasons), before, after, (), drift)
            )
    return changes, tuple(warnings)


def _watched_endpoints(
    desired: DesiredState, observed: Mapping[str, Observation]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(drift, warnings) of the endpoints certform only watches: one serving another
    certificate is drift a person must fix there (apply cannot); an unreachable one
    is a warning.  Neither is ever a change."""
    drift: list[str] = []
    warnings: list[str] = []
    for binding in desired.bindings:
        observation = observed.get(binding.address) if binding.watch_only else None
        if observation is None or observation.status == "in_sync":
            continue
        details = "; ".join(observation.details)
        if observation.status == "unreachable":
            warnings.append(f"{binding.address} unreachable: {details}")
        else:
            drift.append(
                f"{binding.address}: {details} (it should serve certificate."
                f"{binding.certificate}; certform only watches it: fix the endpoint)"
            )
    return tuple(drift), tuple(warnings)


def _binding_after(binding: DesiredBinding) -> BindingSpec:
    return BindingSpec.parse({"certificate": binding.certificate, "target": binding.target})


def _rebind_reasons(
    binding: DesiredBinding,
    record: BindingRecord,
    recorded: RecordedState,
    observation: Observation | None,
    changed_certs: dict[str, Change],
) -> tuple[list[str], bool]:
    reasons: list[str] = []
    if record.certificate != binding.certificate:
        reasons.append(f"certificate changed: {record.certificate} → {binding.certificate}")
    if binding.certificate in changed_certs:
        change = changed_certs[binding.certificate]
        in_place = _renewal_in_place(change)
        if in_place is None:
            reasons.append(f"certificate.{binding.certificate} will be {_past(change.action)}")
        elif binding.acm_region is None:
            reasons.append(in_place)
        # else: the target serves the issuer's own copy, renewed where it is
    if record.target != binding.target:
        reasons.append("target settings changed: " + _settings_delta(record.target, binding.target))
    current = recorded.certificates.get(binding.certificate)
    if (
        not reasons
        and current is not None
        and current.serial != record.serial
        and record.certificate == binding.certificate
    ):
        reasons.append(f"deployed serial {record.serial[:16]}… is not the current one")
    if observation is not None and observation.status == "unfinished":
        reasons.extend(observation.details)  # what failed at the last apply: not drift
        return reasons, False
    drift = bool(observation and observation.needs_redeploy)
    if drift and observation is not None:
        reasons.append("drift: " + "; ".join(observation.details))
    return reasons, drift


def _renewal_in_place(change: Change) -> str | None:
    """The binding reason when ``change`` is a renewal its issuer made in place."""
    if change.action != Action.RENEW or change.after is None:
        return None
    assert isinstance(change.after, CertificateSpec)
    return certificate_issuer(change.after).renewal_in_place


def _past(action: Action) -> str:
    return {Action.ISSUE: "issued", Action.RENEW: "renewed", Action.REPLACE: "replaced"}.get(
        action, action.value
    )


def _settings_delta(before: dict[str, Any], after: dict[str, Any]) -> str:
    """What changed in a target's settings, as ``post_deploy[0] changed, verify_endpoint
    added``: paths as the YAML would write them."""
    from deepdiff import DeepDiff  # imported here: it pulls in numpy (~150 ms) at import

    parts = []
    for kind, levels in DeepDiff(before, after).tree.items():
        for level in levels:
            steps = level.path(output_format="list")
            field = "".join(f"[{s}]" if isinstance(s, int) else f".{s}" for s in steps)
            parts.append(f"{field.lstrip('.') or 'settings'} {_DELTA_WORDS.get(kind, 'changed')}")
    return ", ".join(sorted(parts)) or "changed"


_DELTA_WORDS = {
    "dictionary_item_added": "added",
    "iterable_item_added": "added",
    "dictionary_item_removed": "removed",
    "iterable_item_removed": "removed",
}
"""DeepDiff's report kinds in plain words (value and type changes: "changed")."""


def _unbinds(desired: DesiredState, recorded: RecordedState) -> list[Change]:
    wanted = {b.address for b in desired.bindings}
    return [
        Change(
            record.address,
            Action.UNBIND,
            (_unbind_reason(record, desired),),
            {"certificate": record.certificate, "target": record.target, "serial": record.serial},
            None,
        )
        for record in recorded.bindings.values()
        if record.address not in wanted
    ]


def _unbind_reason(record: BindingRecord, desired: DesiredState) -> str:
    if not any(c.name == record.certificate for c in desired.certificates):
        return f"certificate.{record.certificate} removed from the configuration"
    return "binding removed from the configuration"


def _certificate_destroys(desired: DesiredState, recorded: RecordedState) -> list[Change]:
    wanted = {c.name for c in desired.certificates}
    changes = []
    for record in recorded.certificates.values():
        if record.name in wanted:
            continue
        bound = tuple(b.address for b in recorded.bindings.values() if b.certificate == record.name)
        before = {
            **record.spec,
            "serial": record.serial,
            "not_after": record.not_after.isoformat(),
        }
        changes.append(
            Change(
                record.address,
                Action.DESTROY,
                ("removed from the configuration",),
                before,
                None,
                bound,
            )
        )
    return changes


def _authority_destroys(desired: DesiredState, recorded: RecordedState) -> list[Change]:
    wanted = {a.name for a in desired.authorities}
    gone = [r for r in recorded.authorities.values() if r.name not in wanted]
    depth = {r.name: _depth(r.name, recorded) for r in gone}
    gone.sort(key=lambda r: -depth[r.name])
    return [
        Change(
            r.address,
            Action.DESTROY,
            ("removed from the configuration",),
            _authority_before(r),
            None,
        )
        for r in gone
    ]


def _depth(name: str, recorded: RecordedState) -> int:
    depth, seen = 0, set()
    record = recorded.authorities.get(name)
    while record is not None and name not in seen:
        parent = authority_spec(record.spec).parent
        if not parent:
            break
        seen.add(name)
        name = parent
        record = recorded.authorities.get(name)
        depth += 1
    return depth


# -- remembered settings -------------------------------------------------------------
def _state_updates(
    desired: DesiredState, recorded: RecordedState, touched: set[str]
) -> tuple[StateUpdate, ...]:
    updates = []
    for authority in desired.authorities:
        record = recorded.authorities.get(authority.name)
        if (
            record
            and authority.address not in touched
            and record.prevent_destroy != authority.prevent_destroy
        ):
            updates.append(
                StateUpdate(
                    authority.address,
                    {"prevent_destroy": record.prevent_destroy},
                    {"prevent_destroy": authority.prevent_destroy},
                )
            )
    records = recorded.certificates
    for certificate in desired.certificates:
        record = records.get(certificate.name)
        if record is None or (
            record.prevent_destroy == certificate.prevent_destroy
            and record.tags == certificate.tags
        ):
            continue  # nothing to remember (the common case: compared without dicts)
        if certificate.address in touched:
            continue
        before = {"prevent_destroy": record.prevent_destroy, "tags": record.tags}
        after = {"prevent_destroy": certificate.prevent_destroy, "tags": certificate.tags}
        updates.append(StateUpdate(certificate.address, before, after))
    return tuple(updates)
