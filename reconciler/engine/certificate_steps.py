"""Steps of certificates: issue, renew and replace (through the certificate's
issuer) and destroy (then retire the copies targets made of it)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from reconciler.engine.context import ApplyContext
from reconciler.engine.step import Done, Phase, Prepared, Step, register
from reconciler.engine.step_material import deployable
from reconciler.errors import CertformError
from reconciler.issuers.base import Issuance, Issuer
from reconciler.issuers.registry import certificate_issuer
from reconciler.model.observed import Facts
from reconciler.model.records import CertificateRecord
from reconciler.plan.model import Action, Change
from reconciler.providers.catalog import TARGETS, target_from_settings
from reconciler.state.store import StateWriter


def _issuer(change: Change) -> Issuer:
    assert change.after is not None
    return certificate_issuer(change.after)


@register("certificate", Action.ISSUE, Action.RENEW, Action.REPLACE)
class IssueCertificate(Step):
    phase = Phase.CERTIFICATES

    def batch_key(self, ctx: ApplyContext, change: Change) -> Hashable | None:
        key = _issuer(change).batch_key(change)
        return None if key is None else (type(_issuer(change)), key)

    def prepare(self, ctx: ApplyContext, change: Change) -> Prepared:
        return _issuer(change).prepare(ctx, change)

    def act(self, ctx: ApplyContext, change: Change, prepared: Prepared) -> Issuance:
        return _issuer(change).issue(ctx, change, prepared)

    def act_together(
        self, ctx: ApplyContext, items: Sequence[tuple[Change, Prepared]]
    ) -> list[Any]:
        return list(_issuer(items[0][0]).issue_together(ctx, items))

    def record(
        self, ctx: ApplyContext, change: Change, prepared: Prepared, outcome: Issuance,
        writer: StateWriter,
    ) -> Done:  # fmt: skip
        writer.put_certificate(outcome.record, outcome.material, outcome.key_der)
        if change.action == Action.RENEW and _issuer(change).renewal_in_place:
            _follow_in_place(ctx, change.name, outcome.record, writer)
        return Done(outcome.audit, outcome.report)

    def finish(
        self, ctx: ApplyContext, change: Change, prepared: Prepared, outcome: Issuance
    ) -> None:
        ctx.memory.fresh[change.name] = deployable(outcome.record, outcome.material,
                                                   outcome.key_pem)  # fmt: skip


@register("certificate", Action.DESTROY)
class DestroyCertificate(Step):
    phase = Phase.DESTROYS

    def act(self, ctx: ApplyContext, change: Change, prepared: Prepared) -> Any:
        return None

    def record(
        self, ctx: ApplyContext, change: Change, prepared: Prepared, outcome: Any,
        writer: StateWriter,
    ) -> Done:  # fmt: skip
        writer.destroy("certificate", change.name)
        return Done()

    def finish(self, ctx: ApplyContext, change: Change, prepared: Prepared, outcome: Any) -> None:
        retire_copies(ctx, change)


def _follow_in_place(
    ctx: ApplyContext, name: str, record: CertificateRecord, writer: StateWriter
) -> None:
    """The issuer renewed the certificate where it is (ACM, same ARN): the bindings
    that serve that very copy (their ``copy_id`` is its ARN) already serve the new
    serial, and are recorded so without being redeployed."""
    if not record.external_id:
        return
    for binding in ctx.recorded.bindings.values():
        if binding.certificate != name or binding.serial == record.serial:
            continue
        if _copy_id(binding.target, binding.facts) == record.external_id:
            writer.put_binding(replace(binding, serial=record.serial))


def retire_copies(ctx: ApplyContext, change: Change) -> None:
    """Delete copies targets made (``Target.copy_id``: ACM imports) once every
    binding is gone; a failure here is reported, the destroy itself is already
    recorded."""
    retirable = ctx.memory.retirable.pop(change.name, [])
    detached = {id(facts) for _, facts in retirable}
    # A copy another binding still uses (say, a listener's default certificate,
    # which stays on unbind) is never deleted, whatever the target says about it.
    in_use = {
        _copy_id(b.target, b.facts)
        for b in ctx.recorded.bindings.values()
        if b.certificate == change.name and id(b.facts) not in detached
    }
    for settings, facts in retirable:
        copy = _copy_id(settings, facts)
        if copy is None or copy in in_use:
            continue
        in_use.add(copy)
        try:
            note = target_from_settings(dict(settings), ctx.root).retire(facts)
        except CertformError as exc:
            note = f"could not clean up after {change.address}: {exc}"
        if note:
            ctx.report(f"{change.address}: {note}")
            ctx.store.audit(ctx.actor, "apply", change.address, "retire", "ok", note)


def _copy_id(settings: Mapping[str, Any], facts: Facts) -> str | None:
    """The copy a binding's deploy made, asked of its target type (no target built)."""
    entry = TARGETS.get(str(settings.get("type")))
    return entry[1].copy_id(facts) if entry else None
