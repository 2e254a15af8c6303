"""The ``policy:`` guard rails as pure rules: one name, key or validity in, the
messages of the rules it breaks out.

Two callers apply the same rules, so they can never disagree: validate checks
the configuration (``config/semantic.py``), and apply checks again what a plan
asks just before signing anything (``policy/recheck.py``), so a saved plan made
before the policy tightened cannot sign what the policy now forbids.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from reconciler.durations import parse_duration
from reconciler.pki.names import is_ip_address


class Policy(Protocol):
    """The fields of ``config.models.PolicyConfig`` these rules read."""

    @property
    def allowed_domains(self) -> Sequence[str] | None: ...
    @property
    def min_rsa_bits(self) -> int | None: ...
    @property
    def allowed_keys(self) -> Sequence[str] | None: ...
    @property
    def max_validity(self) -> str | None: ...


def domain_violation(name: str, policy: Policy) -> str | None:
    """Why ``name`` may not be in a certificate (IP addresses are not domains)."""
    allowed = policy.allowed_domains
    if allowed is None or is_ip_address(name) or domain_allowed(name, allowed):
        return None
    return f"{name!r} is outside policy.allowed_domains ({', '.join(allowed)})"


def domain_allowed(name: str, allowed: Sequence[str]) -> bool:
    """``name`` (or the names a wildcard covers) is one of ``allowed`` or below one."""
    bare = name[2:] if name.startswith("*.") else name
    return any(
        bare == d.lower().strip(".") or bare.endswith("." + d.lower().strip(".")) for d in allowed
    )


def key_violations(key: str, policy: Policy) -> list[str]:
    """Why a key of algorithm ``key`` may not be generated or signed."""
    problems = []
    if policy.allowed_keys is not None and key not in policy.allowed_keys:
        problems.append(f"{key} is not in policy.allowed_keys ({', '.join(policy.allowed_keys)})")
    if policy.min_rsa_bits and key.startswith("rsa-") and int(key[4:]) < policy.min_rsa_bits:
        problems.append(f"{key} is below policy.min_rsa_bits {policy.min_rsa_bits}")
    return problems


def validity_violation(validity: str, policy: Policy) -> str | None:
    """Why a certificate may not be valid for ``validity``."""
    if policy.max_validity and parse_duration(validity) > parse_duration(policy.max_validity):
        return f"validity {validity} exceeds policy.max_validity {policy.max_validity}"
    return None
