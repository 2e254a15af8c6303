"""Steps of bindings: deploy a certificate to a target (bind, rebind), verified,
and take it away (unbind).  What a target records about its deployment is the
target's business (``Target.recorded_facts``).

Both act in worker threads, each binding in its target's lane
(``Target.deploy_lane``): the bindings of a batch deploy to different places, so
they are independent by construction; a target kind that cannot deploy twice at
once puts all its bindings in one lane."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from reconciler.engine.context import ApplyContext
from reconciler.engine.step import Done, Phase, Prepared, Step, register
from reconciler.engine.step_material import deployable
from reconciler.engine.verify import deploy_verified
from reconciler.errors import DeployedButFailed, StateError
from reconciler.model.material import CertificateMaterial
from reconciler.model.observed import UNFINISHED
from reconciler.model.records import BindingRecord
from reconciler.pki.keys import private_key_from_der, private_key_to_pem
from reconciler.plan.model import Action, Change
from reconciler.plan.specs import BindingSpec
from reconciler.providers.base import Target
from reconciler.providers.catalog import target_from_settings
from reconciler.state.store import StateWriter


@dataclass(frozen=True)
class _Deployment:
    target: Target
    material: CertificateMaterial


@register("binding", Action.BIND, Action.REBIND)
class Bind(Step):
    phase = Phase.BINDINGS
    parallel = True
    early = True

    def lane(self, ctx: ApplyContext, change: Change, prepared: Prepared) -> Hashable:
        deployment: _Deployment = prepared.data
        return deployment.target.deploy_lane()

    def waits(self, ctx: ApplyContext, change: Change, prepared: Prepared) -> bool:
        deployment: _Deployment = prepared.data
        return deployment.target.deploy_waits

    def prepare(self, ctx: ApplyContext, change: Change) -> Prepared:
        spec = _spec(change.after)
        return _deployment(ctx, spec, target_from_settings(dict(spec.target), ctx.root))

    def prepare_early(self, ctx: ApplyContext, change: Change) -> Prepared | None:
        """Only a target that may deploy in a forked process (``deploys_in_fork``);
        its certificate's material is read only then."""
        spec = _spec(change.after)
        target = target_from_settings(dict(spec.target), ctx.root)
        return _deployment(ctx, spec, target) if target.deploys_in_fork else None

    def act(self, ctx: ApplyContext, change: Change, prepared: Prepared) -> Any:
        deployment: _Deployment = prepared.data
        previous = ctx.recorded.bindings.get(change.address)
        target, material = deployment.target, deployment.material
        try:
            facts, verified = deploy_verified(
                target, material, previous.facts if previous else None
            )
        except DeployedButFailed as exc:
            # Deployed, then its post_deploy failed: recorded as unfinished (the
            # files on the target are these), and the step fails with the reason.
            unfinished = target.recorded_facts(material, dict(exc.facts)) | {
                UNFINISHED: exc.unfinished
            }
            return unfinished, "", str(exc)
        return target.recorded_facts(material, facts), verified, None

    def record(
        self, ctx: ApplyContext, change: Change, prepared: Prepared, outcome: Any,
        writer: StateWriter,
    ) -> Done:  # fmt: skip
        spec = _spec(change.after)
        material = prepared.data.material
        facts, verified, failed = outcome
        writer.put_binding(
            BindingRecord(
                address=change.address,
                certificate=spec.certificate,
                target=dict(spec.target),
                serial=material.serial,
                facts=facts,
                deployed_at=datetime.now(UTC),
            )
        )
        if failed is not None:
            return Done(f"serial {material.serial} deployed, then: {failed}", failed=failed)
        return Done(
            f"serial {material.serial}{verified}", f" (serial {material.serial[:16]}…{verified})"
        )


@register("binding", Action.UNBIND)
class Unbind(Step):
    phase = Phase.BINDINGS
    parallel = True

    def lane(self, ctx: ApplyContext, change: Change, prepared: Prepared) -> Hashable:
        target: Target = prepared.data
        return target.deploy_lane()

    def prepare(self, ctx: ApplyContext, change: Change) -> Prepared:
        assert change.before is not None
        return Prepared(None, target_from_settings(change.before["target"], ctx.root))

    def act(self, ctx: ApplyContext, change: Change, prepared: Prepared) -> bool:
        record = ctx.recorded.bindings.get(change.address)
        return bool(prepared.data.remove(record.facts if record else {}))

    def record(
        self, ctx: ApplyContext, change: Change, prepared: Prepared, outcome: bool,
        writer: StateWriter,
    ) -> Done:  # fmt: skip
        writer.delete_binding(change.address)
        return Done()

    def finish(self, ctx: ApplyContext, change: Change, prepared: Prepared, outcome: bool) -> None:
        record = ctx.recorded.bindings.get(change.address)
        if outcome and record is not None and change.before is not None:
            ctx.memory.retirable.setdefault(record.certificate, []).append(
                (change.before["target"], record.facts)
            )


def _deployment(ctx: ApplyContext, spec: BindingSpec, target: Target) -> Prepared:
    return Prepared(None, _Deployment(target, certificate_material(ctx, spec.certificate)))


def certificate_material(ctx: ApplyContext, name: str) -> CertificateMaterial:
    """What to deploy: just issued in this run (kept in memory), else from state."""
    fresh = ctx.memory.fresh.get(name)
    if fresh is not None:
        return fresh
    record = ctx.recorded.certificates.get(name)
    if record is None:
        raise StateError(f"certificate.{name} is not in the state")
    material = ctx.store.material("certificate", name)
    if not record.has_key:  # ACM issued it and keeps the key
        return deployable(record, material, b"")
    key = private_key_from_der(ctx.store.private_key("certificate", name))
    return deployable(record, material, private_key_to_pem(key))


def _spec(after: Any) -> BindingSpec:
    assert isinstance(after, BindingSpec)
    return after
