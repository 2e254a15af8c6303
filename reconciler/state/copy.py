"""``certform state migrate``: a state copied into another backend, and proven equal.

The copy keeps the state's identity and its evidence: the same lineage and serial
(saved plans stay valid), the same data key (so every row MAC, every sealed key's
binding and every keyed audit hash stays valid), re-wrapped under the target's
key store (the master key or KMS the configuration names).  Every row is copied
as stored, MACs included, in one transaction.  Afterwards the copy is read back
through the target backend (every row MAC checked), compared record by record
with the source, the row counts compared table by table, and the audit chain
verified end to end; any difference is an error.
"""

from __future__ import annotations

from dataclasses import dataclass

from reconciler.errors import StateError
from reconciler.state.sql_store import SqlStateStore
from reconciler.state.store import AuditVerification

TABLES: dict[str, tuple[str, ...]] = {
    "authorities": (
        "name", "status", "spec", "serial", "not_before", "not_after", "key_id",
        "issuer_key_id", "prevent_destroy", "certificate_pem", "chain_pem", "root_pem",
        "sealed_key", "updated_at", "mac",
    ),
    "certificates": (
        "name", "status", "spec", "serial", "not_before", "not_after", "issuer_key_id",
        "fingerprint", "prevent_destroy", "tags", "certificate_pem", "chain_pem", "root_pem",
        "sealed_key", "revoked_at", "updated_at", "external_id", "mac",
    ),
    "bindings": ("address", "certificate", "target", "serial", "facts", "deployed_at", "mac"),
    "history": (
        "id", "address", "serial", "not_after", "certificate_pem", "superseded_at", "reason",
    ),
    "journal": (
        "id", "run_id", "address", "action", "status", "sealed_key", "started_at", "finished_at",
    ),
    "audit": (
        "id", "at", "actor", "command", "address", "action", "result", "detail", "previous",
        "hash",
    ),
    "revocations": ("id", "address", "serial", "issuer", "revoked_at", "reason", "mac"),
    "crls": ("authority", "number", "this_update", "next_update", "entries", "files", "mac"),
}  # fmt: skip
"""Every table a state holds, with the columns a copy carries, in insert order."""


@dataclass(frozen=True)
class CopyReport:
    """What was copied and what the checks after the copy found."""

    source: str
    target: str
    lineage: str
    serial: int
    rows: dict[str, int]
    audit: AuditVerification


def copy_state(source: SqlStateStore, target: SqlStateStore) -> CopyReport:
    """Copy ``source`` into the absent state ``target``; both are locked by the caller."""
    if not source.exists:
        raise StateError(f"there is no state at {source.where} to migrate; nothing was copied")
    if target.exists:
        raise StateError(
            f"{target.where} already holds a state; state migrate copies only into an empty "
            "backend (nothing was copied)"
        )
    source.open()
    before = source.read()
    meta, data_key, rows = source.export_state(TABLES)
    source_audit = source.verify_audit()
    if not source_audit.intact:
        raise StateError(
            f"the audit chain of {source.where} is broken ({source_audit.problems[0]}); "
            "nothing was copied"
        )
    target.import_state(meta, data_key, rows, TABLES)
    return _verified(source, target, before, rows, source_audit)


def _verified(
    source: SqlStateStore,
    target: SqlStateStore,
    before: object,
    rows: dict[str, list[tuple[object, ...]]],
    source_audit: AuditVerification,
) -> CopyReport:
    """Read the copy back through its own backend and compare it with the source."""
    after = target.read()  # every row MAC checked on the way
    copied = {table: len(found) for table, found in target.export_state(TABLES)[2].items()}
    expected = {table: len(found) for table, found in rows.items()}
    problems = [
        f"{table}: {expected[table]} rows in the source, {copied.get(table, 0)} in the copy"
        for table in TABLES
        if copied.get(table, 0) != expected[table]
    ]
    if after != before:
        problems.append("the records read back differ from the source's")
    audit = target.verify_audit()
    if not audit.intact or audit.head != source_audit.head:
        problems.append(f"the audit chain of the copy does not verify: {audit.problems}")
    if problems:
        raise StateError(
            f"the copy in {target.where} does not match {source.where}: "
            + "; ".join(problems)
            + ". Drop the copy before trying again; the source is unchanged"
        )
    return CopyReport(source.where, target.where, after.lineage, after.serial, copied, audit)
