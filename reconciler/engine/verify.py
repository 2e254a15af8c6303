"""Verify after deploy, roll back on failure.

A deploy is only done when the target itself reads back the new certificate
and, for bindings with ``verify_endpoint``, when a real TLS handshake sees it.
If either fails, the target restores what it served before (from a snapshot
taken just before the deploy and handed to it, so that a target undoing its own
partial deploy uses the same one) and the step fails with both facts, so that the
audit log says what was tried, what was seen and what was put back; the
binding's record is left as it was, so the next apply tries again.
"""

from __future__ import annotations

from typing import Any

from reconciler.errors import CertformError, ProviderError
from reconciler.model.material import CertificateMaterial
from reconciler.model.observed import Facts
from reconciler.providers.base import Target


def deploy_verified(
    target: Target, material: CertificateMaterial, previous: Facts | None
) -> tuple[Facts, str]:
    """Deploy, verify, and on a failed verification restore and raise.

    Returns the facts and a note for the output ("verified by handshake...")."""
    snapshot = target.snapshot(material, previous)
    facts = target.deploy(material, previous, snapshot)
    try:
        note = verify(target, material, facts)
    except ProviderError as exc:
        raise ProviderError(f"verification failed: {exc}; {_restore(target, snapshot)}") from None
    return facts, note


def verify(target: Target, material: CertificateMaterial, facts: Facts) -> str:
    target.verify_deployed(material, facts)
    endpoint = target.verify_endpoint()
    if endpoint is None or material.acm_arn:
        return ""
    from reconciler.providers.tls_probe import wait_for_serial

    wait_for_serial(
        endpoint.host,
        endpoint.port,
        endpoint.sni,
        material.serial,
        timeout=endpoint.timeout_seconds,
    )
    return f", verified at {endpoint.describe()}"


def _restore(target: Target, snapshot: Any) -> str:
    if snapshot is None:
        return "the previous certificate could not be restored (no snapshot)"
    try:
        return target.restore(snapshot)
    except CertformError as exc:
        return f"restoring the previous certificate failed too: {exc}"
