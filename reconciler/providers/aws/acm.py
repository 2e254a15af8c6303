"""Placing certform's certificates in ACM: import once, re-import in place on renewal.

Re-importing into the same ARN is what keeps every listener, distribution and
domain serving the renewed certificate without being touched, as ACM's own
renewal does.  Certificates are tagged ``managed-by: certform`` and
``certform:address`` so a lost ARN is found again instead of imported twice.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from cryptography import x509

from reconciler.errors import ProviderError
from reconciler.model.material import CertificateMaterial
from reconciler.model.observed import Facts
from reconciler.providers.aws.iam import Statement, partition
from reconciler.providers.aws.session import aws_errors, describe_error, error_code
from reconciler.providers.base import Target
from reconciler.providers.batch import memo

TAG_MANAGED = "managed-by"
MANAGED_VALUE = "certform"
TAG_ADDRESS = "certform:address"
ALL_KEY_TYPES = [
    "RSA_1024",
    "RSA_2048",
    "RSA_3072",
    "RSA_4096",
    "EC_prime256v1",
    "EC_secp384r1",
    "EC_secp521r1",
]

# Key algorithms ACM accepts for import (it refuses Ed25519).
ACM_IMPORT_KEYS = frozenset({"rsa-2048", "rsa-3072", "rsa-4096", "ec-p256", "ec-p384"})


def _tags(material: CertificateMaterial) -> list[dict[str, str]]:
    tags = {TAG_MANAGED: MANAGED_VALUE, TAG_ADDRESS: material.address}
    for key, value in material.tags.items():
        tags.setdefault(key[:128], value[:256])
    return [{"Key": k, "Value": v} for k, v in tags.items()]


# -- IAM: what the calls in this module need ------------------------------------------
def certificates_arn(region: str) -> str:
    """Every ACM certificate of ``region`` (any account): ARNs are only known once made."""
    return f"arn:{partition(region)}:acm:{region}:*:certificate/*"


def managed_by_certform(kind: str = "aws:ResourceTag") -> dict[str, dict[str, str]]:
    """``StringEquals {kind}/managed-by: certform``: certform's own ACM certificates
    (``aws:ResourceTag``), or a request that tags the new certificate so
    (``aws:RequestTag``)."""
    return {"StringEquals": {f"{kind}/{TAG_MANAGED}": MANAGED_VALUE}}


def certform_certificates(region: str, actions: list[str]) -> Statement:
    """``actions`` on certform's own certificates in ``region``, by their tag."""
    return Statement.of(
        "AcmCertformCertificates", actions, [certificates_arn(region)], managed_by_certform()
    )


def tagging_new_certificates(region: str, actions: list[str]) -> Statement:
    """``actions`` that create a certificate tagged ``managed-by: certform`` (the
    tags are part of the request: ACM also checks AddTagsToCertificate for them)."""
    return Statement.of(
        "AcmNewCertformCertificates",
        [*actions, "acm:AddTagsToCertificate"],
        [certificates_arn(region)],
        managed_by_certform("aws:RequestTag"),
    )


def copy_statements(region: str) -> list[Statement]:
    """What placing, observing and retiring copies in ACM of ``region`` needs
    (``place``, ``copy_drift``, ``retire`` below).

    ListCertificates takes no resource; ListTagsForCertificate must read every
    certificate's tags (that is how a lost copy is found by its address tag);
    everything else is limited to certificates tagged ``managed-by: certform``,
    or, for a new import, to requests that put that tag on."""
    return [
        Statement.of("AcmList", ["acm:ListCertificates"], ["*"]),
        Statement.of("AcmReadTags", ["acm:ListTagsForCertificate"], [certificates_arn(region)]),
        certform_certificates(
            region,
            [
                "acm:AddTagsToCertificate",
                "acm:DeleteCertificate",
                "acm:DescribeCertificate",
                "acm:GetCertificate",
                "acm:ImportCertificate",
            ],
        ),
        tagging_new_certificates(region, ["acm:ImportCertificate"]),
    ]


def import_certificate(acm: Any, material: CertificateMaterial, arn: str | None) -> str:
    """Import ``material`` (into ``arn`` when given) and return the ARN.

    A certificate ACM issued itself is not imported: its own ARN is used, and it
    must live in the region the target reads certificates from."""
    if material.acm_arn:
        region = material.acm_arn.split(":")[3]
        if region != acm.meta.region_name:
            raise ProviderError(
                f"{material.address} is an ACM certificate in {region}, but this target "
                f"needs it in {acm.meta.region_name}"
            )
        return material.acm_arn
    request: dict[str, Any] = {
        "Certificate": material.certificate_pem.encode(),
        "PrivateKey": material.private_key_pem,
        "CertificateChain": (material.chain_pem or material.root_pem).encode(),
    }
    if arn:
        request["CertificateArn"] = arn
    else:
        request["Tags"] = _tags(material)
    with aws_errors(f"ACM import of {material.address}"):
        new_arn = acm.import_certificate(**request)["CertificateArn"]
    if arn:
        with aws_errors(f"ACM tagging of {material.address}"):
            acm.add_tags_to_certificate(CertificateArn=new_arn, Tags=_tags(material))
    _remember(acm, material.address, str(new_arn))
    return str(new_arn)


# address -> ARN of the certificates certform imported, per ACM endpoint and region,
# listed once per process: looking up N new bindings must not list N times.
_by_address: dict[tuple[str | None, str], dict[str, str]] = {}


def _index_key(acm: Any) -> tuple[str | None, str]:
    return (getattr(acm.meta, "endpoint_url", None), acm.meta.region_name)


def find_by_address(acm: Any, address: str) -> str | None:
    """The ARN of the certificate certform imported for ``address``, if any."""
    key = _index_key(acm)
    if key not in _by_address:
        _by_address[key] = _list_tagged(acm)
    return _by_address[key].get(address)


def _list_tagged(acm: Any) -> dict[str, str]:
    found: dict[str, str] = {}
    with aws_errors("ACM list"):
        pages = acm.get_paginator("list_certificates").paginate(
            Includes={"keyTypes": ALL_KEY_TYPES}
        )
        for page in pages:
            for summary in page.get("CertificateSummaryList", []):
                arn = summary["CertificateArn"]
                tags = acm.list_tags_for_certificate(CertificateArn=arn).get("Tags", [])
                for tag in tags:
                    if tag["Key"] == TAG_ADDRESS:
                        found.setdefault(tag["Value"], arn)
    return found


def _remember(acm: Any, address: str, arn: str) -> None:
    index = _by_address.get(_index_key(acm))
    if index is not None:
        index[address] = arn


def served_serial(acm: Any, arn: str) -> str | None:
    """The serial (lowercase hex) of the certificate held at ``arn``; None when gone."""
    from botocore.exceptions import ClientError

    try:
        pem = acm.get_certificate(CertificateArn=arn)["Certificate"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            return None
        raise
    return format(x509.load_pem_x509_certificate(pem.encode()).serial_number, "x")


def place(acm_client: Any, material: CertificateMaterial, previous_arn: str | None) -> str:
    """The ARN a target should serve ``material`` from, importing it when needed.

    Re-imports into the previous ARN when it still exists in this region; else
    into the ARN an earlier (maybe failed) attempt imported, found by tag; else
    a fresh import.  A certificate ACM issued itself is used as it is."""
    if material.acm_arn:
        return import_certificate(acm_client, material, None)
    region = acm_client.meta.region_name
    arn = previous_arn if previous_arn and previous_arn.split(":")[3] == region else None
    if arn:
        with aws_errors(f"reading ACM certificate {arn}"):
            if served_serial(acm_client, arn) is None:
                arn = None  # deleted by hand
    if arn is None:
        arn = find_by_address(acm_client, material.address)
        if arn:
            with aws_errors(f"reading ACM certificate {arn}"):
                if served_serial(acm_client, arn) is None:
                    arn = None
    return import_certificate(acm_client, material, arn)


def copy_id(facts: Facts) -> str | None:
    """The ACM certificate an AWS target's deploy imported or pointed at: every
    binding whose facts name the same ARN shares that one copy."""
    arn = facts.get("certificate_arn")
    return str(arn) if arn else None


def recorded_facts(material: CertificateMaterial, facts: Facts) -> Facts:
    """The facts an AWS target records after a deploy: no serial to pin for a
    certificate ACM issued (ACM renews it in place), else the validity window its
    imported copy is recognised by in ListCertificates."""
    if material.acm_arn:
        facts["serial"] = None
    elif "certificate_arn" in facts and material.not_before is not None:
        facts["validity"] = validity_stamp(material.not_before, material.not_after)
    return facts


class AcmCopyTarget(Target):
    """What the AWS targets (ALB listener, CloudFront, API Gateway) share: each serves
    an ACM copy of the certificate, which names the copy and decides what is recorded."""

    parallel_deploys = False
    """One at a time: a listener's certificate list and default certificate and a
    distribution's config (ETag) are read, changed and written back, so two deploys
    to one of them at once could undo each other; which bindings share one is not
    known before their calls are made."""

    def recorded_facts(self, material: CertificateMaterial, facts: Facts) -> Facts:
        return recorded_facts(material, facts)

    @classmethod
    def copy_id(cls, facts: Facts) -> str | None:
        return copy_id(facts)


def validity_stamp(not_before: datetime, not_after: datetime) -> list[str]:
    """How a copy is recognised in ListCertificates: its validity window, to the second."""
    return [_stamp(not_before), _stamp(not_after)]


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(microsecond=0).isoformat()


def _list_validity(acm_client: Any) -> dict[str, list[str] | None]:
    """arn -> validity window of every certificate in the region, in a few paged calls."""
    found: dict[str, list[str] | None] = {}
    with aws_errors("ACM list"):
        pages = acm_client.get_paginator("list_certificates").paginate(
            Includes={"keyTypes": ALL_KEY_TYPES}
        )
        for page in pages:
            for summary in page.get("CertificateSummaryList", []):
                before, after = summary.get("NotBefore"), summary.get("NotAfter")
                window = validity_stamp(before, after) if before and after else None
                found[summary["CertificateArn"]] = window
    return found


def copy_drift(acm_client: Callable[[], Any], endpoint: tuple[Any, ...], arn: str | None,
               facts: dict[str, Any]) -> list[str]:  # fmt: skip
    """Drift of the ACM copy a binding deployed to: gone, or holding another certificate.

    During a plan the region is listed once (ListCertificates carries each
    certificate's validity window); GetCertificate is only the fallback for
    bindings recorded without a window."""
    if not arn:
        return [f"ACM certificate {arn} no longer exists"]
    region_client = acm_client()  # clients are cached: keyed by where they really point
    listing = memo(
        (
            "acm-validity",
            *endpoint,
            region_client.meta.region_name,
            region_client.meta.endpoint_url,
        ),
        lambda: _list_validity(region_client),
    )
    if arn not in listing:
        return [f"ACM certificate {arn} no longer exists"]
    expected = facts.get("validity")
    window = listing[arn]
    if expected and window is not None:
        if window != expected:
            return [
                f"ACM certificate {arn} holds another certificate "
                f"(valid {window[0]} to {window[1]}), not the deployed one"
            ]
        return []
    if not facts.get("serial"):  # None: ACM issued and renews it itself
        return []
    served = memo(("acm-serial", endpoint, arn), lambda: served_serial(acm_client(), arn))
    if served is None:
        return [f"ACM certificate {arn} no longer exists"]
    if served != facts["serial"]:
        return [f"ACM certificate {arn} holds serial {served}, not the deployed one"]
    return []


def retire(acm_client: Any, arn: str) -> str | None:
    """Delete ``arn`` unless AWS reports it in use; say what happened."""
    from botocore.exceptions import ClientError

    with aws_errors(f"ACM describe {arn}"):
        try:
            detail = acm_client.describe_certificate(CertificateArn=arn)["Certificate"]
        except ClientError as exc:
            # Decided on the error code, never on the text of a message.
            if error_code(exc) != "ResourceNotFoundException":
                raise
            return None
    in_use = detail.get("InUseBy") or []
    if in_use:
        return f"kept ACM certificate {arn}: still in use by {', '.join(in_use)}"
    try:
        acm_client.delete_certificate(CertificateArn=arn)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ResourceInUseException":
            return f"kept ACM certificate {arn}: AWS reports it in use"
        raise ProviderError(f"ACM delete {arn}: {describe_error(exc)}") from None
    for index in _by_address.values():
        for address in [a for a, known in index.items() if known == arn]:
            del index[address]
    return f"deleted ACM certificate {arn}"


def describe_for_check(settings: dict[str, Any], arn: str) -> dict[str, Any]:
    """DescribeCertificate for ``certform check`` (``{"missing": True}`` when gone)."""
    from botocore.exceptions import ClientError

    from reconciler.providers.aws.config import AwsProviderConfig
    from reconciler.providers.aws.session import client

    provider = AwsProviderConfig.model_validate(settings["provider"])
    acm_client = client(provider, "acm", settings.get("region") or arn.split(":")[3])
    try:
        return dict(acm_client.describe_certificate(CertificateArn=arn)["Certificate"])
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            return {"missing": True}
        raise ProviderError(f"ACM describe {arn}: {describe_error(exc)}") from None
