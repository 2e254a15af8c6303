"""The AWS Private CA calls of the ``aws-pca`` issuer (``aws_pca.py``): leaves
from a CSR, CAs created and signed, drift observed, revocation, deletion.

Crash safety.  A leaf's key is journaled before ``IssueCertificate`` runs, and
an interrupted apply reuses it; the idempotency token is derived from that key
(with the address, the CA and the serial it replaces), so the retry sends the
same token and AWS answers with the certificate it already issued instead of a
second one (within AWS's idempotency window).  A CA is tagged with its address
when created: a retry after a crash finds the CA it created (tags, not state)
and carries on from where it stopped (CSR, signing, import) instead of creating
another.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from reconciler.durations import parse_duration
from reconciler.errors import PlanError, ProviderError
from reconciler.issuers.aws_pca import (
    REVOCATION_REASONS,
    CaObservation,
    PcaAuthoritySpec,
    PcaLeafSpec,
)
from reconciler.issuers.base import ApplyAccess, AuthorityIssuance, Issuance, leaf_record
from reconciler.model.material import IssuedMaterial
from reconciler.model.observed import Observation
from reconciler.model.records import AuthorityRecord, CertificateRecord
from reconciler.pki.builder import certificate_to_pem
from reconciler.pki.csr import build_csr
from reconciler.pki.keys import private_key_from_der, private_key_to_pem, public_key_matches
from reconciler.plan.model import Action, Change
from reconciler.providers.aws.acm import TAG_ADDRESS, TAG_MANAGED

if TYPE_CHECKING:
    from reconciler.providers.aws.iam import Statement
from reconciler.providers.aws.config import AwsProviderConfig
from reconciler.providers.aws.session import (
    aws_errors,
    client,
    describe_error,
    error_code,
    is_unreachable,
)

POLL_SECONDS = 0.5
ROOT_TEMPLATE = "arn:aws:acm-pca:::template/RootCACertificate/V1"
SUBORDINATE_TEMPLATE = "arn:aws:acm-pca:::template/SubordinateCACertificate_PathLen{}/V1"
CA_STATUS_TIMEOUT = 120.0
"""How long a new CA may stay CREATING before certform gives up (AWS: seconds)."""
_ARNS = "aws-pca-arns"
"""``scratch`` name of the CAs created in this run: name -> ARN."""

Report = Callable[[str], None]


def _client(settings: Mapping[str, Any]) -> Any:
    provider = AwsProviderConfig.model_validate(settings["provider"])
    return client(provider, "acm-pca", settings.get("region"))


def idempotency_token(*parts: str) -> str:
    """Same request, same token (32 hex digits; AWS allows 36 characters)."""
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


def validity(duration: str, now: datetime) -> dict[str, Any]:
    """IssueCertificate's Validity: whole days as DAYS, anything shorter as an end time."""
    delta = parse_duration(duration)
    if delta % timedelta(days=1) == timedelta(0):
        return {"Type": "DAYS", "Value": delta.days}
    return {"Type": "ABSOLUTE", "Value": int((now + delta).timestamp())}


def _pem(text: str) -> str:
    text = text.strip()
    return text + "\n" if text else ""


def split_chain(chain: str) -> tuple[str, str]:
    """AWS's CertificateChain as certform keeps it: (intermediates, root)."""
    if not chain.strip():
        return "", ""
    certificates = x509.load_pem_x509_certificates(chain.encode())
    roots = [c for c in certificates if c.subject == c.issuer]
    others = [c for c in certificates if c.subject != c.issuer]
    return (
        "".join(certificate_to_pem(c) for c in others),
        certificate_to_pem(roots[-1]) if roots else "",
    )


def authority_arn(ctx: Any, name: str, configured: str | None = None) -> str:
    """The ARN of authority ``name``: configured, created in this run, or recorded."""
    if configured:
        return configured
    created = ctx.scratch(_ARNS).get(name)
    if created:
        return str(created)
    record = ctx.recorded.authorities.get(name)
    if record is None:
        raise PlanError(f"authority.{name}: no AWS Private CA created yet (apply creates it first)")
    return record.key_id


def wait_certificate(
    pca: Any, ca_arn: str, certificate_arn: str, timeout: float, what: str
) -> tuple[str, str]:
    """GetCertificate until AWS has issued it: (certificate, chain); bounded by ``timeout``."""
    from botocore.exceptions import BotoCoreError, ClientError

    deadline = time.monotonic() + timeout
    while True:
        try:
            response = pca.get_certificate(
                CertificateAuthorityArn=ca_arn, CertificateArn=certificate_arn
            )
            return _pem(response["Certificate"]), _pem(response.get("CertificateChain", ""))
        except ClientError as exc:
            if error_code(exc) != "RequestInProgressException":
                raise ProviderError(
                    f"AWS Private CA GetCertificate for {what}: {describe_error(exc)}"
                ) from None
        except BotoCoreError as exc:
            raise ProviderError(
                f"AWS Private CA GetCertificate for {what}: {describe_error(exc)}"
            ) from None
        if time.monotonic() >= deadline:
            raise ProviderError(
                f"AWS Private CA has not issued {certificate_arn} for {what} after "
                f"{timeout:.0f}s (GetCertificate: request in progress); the next apply "
                "asks again with the same idempotency token"
            )
        time.sleep(POLL_SECONDS)


def _spki_hex(key: Any) -> str:
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


def _issue(
    pca: Any, ca_arn: str, csr: bytes, signing: str, duration_or_validity: dict[str, Any],
    token: str, template: str | None, what: str,
) -> str:  # fmt: skip
    request: dict[str, Any] = {
        "CertificateAuthorityArn": ca_arn,
        "Csr": csr,
        "SigningAlgorithm": signing,
        "Validity": duration_or_validity,
        "IdempotencyToken": token,
    }
    if template:
        request["TemplateArn"] = template
    with aws_errors(f"AWS Private CA IssueCertificate for {what}"):
        return str(pca.issue_certificate(**request)["CertificateArn"])


def _describe(pca: Any, arn: str, what: str) -> dict[str, Any] | None:
    """DescribeCertificateAuthority; None when the CA does not exist (any more)."""
    from botocore.exceptions import ClientError

    try:
        return dict(pca.describe_certificate_authority(CertificateAuthorityArn=arn)
                    ["CertificateAuthority"])  # fmt: skip
    except ClientError as exc:
        if error_code(exc) == "ResourceNotFoundException":
            return None
        raise ProviderError(f"AWS Private CA describe {what}: {describe_error(exc)}") from None


def _signing_algorithm(pca: Any, ca_arn: str, what: str) -> str:
    with aws_errors(f"AWS Private CA describe {ca_arn}"):
        detail = _describe(pca, ca_arn, what)
    if detail is None:
        raise ProviderError(f"{what}: AWS Private CA {ca_arn} does not exist")
    return str(detail["CertificateAuthorityConfiguration"]["SigningAlgorithm"])


# -- leaves ---------------------------------------------------------------------------
def issue_leaf(ctx: ApplyAccess, change: Change, spec: PcaLeafSpec, key_der: bytes) -> Issuance:
    """CSR from the journaled key → IssueCertificate → GetCertificate → the record."""
    settings = spec.pca
    address = change.address
    pca = _client(settings)
    ca_arn = authority_arn(ctx, spec.issuer, settings.get("certificate_authority_arn"))
    key = private_key_from_der(key_der)
    csr = build_csr(key, list(spec.names))
    signing = settings.get("signing_algorithm") or _signing_algorithm(pca, ca_arn, address)
    replaces = str((change.before or {}).get("serial", ""))
    token = idempotency_token(address, ca_arn, _spki_hex(key), replaces)
    assert spec.validity is not None
    certificate_arn = _issue(
        pca, ca_arn, csr, signing, validity(spec.validity, datetime.now(UTC)), token,
        settings.get("template_arn"), address,
    )  # fmt: skip
    ctx.report(f"{address}: AWS Private CA issues {certificate_arn}")
    timeout = parse_duration(str(settings.get("timeout") or "2m")).total_seconds()
    pem, chain = wait_certificate(pca, ca_arn, certificate_arn, timeout, address)
    certificate = x509.load_pem_x509_certificate(pem.encode())
    if not public_key_matches(key, certificate):
        raise ProviderError(
            f"{address}: AWS Private CA returned {certificate_arn}, which does not certify "
            "the key certform generated"
        )
    chain_pem, root_pem = _leaf_chain(ctx, spec.issuer, chain)
    recorded = {**spec.recorded(), "certificate_arn": certificate_arn}
    record = leaf_record(change, recorded, certificate, ca_arn)
    return Issuance(
        record,
        IssuedMaterial(pem, chain_pem, root_pem),
        key_der,
        private_key_to_pem(key),
        f"{certificate_arn} serial {record.serial}",
        f" (serial {record.serial[:16]}…, expires {record.not_after:%Y-%m-%d})",
    )


def _leaf_chain(ctx: ApplyAccess, issuer: str, chain: str) -> tuple[str, str]:
    """A CA certform created: the chain it recorded (as a private CA's leaves have);
    an existing CA: what AWS returned, split into intermediates and root."""
    if issuer in ctx.scratch(_ARNS) or issuer in ctx.recorded.authorities:
        ca = ctx.store.material("authority", issuer)
        if ca.root_pem and ca.root_pem == ca.certificate_pem:
            return "", ca.root_pem
        return ca.certificate_pem + ca.chain_pem, ca.root_pem
    return split_chain(chain)


def revoke_leaf(record: CertificateRecord, reason: str) -> str:
    """RevokeCertificate at the CA that issued it, with AWS's name of the reason."""
    code = REVOCATION_REASONS.get(reason)
    if code is None:
        raise PlanError(
            f"AWS Private CA has no revocation reason {reason!r}; use one of: "
            + ", ".join(REVOCATION_REASONS)
        )
    settings = record.spec.get("pca") or {}
    ca_arn = record.issuer_key_id
    serial = record.serial if len(record.serial) % 2 == 0 else "0" + record.serial
    colon_serial = ":".join(serial[i : i + 2] for i in range(0, len(serial), 2))
    with aws_errors(f"AWS Private CA RevokeCertificate for {record.address}"):
        _client(settings).revoke_certificate(
            CertificateAuthorityArn=ca_arn,
            CertificateSerial=colon_serial,
            RevocationReason=code,
        )
    return f"revoked at AWS Private CA {ca_arn} ({code})"


# -- created CAs ----------------------------------------------------------------------
def _revocation_configuration(crl: Mapping[str, Any] | None) -> dict[str, Any]:
    if not crl:
        return {"CrlConfiguration": {"Enabled": False}}
    return {
        "CrlConfiguration": {
            "Enabled": True,
            "ExpirationInDays": int(crl["expiration_days"]),
            "S3BucketName": crl["s3_bucket"],
        }
    }


def _subject(subject: Mapping[str, Any]) -> dict[str, str]:
    names = {
        "common_name": "CommonName",
        "organization": "Organization",
        "organizational_unit": "OrganizationalUnit",
        "country": "Country",
        "state": "State",
        "locality": "Locality",
    }
    return {names[k]: str(v) for k, v in subject.items() if k in names and v}


def _find_created(pca: Any, address: str, exclude: str | None) -> str | None:
    """The CA an interrupted apply created for ``address`` (by its tags), if any."""
    with aws_errors("AWS Private CA ListCertificateAuthorities"):
        pages = pca.get_paginator("list_certificate_authorities").paginate()
        candidates = [
            ca
            for page in pages
            for ca in page.get("CertificateAuthorities", [])
            if ca["Arn"] != exclude
            and ca.get("Status") in ("CREATING", "PENDING_CERTIFICATE", "ACTIVE")
        ]
    for ca in sorted(candidates, key=lambda c: str(c.get("CreatedAt", "")), reverse=True):
        with aws_errors(f"AWS Private CA ListTags {ca['Arn']}"):
            tags = pca.list_tags(CertificateAuthorityArn=ca["Arn"]).get("Tags", [])
        if {"Key": TAG_ADDRESS, "Value": address} in tags:
            return str(ca["Arn"])
    return None


def _create(pca: Any, spec: PcaAuthoritySpec, address: str, replaces: str) -> str:
    create = spec.create or {}
    with aws_errors(f"AWS Private CA CreateCertificateAuthority for {address}"):
        response = pca.create_certificate_authority(
            CertificateAuthorityConfiguration={
                "KeyAlgorithm": create["key_algorithm"],
                "SigningAlgorithm": create["signing_algorithm"],
                "Subject": _subject(create["subject"]),
            },
            RevocationConfiguration=_revocation_configuration(create.get("crl")),
            CertificateAuthorityType=create["type"],
            IdempotencyToken=idempotency_token(address, "create", replaces),
            Tags=[
                {"Key": TAG_MANAGED, "Value": "certform"},
                {"Key": TAG_ADDRESS, "Value": address[:256]},
            ],
        )
    return str(response["CertificateAuthorityArn"])


def _wait_status(pca: Any, arn: str, address: str) -> str:
    """Until the new CA leaves CREATING; its status then."""
    deadline = time.monotonic() + CA_STATUS_TIMEOUT
    while True:
        detail = _describe(pca, arn, address)
        if detail is None:
            raise ProviderError(f"{address}: AWS Private CA {arn} disappeared while created")
        status = str(detail.get("Status"))
        if status in ("PENDING_CERTIFICATE", "ACTIVE"):
            return status
        if status != "CREATING":
            reason = detail.get("FailureReason", "no reason given")
            raise ProviderError(f"{address}: AWS Private CA {arn} is {status} ({reason})")
        if time.monotonic() >= deadline:
            raise ProviderError(
                f"{address}: AWS Private CA {arn} still CREATING after {CA_STATUS_TIMEOUT:.0f}s; "
                "the next apply carries on with it"
            )
        time.sleep(POLL_SECONDS)


def _csr(pca: Any, arn: str, address: str) -> str:
    from botocore.exceptions import ClientError

    deadline = time.monotonic() + CA_STATUS_TIMEOUT
    while True:
        try:
            return str(pca.get_certificate_authority_csr(CertificateAuthorityArn=arn)["Csr"])
        except ClientError as exc:
            if error_code(exc) != "RequestInProgressException" or time.monotonic() > deadline:
                raise ProviderError(
                    f"AWS Private CA GetCertificateAuthorityCsr for {address}: "
                    f"{describe_error(exc)}"
                ) from None
        time.sleep(POLL_SECONDS)


def _sign_ca(
    ctx: ApplyAccess, pca: Any, spec: PcaAuthoritySpec, arn: str, address: str, replaces: str
) -> tuple[str, str]:
    """The CA's certificate from its CSR: signed by itself (ROOT, the root template)
    or by its parent (SUBORDINATE), then imported; (certificate, chain above it)."""
    create = spec.create or {}
    csr = _csr(pca, arn, address).encode()
    public = (
        x509.load_pem_x509_csr(csr)
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    token = idempotency_token(address, "ca-certificate", arn, public.hex(), replaces)
    now = datetime.now(UTC)
    if create["type"] == "ROOT":
        signer, template = arn, ROOT_TEMPLATE
    else:
        signer = authority_arn(ctx, str(spec.parent), create.get("parent_arn"))
        template = SUBORDINATE_TEMPLATE.format(min(int(create.get("path_length") or 0), 3))
    issued = _issue(
        pca, signer, csr, create["signing_algorithm"] if signer == arn
        else _signing_algorithm(pca, signer, address),
        validity(create["validity"], now), token, template, address,
    )  # fmt: skip
    ctx.report(f"{address}: CA certificate {issued}")
    pem, chain = wait_certificate(pca, signer, issued, CA_STATUS_TIMEOUT, address)
    request: dict[str, Any] = {"CertificateAuthorityArn": arn, "Certificate": pem.encode()}
    if create["type"] != "ROOT":
        chain = chain or _ca_certificate(pca, signer, address)
        request["CertificateChain"] = chain.encode()
    with aws_errors(f"AWS Private CA ImportCertificateAuthorityCertificate for {address}"):
        pca.import_certificate_authority_certificate(**request)
    return pem, chain


def _ca_certificate(pca: Any, arn: str, address: str) -> str:
    """A CA's certificate and its chain, as AWS holds them."""
    with aws_errors(f"AWS Private CA GetCertificateAuthorityCertificate for {address}"):
        response = pca.get_certificate_authority_certificate(CertificateAuthorityArn=arn)
    return _pem(response["Certificate"]) + _pem(response.get("CertificateChain", ""))


def act_on_ca(ctx: ApplyAccess, change: Change, spec: PcaAuthoritySpec) -> AuthorityIssuance:
    """Create (or resume creating), sign again, or repair a CA certform manages."""
    address, name = change.address, change.name
    pca = _client(spec.to_json())
    before = change.before or {}
    previous = str(before.get("certificate_authority_arn") or "")
    replaces = str(before.get("serial") or "")
    if change.action == Action.UPDATE:
        note = reconcile(pca, previous, spec, address)
        return _updated(ctx, change, spec, previous, note)
    notes: list[str] = []
    if change.action == Action.RENEW:
        arn, status = previous, "PENDING_CERTIFICATE"
    else:
        interrupted = any(s.address == address for s in ctx.recorded.interrupted)
        found = _find_created(pca, address, previous or None) if interrupted else None
        arn = found or _create(pca, spec, address, replaces)
        notes.append(f"resumed {arn}" if found else f"created {arn}")
        ctx.report(f"{address}: {notes[-1]}")
        status = _wait_status(pca, arn, address)
    if status == "ACTIVE":  # created and imported by the interrupted run
        both = _ca_certificate(pca, arn, address)
        pem = certificate_to_pem(x509.load_pem_x509_certificates(both.encode())[0])
        chain = both[len(pem) :] if both.startswith(pem) else ""
    else:
        pem, chain = _sign_ca(ctx, pca, spec, arn, address, replaces)
    if change.action == Action.RENEW and change.drift:
        notes.append(reconcile(pca, arn, spec, address))
    ctx.scratch(_ARNS)[name] = arn
    certificate = x509.load_pem_x509_certificate(pem.encode())
    if (spec.create or {}).get("type") == "ROOT":
        material = IssuedMaterial(pem, "", pem)
    else:
        intermediates, root = split_chain(chain)
        if spec.parent and (spec.parent in ctx.recorded.authorities or
                            spec.parent in ctx.scratch(_ARNS)):  # fmt: skip
            parent = ctx.store.material("authority", spec.parent)
            root = parent.root_pem or root
            is_root = parent.root_pem == parent.certificate_pem
            intermediates = "" if is_root else parent.certificate_pem + parent.chain_pem
        material = IssuedMaterial(pem, intermediates, root)
    parent_arn = None
    if spec.parent:
        parent_arn = authority_arn(ctx, spec.parent, (spec.create or {}).get("parent_arn"))
    record = AuthorityRecord(
        name=name,
        spec=spec.recorded(),
        serial=format(certificate.serial_number, "x"),
        not_before=certificate.not_valid_before_utc,
        not_after=certificate.not_valid_after_utc,
        key_id=arn,
        issuer_key_id=parent_arn,
        prevent_destroy=spec.prevent_destroy,
    )
    note = "; ".join(n for n in notes if n)
    detail = f"{note}; " if note else ""
    return AuthorityIssuance(
        record,
        material,
        None,
        f"{arn} serial {record.serial}" + (f"; {note}" if note else ""),
        f" ({detail}serial {record.serial[:16]}…, expires {record.not_after:%Y-%m-%d})",
    )


def _updated(
    ctx: ApplyAccess, change: Change, spec: PcaAuthoritySpec, arn: str, note: str
) -> AuthorityIssuance:
    """The same CA and certificate, its settings recorded anew."""
    old = ctx.recorded.authorities[change.name]
    record = AuthorityRecord(
        name=change.name,
        spec=spec.recorded(),
        serial=old.serial,
        not_before=old.not_before,
        not_after=old.not_after,
        key_id=arn,
        issuer_key_id=old.issuer_key_id,
        prevent_destroy=spec.prevent_destroy,
    )
    material = ctx.store.material("authority", change.name)
    return AuthorityIssuance(record, material, None, note, f" ({note})")


def reconcile(pca: Any, arn: str, spec: PcaAuthoritySpec, address: str) -> str:
    """Enable a CA disabled behind certform's back and put its CRL configuration back
    to the config's; what was done, for the output."""
    detail = _describe(pca, arn, address)
    if detail is None:
        raise ProviderError(f"{address}: AWS Private CA {arn} no longer exists")
    wanted = _revocation_configuration((spec.create or {}).get("crl"))
    request: dict[str, Any] = {}
    done = []
    if detail.get("Status") == "DISABLED":
        request["Status"] = "ACTIVE"
        done.append("enabled again")
    if _crl_differences(detail.get("RevocationConfiguration"), (spec.create or {}).get("crl")):
        request["RevocationConfiguration"] = wanted
        done.append("CRL configuration set")
    if not request:
        return "already as configured"
    with aws_errors(f"AWS Private CA UpdateCertificateAuthority for {address}"):
        pca.update_certificate_authority(CertificateAuthorityArn=arn, **request)
    return ", ".join(done)


def delete_ca(settings: Mapping[str, Any], arn: str) -> str:
    """Disable, then delete (AWS keeps a deleted CA restorable for its restoration
    period, 30 days by default); ``settings``: the recorded spec (provider, region)."""
    pca = _client(settings)
    detail = _describe(pca, arn, arn)
    if detail is None or detail.get("Status") == "DELETED":
        return f"{arn} was already deleted"
    if detail.get("Status") == "ACTIVE":
        with aws_errors(f"AWS Private CA UpdateCertificateAuthority {arn}"):
            pca.update_certificate_authority(CertificateAuthorityArn=arn, Status="DISABLED")
    with aws_errors(f"AWS Private CA DeleteCertificateAuthority {arn}"):
        pca.delete_certificate_authority(CertificateAuthorityArn=arn)
    return f"{arn} disabled and deleted (restorable with RestoreCertificateAuthority for 30 days)"


# -- plan: observation ----------------------------------------------------------------
def _crl_differences(
    actual: Mapping[str, Any] | None, expected: Mapping[str, Any] | None
) -> list[str]:
    crl = (actual or {}).get("CrlConfiguration") or {}
    enabled = bool(crl.get("Enabled"))
    if not expected:
        return [f"CRL enabled (bucket {crl.get('S3BucketName')})"] if enabled else []
    if not enabled:
        return ["CRL disabled"]
    differences = []
    if crl.get("S3BucketName") != expected["s3_bucket"]:
        differences.append(f"CRL bucket {expected['s3_bucket']} → {crl.get('S3BucketName')}")
    if crl.get("ExpirationInDays") != expected["expiration_days"]:
        differences.append(
            f"CRL expiration {expected['expiration_days']} → {crl.get('ExpirationInDays')} days"
        )
    return differences


def observe(
    settings: Mapping[str, Any], arn: str, expected_crl: Mapping[str, Any] | None, managed: bool
) -> Observation:
    """What DescribeCertificateAuthority says, as drift of a CA certform manages
    (``managed``) or as a warning about one it only uses."""
    from botocore.exceptions import BotoCoreError

    try:
        detail = _describe(_client(settings), arn, arn)
    except BotoCoreError as exc:
        if is_unreachable(exc):
            return Observation("unreachable", (str(exc),))
        return Observation("unreachable", (describe_error(exc),))
    except ProviderError as exc:
        return Observation("unreachable", (str(exc),))
    if detail is None:
        return CaObservation("missing", (f"AWS Private CA {arn} no longer exists",), "GONE")
    status = str(detail.get("Status"))
    if status == "DELETED":
        until = detail.get("RestorableUntil")
        when = f", restorable until {until:%Y-%m-%d}" if isinstance(until, datetime) else ""
        detail_text = f"AWS Private CA {arn} was deleted outside certform (status DELETED{when})"
        return CaObservation("missing", (detail_text,), status)
    if not managed:
        if status != "ACTIVE":
            return CaObservation(
                "drifted", (f"AWS Private CA {arn} is {status}: it cannot issue certificates",),
                status,
            )  # fmt: skip
        return CaObservation("in_sync", (), status)
    details: list[str] = []
    if status == "DISABLED":
        details.append("disabled outside certform (status DISABLED): apply enables it again")
    drift = tuple(_crl_differences(detail.get("RevocationConfiguration"), expected_crl))
    if drift:
        details.append(
            "revocation configuration changed outside certform ("
            + "; ".join(drift)
            + "): apply sets it back"
        )
    if details:
        return CaObservation("drifted", tuple(details), status, drift)
    return CaObservation("in_sync", (), status)


_LEAF_ACTIONS = (
    "acm-pca:DescribeCertificateAuthority",
    "acm-pca:GetCertificate",
    "acm-pca:GetCertificateAuthorityCertificate",
    "acm-pca:IssueCertificate",
    "acm-pca:RevokeCertificate",
)
_MANAGED_ACTIONS = (
    *_LEAF_ACTIONS,
    "acm-pca:DeleteCertificateAuthority",
    "acm-pca:GetCertificateAuthorityCsr",
    "acm-pca:ImportCertificateAuthorityCertificate",
    "acm-pca:ListTags",
    "acm-pca:UpdateCertificateAuthority",
)


def pca_iam_statements(provider: Any, existing: str | None, parent: str | None) -> list[Statement]:
    """An existing CA: issuing, reading and revoking on its ARN only.  A CA certform
    creates: CreateCertificateAuthority only with certform's tag (and tagging in
    the same request), everything else only on CAs that carry that tag; listing
    CAs (to find the one an interrupted apply made) takes no resource.  A parent
    given by ARN signs its subordinate."""
    from reconciler.providers.aws.iam import Statement, partition

    if existing is not None:
        return [Statement.of("PcaExistingCa", _LEAF_ACTIONS, [existing])]
    cas = f"arn:{partition(provider.region)}:acm-pca:{provider.region}:*:certificate-authority/*"
    statements = [
        Statement.of(
            "PcaCreateCertformCas",
            ["acm-pca:CreateCertificateAuthority", "acm-pca:TagCertificateAuthority"],
            [cas],
            {"StringEquals": {f"aws:RequestTag/{TAG_MANAGED}": "certform"}},
        ),
        Statement.of(
            "PcaCertformCas",
            _MANAGED_ACTIONS,
            [cas],
            {"StringEquals": {f"aws:ResourceTag/{TAG_MANAGED}": "certform"}},
        ),
        Statement.of("PcaList", ["acm-pca:ListCertificateAuthorities"], ["*"]),
    ]
    if parent is not None:
        statements.append(
            Statement.of("PcaExistingCa", ["acm-pca:IssueCertificate", "acm-pca:GetCertificate"],
                         [parent])
        )  # fmt: skip
    return statements
