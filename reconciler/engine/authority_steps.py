"""Steps of authorities: a CA's own certificate (issue, renew, replace), an ACME
account (register, update) and destroy.  What is signed or registered is the
issuer's business; these steps record it."""

from __future__ import annotations

from reconciler.engine.context import ApplyContext
from reconciler.engine.step import Done, Phase, Prepared, Step, register
from reconciler.issuers.base import AuthorityIssuance
from reconciler.issuers.registry import authority_issuer
from reconciler.plan.model import Action, Change
from reconciler.state.store import StateWriter


class _AuthorityStep(Step):
    def prepare(self, ctx: ApplyContext, change: Change) -> Prepared:
        assert change.after is not None
        return authority_issuer(change.after).prepare_authority(ctx, change)

    def act(self, ctx: ApplyContext, change: Change, prepared: Prepared) -> AuthorityIssuance:
        assert change.after is not None
        return authority_issuer(change.after).act_authority(ctx, change, prepared)

    def record(
        self, ctx: ApplyContext, change: Change, prepared: Prepared, outcome: AuthorityIssuance,
        writer: StateWriter,
    ) -> Done:  # fmt: skip
        writer.put_authority(outcome.record, outcome.material, outcome.key_der)
        return Done(outcome.audit, outcome.report)


@register("authority", Action.ISSUE, Action.RENEW, Action.REPLACE)
class SignAuthority(_AuthorityStep):
    """A CA certificate, signed by its parent (or itself, a root)."""

    phase = Phase.AUTHORITIES


@register("authority", Action.REGISTER, Action.UPDATE)
class AccountStep(_AuthorityStep):
    """An account at an external CA (ACME): registered, or its contact updated."""

    phase = Phase.ACCOUNTS


@register("authority", Action.DESTROY)
class DestroyAuthority(Step):
    phase = Phase.DESTROYS

    def act(self, ctx: ApplyContext, change: Change, prepared: Prepared) -> str:
        """Forgetting it is all there is to do, unless it lives outside the state too
        (a CA certform created in AWS Private CA: its issuer deletes it)."""
        return authority_issuer(change.before or {}).destroy_authority(ctx, change)

    def record(
        self, ctx: ApplyContext, change: Change, prepared: Prepared, outcome: str,
        writer: StateWriter,
    ) -> Done:  # fmt: skip
        writer.destroy("authority", change.name)
        return Done(outcome, f" ({outcome})" if outcome else "")
