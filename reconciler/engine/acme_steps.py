"""Apply steps for ACME: account registration and update, and certificates from
orders placed in parallel before the sequential steps (keys journaled first).

A mixin of ``Applier``: it uses the applier's store, plan, result and report.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reconciler.engine.acme_orders import OrderJob, OrderOutcome, run_orders
from reconciler.engine.acme_orders import failure as order_failure
from reconciler.engine.faults import fault_point
from reconciler.engine.step_material import deployable, leaf_record, spec_of
from reconciler.errors import CertformError, StateError
from reconciler.pki.keys import private_key_from_der, private_key_to_pem
from reconciler.plan.model import Action, Change
from reconciler.state.records import AuthorityRecord, IssuedMaterial

if TYPE_CHECKING:
    from reconciler.acme.client import AcmeAccount

ACCOUNT_NOT_AFTER = datetime(9999, 12, 31, tzinfo=UTC)
"""ACME accounts do not expire; their records carry this date so expiry checks pass."""


class AcmeSteps:
    """ACME steps of an apply (mixed into ``Applier``)."""

    _acme_urls: dict[str, str]
    _acme_orders: dict[str, tuple[int, bytes, OrderOutcome]] | None
    store: Any
    recorded: Any
    plan: Any
    result: Any
    root: Path
    run_id: str
    parallelism: int

    # -- ACME accounts -------------------------------------------------------------------
    def _authority_register(self, change: Change) -> str:
        from reconciler.acme.client import AcmeAccount, new_account_key_der

        spec = spec_of(change.after, ("renew_before", "prevent_destroy"))
        key_der = self.store.journaled_key(change.address) or new_account_key_der()
        entry = self._journal(change, key_der)
        fault_point(change.address, "journaled")
        url = AcmeAccount(change.name, spec, self.root, key_der).register()
        fault_point(change.address, "acted")
        self._record_account(change, spec, url, key_der, entry)
        return f" ({url})"

    def _authority_update(self, change: Change) -> str:
        spec = spec_of(change.after, ("renew_before", "prevent_destroy"))
        account = self._acme_account(change.name, spec)
        entry = self._journal(change)
        account.update_contact()
        self._record_account(change, spec, str(account.url), None, entry)
        return f" (contact {', '.join(spec['contact'])})"

    def _record_account(
        self, change: Change, spec: dict, url: str, key_der: bytes | None, entry: int
    ) -> None:
        now = datetime.now(UTC)
        record = AuthorityRecord(
            name=change.name,
            spec=spec,
            serial="",
            not_before=now,
            not_after=ACCOUNT_NOT_AFTER,
            key_id=url,
            issuer_key_id=None,
            prevent_destroy=bool(change.after and change.after.get("prevent_destroy")),
        )
        with self.store.transaction(entry) as writer:
            writer.put_authority(record, IssuedMaterial("", "", ""), key_der)
            self._audit(writer, change, f"account {url}")
        self._acme_urls[change.name] = url

    def _acme_account(self, name: str, spec: dict) -> AcmeAccount:
        from reconciler.acme.client import AcmeAccount

        url = self._acme_urls.get(name)
        if url is None:
            record = self.recorded.authorities.get(name)
            if record is None:
                raise StateError(f"authority.{name}: no ACME account in the state")
            url = record.key_id
        key_der = self.store.private_key("authority", name)
        return AcmeAccount(name, spec, self.root, key_der, url)

    def _place_acme_orders(self) -> None:
        """Journal a key for every ACME issuance, then run the orders in parallel."""
        self._acme_orders = {}
        jobs: list[OrderJob] = []
        keys: dict[str, tuple[int, bytes]] = {}
        accounts: dict[str, AcmeAccount] = {}
        for change in self.plan.changes:
            after = change.after or {}
            if change.kind != "certificate" or after.get("issuer_type") != "acme":
                continue
            if change.action not in (Action.ISSUE, Action.RENEW, Action.REPLACE):
                continue
            if self._blocked_by(change):
                continue
            for issuer in after["issuers"]:
                if issuer not in accounts and f"authority.{issuer}" not in self.result.failed:
                    # A missing account is reported per certificate ("no ACME account").
                    with contextlib.suppress(CertformError):
                        accounts[issuer] = self._acme_account(issuer, after["acme"][issuer])
            self._remember_replaced(change)
            key_der = self._key_for(change, after)
            entry = self.store.journal_start(
                self.run_id, change.address, change.action.value, key_der
            )
            keys[change.address] = (entry, key_der)
            key_pem = private_key_to_pem(private_key_from_der(key_der))
            jobs.append(OrderJob(change.address, after["names"], after["issuers"], key_pem))
        if not jobs:
            return
        self.report(f"Placing {len(jobs)} ACME order(s), up to {self.parallelism} at a time…")
        outcomes = run_orders(jobs, accounts, self.parallelism, self.report)
        for address, outcome in outcomes.items():
            entry, key_der = keys[address]
            self._acme_orders[address] = (entry, key_der, outcome)

    def _certificate_from_acme(self, change: Change, spec: dict) -> str:
        assert self._acme_orders is not None
        entry, key_der, outcome = self._acme_orders[change.address]
        self._entry = entry
        fault_point(change.address, "journaled")
        if outcome.issued is None:
            raise order_failure(outcome)
        issued = outcome.issued
        fault_point(change.address, "acted")
        spec = {**spec, "issued_by": issued.authority}
        record = leaf_record(change, spec, issued.certificate, f"acme:{issued.authority}")
        material = IssuedMaterial(issued.certificate_pem, issued.chain_pem, "")
        with self.store.transaction(entry) as writer:
            writer.put_certificate(record, material, key_der)
            self._audit(writer, change, f"serial {issued.serial}, {outcome.note}")
        key_pem = private_key_to_pem(private_key_from_der(key_der))
        self._fresh[change.name] = deployable(record, material, key_pem)
        return (
            f" (serial {issued.serial[:16]}…, {outcome.note}, expires {record.not_after:%Y-%m-%d})"
        )
