"""The audit log as a hash chain: editing or deleting a record becomes detectable.

Each record stores ``previous`` (the hash of the record before it, ``GENESIS``
for the first) and ``hash`` = HMAC-SHA256, under a key derived from the state's
data key (``AUDIT_KEY_LABEL``), over a canonical JSON encoding of ``previous`` and
the record's fields.  A bare SHA-256 chain (what certform wrote before) can be
recomputed by anyone who edits a record; a keyed one only by whoever holds the
data key.  States chained with SHA-256 before the switch keep verifying: the
state records, with a MAC of its own so it cannot be moved, the id of the last
SHA-256 record (``format_switch``); records after it must be keyed.  The state
also keeps the chain head ("id:hash" of the newest record), so deleting the
newest records is detected too.  Records written before chaining existed have no
hash; they can be listed but not verified.

Pure functions only: the backends read and write; this module computes and
judges.  The chain proves integrity against edits made outside certform, not
against someone who rewrites the whole chain and its head: keep a copy of the
head elsewhere (``certform audit --verify --json`` prints it) for that.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from typing import Any

GENESIS = "0" * 64
AUDIT_KEY_LABEL = b"certform audit chain v1"
"""HKDF label of the audit chain key (``Sealer.derive``)."""

FIELDS = ("id", "at", "actor", "command", "address", "action", "result", "detail")


def record_hash(previous_hash: str, fields: Mapping[str, Any], key: bytes | None = None) -> str:
    """HMAC-SHA256 under ``key`` (hex) of the previous hash and the record's
    ``FIELDS``; bare SHA-256 when ``key`` is None (records from before the switch).

    Values are hashed as text (an ``id`` of 7 and "7" hash alike), so the hash
    does not depend on how a backend returns its columns.  Raises KeyError when
    a field is missing.
    """
    record = {name: str(fields[name]) for name in FIELDS}
    canonical = _canonical({"previous": previous_hash, "record": record}).encode()
    if key is not None:
        return hmac.digest(key, canonical, "sha256").hex()
    return hashlib.sha256(canonical).hexdigest()


_canonical = json.JSONEncoder(sort_keys=True, separators=(",", ":")).encode
"""``json.dumps(value, sort_keys=True, separators=(",", ":"))`` with one encoder for
every record (apply appends one per step)."""


def format_switch(last_unkeyed_id: int, key: bytes) -> str:
    """The stored switch point: records up to ``last_unkeyed_id`` are SHA-256 chained,
    later ones keyed; MACed so that moving it (to pass off a re-chained tail as old
    SHA-256 records) is detected."""
    return f"{last_unkeyed_id}:{_switch_mac(last_unkeyed_id, key)}"


def parse_switch(text: str | None, key: bytes) -> int | None:
    """The last SHA-256 record id of a stored switch point; 0 when there is none (a
    state keyed from its first record); None when it was edited."""
    if text is None:
        return 0
    record_id, _, mac = text.partition(":")
    if not record_id.isdigit() or not hmac.compare_digest(mac, _switch_mac(int(record_id), key)):
        return None
    return int(record_id)


def _switch_mac(record_id: int, key: bytes) -> str:
    return hmac.new(key, f"audit keyed after {record_id}".encode(), "sha256").hexdigest()


def format_head(record_id: int, hash_: str) -> str:
    return f"{record_id}:{hash_}"


def parse_head(text: str | None) -> tuple[int, str] | None:
    """``(id, hash)`` from a stored head; None when there is none or it is unreadable."""
    if not text:
        return None
    record_id, _, hash_ = text.partition(":")
    if not record_id.isdigit() or not hash_:
        return None
    return int(record_id), hash_


def next_link(last: tuple[int, str | None] | None, head: tuple[int, str] | None) -> tuple[int, str]:
    """``(id, previous)`` for the record about to be appended.

    ``last`` is the newest stored record (id, hash), ``head`` the stored chain
    head.  The head wins over the newest row, so that records deleted from the
    end stay visible as a gap even after later appends; the id never reuses one
    that is taken.
    """
    last_id = last[0] if last else 0
    if head is not None:
        return max(last_id, head[0]) + 1, head[1]
    previous = last[1] if last and last[1] else GENESIS
    return last_id + 1, previous


def unverifiable_count(rows: Sequence[Mapping[str, Any]]) -> int:
    """How many records precede the first chained one (written before chaining)."""
    count = 0
    for row in _by_id(rows):
        if row.get("hash"):
            break
        count += 1
    return count


def verify_chain(
    rows: Sequence[Mapping[str, Any]],
    head: str | None = None,
    key: bytes | None = None,
    keyed_after: int = 0,
) -> list[str]:
    """Problems found in the audit log; empty when the chain is intact.

    ``rows`` carry ``FIELDS`` plus ``previous`` and ``hash``; ``head`` is the
    stored chain head ("id:hash"), or None when the state has none.  Records
    before the first chained one are skipped (see ``unverifiable_count``).
    With ``key``, records after ``keyed_after`` must carry keyed hashes; without,
    every record is checked as SHA-256 (a state written before the switch).
    """
    ordered = _by_id(rows)
    start = unverifiable_count(ordered)
    chained = ordered[start:]
    problems: list[str] = []
    before = ordered[start - 1] if start else None
    for row in chained:
        keyed = key if key is not None and int(row["id"]) > keyed_after else None
        problems += _check_record(row, before, keyed)
        before = row
    unchained_id = int(ordered[start - 1]["id"]) if start else 0
    problems += _check_head(chained, head, unchained_id)
    return problems


def _by_id(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return sorted(rows, key=lambda row: int(row["id"]))


def _check_record(
    row: Mapping[str, Any], before: Mapping[str, Any] | None, key: bytes | None
) -> list[str]:
    """One chained record against its own hash (keyed when ``key``) and the record
    before it."""
    record_id = int(row["id"])
    if not row.get("hash"):
        return [f"record {record_id} has no hash but follows chained records (added outside?)"]
    problems = []
    if not hmac.compare_digest(
        record_hash(str(row.get("previous") or ""), row, key), str(row["hash"])
    ):
        problems.append(f"record {record_id} does not match its hash (edited?)")
    expected_id = int(before["id"]) + 1 if before is not None else None
    if expected_id is not None and record_id != expected_id:
        problems.append(_missing(expected_id, record_id - 1) + " (deleted?)")
    elif before is None or not before.get("hash"):
        if row.get("previous") != GENESIS:
            problems.append(
                f"record {record_id} does not start the chain but nothing precedes it "
                "(earlier records deleted?)"
            )
    elif row.get("previous") != before["hash"]:
        problems.append(
            f"record {record_id} does not follow record {before['id']} (its previous hash "
            "differs: records replaced or reordered?)"
        )
    return problems


def _check_head(chained: list[Mapping[str, Any]], head: str | None, unchained_id: int) -> list[str]:
    """The newest chained record against the stored chain head (``unchained_id``:
    the id of the last record before the chain began, 0 when none)."""
    parsed = parse_head(head)
    if head is not None and parsed is None:
        return [f"the stored chain head {head!r} is unreadable"]
    if parsed is None:
        if chained:
            return ["the state has chained records but no chain head (head deleted?)"]
        return []
    head_id, head_hash = parsed
    if not chained:
        return [_missing(unchained_id + 1, head_id) + " (the chain head names them; deleted?)"]
    last = chained[-1]
    last_id = int(last["id"])
    if last_id < head_id:
        return [_missing(last_id + 1, head_id) + " (the newest records were deleted?)"]
    if last_id > head_id:
        return [f"records after {head_id} are not covered by the chain head (added outside?)"]
    if last["hash"] != head_hash:
        return [f"record {last_id} does not match the chain head (edited or replaced?)"]
    return []


def _missing(first: int, last: int) -> str:
    if first == last:
        return f"record {first} is missing"
    return f"records {first} to {last} are missing"
