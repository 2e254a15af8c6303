"""What ACM holds now, read at plan time for the diff (which does no I/O).

Only two things are asked, and only where they matter, so that a plan of
certificates ACM keeps to itself makes no ACM call at all:

* the serial at the ARN of each exported certificate: ACM renews in place, and a
  new serial means the copies deployed outside AWS are out of date;
* the pending request of each email-validated certificate not issued yet: the
  plan shows it as waiting for the domain owner's approval.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from reconciler.errors import CertformError
from reconciler.issuers.aws_acm import AcmLeafSpec, AcmStatus, releases_key
from reconciler.model.desired import DesiredCertificate
from reconciler.model.records import RecordedState


def acm_statuses(
    certificates: Sequence[DesiredCertificate], recorded: RecordedState
) -> tuple[dict[str, Any], list[str]]:
    """``{certificate address: AcmStatus}`` and warnings (ACM could not be read)."""
    found: dict[str, Any] = {}
    warnings: list[str] = []
    for certificate in certificates:
        spec = certificate.spec
        if not isinstance(spec, AcmLeafSpec):
            continue
        record = recorded.certificates.get(certificate.name)
        try:
            if record is not None and record.external_id and record.has_key:
                if releases_key(spec.acm):
                    serial = _served_serial(spec.acm, record.external_id)
                    if serial is not None:
                        found[certificate.address] = AcmStatus(serial=serial)
            elif record is None and spec.acm.get("validation", {}).get("method") == "email":
                pending = pending_approval(spec, certificate.address)
                if pending is not None:
                    found[certificate.address] = AcmStatus(pending=pending)
        except CertformError as exc:
            warnings.append(f"{certificate.address}: cannot read ACM: {exc}")
    return found, warnings


def _client(settings: Any) -> Any:
    from reconciler.issuers.aws_acm_request import _client

    return _client(settings)


def _served_serial(settings: Any, arn: str) -> str | None:
    from reconciler.providers.aws.acm import served_serial
    from reconciler.providers.aws.session import aws_errors

    with aws_errors(f"reading ACM certificate {arn}"):
        return served_serial(_client(settings), arn)


def pending_approval(spec: AcmLeafSpec, address: str) -> str | None:
    """Why the request for ``address`` is not issued yet, when it waits for approval."""
    from reconciler.issuers.aws_acm_request import approval_message, pending_request
    from reconciler.providers.aws.session import aws_errors

    acm_client = _client(spec.acm)
    arn = pending_request(acm_client, address, list(spec.names), None)
    if arn is None:
        return None
    with aws_errors(f"ACM describe {arn}"):
        detail = acm_client.describe_certificate(CertificateArn=arn)["Certificate"]
    return approval_message(arn, detail)
