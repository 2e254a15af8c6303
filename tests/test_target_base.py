"""The contract of the base ``Target`` class, tested with a tiny fake target.

The fake is the point here: these tests pin down what the base class does for
every target (the observe skeleton, the snapshot handed to ``deploy``), so a
target only implements its small read and compare parts.  Each real target's
behaviour is tested against a real server elsewhere (test_haproxy.py,
test_nginx.py, test_aws_*.py, ...).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import pytest

from reconciler.config.types import StrictModel
from reconciler.engine.verify import deploy_verified
from reconciler.errors import ProviderError
from reconciler.model.desired import DesiredBinding, DesiredState
from reconciler.model.material import CertificateMaterial
from reconciler.model.observed import Facts, Missing, Unreachable
from reconciler.model.records import BindingRecord, RecordedState
from reconciler.plan.diff import Action, diff
from reconciler.providers.base import Target
from tests.conftest import Workspace

NOW = datetime(2030, 1, 1, tzinfo=UTC)
ADDRESS = "binding.fake:somewhere"
Behaviour = Literal["in_sync", "drifted", "missing", "unreachable"]


class FakeConfig(StrictModel):
    type: Literal["fake"] = "fake"


class FakeTarget(Target):
    """Reads whatever ``behaviour`` says; remembers what the base handed it."""

    type_name = "fake"

    def __init__(self, behaviour: Behaviour = "in_sync", verified: bool = True) -> None:
        super().__init__(FakeConfig(), Path("."))
        self.behaviour = behaviour
        self.verified = verified
        self.snapshots_taken = 0
        self.deployed_with: list[Any] = []
        self.restored: list[Any] = []

    def identity(self) -> str:
        return "somewhere"

    def read(self, facts: Facts) -> str:
        if self.behaviour == "unreachable":
            raise Unreachable("connection refused by somewhere:443")
        if self.behaviour == "missing":
            raise Missing("nothing deployed at somewhere")
        return "serial 99" if self.behaviour == "drifted" else f"serial {facts['serial']}"

    def compare(self, seen: str, facts: Facts) -> list[str]:
        wanted = f"serial {facts['serial']}"
        return [] if seen == wanted else [f"somewhere serves {seen}, expected {wanted}"]

    def deploy(
        self, material: CertificateMaterial, previous: Facts | None, snapshot: Any = None
    ) -> Facts:
        self.deployed_with.append(snapshot)
        return {"serial": material.serial}

    def remove(self, facts: Facts) -> bool:
        return True

    def snapshot(self, material: CertificateMaterial, previous: Facts | None) -> Any:
        self.snapshots_taken += 1
        return {"what was served": self.snapshots_taken}

    def restore(self, snapshot: Any) -> str:
        self.restored.append(snapshot)
        return "put back"

    def verify_deployed(self, material: CertificateMaterial, facts: Facts) -> None:
        if not self.verified:
            raise ProviderError("somewhere still serves the old certificate")


def plan_for(behaviour: Behaviour) -> tuple[list[tuple[str, Action, bool]], tuple[str, ...]]:
    """Observe the fake binding, then diff: (changes, warnings) of the plan.

    Only the binding is desired and recorded, so the observation is the only
    thing that can make a change."""
    facts = {"serial": "0a"}
    observation = FakeTarget(behaviour).observe(facts)
    desired = DesiredState((), (), (DesiredBinding(ADDRESS, "web", {"type": "fake"}),))
    binding = BindingRecord(ADDRESS, "web", {"type": "fake"}, "0a", facts, NOW)
    recorded = RecordedState("lineage", 1, bindings={ADDRESS: binding})
    result = diff(desired, recorded, {ADDRESS: observation}, NOW)
    changes = [(c.address, c.action, c.drift) for c in result.changes]
    return changes, result.warnings


def test_unreachable_read_is_a_warning_not_a_change() -> None:
    observation = FakeTarget("unreachable").observe({"serial": "0a"})
    assert observation.status == "unreachable"
    assert observation.details == ("connection refused by somewhere:443",)
    assert not observation.needs_redeploy
    changes, warnings = plan_for("unreachable")
    assert changes == []
    assert warnings == (f"{ADDRESS} unreachable: connection refused by somewhere:443",)


def test_missing_object_is_a_change() -> None:
    observation = FakeTarget("missing").observe({"serial": "0a"})
    assert observation.status == "missing"
    assert observation.details == ("nothing deployed at somewhere",)
    assert observation.needs_redeploy
    changes, warnings = plan_for("missing")
    assert changes == [(ADDRESS, Action.REBIND, True)]
    assert warnings == ()


def test_compare_decides_between_drifted_and_in_sync() -> None:
    drifted = FakeTarget("drifted").observe({"serial": "0a"})
    assert drifted.status == "drifted"
    assert drifted.details == ("somewhere serves serial 99, expected serial 0a",)
    assert plan_for("drifted")[0] == [(ADDRESS, Action.REBIND, True)]
    assert FakeTarget("in_sync").observe({"serial": "0a"}).status == "in_sync"
    assert plan_for("in_sync") == ([], ())


def test_other_read_failures_go_through() -> None:
    """Access denied is neither drift nor unreachable: the plan must fail, not guess."""

    class Denied(FakeTarget):
        def read(self, facts: Facts) -> str:
            raise ProviderError("reading somewhere: AccessDenied")

    with pytest.raises(ProviderError, match="AccessDenied"):
        Denied().observe({"serial": "0a"})


def material() -> CertificateMaterial:
    return CertificateMaterial(
        address="certificate.web",
        name="web",
        serial="0b",
        not_after=NOW,
        certificate_pem="",
        chain_pem="",
        root_pem="",
        private_key_pem=b"",
    )


def test_deploy_gets_the_snapshot_taken_just_before_it() -> None:
    target = FakeTarget()
    facts, _ = deploy_verified(target, material(), {"serial": "0a"})
    assert facts == {"serial": "0b"}
    assert target.snapshots_taken == 1, "one read of what was served, not two"
    assert target.deployed_with == [{"what was served": 1}]
    assert not hasattr(target, "_taken"), "the snapshot is an argument, not instance state"


def test_failed_verification_restores_that_same_snapshot() -> None:
    target = FakeTarget(verified=False)
    with pytest.raises(ProviderError, match=r"verification failed: .*; put back"):
        deploy_verified(target, material(), {"serial": "0a"})
    assert target.snapshots_taken == 1
    assert target.deployed_with == [{"what was served": 1}]
    assert target.restored == [{"what was served": 1}]


def test_alb_naming_a_provider_of_another_type_is_a_config_error(workspace: Workspace) -> None:
    """The per-listener quota is the ALB target's own check; a binding naming a
    haproxy provider used to crash it (AttributeError, traceback)."""
    ws = workspace
    ws.write(
        "authorities:\n"
        "  root: {type: private-root, subject: {common_name: T}}\n"
        "certificates:\n"
        "  web: {names: [web.example.test], issuer: root, key: ec-p256}\n"
        "providers:\n"
        "  hap: {type: haproxy, socket: /nonexistent.sock, crt_dir: crt, crt_list: crt.lst}\n"
        "bindings:\n"
        "  - certificate: web\n"
        "    target: {type: aws-alb-listener, provider: hap, load_balancer: lb}\n"
    )
    result = ws.run("validate")
    assert result.code == 1, result.text
    assert "Traceback" not in result.text
    assert (
        "certform.yaml:9: bindings[0].target.provider: provider 'hap' is of type haproxy; "
        "aws-alb-listener needs aws"
    ) in result.err
    assert not ws.state_db.exists()
