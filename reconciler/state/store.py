"""The state backend interface: read, write in a transaction, lock, unlock.

Small on purpose, so that another backend (PostgreSQL, object storage with
conditional writes) is one module.  Every method may raise StateError; ``lock``
raises StateLockedError naming the holder.

Durability model (what apply's runner relies on, see ``engine/runner.py``):

* ``journal_start_many`` commits, durably and at once, one ``started`` entry per
  step of a batch (with the step's new private key, sealed and bound to its entry)
  before any of those steps acts;
* ``transaction(*entries)`` commits the records of a batch and closes its entries
  (``done``, their keys dropped) atomically: all of it lands or none of it does;
* so a process killed between the two leaves ``started`` entries, which the next
  run reports as interrupted and whose keys it reuses, and deployments the state
  does not know yet, which the next plan sees as drift.  A batch therefore costs
  two commits, whatever its size.
"""

from __future__ import annotations

import os
import socket
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from reconciler.model.material import IssuedMaterial
from reconciler.model.records import (
    AuthorityRecord,
    BindingRecord,
    CertificateRecord,
    CrlRecord,
    RecordedState,
)
from reconciler.state import audit_chain


@dataclass(frozen=True)
class LockInfo:
    """Who holds the state lock, shown to whoever waits for it."""

    holder: str
    pid: int
    host: str
    operation: str
    acquired_at: str
    lock_id: str = ""
    """Unique per acquisition: what ``certform force-unlock LOCK_ID`` names."""

    @classmethod
    def for_this_process(cls, operation: str) -> LockInfo:
        """This run as a lock holder, with a fresh lock ID."""
        host = socket.gethostname()
        return cls(
            holder=f"{os.environ.get('USER', 'unknown')}@{host}",
            pid=os.getpid(),
            host=host,
            operation=operation,
            acquired_at=datetime.now(UTC).isoformat(timespec="seconds"),
            lock_id=str(uuid.uuid4()),
        )

    def describe(self) -> str:
        """``user@host (pid N, apply, since T; lock ID X)`` for messages."""
        lock_id = f"; lock ID {self.lock_id}" if self.lock_id else ""
        return (
            f"{self.holder} (pid {self.pid}, {self.operation}, since {self.acquired_at}{lock_id})"
        )


def locked_message(state: str, holder: LockInfo | None) -> str:
    """What a command that needs the lock says when another run holds it."""
    who = holder.describe() if holder is not None else "another certform process"
    message = (
        f"the state {state} is locked by {who}; wait for it to finish "
        "or retry with --lock-timeout SECONDS"
    )
    if holder is not None and holder.lock_id:
        message += (
            f". If that run died on another machine and the lock stayed, release it with: "
            f"certform force-unlock {holder.lock_id}"
        )
    return message


@dataclass(frozen=True)
class AuditVerification:
    """The result of checking the audit log's hash chain (``audit --verify``)."""

    records: int
    unverifiable: int  # records written before the chain began
    head: str | None  # the stored chain head, "id:hash"
    problems: tuple[str, ...]  # one line per edited or deleted record

    @property
    def intact(self) -> bool:
        return not self.problems


def verify_audit_rows(
    rows: Sequence[Mapping[str, Any]],
    head: str | None,
    key: bytes | None,
    keyed_after: int | None,
) -> AuditVerification:
    """Check ``rows`` against the chain ``head`` (see ``audit_chain``); ``keyed_after``
    None means the stored switch point was edited: every chained record is then
    checked as keyed, and the edit itself is reported."""
    problems = []
    if keyed_after is None:
        problems.append("the stored start of the keyed chain was edited")
    problems += audit_chain.verify_chain(rows, head, key, keyed_after or 0)
    return AuditVerification(len(rows), audit_chain.unverifiable_count(rows), head, tuple(problems))


class StateWriter(ABC):
    """Changes made inside one transaction; all land together or none do."""

    @abstractmethod
    def put_authority(
        self, record: AuthorityRecord, material: IssuedMaterial, key_der: bytes | None
    ) -> None:
        """Record an issued CA; ``key_der`` None keeps the existing key (renewal)."""

    @abstractmethod
    def put_certificate(
        self, record: CertificateRecord, material: IssuedMaterial, key_der: bytes | None
    ) -> None:
        """Record an issued leaf with its (to be sealed) private key; None when the key
        lives elsewhere (ACM)."""

    @abstractmethod
    def set_guard(
        self, kind: str, name: str, prevent_destroy: bool, tags: dict[str, str] | None
    ) -> None:
        """Update the remembered lifecycle guard (and tags) of a resource."""

    @abstractmethod
    def destroy(self, kind: str, name: str) -> None:
        """Mark a resource destroyed and drop its private key."""

    @abstractmethod
    def mark_revoked(
        self,
        name: str,
        serial: str,
        when: datetime,
        reason: str,
        issuer: str,
        kind: str = "certificate",
    ) -> None:
        """Record that the current certificate ``name`` (``serial``, issued by the
        authority ``issuer``) was revoked; the next plan re-issues it if it is still
        declared, and lists it in ``issuer``'s CRL."""

    @abstractmethod
    def put_crl(self, record: CrlRecord) -> None:
        """Remember the CRL just published for ``record.authority``."""

    @abstractmethod
    def put_binding(self, record: BindingRecord) -> None: ...

    @abstractmethod
    def delete_binding(self, address: str) -> None: ...

    @abstractmethod
    def rename_certificate(self, old: str, new: str) -> None:
        """Give the recorded certificate ``old`` the name ``new``: its sealed key is
        re-bound to the new address, its bindings, history and revocations follow."""

    @abstractmethod
    def forget(self, kind: str, name: str) -> None:
        """Drop a recorded authority or certificate (its sealed key with it) without
        touching anything outside the state; its history stays."""

    @abstractmethod
    def audit(
        self, actor: str, command: str, address: str, action: str, result: str, detail: str = ""
    ) -> None:
        """Append to the audit log in the same transaction as the change it describes."""


class StateReader(ABC):
    """Reading: what is recorded, in one consistent snapshot, without the lock."""

    where: str
    """The state's name in messages and plans: a path, or ``postgres:NAME``."""

    @property
    @abstractmethod
    def exists(self) -> bool:
        """Whether the state has been created (asking never creates it)."""

    @abstractmethod
    def open(self) -> None:
        """Create or open the state and prove the master key opens it."""

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def read(self) -> RecordedState: ...

    @abstractmethod
    def material(self, kind: str, name: str) -> IssuedMaterial: ...

    @abstractmethod
    def snapshot(self) -> AbstractContextManager[None]:
        """Every read inside sees one consistent state, whatever an apply commits
        meanwhile, without taking or waiting for the lock: ``plan``, ``show``, ``check``
        and ``audit`` run while an apply holds it (a saved plan's serial check keeps
        that safe).  Reads outside a snapshot are each consistent on their own."""


class StateLocker(ABC):
    """One writer at a time: the lock every writing command holds."""

    @abstractmethod
    def lock(self, operation: str, timeout: float = 0.0) -> None: ...

    @abstractmethod
    def unlock(self) -> None: ...

    @abstractmethod
    def lock_holder(self) -> LockInfo | None:
        """Who holds the lock now (None: nobody), asked without waiting: a plan
        that finds steps in progress says whether an apply is still running them."""

    @abstractmethod
    def force_unlock(self, lock_id: str) -> str:
        """Release the lock ``lock_id`` that a dead run left (never one this process
        holds); what was done, for the user.  StateError when the lock has another
        ID, or cannot be released from here."""


class StateJournal(ABC):
    """Steps announced before they act, so a crash is recovered (see the module docstring)."""

    @abstractmethod
    def journal_start(self, run_id: str, address: str, action: str, key_der: bytes | None) -> int:
        """Record, durably, that a step is about to change the world."""

    @abstractmethod
    def journal_start_many(
        self, run_id: str, steps: Sequence[tuple[str, str, bytes | None]]
    ) -> list[int]:
        """``journal_start`` for a batch of (address, action, key DER) in one durable
        commit: every entry is there, or none is.  The entries, in order."""

    @abstractmethod
    def journal_finish(self, entry: int, status: str) -> None: ...

    @abstractmethod
    def journaled_key(self, address: str) -> bytes | None:
        """A key generated by a step that never finished, for reuse on retry."""

    @abstractmethod
    def prune_journal(self) -> None:
        """Drop journal entries of finished steps (kept: interrupted and failed ones)."""

    @abstractmethod
    def mark_interrupted(self) -> None:
        """Acknowledge steps of a run that died (keeping their keys for reuse)."""


class StateAuditLog(ABC):
    """The keyed, hash-chained record of everything certform did."""

    @abstractmethod
    def audit(
        self, actor: str, command: str, address: str, action: str, result: str, detail: str = ""
    ) -> None: ...

    @abstractmethod
    def audit_log(self) -> list[dict[str, Any]]:
        """Every audit record, oldest first, with its ``previous`` and ``hash``."""

    @abstractmethod
    def audit_head(self) -> str | None:
        """The stored head of the audit chain ("id:hash"); None before the first
        chained record."""

    @abstractmethod
    def audit_chain_key(self) -> tuple[bytes | None, int | None]:
        """The audit chain key (needs the master key) and the id of the last record
        hashed without it; see ``SqliteStateStore.audit_chain_key``."""

    def verify_audit(self) -> AuditVerification:
        """Check the audit log's keyed hash chain (inside a snapshot).  The key
        comes first, so that a wrong master key fails before anything is read."""
        key, keyed_after = self.audit_chain_key()
        rows = self.audit_log()
        return verify_audit_rows(rows, self.audit_head(), key, keyed_after)


class KeyVault(ABC):
    """Secrets: sealed private keys, keys derived from the data key, its wrapping."""

    @property
    @abstractmethod
    def key_store_change(self) -> tuple[str, str] | None:
        """(recorded, configured) key store labels when the config switched stores."""

    @property
    @abstractmethod
    def upgrade_pending(self) -> bool:
        """True for a state written before rows were authenticated."""

    @abstractmethod
    def private_key(self, kind: str, name: str) -> bytes:
        """The DER private key of a recorded resource (opened from its sealed form)."""

    @abstractmethod
    def derived_key(self, label: bytes) -> bytes:
        """A 32-byte key derived (HKDF) from the state's data key for one purpose."""

    @abstractmethod
    def rewrap_data_key(self) -> None:
        """Re-wrap the data key under the configured key store (one transaction)."""


class StateRecorder(ABC):
    """Changes to the records, atomically, with the journal entries they close."""

    @abstractmethod
    def transaction(self, *journal_entries: int) -> AbstractContextManager[StateWriter]:
        """Write records atomically, bump the serial, and close ``journal_entries``
        (``done``) together with any interrupted or failed entries of the same
        addresses (their keys are used).  One commit however many records: apply
        records a whole batch of steps in one."""


class StateStore(StateReader, StateLocker, StateJournal, StateAuditLog, KeyVault, StateRecorder):
    """A place where certform keeps its recorded state: every role, as a backend
    implements them (``sql_store.SqlStateStore``); code that needs one role takes
    that interface, as Terraform's statemgr splits reader, writer and locker."""


__all__ = [
    "AuditVerification",
    "Iterator",
    "KeyVault",
    "LockInfo",
    "StateAuditLog",
    "StateJournal",
    "StateLocker",
    "StateReader",
    "StateRecorder",
    "StateStore",
    "StateWriter",
    "verify_audit_rows",
]
