"""Every issuer certform knows, by authority type; the one place that reads an
issuer's type out of a spec.

A certificate spec names its kind in ``issuer_type`` (absent: a private CA
signed it, as in states written before the key existed); an authority spec in
``type``.  Adding an issuer is one module and one line in ``ISSUERS``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reconciler.errors import PlanError
from reconciler.issuers.acme import AcmeIssuer
from reconciler.issuers.aws_acm import AwsAcmIssuer
from reconciler.issuers.aws_pca import AwsPcaIssuer
from reconciler.issuers.base import Issuer
from reconciler.issuers.imported import ImportedIssuer
from reconciler.issuers.private_ca import PrivateCaIssuer
from reconciler.plan.specs import AuthoritySpec, CertificateSpec

_ISSUER_CLASSES: tuple[type[Issuer], ...] = (
    PrivateCaIssuer,
    AcmeIssuer,
    AwsAcmIssuer,
    ImportedIssuer,
    AwsPcaIssuer,
)
ISSUERS: dict[str, Issuer] = {
    type_name: issuer for issuer in (cls() for cls in _ISSUER_CLASSES) for type_name in issuer.types
}
"""Issuer by authority ``type``."""

_BY_CERTIFICATE_TYPE: dict[str | None, Issuer] = {
    issuer.certificate_spec_class.issuer_type: issuer for issuer in ISSUERS.values()
}
"""Issuer by the ``issuer_type`` of its certificate specs (None: private CA)."""

TYPE_KEY = "type"
CERTIFICATE_TYPE_KEY = "issuer_type"


class UnknownIssuer(PlanError):
    """A spec names an issuer type this version does not know."""


def issuer_named(type_name: str) -> Issuer:
    """The issuer of authorities of ``type_name``."""
    issuer = ISSUERS.get(type_name)
    if issuer is None:
        raise UnknownIssuer(
            f"unknown issuer type {type_name!r}; expected one of: " + ", ".join(sorted(ISSUERS))
        )
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
    issuer = _BY_CERTIFICATE_TYPE.get(type_name)
    if issuer is None:
        known = ", ".join(sorted(str(t) for t in _BY_CERTIFICATE_TYPE if t))
        raise UnknownIssuer(
            f"unknown issuer_type {type_name!r} in a certificate spec; expected none "
            f"(private CA) or one of: {known}"
        )
    return issuer


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
