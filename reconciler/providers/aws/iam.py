"""IAM policy statements: what one AWS-touching module declares it needs.

Every module that calls AWS declares, next to its calls, the statements those
calls need (a target's ``iam_statements``, an issuer's, the KMS key store's,
the notification sinks', the S3 CRL publisher's); ``iam_policy.py`` collects
them for one configuration, merges them and prints the policy.  Adding an AWS
call means adding its action to the statement of the module that makes it.

Pure: no boto3, no I/O.  Account ids are never known from a configuration, so
ARNs carry ``*`` in the account field.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

Condition = tuple[tuple[str, str, tuple[str, ...]], ...]
"""``((operator, key, values), ...)``, sorted: hashable, so statements can be grouped."""


@dataclass(frozen=True)
class Statement:
    """One Allow statement: ``sid`` names what it is for (CamelCase, unique after merging)."""

    sid: str
    actions: frozenset[str]
    resources: frozenset[str]
    condition: Condition = ()

    @classmethod
    def of(
        cls,
        sid: str,
        actions: Iterable[str],
        resources: Iterable[str],
        condition: Mapping[str, Mapping[str, str | Sequence[str]]] | None = None,
    ) -> Statement:
        """Build from the policy's JSON shape of a condition (``{op: {key: value(s)}}``)."""
        rows = []
        for operator, keys in (condition or {}).items():
            for key, value in keys.items():
                values = (value,) if isinstance(value, str) else tuple(sorted(set(value)))
                rows.append((operator, key, values))
        return cls(sid, frozenset(actions), frozenset(resources), tuple(sorted(rows)))

    def condition_json(self) -> dict[str, dict[str, str | list[str]]]:
        """The ``Condition`` element: a single value as a string, several as a list."""
        out: dict[str, dict[str, str | list[str]]] = {}
        for operator, key, values in self.condition:
            out.setdefault(operator, {})[key] = values[0] if len(values) == 1 else list(values)
        return out


def partition(region: str) -> str:
    """The ARN partition of ``region`` (China and GovCloud have their own)."""
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    if region.startswith("us-isob-"):
        return "aws-iso-b"
    if region.startswith("us-iso-"):
        return "aws-iso"
    return "aws"


def arn_region(arn: str) -> str | None:
    """The region field of an ARN (None when ``arn`` is not one, or is global)."""
    parts = arn.split(":")
    return parts[3] or None if len(parts) > 5 and parts[0] == "arn" else None
