"""``certform iam-policy``: the IAM policy one configuration needs, and nothing more.

Nothing here knows an AWS API: every module that calls AWS declares its own
statements next to its calls (targets' and issuers' ``iam_statements``, the KMS
key store's, the EventBridge sink's, CloudWatch's, the S3 CRL publisher's
through the private CA issuer).  This module only asks them, for what the
validated configuration uses, then merges and sorts:

* statements with the same resources and condition become one (their actions
  joined), then statements with the same actions and condition (their
  resources joined), until nothing merges: both are exact rewrites of an
  Allow-only policy;
* a resource already matched by a wildcard resource of the same statement
  goes (``hostedzone/*`` covers ``hostedzone/Z1``);
* the order is by Sid, then content, and Sids are made unique (``Name2``...),
  so the same configuration always prints the same bytes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from reconciler.providers.aws.iam import Condition, Statement

if TYPE_CHECKING:
    from reconciler.config.validate import ValidatedConfig
    from reconciler.monitoring.cloudwatch import CloudWatchConfig

POLICY_VERSION = "2012-10-17"


def statements_for(
    validated: ValidatedConfig, cloudwatch: CloudWatchConfig | None = None
) -> list[Statement]:
    """Every statement the configuration's AWS calls need, merged and sorted;
    ``cloudwatch``: where ``check`` publishes DaysToExpiry (None: it does not)."""
    from reconciler.issuers.registry import issuer_named
    from reconciler.monitoring import cloudwatch as cloudwatch_module
    from reconciler.monitoring import eventbridge
    from reconciler.providers.catalog import build_target
    from reconciler.state.keystores import kms_iam_statements

    config = validated.config
    providers = config.providers
    found: list[Statement] = []
    for binding in config.bindings:
        found += build_target(binding.target, validated.root, providers).iam_statements()
    for name, authority in config.authorities.items():
        found += issuer_named(authority.type).iam_statements(name, authority, config)
    key_store = config.state.key_store
    if key_store.type == "aws-kms":
        found += kms_iam_statements(key_store.key_id, providers[key_store.provider])
    if config.notifications is not None:
        for sink in config.notifications.sinks:
            if sink.type == "eventbridge":
                found += eventbridge.iam_statements(sink, providers)
    if cloudwatch is not None:
        found += cloudwatch_module.iam_statements(cloudwatch)
    return merge(found)


def document(statements: Sequence[Statement]) -> dict[str, Any]:
    """The policy document (an empty ``Statement`` list when nothing calls AWS)."""
    rendered = []
    for statement in statements:
        entry: dict[str, Any] = {
            "Sid": statement.sid,
            "Effect": "Allow",
            "Action": sorted(statement.actions),
            "Resource": sorted(statement.resources),
        }
        if statement.condition:
            entry["Condition"] = statement.condition_json()
        rendered.append(entry)
    return {"Version": POLICY_VERSION, "Statement": rendered}


def merge(statements: Iterable[Statement]) -> list[Statement]:
    """Merged (see the module docstring), sorted, with unique Sids: a merged
    statement's Sid joins the Sids it was merged from."""
    current = {_Draft.of(s) for s in statements}
    while True:
        merged = _join(_join(current, by_resources=True), by_resources=False)
        if len(merged) == len(current):
            break
        current = merged
    ordered = sorted((d.statement() for d in merged), key=_order)
    seen: dict[str, int] = {}
    unique = []
    for statement in ordered:
        count = seen[statement.sid] = seen.get(statement.sid, 0) + 1
        sid = statement.sid if count == 1 else f"{statement.sid}{count}"
        unique.append(Statement(sid, statement.actions, statement.resources, statement.condition))
    return unique


@dataclass(frozen=True)
class _Draft:
    """A statement being merged: the Sids it came from, kept apart until the end."""

    sids: frozenset[str]
    actions: frozenset[str]
    resources: frozenset[str]
    condition: Condition

    @classmethod
    def of(cls, statement: Statement) -> _Draft:
        return cls(
            frozenset({statement.sid}),
            statement.actions,
            _pruned(statement.resources),
            statement.condition,
        )

    def statement(self) -> Statement:
        return Statement("".join(sorted(self.sids)), self.actions, self.resources, self.condition)


def _join(drafts: Iterable[_Draft], *, by_resources: bool) -> set[_Draft]:
    groups: dict[tuple[Any, ...], _Draft] = {}
    for d in drafts:
        key = (d.resources if by_resources else d.actions, d.condition)
        prev = groups.get(key)
        groups[key] = d if prev is None else _Draft(
            prev.sids | d.sids,
            prev.actions | d.actions,
            _pruned(prev.resources | d.resources),
            d.condition,
        )  # fmt: skip
    return set(groups.values())


def _pruned(resources: frozenset[str]) -> frozenset[str]:
    """Without the resources another one of the same statement already matches."""
    return frozenset(
        r for r in resources if not any(o != r and arn_matches(o, r) for o in resources)
    )


def _order(statement: Statement) -> tuple[Any, ...]:
    return (
        statement.sid,
        sorted(statement.actions),
        sorted(statement.resources),
        statement.condition,
    )


def arn_matches(pattern: str, value: str) -> bool:
    """IAM's matching of a Resource pattern: ``*`` any run of characters, ``?`` any
    one, everything else literally."""
    return _regex(pattern).fullmatch(value) is not None


@lru_cache(maxsize=1024)
def _regex(pattern: str) -> re.Pattern[str]:
    parts = (".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile("".join(parts), re.DOTALL)
