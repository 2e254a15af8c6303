"""Revocations and CRLs: ``revoke_replaced`` (revoke a superseded certificate
once every binding serves its successor) and CRL publication (the full CRL of
a CA key, DER and PEM, written atomically)."""

from __future__ import annotations

from datetime import UTC, datetime

from reconciler.engine.context import ApplyContext
from reconciler.engine.step import Done, Phase, Prepared, Step, register
from reconciler.errors import CertformError
from reconciler.issuers.private_ca import publish_crl
from reconciler.issuers.registry import certificate_issuer, certificate_spec
from reconciler.model.records import CrlRecord, RevocationRecord
from reconciler.plan.model import Action, Change
from reconciler.plan.specs import BindingSpec, CrlSpec
from reconciler.state.store import StateWriter


@register("crl", Action.PUBLISH)
class PublishCrl(Step):
    """Sign the full CRL of one CA and publish DER + PEM atomically."""

    phase = Phase.REVOCATIONS

    def act(self, ctx: ApplyContext, change: Change, prepared: Prepared) -> CrlRecord:
        spec = change.after
        assert isinstance(spec, CrlSpec)
        number, now, next_update, entries, files = publish_crl(ctx, spec.authority, spec.crl)
        return CrlRecord(spec.authority, number, now, next_update, entries, files)

    def record(
        self, ctx: ApplyContext, change: Change, prepared: Prepared, outcome: CrlRecord,
        writer: StateWriter,
    ) -> Done:  # fmt: skip
        writer.put_crl(outcome)
        return Done(
            f"CRL #{outcome.number}, {outcome.entries} revoked",
            f" (CRL #{outcome.number}, {outcome.entries} revoked, "
            f"next update {outcome.next_update:%Y-%m-%d})",
        )


def revoke_replaced(ctx: ApplyContext) -> None:
    """Create-before-destroy: revoke a superseded certificate only after every one of
    its bindings was moved to the successor in this run (runs before any CRL)."""
    for name, (record, pem) in ctx.memory.replaced.items():
        address = f"certificate.{name}"
        if address not in ctx.result.done:
            continue
        stuck = [
            c.address
            for c in ctx.plan.changes
            if isinstance(c.after, BindingSpec)
            and c.after.certificate == name
            and c.address not in ctx.result.done
        ]
        if stuck:
            ctx.report(
                f"{address}: previous serial {record.serial[:16]}… kept, not revoked: "
                f"{', '.join(stuck)} did not move to the new certificate"
            )
            continue
        issuer = certificate_spec(record.spec).issuing_authority
        try:
            certificate_issuer(record.spec).revoke(ctx, record, pem, "superseded")
        except CertformError as exc:
            ctx.store.audit(ctx.actor, "apply", address, "revoke", "failed", str(exc))
            ctx.report(f"{address}: revoking the previous certificate FAILED: {exc}")
            continue
        now = datetime.now(UTC).replace(microsecond=0)
        with ctx.store.transaction() as writer:
            writer.mark_revoked(name, record.serial, now, "superseded", issuer)
            writer.audit(
                ctx.actor, "apply", address, "revoke", "ok",
                f"previous serial {record.serial} revoked (superseded)",
            )  # fmt: skip
        ctx.memory.revoked_now.append(
            RevocationRecord(address, record.serial, issuer, now, "superseded")
        )
        ctx.report(f"{address}: previous serial {record.serial[:16]}… revoked (superseded)")
