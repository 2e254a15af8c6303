"""Plans as frozen data: a closed set of actions, changes, and the context they
were made in.  A plan survives a JSON round trip unchanged, so ``plan --out``
and ``apply FILE`` execute exactly what was reviewed.

Reasons are for people; apply never parses them.
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from reconciler.plan.specs import Dependencies, Spec, spec_for

FORMAT_VERSION = "1"
KEY_STORE_ADDRESS = "state.key_store"


class Action(StrEnum):
    ISSUE = "issue"
    RENEW = "renew"
    REPLACE = "replace"
    BIND = "bind"
    REBIND = "rebind"
    UNBIND = "unbind"
    REVOKE = "revoke"
    DESTROY = "destroy"
    REGISTER = "register"
    UPDATE = "update"
    PUBLISH = "publish"

    @property
    def symbol(self) -> str:
        return _SYMBOLS[self]


_SYMBOLS = {
    Action.ISSUE: "+",
    Action.BIND: "+",
    Action.RENEW: "~",
    Action.REBIND: "~",
    Action.REPLACE: "-/+",
    Action.UNBIND: "-",
    Action.REVOKE: "-",
    Action.DESTROY: "-",
    Action.REGISTER: "+",
    Action.UPDATE: "~",
    Action.PUBLISH: "~",
}

SUMMARY_ORDER = (
    Action.REGISTER,
    Action.UPDATE,
    Action.ISSUE,
    Action.RENEW,
    Action.REPLACE,
    Action.BIND,
    Action.REBIND,
    Action.UNBIND,
    Action.REVOKE,
    Action.DESTROY,
    Action.PUBLISH,
)


@dataclass(frozen=True)
class Change:
    """One step: ``after`` holds everything apply needs (public data only), as the
    typed spec of its kind (a JSON mapping given here is parsed into one)."""

    address: str
    action: Action
    reasons: tuple[str, ...]
    before: dict[str, Any] | None
    after: Spec | None
    bindings: tuple[str, ...] = ()
    drift: bool = False

    def __post_init__(self) -> None:
        if self.after is not None and not isinstance(self.after, Spec):
            object.__setattr__(self, "after", spec_for(self.kind, self.after))

    @property
    def kind(self) -> str:
        return self.address.split(".", 1)[0]

    @property
    def name(self) -> str:
        return self.address.split(".", 1)[1]

    @property
    def depends_on(self) -> Dependencies:
        """What this step needs to have succeeded (from its typed spec)."""
        return self.after.depends_on if self.after is not None else ()

    def to_json(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "action": self.action.value,
            "reasons": list(self.reasons),
            "before": copy.deepcopy(self.before),
            "after": copy.deepcopy(self.after.to_json()) if self.after is not None else None,
            "bindings": list(self.bindings),
            "drift": self.drift,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Change:
        return cls(
            address=data["address"],
            action=Action(data["action"]),
            reasons=tuple(data["reasons"]),
            before=data.get("before"),
            after=data.get("after"),
            bindings=tuple(data.get("bindings", ())),
            drift=bool(data.get("drift", False)),
        )


@dataclass(frozen=True)
class StateUpdate:
    """A remembered setting that changed without touching any certificate
    (lifecycle guard, tags): recorded by apply, never sent to a target."""

    address: str
    before: dict[str, Any]
    after: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Move:
    """A recorded certificate renamed by a ``moved`` block: apply renames it in the
    state (key, bindings, history follow); nothing is issued or deployed for it."""

    source: str
    target: str

    def to_json(self) -> dict[str, str]:
        return {"from": self.source, "to": self.target}


@dataclass(frozen=True)
class Plan:
    """The ordered changes plus the context needed to refuse a stale apply."""

    changes: tuple[Change, ...]
    state_updates: tuple[StateUpdate, ...]
    planned_at: datetime
    lineage: str
    state_serial: int
    state_path: str
    config_root: str
    warnings: tuple[str, ...] = ()
    format_version: str = FORMAT_VERSION
    created_at: datetime | None = None
    interrupted: tuple[str, ...] = field(default=())
    requires_force: tuple[str, ...] = ()
    """Why apply refuses this plan without --force (change limits, CA rotation)."""
    variables: dict[str, Any] = field(default_factory=dict)
    """The template variables the configuration was rendered with: ``apply PLANFILE``
    on another runner renders it with these, without ``--var``."""
    moves: tuple[Move, ...] = ()
    endpoint_drift: tuple[str, ...] = ()
    """Watched endpoints (``tls-endpoint``) serving something else: drift to fix at
    the endpoint, reported (``--detailed-exitcode`` exits 2), never a change."""

    @property
    def has_changes(self) -> bool:
        return bool(self.changes or self.state_updates or self.moves)

    @property
    def has_drift(self) -> bool:
        return any(c.drift for c in self.changes) or bool(self.endpoint_drift)

    def counts(self) -> dict[str, int]:
        counts = {a.value: 0 for a in SUMMARY_ORDER}
        for change in self.changes:
            counts[change.action.value] += 1
        return counts

    def to_json(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version,
            "planned_at": self.planned_at.isoformat(),
            "created_at": self.created_at.isoformat() if self.created_at else None,
            "lineage": self.lineage,
            "state_serial": self.state_serial,
            "state_path": self.state_path,
            "config_root": self.config_root,
            "summary": self.counts()
            | {"state_updates": len(self.state_updates), "moves": len(self.moves)},
            "has_changes": self.has_changes,
            "drift": self.has_drift,
            "changes": [c.to_json() for c in self.changes],
            "state_updates": [u.to_json() for u in self.state_updates],
            "warnings": list(self.warnings),
            "interrupted": list(self.interrupted),
            "requires_force": list(self.requires_force),
            "variables": copy.deepcopy(self.variables),
            "moves": [move.to_json() for move in self.moves],
            "endpoint_drift": list(self.endpoint_drift),
        }

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Plan:
        created = data.get("created_at")
        return cls(
            changes=tuple(Change.from_json(c) for c in data["changes"]),
            state_updates=tuple(StateUpdate(**u) for u in data.get("state_updates", ())),
            planned_at=datetime.fromisoformat(data["planned_at"]),
            lineage=data["lineage"],
            state_serial=int(data["state_serial"]),
            state_path=data["state_path"],
            config_root=data["config_root"],
            warnings=tuple(data.get("warnings", ())),
            format_version=data["format_version"],
            created_at=datetime.fromisoformat(created) if created else None,
            interrupted=tuple(data.get("interrupted", ())),
            requires_force=tuple(data.get("requires_force", ())),
            variables=dict(data.get("variables") or {}),
            moves=tuple(Move(m["from"], m["to"]) for m in data.get("moves", ())),
            endpoint_drift=tuple(data.get("endpoint_drift", ())),
        )
