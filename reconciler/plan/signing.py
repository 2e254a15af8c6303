"""Saved plans are authenticated: ``plan --out`` writes, ``apply PLANFILE`` checks.

A plan file says what apply will run, sign and delete (binding targets with
their ``post_deploy`` commands, certificate names and validity, destroys), so
whoever can edit it could otherwise make apply do anything certform can.  The
file therefore carries an HMAC-SHA256 under a key only the state's owner has:
HKDF of the state's data key with its own label (``PLAN_MAC_LABEL``), so a
plan verifies against exactly the state it was made for and no other.

Format: the file stays plain JSON, the plan's own object plus one top-level
field ``"mac": "hmac-sha256:<hex>"``.  The MAC is computed over the canonical
serialisation of everything else in that object (keys sorted, no whitespace,
ASCII only, no NaN): exactly the data apply goes on to parse and execute, so
no byte that changes what apply does is outside it, while re-indenting the
file by hand changes nothing that matters.  The key itself never appears in
the file: a plan stays free of secrets.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from reconciler.errors import PlanError
from reconciler.plan.model import Plan

PLAN_MAC_LABEL = b"certform plan mac v1"
"""HKDF label of the plan MAC key (``SqliteStateStore.derived_key``)."""
MAC_FIELD = "mac"
MAC_SCHEME = "hmac-sha256:"
_DOMAIN = b"certform saved plan v1\n"
TAMPERED = "the plan file was modified or was not made for this state"
"""The one message for any plan that does not verify: whether the file was edited
or made for another state, apply cannot tell and does not guess."""


class PlanTampered(PlanError):
    """A saved plan's MAC is missing or does not verify under this state's key."""


def canonical(document: dict[str, Any]) -> bytes:
    """The bytes the MAC covers: one serialisation per JSON value."""
    return json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode("ascii")


def plan_mac(document: dict[str, Any], key: bytes) -> str:
    """``hmac-sha256:<hex>`` of ``document`` (which must not hold the MAC field)."""
    digest = hmac.new(key, _DOMAIN + canonical(document), hashlib.sha256).hexdigest()
    return MAC_SCHEME + digest


def signed_plan(plan: Plan, key: bytes) -> bytes:
    """The file ``plan --out`` writes: the plan's JSON plus its MAC, still JSON."""
    document = plan.to_json()
    document[MAC_FIELD] = plan_mac(document, key)
    return (json.dumps(document, indent=2, sort_keys=False) + "\n").encode()


def parse_plan_file(content: bytes, where: str) -> dict[str, Any]:
    """The JSON object in a plan file, unverified; a file that is no JSON object
    at all is not a certform plan (a clearer message than 'modified')."""
    try:
        document = json.loads(content)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise PlanError(f"{where} is not a certform plan ({type(exc).__name__})") from None
    if not isinstance(document, dict):
        raise PlanError(f"{where} is not a certform plan (not a JSON object)")
    return document


def verify_plan_document(document: dict[str, Any], key: bytes, where: str) -> Plan:
    """The plan in ``document`` once its MAC verifies under ``key``; ``PlanTampered``
    otherwise.  Nothing in the document is interpreted before the MAC checks out."""
    body = {k: v for k, v in document.items() if k != MAC_FIELD}
    given = document.get(MAC_FIELD)
    try:
        expected = plan_mac(body, key)
    except (ValueError, RecursionError):  # NaN, Infinity, absurd nesting: never written
        expected = None
    if (
        not isinstance(given, str)
        or not given.isascii()
        or expected is None
        or not hmac.compare_digest(given, expected)
    ):
        raise PlanTampered(
            f"{where}: {TAMPERED}; nothing was applied. Make a new one with plan --out."
        )
    try:
        return Plan.from_json(body)
    except (ValueError, KeyError, TypeError) as exc:  # a MACed plan of another version
        raise PlanError(f"{where} is not a certform plan ({type(exc).__name__}: {exc})") from None
