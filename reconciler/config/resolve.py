"""From a validated config to the desired state the diff consumes.

Effective values are settled here once (defaults applied, authorities sorted
parents-first, binding addresses computed), so the diff never needs to know
about defaults or config files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reconciler.config.models import (
    AcmeAuthority,
    AwsAcmAuthority,
    CertformConfig,
    Certificate,
    ImportedAuthority,
    PrivateSubordinateAuthority,
)
from reconciler.desired import (
    DesiredAuthority,
    DesiredBinding,
    DesiredCertificate,
    DesiredState,
    binding_address,
)
from reconciler.providers.catalog import build_target


def resolve(config: CertformConfig, root: Path) -> DesiredState:
    return DesiredState(
        authorities=tuple(_authorities(config)),
        certificates=tuple(_certificates(config, root)),
        bindings=tuple(_bindings(config, root)),
    )


def _authority_order(config: CertformConfig) -> list[str]:
    order: list[str] = []
    placed: set[str] = set()

    def place(name: str) -> None:
        if name in placed:
            return
        placed.add(name)
        authority = config.authorities[name]
        if isinstance(authority, PrivateSubordinateAuthority):
            place(authority.parent)
        order.append(name)

    for name in config.authorities:
        place(name)
    return order


def _authorities(config: CertformConfig) -> list[DesiredAuthority]:
    result = []
    for name in _authority_order(config):
        authority = config.authorities[name]
        if isinstance(authority, AwsAcmAuthority):
            result.append(_acm_authority(name, authority, config))
            continue
        if isinstance(authority, AcmeAuthority):
            result.append(_acme_authority(name, authority, config))
            continue
        if isinstance(authority, ImportedAuthority):
            spec = {"type": authority.type}
            result.append(DesiredAuthority(name, spec, None, authority.lifecycle.prevent_destroy))
            continue
        spec: dict[str, Any] = {
            "type": authority.type,
            "subject": authority.subject.model_dump(exclude_none=True),
            "key": authority.key,
            "validity": authority.validity,
            "path_length": authority.path_length,
            "name_constraints": (
                authority.name_constraints.model_dump() if authority.name_constraints else None
            ),
        }
        if authority.crl is not None:
            spec["crl"] = authority.crl.model_dump(mode="json")
        if isinstance(authority, PrivateSubordinateAuthority):
            spec["parent"] = authority.parent
            parent_crl = getattr(config.authorities[authority.parent], "crl", None)
            if parent_crl is not None:
                spec["parent_crl_url"] = parent_crl.url
        result.append(
            DesiredAuthority(
                name, spec, authority.renew_before, authority.lifecycle.prevent_destroy
            )
        )
    return result


def _acm_authority(
    name: str, authority: AwsAcmAuthority, config: CertformConfig
) -> DesiredAuthority:
    provider = config.providers[authority.provider]
    spec = {
        "type": authority.type,
        "provider": provider.model_dump(mode="json", exclude_none=True),
        "region": authority.region or provider.region,  # type: ignore[attr-defined]
        "validation": authority.validation.model_dump(mode="json"),
        "certificate_transparency": authority.certificate_transparency,
        "timeout": authority.timeout,
    }
    return DesiredAuthority(name, spec, None, authority.lifecycle.prevent_destroy)


def _acme_authority(
    name: str, authority: AcmeAuthority, config: CertformConfig
) -> DesiredAuthority:
    spec = authority.model_dump(mode="json", exclude={"lifecycle"}, exclude_none=True)
    for solver in spec["solvers"]:
        route53 = (solver.get("dns01") or {}).get("route53")
        if route53 is not None:  # apply needs the connection settings, not just the name
            provider = config.providers[route53["provider"]]
            route53["provider_settings"] = provider.model_dump(mode="json", exclude_none=True)
    return DesiredAuthority(name, spec, None, authority.lifecycle.prevent_destroy)


def _imported_certificate(
    name: str, certificate: Certificate, config: CertformConfig, root: Path
) -> DesiredCertificate:
    """The spec of an imported certificate comes from its file (checked by validate);
    only paths go into plans, never the key."""
    from reconciler.config.imported import load_cached

    material = load_cached(root, certificate)
    spec = {
        "names": material.names,
        "issuer": certificate.primary_issuer,
        "key": material.key_algorithm,
        "usages": list(certificate.usages),
        "issuer_type": "imported",
        "fingerprint": material.fingerprint,
        "import": {
            "certificate": certificate.certificate,
            "chain": certificate.chain,
            "private_key": certificate.private_key_file,
            "private_key_env": certificate.private_key_env,
        },
    }
    return DesiredCertificate(
        name, spec, None, certificate.lifecycle.prevent_destroy, dict(certificate.tags)
    )


def _certificates(config: CertformConfig, root: Path) -> list[DesiredCertificate]:
    defaults = config.defaults
    result = []
    for name, certificate in config.certificates.items():
        issuer = config.authorities[certificate.primary_issuer]
        if isinstance(issuer, ImportedAuthority):
            result.append(_imported_certificate(name, certificate, config, root))
            continue
        spec = {
            "names": list(certificate.names),
            "issuer": certificate.primary_issuer,
            "key": certificate.key or defaults.key,
            "validity": certificate.validity or defaults.validity,
            "usages": list(certificate.usages),
        }
        if certificate.key_rotation != "always":
            spec["key_rotation"] = certificate.key_rotation
        if certificate.revoke_replaced:
            spec["revoke_replaced"] = True
        crl = getattr(issuer, "crl", None)
        if crl is not None:
            spec["crl_url"] = crl.url
        if isinstance(issuer, AwsAcmAuthority):
            # ACM-issued: apply needs the issuer's settings, the diff knows the key stays in ACM.
            acm_spec = _acm_authority(certificate.primary_issuer, issuer, config).spec
            spec["issuer_type"] = "aws-acm"
            spec["acm"] = {k: v for k, v in acm_spec.items() if k != "type"}
        elif isinstance(issuer, AcmeAuthority):
            # Apply tries the issuers in order and needs each one's settings (no secrets:
            # those are environment variable names).
            spec["issuer_type"] = "acme"
            spec["issuers"] = certificate.issuers
            spec["acme"] = {
                name: _acme_authority(name, config.authorities[name], config).spec  # type: ignore[arg-type]
                for name in certificate.issuers
            }
        result.append(
            DesiredCertificate(
                name,
                spec,
                certificate.renew_before or defaults.renew_before,
                certificate.lifecycle.prevent_destroy,
                dict(certificate.tags),
            )
        )
    return result


def _bindings(config: CertformConfig, root: Path) -> list[DesiredBinding]:
    result = []
    for binding in config.bindings:
        target = build_target(binding.target, root, config.providers)
        identity = target.identity()
        if target.per_certificate:
            identity = f"{identity}/{binding.certificate}"
        result.append(
            DesiredBinding(
                binding_address(target.type_name, identity),
                binding.certificate,
                target.settings(),
            )
        )
    return result
