"""Re-issue policy and the diff as pure functions: tables of cases, a fake clock."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from reconciler.errors import PlanError
from reconciler.model.desired import DesiredBinding, DesiredCertificate, DesiredState
from reconciler.model.observed import Observation
from reconciler.model.records import BindingRecord, CertificateRecord, RecordedState
from reconciler.plan.diff import diff
from reconciler.plan.model import Action, Plan
from reconciler.policy.reissue import (
    CERTIFICATE_CHECKS,
    IssuedFacts,
    ReissueInput,
    evaluate,
    strongest,
)
from reconciler.policy.renewal import renewal_time

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SPEC = {
    "names": ["a.example.test"],
    "issuer": "ca",
    "key": "ec-p256",
    "validity": "90d",
    "usages": ["server_auth"],
}


@pytest.mark.parametrize(
    ("renew_before", "expected_days"),
    [(None, 60), ("30d", 60), ("10d", 80), ("33%", 60.3), ("50%", 45), ("1d12h", 88.5)],
)
def test_renewal_time(renew_before: str | None, expected_days: float) -> None:
    due = renewal_time(T0, T0 + timedelta(days=90), renew_before)
    assert due == T0 + timedelta(days=expected_days)


def _input(now_days: float, **changes: object) -> ReissueInput:
    desired = dict(SPEC)
    issued = IssuedFacts(
        spec=dict(SPEC),
        not_before=T0,
        not_after=T0 + timedelta(days=90),
        issuer_key_id="k1",
        has_key=True,
    )
    issuer_key_id = "k1"
    rekeyed = False
    for key, value in changes.items():
        if key == "issued":
            issued = value  # type: ignore[assignment]
        elif key == "issuer_key_id":
            issuer_key_id = value  # type: ignore[assignment]
        elif key == "rekeyed":
            rekeyed = bool(value)
        else:
            desired[key] = value
    return ReissueInput(
        desired, "30d", issued, issuer_key_id, rekeyed, T0 + timedelta(days=now_days)
    )


@pytest.mark.parametrize(
    ("data", "action", "reason"),
    [
        (_input(10), None, None),
        (_input(59.9), None, None),
        (_input(61), "renew", "expires 2026-04-01, inside renew_before 30d"),
        (_input(91), "renew", "expired on 2026-04-01"),
        (
            _input(1, names=["a.example.test", "b.example.test"]),
            "replace",
            "names changed: +b.example.test",
        ),
        (
            _input(1, names=["b.example.test"]),
            "replace",
            "names changed: +b.example.test -a.example.test",
        ),
        (_input(1, key="rsa-2048"), "replace", "key algorithm changed: ec-p256 → rsa-2048"),
        (_input(1, issuer="other"), "replace", "issuer changed: ca → other"),
        (
            _input(1, issuer_key_id="k2"),
            "replace",
            "chain no longer verifies: the issuing CA's key changed",
        ),
        (_input(1, rekeyed=True), "replace", "issuer authority.ca gets a new key in this plan"),
        (_input(1, validity="60d"), "renew", "validity changed: 90d → 60d"),
        (
            _input(1, usages=["server_auth", "client_auth"]),
            "replace",
            "usages changed: [server_auth] → [server_auth, client_auth]",
        ),
        (
            _input(1, issued=IssuedFacts(dict(SPEC), T0, T0 + timedelta(days=90), "k1", False)),
            "replace",
            "private key missing from state",
        ),
        (
            _input(1, issued=IssuedFacts(dict(SPEC), T0, T0 + timedelta(days=90), "k1", True, T0)),
            "renew",
            "revoked on 2026-01-01",
        ),
    ],
)
def test_certificate_checks(data: ReissueInput, action: str | None, reason: str | None) -> None:
    violations = evaluate(CERTIFICATE_CHECKS, data)
    assert strongest(violations) == action
    if reason is not None:
        assert reason in [v.reason for v in violations]


def test_replace_wins_over_renew_and_all_reasons_are_kept() -> None:
    violations = evaluate(CERTIFICATE_CHECKS, _input(70, key="ec-p384"))
    assert strongest(violations) == "replace"
    assert len(violations) == 2


def _state(**bindings: BindingRecord) -> RecordedState:
    record = CertificateRecord(
        name="a",
        spec=dict(SPEC),
        serial="01",
        not_before=T0,
        not_after=T0 + timedelta(days=90),
        issuer_key_id="k1",
        fingerprint="f",
        prevent_destroy=False,
        tags={},
        has_key=True,
    )
    return RecordedState("lineage", 3, {}, {"a": record}, dict(bindings))


def _desired(bindings: tuple[DesiredBinding, ...] = ()) -> DesiredState:
    return DesiredState((), (DesiredCertificate("a", dict(SPEC), "30d", False),), bindings)


TARGET = {"type": "files", "directory": "out/a"}
BINDING = DesiredBinding("binding.files:out/a", "a", TARGET)
RECORD = BindingRecord("binding.files:out/a", "a", TARGET, "01", {}, T0)


def test_diff_is_pure_and_ordered() -> None:
    state = _state(**{RECORD.address: RECORD})
    now = T0 + timedelta(days=70)
    first = diff(_desired((BINDING,)), state, {}, now)
    again = diff(_desired((BINDING,)), state, {}, now)
    assert first == again
    assert [(c.address, c.action) for c in first.changes] == [
        ("certificate.a", Action.RENEW),
        ("binding.files:out/a", Action.REBIND),
    ]
    assert first.changes[0].bindings == ("binding.files:out/a",)


def test_diff_reports_drift_from_observation() -> None:
    state = _state(**{RECORD.address: RECORD})
    observed = {RECORD.address: Observation("drifted", ("key.pem missing",))}
    result = diff(_desired((BINDING,)), state, observed, T0)
    assert len(result.changes) == 1
    assert result.changes[0].drift
    assert result.changes[0].reasons == ("drift: key.pem missing",)


def test_unreachable_target_is_a_warning_not_a_change() -> None:
    state = _state(**{RECORD.address: RECORD})
    observed = {RECORD.address: Observation("unreachable", ("timeout",))}
    result = diff(_desired((BINDING,)), state, observed, T0)
    assert result.changes == ()
    assert result.warnings == ("binding.files:out/a unreachable: timeout",)


def test_guarded_certificate_cannot_be_destroyed() -> None:
    state = _state()
    record = dataclasses.replace(state.certificates["a"], prevent_destroy=True)
    guarded = RecordedState("l", 1, {}, {"a": record}, {})
    with pytest.raises(PlanError, match=r"certificate\.a"):
        diff(DesiredState((), (), ()), guarded, {}, T0)


def test_plan_round_trips_through_json() -> None:
    state = _state(**{RECORD.address: RECORD})
    result = diff(_desired((BINDING,)), state, {}, T0 + timedelta(days=70))
    plan = Plan(result.changes, result.state_updates, T0, "l", 3, "/s", "/r", created_at=T0)
    import json

    assert Plan.from_json(json.loads(plan.dumps())) == plan
