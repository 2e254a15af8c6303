"""The ``aws-acm`` authority: ACM issues the certificate (RequestCertificate);
certform writes the DNS validation CNAMEs into Route 53 (or prints them), waits
for ISSUED with a deadline and progress output, and records what ACM issued.

A private certificate (``certificate_authority_arn``) needs no validation.  With
email validation ACM mails the domain's contacts: apply does not wait for a
person, it reports the request as waiting for approval (``AwaitingApproval``)
and a later apply picks the same request up (found by its ``certform:address``
tag) instead of requesting, and emailing, again.

A request that was made but not finished (crash, timeout) is made again with the
same idempotency token, which ACM answers with the ARN it already created: a
retry never requests twice.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from reconciler.durations import parse_duration
from reconciler.errors import AwaitingApproval, ProviderError
from reconciler.issuers.aws_acm import ACM_REQUEST_KEYS, AcmLeafSpec
from reconciler.providers.aws import acm, route53
from reconciler.providers.aws.config import AwsProviderConfig
from reconciler.providers.aws.iam import Statement
from reconciler.providers.aws.route53 import Route53Dns
from reconciler.providers.aws.session import aws_errors, client

Report = Callable[[str], None]
POLL_SECONDS = 1.0


@dataclass(frozen=True)
class AcmIssued:
    arn: str
    certificate_pem: str
    chain_pem: str
    serial: str
    not_before: datetime
    not_after: datetime
    fingerprint: str


def iam_statements(
    provider: AwsProviderConfig, region: str, authority: Any, names: list[str]
) -> list[Statement]:
    """What requesting, validating and reading the certificates of one ``aws-acm``
    authority needs: RequestCertificate only with certform's tag, DNS validation
    and exactly the names the configuration asks for (``acm:DomainNames``);
    Describe/Get on certform's tagged certificates; the validation CNAMEs in
    Route 53 when certform writes them.  No names (no certificate uses the
    authority): no call, no statement."""
    if not names:
        return []
    private_ca = authority.certificate_authority_arn
    # A private certificate needs no validation; its CA is the condition instead.
    how = (
        {"acm:CertificateAuthority": private_ca}
        if private_ca
        else {"acm:ValidationMethod": authority.validation_method}
    )
    request = {
        "StringEquals": {f"aws:RequestTag/{acm.TAG_MANAGED}": acm.MANAGED_VALUE, **how},
        "ForAllValues:StringEquals": {"acm:DomainNames": sorted(set(names))},
    }
    reads = ["acm:DescribeCertificate", "acm:GetCertificate"]
    if authority.exportable or private_ca:
        reads.append("acm:ExportCertificate")
    statements = [
        Statement.of("AcmRequest", ["acm:RequestCertificate"], [acm.certificates_arn(region)],
                     request),
        acm.tagging_new_certificates(region, []),
        acm.certform_certificates(region, reads),
    ]  # fmt: skip
    if authority.validation == "email":  # finds its own pending request by its tag
        statements += [
            Statement.of("AcmList", ["acm:ListCertificates"], ["*"]),
            Statement.of(
                "AcmReadTags", ["acm:ListTagsForCertificate"], [acm.certificates_arn(region)]
            ),
        ]
    validation = authority.dns_validation
    if not private_ca and authority.validation != "email" and validation.route53:
        statements += route53.iam_statements(
            provider, validation.route53_zone_id, "CNAME", reads=False
        )
    return statements


def _client(settings: Mapping[str, Any]) -> Any:
    provider = AwsProviderConfig.model_validate(settings["provider"])
    return client(provider, "acm", settings["region"])


def idempotency_token(address: str, names: list[str], key: str, kind: tuple[str, ...] = ()) -> str:
    """Same request, same token: ACM answers a repeated request (a retry after a
    crash or timeout, within its one-hour window) with the ARN it already made.
    ``kind`` (export, Private CA) is part of the request: a certificate ACM keeps
    must not be the answer to a request for an exportable one."""
    digest = hashlib.sha256("\n".join([address, key, *names, *kind]).encode()).hexdigest()
    return digest[:32]


def request_certificate(
    spec: AcmLeafSpec, address: str, tags: dict[str, str], previous_arn: str | None,
    report: Report,
) -> AcmIssued:  # fmt: skip
    """Request (or resume), validate and wait; raise ProviderError on failure."""
    settings = spec.acm
    acm_client = _client(settings)
    names = list(spec.names)
    email = settings.get("validation", {}).get("method") == "email"
    arn = pending_request(acm_client, address, names, previous_arn) if email else None
    if arn is None:
        arn = _request(acm_client, settings, names, spec.key, address, tags)
        report(f"{address}: requested {arn}")
    if email:
        _awaiting_approval(acm_client, arn, address)
    elif not settings.get("certificate_authority_arn"):
        _validate(acm_client, settings, arn, address, report)
    return _wait_issued(acm_client, arn, parse_duration(settings["timeout"]).total_seconds(),
                        address, report)  # fmt: skip


def _request(
    acm_client: Any, settings: Mapping[str, Any], names: list[str], key: str, address: str,
    tags: dict[str, str],
) -> str:  # fmt: skip
    all_tags = {acm.TAG_MANAGED: "certform", acm.TAG_ADDRESS: address, **tags}
    request: dict[str, Any] = {
        "DomainName": names[0],
        "SubjectAlternativeNames": names,
        "KeyAlgorithm": ACM_REQUEST_KEYS[key],
        "IdempotencyToken": idempotency_token(address, names, key, _kind(settings)),
        "Tags": [{"Key": k[:128], "Value": v[:256]} for k, v in all_tags.items()],
    }
    options: dict[str, str] = {}
    if settings.get("certificate_authority_arn"):
        # A private certificate: no validation, always exportable, never CT-logged.
        request["CertificateAuthorityArn"] = settings["certificate_authority_arn"]
    else:
        email = settings.get("validation", {}).get("method") == "email"
        request["ValidationMethod"] = "EMAIL" if email else "DNS"
        if not settings.get("certificate_transparency", True):
            # ENABLED is ACM's default; only the opt-out is sent.
            options["CertificateTransparencyLoggingPreference"] = "DISABLED"
        if settings.get("exportable"):
            options["Export"] = "ENABLED"
    if options:
        request["Options"] = options
    with aws_errors(f"ACM request for {address}"):
        response = acm_client.request_certificate(**request)
    return str(response["CertificateArn"])


def _kind(settings: Mapping[str, Any]) -> tuple[str, ...]:
    """What besides the names and key makes a request different (empty by default,
    so the token of a plain request is what it always was)."""
    kind = ("export",) if settings.get("exportable") else ()
    if settings.get("certificate_authority_arn"):
        kind += (str(settings["certificate_authority_arn"]),)
    return kind


def pending_request(
    acm_client: Any, address: str, names: list[str], previous_arn: str | None
) -> str | None:
    """The request for ``address`` still waiting for the domain owner's approval (same
    names), so that a later apply waits for it instead of mailing the owner again."""
    with aws_errors("ACM list"):
        pages = acm_client.get_paginator("list_certificates").paginate(
            CertificateStatuses=["PENDING_VALIDATION"]
        )
        for page in pages:
            for summary in page.get("CertificateSummaryList", []):
                arn = str(summary["CertificateArn"])
                if arn == previous_arn:
                    continue
                tags = acm_client.list_tags_for_certificate(CertificateArn=arn).get("Tags", [])
                if {"Key": acm.TAG_ADDRESS, "Value": address} not in tags:
                    continue
                detail = acm_client.describe_certificate(CertificateArn=arn)["Certificate"]
                if sorted(detail.get("SubjectAlternativeNames") or []) == sorted(names):
                    return arn
    return None


def _awaiting_approval(acm_client: Any, arn: str, address: str) -> None:
    """Email validation: go on when the owner approved, else say what we wait for."""
    with aws_errors(f"ACM describe {arn}"):
        detail = acm_client.describe_certificate(CertificateArn=arn)["Certificate"]
    if detail.get("Status") != "PENDING_VALIDATION":
        return
    raise AwaitingApproval(approval_message(arn, detail))


def approval_message(arn: str, detail: Mapping[str, Any]) -> str:
    """``waiting for the domain owner's approval`` of ``arn``, naming where ACM mailed."""
    emails = sorted(
        {
            e
            for o in detail.get("DomainValidationOptions") or []
            for e in o.get("ValidationEmails") or []
        }
    )
    where = f" (ACM emailed {', '.join(emails)})" if emails else ""
    return (
        f"{arn} is waiting for the domain owner's approval{where}; apply again once it is approved"
    )


def read_issued(settings: Mapping[str, Any], arn: str) -> AcmIssued:
    """What ACM holds at ``arn`` now (after ACM renewed it in place)."""
    acm_client = _client(settings)
    with aws_errors(f"ACM describe {arn}"):
        detail = acm_client.describe_certificate(CertificateArn=arn)["Certificate"]
    if detail.get("Status") != "ISSUED":
        raise ProviderError(f"ACM certificate {arn} is {detail.get('Status', '?')}, not ISSUED")
    return _issued(acm_client, arn)


def _validation_records(acm_client: Any, arn: str, deadline: float) -> list[tuple[str, str]]:
    """The CNAMEs ACM asks for (they appear a few seconds after the request)."""
    while True:
        with aws_errors(f"ACM describe {arn}"):
            detail = acm_client.describe_certificate(CertificateArn=arn)["Certificate"]
        options = detail.get("DomainValidationOptions", [])
        records = [o.get("ResourceRecord") for o in options]
        if options and all(records):
            return sorted({(r["Name"], r["Value"]) for r in records if r})
        if time.monotonic() >= deadline:
            raise ProviderError(f"ACM gave no validation records for {arn} in time")
        time.sleep(POLL_SECONDS)


def _validate(
    acm_client: Any, settings: Mapping[str, Any], arn: str, address: str, report: Report
) -> None:
    records = _validation_records(acm_client, arn, time.monotonic() + 60)
    validation = settings.get("validation", {})
    if not validation.get("route53", True):
        for name, value in records:
            report(f"{address}: create DNS record  {name} CNAME {value}")
        return
    provider = AwsProviderConfig.model_validate(settings["provider"])
    dns = Route53Dns(provider, validation.get("route53_zone_id"))
    changes = [dns.upsert(name, "CNAME", [value], ttl=300) for name, value in records]
    for change in changes:
        dns.wait_in_sync(change, timeout=120, interval=2)
    report(f"{address}: {len(records)} validation record(s) written to Route 53")


def _wait_issued(acm_client: Any, arn: str, timeout: float, address: str,
                 report: Report) -> AcmIssued:  # fmt: skip
    started = time.monotonic()
    last = ""
    while True:
        with aws_errors(f"ACM describe {arn}"):
            detail = acm_client.describe_certificate(CertificateArn=arn)["Certificate"]
        status = detail.get("Status", "?")
        if status == "ISSUED":
            return _issued(acm_client, arn)
        if status not in ("PENDING_VALIDATION",):
            reason = detail.get("FailureReason", "no reason given")
            raise ProviderError(f"ACM did not issue {arn}: {status} ({reason})")
        waited = time.monotonic() - started
        if waited >= timeout:
            raise ProviderError(
                f"ACM certificate {arn} still {status} after {timeout:.0f}s; the next apply "
                "keeps waiting for the same request"
            )
        if status != last or int(waited) % 30 == 0:
            report(f"{address}: waiting for ACM ({status}, {waited:.0f}s)")
            last = status
        time.sleep(POLL_SECONDS)


def _issued(acm_client: Any, arn: str) -> AcmIssued:
    with aws_errors(f"ACM get {arn}"):
        response = acm_client.get_certificate(CertificateArn=arn)
    pem = response["Certificate"]
    certificate = x509.load_pem_x509_certificate(pem.encode())
    return AcmIssued(
        arn=arn,
        certificate_pem=pem if pem.endswith("\n") else pem + "\n",
        chain_pem=response.get("CertificateChain", ""),
        serial=format(certificate.serial_number, "x"),
        not_before=certificate.not_valid_before_utc,
        not_after=certificate.not_valid_after_utc,
        fingerprint=certificate.fingerprint(hashes.SHA256()).hex(),
    )
