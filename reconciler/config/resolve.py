"""From a validated config to the desired state the diff consumes.

Effective values are settled here once (defaults applied, authorities sorted
parents-first, binding addresses computed), so the diff never needs to know
about defaults or config files.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from reconciler.config.models import CertformConfig
from reconciler.config.semantic import BoundTarget, bound_targets
from reconciler.issuers.base import Issuer
from reconciler.issuers.registry import issuer_named
from reconciler.model.desired import (
    DesiredAuthority,
    DesiredBinding,
    DesiredCertificate,
    DesiredState,
    binding_address,
)


def resolve(
    config: CertformConfig, root: Path, bound: Sequence[BoundTarget] | None = None
) -> DesiredState:
    """The desired state of a checked ``config`` (``bound``: its targets, if the
    checks built them already)."""
    if bound is None:
        bound = bound_targets(config, root)
    return DesiredState(
        authorities=tuple(_authorities(config)),
        certificates=tuple(_certificates(config, root)),
        bindings=tuple(_bindings(config, bound)),
    )


def _authority_order(config: CertformConfig) -> list[str]:
    order: list[str] = []
    placed: set[str] = set()

    def place(name: str) -> None:
        if name in placed:
            return
        placed.add(name)
        parent = getattr(config.authorities[name], "parent", None)
        if parent is not None and parent in config.authorities:
            place(parent)
        order.append(name)

    for name in config.authorities:
        place(name)
    return order


def _authorities(config: CertformConfig) -> list[DesiredAuthority]:
    result = []
    for name in _authority_order(config):
        authority = config.authorities[name]
        spec = issuer_named(authority.type).authority_spec(name, authority, config)
        result.append(
            DesiredAuthority(
                name,
                spec,
                getattr(authority, "renew_before", None),
                authority.lifecycle.prevent_destroy,
            )
        )
    return result


def _certificates(config: CertformConfig, root: Path) -> list[DesiredCertificate]:
    result = []
    # certificates share a few issuers: look each one up once
    issuers: dict[str, tuple[Any, Issuer]] = {}
    for name, certificate in config.certificates.items():
        primary = certificate.primary_issuer
        found = issuers.get(primary)
        if found is None:
            authority = config.authorities[primary]
            found = issuers[primary] = (authority, issuer_named(authority.type))
        authority, issuer = found
        result.append(
            DesiredCertificate(
                name,
                issuer.certificate_spec(name, certificate, authority, config, root),
                issuer.renew_before(certificate, config),
                certificate.lifecycle.prevent_destroy,
                dict(certificate.tags),
            )
        )
    return result


def _bindings(config: CertformConfig, bound: Sequence[BoundTarget]) -> list[DesiredBinding]:
    result = []
    for binding, (target, identity) in zip(config.bindings, bound, strict=True):
        result.append(
            DesiredBinding(
                binding_address(target.type_name, identity),
                binding.certificate,
                target.settings(),
                target.acm_region(),
                type(target).watch_only,
            )
        )
    return result
