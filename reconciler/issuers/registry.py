"""Every issuer certform knows, by authority type; the one place that reads an
issuer's type out of a spec.

A certificate spec names its kind in ``issuer_type`` (absent: a private CA
signed it, as in states written before the key existed); an authority spec in
``type``.  Adding an issuer is one module and its lines in ``_ISSUER_MODULES`` and
``_CERTIFICATE_TYPES``.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from importlib import import_module
from typing import Any

from reconciler.errors import PlanError
from reconciler.issuers.base import Issuer
from reconciler.plan.specs import AuthoritySpec, CertificateSpec

_ISSUER_MODULES: dict[str, tuple[str, str]] = {
    "private-root": ("reconciler.issuers.private_ca", "PrivateCaIssuer"),
    "private-subordinate": ("reconciler.issuers.private_ca", "PrivateCaIssuer"),
    "acme": ("reconciler.issuers.acme", "AcmeIssuer"),
    "aws-acm": ("reconciler.issuers.aws_acm", "AwsAcmIssuer"),
    "imported": ("reconciler.issuers.imported", "ImportedIssuer"),
    "aws-pca": ("reconciler.issuers.aws_pca", "AwsPcaIssuer"),
}
"""Issuer (module, class) by authority ``type``: a module is imported when a config,
plan or state first names its type, so a private-CA-only run loads no ACME or AWS
issuer (``tests/test_startup_imports.py`` checks this table against the classes)."""

_CERTIFICATE_TYPES: dict[str | None, str] = {
    None: "private-root",
    "acme": "acme",
    "aws-acm": "aws-acm",
    "imported": "imported",
    "aws-pca": "aws-pca",
}
"""Authority type of the issuer of certificate specs with this ``issuer_type``
(None: private CA)."""

_INSTANCES: dict[tuple[str, str], Issuer] = {}
"""One issuer instance per class, made on first use (both private CA types share one)."""
_INSTANCES_LOCK = threading.Lock()  # apply's deploy threads may ask first

TYPE_KEY = "type"
CERTIFICATE_TYPE_KEY = "issuer_type"


class UnknownIssuer(PlanError):
    """A spec names an issuer type this version does not know."""


def issuer_types() -> tuple[str, ...]:
    """Every authority type certform knows (naming one imports its issuer)."""
    return tuple(_ISSUER_MODULES)


def issuer_named(type_name: str) -> Issuer:
    """The issuer of authorities of ``type_name``."""
    where = _ISSUER_MODULES.get(type_name)
    if where is None:
        raise UnknownIssuer(
            f"unknown issuer type {type_name!r}; expected one of: "
            + ", ".join(sorted(_ISSUER_MODULES))
        )
    issuer = _INSTANCES.get(where)
    if issuer is None:
        with _INSTANCES_LOCK:
            issuer = _INSTANCES.get(where)
            if issuer is None:
                module, class_name = where
                issuer = _INSTANCES[where] = getattr(import_module(module), class_name)()
    return issuer


def authority_issuer(spec: Mapping[str, Any]) -> Issuer:
    """The issuer of an authority, from its spec (typed or as recorded)."""
    if isinstance(spec, AuthoritySpec):
        return issuer_named(spec.type)
    return issuer_named(str(spec.get(TYPE_KEY)))


def certificate_issuer(spec: Mapping[str, Any]) -> Issuer:
    """The issuer that signs a certificate, from its spec (typed or as recorded)."""
    if isinstance(spec, CertificateSpec):
        type_name = type(spec).issuer_type
    else:
        type_name = spec.get(CERTIFICATE_TYPE_KEY)
    authority_type = _CERTIFICATE_TYPES.get(type_name)
    if authority_type is None:
        known = ", ".join(sorted(str(t) for t in _CERTIFICATE_TYPES if t))
        raise UnknownIssuer(
            f"unknown issuer_type {type_name!r} in a certificate spec; expected none "
            f"(private CA) or one of: {known}"
        )
    return issuer_named(authority_type)


def authority_spec(data: Mapping[str, Any]) -> AuthoritySpec:
    """Parse an authority's JSON form (from a plan or state) into its typed spec."""
    if isinstance(data, AuthoritySpec):
        return data
    return authority_issuer(data).authority_spec_class.parse(data)


def certificate_spec(data: Mapping[str, Any]) -> CertificateSpec:
    """Parse a certificate's JSON form (from a plan or state) into its typed spec."""
    if isinstance(data, CertificateSpec):
        return data
    return certificate_issuer(data).certificate_spec_class.parse(data)
