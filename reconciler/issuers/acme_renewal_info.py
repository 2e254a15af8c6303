"""ACME Renewal Information (RFC 9773) gathered at plan time.

For every recorded ACME certificate whose CA's directory offers
``renewalInfo``, ask the CA when it suggests renewing; the diff then uses that
window instead of ``renew_before`` and says so in the plan.  Read-only.  A CA
that cannot be reached is a plan warning and the certificate falls back to
``renew_before``: ARI refines the schedule, it never blocks a plan.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography import x509

from reconciler import http
from reconciler.errors import ProviderError
from reconciler.fsutil import config_path
from reconciler.issuers.registry import certificate_spec
from reconciler.model.records import RecordedState

if TYPE_CHECKING:
    from reconciler.model.desired import DesiredCertificate

CertificatePem = Callable[[str], str]
TIMEOUT = 10.0


def acme_renewal_windows(
    certificates: Sequence[DesiredCertificate],
    recorded: RecordedState,
    certificate_pem: CertificatePem,
    root: Path,
) -> tuple[dict[str, Any], list[str]]:
    """``{certificate address: RenewalWindow}`` and warnings, for ACME certificates."""
    from reconciler.acme.ari import fetch_renewal_info
    from reconciler.issuers.acme import AcmeLeafSpec

    windows: dict[str, Any] = {}
    warnings: list[str] = []
    directories: dict[str, str | None] = {}
    for certificate in certificates:
        spec = certificate.spec
        record = recorded.certificates.get(certificate.name)
        if not isinstance(spec, AcmeLeafSpec) or record is None or record.revoked_at:
            continue
        issuer = certificate_spec(record.spec).issuing_authority
        settings = spec.acme.get(issuer)
        if settings is None:
            continue  # issuer no longer listed: the diff replaces it anyway
        bundle = _bundle(settings, root)
        try:
            if settings["directory"] not in directories:
                directories[settings["directory"]] = _renewal_info_url(
                    settings["directory"], bundle
                )
            url = directories[settings["directory"]]
            if url is None:
                continue
            cert = x509.load_pem_x509_certificate(certificate_pem(certificate.name).encode())
            window = fetch_renewal_info(url, cert, ca_bundle=bundle, timeout=TIMEOUT)
        except (ProviderError, ValueError) as exc:
            warnings.append(f"{certificate.address}: no renewal information from {issuer}: {exc}")
            continue
        if window is not None:
            windows[certificate.address] = window
    return windows, warnings


def _bundle(settings: dict[str, Any], root: Path) -> str | None:
    bundle = settings.get("ca_bundle")
    if not bundle:
        return None
    return str(config_path(root, bundle))


def _renewal_info_url(directory: str, bundle: str | None) -> str | None:
    """The directory's ``renewalInfo`` URL, None when it has none (read once, no retries:
    see ``fetch_renewal_info``)."""
    try:
        reply = http.get(
            directory, timeout=TIMEOUT, limit=1 << 20, ca_bundle=bundle,
            headers={"User-Agent": "certform"},
        )  # fmt: skip
        if reply.status >= 300:
            raise http.HttpError(f"HTTP {reply.status} {reply.reason}")
        document = json.loads(reply.body)
    except (http.HttpError, ValueError) as exc:
        raise ProviderError(f"cannot read the directory {directory}: {exc}") from None
    url = document.get("renewalInfo") if isinstance(document, dict) else None
    return str(url) if url else None
