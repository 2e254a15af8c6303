"""Issuers' own renewal schedules, gathered at plan time (read-only).

Each issuer that publishes one (ACME Renewal Information, RFC 9773) is asked
for the certificates it signs; the diff then uses those windows instead of
``renew_before``.  An issuer that cannot be reached is a plan warning, never a
failed plan.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from reconciler.issuers.base import Issuer
from reconciler.issuers.registry import certificate_issuer
from reconciler.model.desired import DesiredCertificate, DesiredState
from reconciler.model.records import RecordedState

CertificatePem = Callable[[str], str]


def renewal_windows(
    desired: DesiredState, recorded: RecordedState, certificate_pem: CertificatePem, root: Path
) -> tuple[dict[str, Any], list[str]]:
    """``{certificate address: window}`` and warnings, from every issuer that has them."""
    windows: dict[str, Any] = {}
    warnings: list[str] = []
    for issuer, certificates in _by_issuer(desired).values():
        found, problems = issuer.renewal_windows(certificates, recorded, certificate_pem, root)
        windows.update(found)
        warnings.extend(problems)
    return windows, warnings


def has_renewal_info(desired: DesiredState) -> bool:
    """True when an issuer of ``desired`` may publish renewal windows (worth asking)."""
    return any(issuer.publishes_renewal_info for issuer, _ in _by_issuer(desired).values())


def _by_issuer(desired: DesiredState) -> dict[int, tuple[Issuer, list[DesiredCertificate]]]:
    groups: dict[int, tuple[Issuer, list[DesiredCertificate]]] = {}
    for certificate in desired.certificates:
        issuer = certificate_issuer(certificate.spec)
        groups.setdefault(id(issuer), (issuer, []))[1].append(certificate)
    return groups
