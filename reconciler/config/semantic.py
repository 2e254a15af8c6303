"""Rules that relate config entries to each other, checked after the shape is valid.

Every rule returns (path, message) pairs; the caller turns paths into file and
line through the source map.  All rules run, so a user sees every problem at
once rather than one per attempt.

Rules about one kind of target (the keys it can serve, its provider entry, the
files it points at, a per-listener quota, the ACM region it reads) are not
here: each target states them (``Target.validate``, ``validate_together``,
``acm_region``, see ``providers/base.py``) and ``_target_problems`` asks every
binding's target through the registry.  Likewise an issuer states which keys it
issues and which targets can serve its certificates (``Issuer.key_error``,
``Issuer.binding_error``, see ``issuers/base.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from reconciler.acme.config import first_solver
from reconciler.config.models import (
    PRIVATE_AUTHORITY_TYPES,
    AcmeAuthority,
    AwsAcmAuthority,
    CertformConfig,
    ImportedAuthority,
    PrivateSubordinateAuthority,
)
from reconciler.durations import parse_duration, parse_renew_before
from reconciler.issuers.registry import issuer_named
from reconciler.pki.names import constraint_error, name_checker
from reconciler.policy.rules import domain_violation, key_violations, validity_violation
from reconciler.providers.base import BindingContext, Target
from reconciler.providers.catalog import build_target
from reconciler.providers.endpoint import ca_bundle_problem
from reconciler.suggest import expected_one_of

Path_ = tuple[str | int, ...]
Finding = tuple[Path_, str]


class BoundTarget(NamedTuple):
    """A binding's target and the identity of what it writes (with the certificate's
    name for a per-certificate target): what ``_duplicate_targets`` compares and what
    ``resolve`` addresses the binding by."""

    target: Target
    identity: str


def bound_targets(config: CertformConfig, root: Path) -> list[BoundTarget]:
    """Every binding's target, in binding order; built once for the checks and for
    ``resolve`` (10,000 bindings: building and asking each twice was measurable)."""
    bound = []
    for binding in config.bindings:
        target = build_target(binding.target, root, config.providers)
        identity = target.identity()
        if target.per_certificate:
            identity = f"{identity}/{binding.certificate}"
        bound.append(BoundTarget(target, identity))
    return bound


def check(
    config: CertformConfig, root: Path, bound: Sequence[BoundTarget] | None = None
) -> list[Finding]:
    """Every relation problem of ``config`` (``bound``: its ``bound_targets``, if built)."""
    findings: list[Finding] = []
    if bound is None:
        bound = bound_targets(config, root)
    targets = [b.target for b in bound]
    for rule in (
        _authority_parents,
        _parent_cycles,
        _path_lengths,
        _constraint_syntax,
        _issuers,
        _name_constraints,
        _duplicate_names,
        _renewal_windows,
        _validity_within_issuer,
        _binding_references,
        _acme_issued,
        _policy,
    ):
        findings.extend(rule(config))
    findings.extend(_issuer_bindings(config, targets))
    findings.extend(_acm_issued(config))
    findings.extend(_imported(config, root))
    findings.extend(_duplicate_targets(config, bound))
    findings.extend(_target_problems(config, targets))
    findings.extend(_endpoint_files(config, root))
    findings.extend(_ssh_provider_files(config, root))
    findings.extend(_key_store_provider(config))
    findings.extend(_signal_providers(config))
    findings.extend(_issuer_findings(config))
    return findings


def _signal_providers(config: CertformConfig) -> Iterator[Finding]:
    """The EventBridge sink, the CloudWatch block and S3 CRL publishing each name
    an ``aws`` provider entry."""
    named: list[tuple[Path_, str]] = []
    if config.notifications is not None:
        for index, sink in enumerate(config.notifications.sinks):
            if sink.type == "eventbridge":
                named.append((("notifications", "sinks", index, "provider"), sink.provider))
    if config.cloudwatch is not None:
        named.append((("cloudwatch", "provider"), config.cloudwatch.provider))
    for name, authority in config.authorities.items():
        crl = getattr(authority, "crl", None)
        if crl is not None and crl.publish.s3 is not None:
            path = ("authorities", name, "crl", "publish", "s3", "provider")
            named.append((path, crl.publish.s3.provider))
    for path, provider_name in named:
        provider = config.providers.get(provider_name)
        if provider is None or provider.type != "aws":
            yield (
                path,
                f"unknown aws provider {provider_name!r}; "
                + expected_one_of(provider_name, config.providers),
            )


def _issuer_findings(config: CertformConfig) -> Iterator[Finding]:
    """Each issuer's own rules about its authorities (``Issuer.config_findings``)."""
    for name, authority in config.authorities.items():
        yield from issuer_named(authority.type).config_findings(name, authority, config)


def _key_store_provider(config: CertformConfig) -> Iterator[Finding]:
    key_store = config.state.key_store
    if key_store.type != "aws-kms":
        return
    provider = config.providers.get(key_store.provider)
    if provider is None or provider.type != "aws":
        yield (
            ("state", "key_store", "provider"),
            f"unknown aws provider {key_store.provider!r}; "
            + expected_one_of(key_store.provider, config.providers),
        )


def _authority_parents(config: CertformConfig) -> Iterator[Finding]:
    for name, authority in config.authorities.items():
        if isinstance(authority, PrivateSubordinateAuthority):
            if authority.parent not in config.authorities:
                yield (
                    ("authorities", name, "parent"),
                    f"unknown authority {authority.parent!r}; "
                    + expected_one_of(authority.parent, config.authorities),
                )
            elif authority.parent == name:
                yield (("authorities", name, "parent"), "an authority cannot be its own parent")
            elif config.authorities[authority.parent].type not in PRIVATE_AUTHORITY_TYPES:
                yield (
                    ("authorities", name, "parent"),
                    f"authority {authority.parent!r} is {config.authorities[authority.parent].type}"
                    " and cannot sign a subordinate CA; the parent must be a private CA",
                )


def _parent_cycles(config: CertformConfig) -> Iterator[Finding]:
    for name in config.authorities:
        chain = [name]
        current = _parent(config, name)
        while current is not None and current in config.authorities:
            if current == name:
                cycle = " → ".join([*chain, name])
                yield (("authorities", name, "parent"), f"CA parent cycle: {cycle}")
                break
            if current in chain:
                break
            chain.append(current)
            current = _parent(config, current)


def _parent(config: CertformConfig, name: str) -> str | None:
    authority = config.authorities.get(name)
    if isinstance(authority, PrivateSubordinateAuthority) and authority.parent != name:
        return authority.parent
    return None


def _path_lengths(config: CertformConfig) -> Iterator[Finding]:
    for name, authority in config.authorities.items():
        parent_name = _parent(config, name)
        parent = config.authorities.get(parent_name) if parent_name else None
        if parent is None or getattr(parent, "path_length", None) is None:
            continue
        if parent.path_length == 0:
            yield (
                ("authorities", name, "parent"),
                f"authority {parent_name!r} has path_length 0 and cannot sign a subordinate CA",
            )
        elif authority.path_length is None or authority.path_length >= parent.path_length:
            yield (
                ("authorities", name, "path_length"),
                f"must be less than the parent's path_length {parent.path_length}",
            )


def _constraint_syntax(config: CertformConfig) -> Iterator[Finding]:
    for name, authority in config.authorities.items():
        constraints = getattr(authority, "name_constraints", None)
        if constraints is None:
            continue
        for field in ("permitted", "excluded"):
            for index, entry in enumerate(getattr(constraints, field)):
                error = constraint_error(entry)
                if error:
                    yield (
                        ("authorities", name, "name_constraints", field, index),
                        f"invalid name constraint {entry!r}: {error}; expected a DNS suffix "
                        "(example.test or .example.test) or a CIDR (10.0.0.0/8)",
                    )


def _issuers(config: CertformConfig) -> Iterator[Finding]:
    authorities = config.authorities
    for name, certificate in config.certificates.items():
        if type(certificate.issuer) is str and certificate.issuer in authorities:
            continue  # the everyday case: one issuer, declared
        listed = isinstance(certificate.issuer, list)
        issuers = certificate.issuers
        for index, issuer in enumerate(issuers):
            field: Path_ = (
                ("certificates", name, "issuer", index)
                if listed
                else ("certificates", name, "issuer")
            )
            authority = config.authorities.get(issuer)
            if authority is None:
                yield (
                    field,
                    f"unknown authority {issuer!r}; " + expected_one_of(issuer, config.authorities),
                )
            elif len(issuers) > 1 and authority.type != "acme":
                yield (
                    field,
                    f"fallback issuer lists take ACME authorities only; {issuer!r} is "
                    f"{authority.type}",
                )


def _ancestors(config: CertformConfig, name: str) -> list[str]:
    chain: list[str] = []
    current: str | None = name
    while current is not None and current in config.authorities and current not in chain:
        chain.append(current)
        current = _parent(config, current)
    return chain


def _name_constraints(config: CertformConfig) -> Iterator[Finding]:
    # The constrained ancestors of each issuer, with their constraints parsed, found
    # once: certificates share issuers.
    constrained: dict[str, list[tuple[str, Any, Callable[[str], bool]]]] = {}
    for name, certificate in config.certificates.items():
        issuer = certificate.primary_issuer
        chain = constrained.get(issuer)
        if chain is None:
            chain = constrained[issuer] = [
                (
                    authority_name,
                    constraints,
                    name_checker(constraints.permitted, constraints.excluded),
                )
                for authority_name in _ancestors(config, issuer)
                if (
                    constraints := getattr(
                        config.authorities[authority_name], "name_constraints", None
                    )
                )
                is not None
            ]
        for authority_name, constraints, permitted in chain:
            for index, dns in enumerate(certificate.names):
                if not permitted(dns):
                    yield (
                        ("certificates", name, "names", index),
                        f"{dns!r} is not allowed by the name constraints of authority "
                        f"{authority_name!r} (permitted: {', '.join(constraints.permitted) or '-'}"
                        f"; excluded: {', '.join(constraints.excluded) or '-'})",
                    )


def _duplicate_names(config: CertformConfig) -> Iterator[Finding]:
    for name, certificate in config.certificates.items():
        seen: set[str] = set()
        for index, dns in enumerate(certificate.names):
            if dns in seen:
                yield (("certificates", name, "names", index), f"duplicate name {dns!r}")
            seen.add(dns)


def _window_finding(validity: str, renew_before: str | None) -> str | None:
    if renew_before is None:
        return None
    window = parse_renew_before(renew_before)
    if window.duration is not None and window.duration >= parse_duration(validity):
        return f"renew_before {renew_before} must be shorter than the validity {validity}"
    return None


def _renewal_windows(config: CertformConfig) -> Iterator[Finding]:
    defaults = config.defaults
    for name, certificate in config.certificates.items():
        validity = certificate.validity or defaults.validity
        renew_before = certificate.renew_before or defaults.renew_before
        message = _window_finding(validity, renew_before)
        if message:
            field = "renew_before" if certificate.renew_before else "validity"
            yield (("certificates", name, field), message)
    for name, authority in _private(config).items():
        message = _window_finding(authority.validity, authority.renew_before)
        if message:
            yield (("authorities", name, "renew_before"), message)
    message = _window_finding(defaults.validity, defaults.renew_before)
    if message:
        yield (("defaults", "renew_before"), message)


def _validity_within_issuer(config: CertformConfig) -> Iterator[Finding]:
    private, default_validity = _private(config), config.defaults.validity
    for name, certificate in config.certificates.items():
        issuer = private.get(certificate.primary_issuer)
        validity = certificate.validity or default_validity
        if issuer and parse_duration(validity) > parse_duration(issuer.validity):
            yield (
                ("certificates", name, "validity"),
                f"validity {validity} is longer than the issuer's validity {issuer.validity}",
            )
    for name in config.authorities:
        parent_name = _parent(config, name)
        parent = config.authorities.get(parent_name) if parent_name else None
        child = config.authorities[name]
        if parent and parse_duration(child.validity) > parse_duration(parent.validity):
            yield (
                ("authorities", name, "validity"),
                f"validity {child.validity} is longer than the parent's validity {parent.validity}",
            )


def _imported(config: CertformConfig, root: Path) -> Iterator[Finding]:
    """Imported certificates: files present and consistent (ACM's import checks)."""
    from reconciler.config.imported import ImportError_, load_cached

    for name, certificate in config.certificates.items():
        authority = config.authorities.get(certificate.primary_issuer)
        imported = isinstance(authority, ImportedAuthority)
        if imported and certificate.certificate is None:
            yield (
                ("certificates", name, "certificate"),
                f"certificates issued by {certificate.primary_issuer} (imported) need "
                "certificate: PATH and private_key (or private_key_env)",
            )
            continue
        if not imported:
            if certificate.certificate is not None:
                yield (
                    ("certificates", name, "certificate"),
                    "certificate files are only for an issuer of type imported",
                )
            continue
        try:
            load_cached(root, certificate)
        except ImportError_ as exc:
            yield (("certificates", name, exc.field), str(exc))


def _policy(config: CertformConfig) -> Iterator[Finding]:
    """The ``policy:`` guard rails, one finding per offending name, key or validity
    (the rules themselves are in ``policy/rules.py``, which apply checks again)."""
    policy = config.policy
    for name, certificate in config.certificates.items():
        for index, dns in enumerate(certificate.names):
            problem = domain_violation(dns, policy)
            if problem:
                yield (("certificates", name, "names", index), problem)
        key = certificate.key or config.defaults.key
        yield from _key_policy(("certificates", name, "key"), key, policy)
        validity = certificate.validity or config.defaults.validity
        problem = validity_violation(validity, policy)
        if problem:
            yield (("certificates", name, "validity"), problem)
    for name, authority in _private(config).items():
        yield from _key_policy(("authorities", name, "key"), authority.key, policy)


def _key_policy(field: Path_, key: str, policy: Any) -> Iterator[Finding]:
    for problem in key_violations(key, policy):
        yield (field, problem)


def _acme_issued(config: CertformConfig) -> Iterator[Finding]:
    """Every name needs a solver at every ACME issuer it may fall back to; public
    ACME CAs sign RSA and ECDSA P-256/P-384 keys only."""
    acme = any(isinstance(a, AcmeAuthority) for a in config.authorities.values())
    for name, certificate in config.certificates.items() if acme else ():
        for issuer in certificate.issuers:
            authority = config.authorities.get(issuer)
            if not isinstance(authority, AcmeAuthority):
                continue
            key = certificate.key or config.defaults.key
            problem = issuer_named(authority.type).key_error(key)
            if problem and issuer == certificate.issuers[0]:
                yield (("certificates", name, "key"), problem)
            for index, dns in enumerate(certificate.names):
                if first_solver(authority.solvers, dns) is None:
                    need = (
                        "a dns-01 solver (wildcards are validated through DNS only)"
                        if dns.startswith("*.")
                        else "a solver whose domains match it"
                    )
                    yield (
                        ("certificates", name, "names", index),
                        f"{dns!r} needs {need} in authorities.{issuer}.solvers",
                    )
    for name, authority in config.authorities.items():
        if not isinstance(authority, AcmeAuthority):
            continue
        for index, solver in enumerate(authority.solvers):
            route53 = solver.dns01.route53 if solver.dns01 else None
            if route53 is None:
                continue
            provider = config.providers.get(route53.provider)
            if provider is None or provider.type != "aws":
                yield (
                    ("authorities", name, "solvers", index, "dns01", "route53", "provider"),
                    f"unknown aws provider {route53.provider!r}; "
                    + expected_one_of(route53.provider, config.providers),
                )


def _private(config: CertformConfig) -> dict[str, Any]:
    return {name: a for name, a in config.authorities.items() if a.type in PRIVATE_AUTHORITY_TYPES}


def _issuer_bindings(config: CertformConfig, targets: list[Target]) -> Iterator[Finding]:
    """Targets a certificate's issuer cannot serve (ACM keeps the key: AWS targets in
    its region only); the rule lives with the issuer (``Issuer.binding_error``)."""
    for index, (binding, target) in enumerate(zip(config.bindings, targets, strict=True)):
        certificate = config.certificates.get(binding.certificate)
        authority = config.authorities.get(certificate.primary_issuer) if certificate else None
        if certificate is None or authority is None:
            continue
        problem = issuer_named(authority.type).binding_error(
            binding.certificate, certificate.primary_issuer, authority, config, target
        )
        if problem:
            yield (("bindings", index, "target"), problem)


def _acm_issued(config: CertformConfig) -> Iterator[Finding]:
    """ACM issues a few key types only, through an ``aws`` provider entry."""
    acm = any(isinstance(a, AwsAcmAuthority) for a in config.authorities.values())
    for name, certificate in config.certificates.items() if acm else ():
        authority = config.authorities.get(certificate.primary_issuer)
        if isinstance(authority, AwsAcmAuthority):
            problem = issuer_named(authority.type).key_error(certificate.key or config.defaults.key)
            if problem:
                yield (("certificates", name, "key"), problem)
    for name, authority in config.authorities.items():
        if isinstance(authority, AwsAcmAuthority):
            provider = config.providers.get(authority.provider)
            if provider is None or provider.type != "aws":
                yield (
                    ("authorities", name, "provider"),
                    f"unknown aws provider {authority.provider!r}; "
                    + expected_one_of(authority.provider, config.providers),
                )


def _binding_references(config: CertformConfig) -> Iterator[Finding]:
    for index, binding in enumerate(config.bindings):
        if binding.certificate not in config.certificates:
            yield (
                ("bindings", index, "certificate"),
                f"unknown certificate {binding.certificate!r}; "
                + expected_one_of(binding.certificate, config.certificates),
            )


def _target_problems(config: CertformConfig, targets: list[Target]) -> Iterator[Finding]:
    """What each target finds wrong with its binding (provider entry, key it cannot
    serve, files it points at), then what each target type finds across all its
    bindings (a per-listener quota): the rules live with the targets."""
    by_type: dict[type[Target], list[tuple[int, Target]]] = {}
    for index, (binding, target) in enumerate(zip(config.bindings, targets, strict=True)):
        certificate = config.certificates.get(binding.certificate)
        key = (certificate.key or config.defaults.key) if certificate is not None else None
        context = BindingContext(binding.certificate, key, config.providers)
        for field, message in target.validate(context):
            yield (("bindings", index, *field), message)
        by_type.setdefault(type(target), []).append((index, target))
    for cls, bound in by_type.items():
        for index, (field, message) in cls.validate_together(bound):
            yield (("bindings", index, *field), message)


def _ssh_provider_files(config: CertformConfig, root: Path) -> Iterator[Finding]:
    """An ``ssh`` provider's key file (not readable by others) and known_hosts (present)."""
    from reconciler.providers.ssh.config import SshProviderConfig, local_problems

    for name, provider in config.providers.items():
        if isinstance(provider, SshProviderConfig):
            for field, message in local_problems(provider, root, name):
                yield (("providers", name, field), message)


def _endpoint_files(config: CertformConfig, root: Path) -> Iterator[Finding]:
    for name, endpoint in config.endpoints.items():
        problem = ca_bundle_problem(endpoint.ca_bundle, root)
        if problem:
            yield (("endpoints", name, "ca_bundle"), problem)


def _duplicate_targets(config: CertformConfig, bound: Sequence[BoundTarget]) -> Iterator[Finding]:
    seen: dict[tuple[str, str], int] = {}
    for index, (target, identity) in enumerate(bound):
        key = (target.type_name, identity)
        if key in seen:
            yield (
                ("bindings", index, "target"),
                f"writes the same {key[0]} target ({key[1]}) as bindings[{seen[key]}]; "
                "each target can serve one certificate",
            )
        else:
            seen[key] = index
