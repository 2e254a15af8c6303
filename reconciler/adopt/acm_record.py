"""``certform import ADDRESS --acm-arn ARN``: record a certificate ACM already
holds, and the AWS bindings already serving it, so that the next plan has
nothing to do (Terraform's ``import``: the configuration declares it first).

Two kinds of ACM certificate:

* issued by ACM (``AMAZON_ISSUED``, or ``PRIVATE`` from AWS Private CA): the
  declared issuer must be an ``aws-acm`` authority in the ARN's region, with
  the same names and key algorithm; the record points at the ARN (ACM keeps
  the key and renews it in place);
* imported into ACM by hand (``IMPORTED``): the declared issuer must be an
  ``imported`` authority whose certificate file is the very certificate ACM
  holds, and ``--key`` the key file (it must match); the key is sealed in the
  state like any imported key, and the bindings keep serving the same ARN
  (a later renewal re-imports into it).

Everything is checked before anything changes.  Then the certificate is tagged
``managed-by: certform`` and ``certform:address`` (the IAM policy certform
generates only lets it touch certificates so tagged, and a lost ARN is found
again by the address tag) and recorded, with each declared AWS binding that
already serves the ARN, in one state transaction, audited.  A binding that does
not serve it yet is left to the next apply, which binds it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from reconciler.errors import UsageError
from reconciler.model.material import CertificateMaterial, IssuedMaterial
from reconciler.model.records import BindingRecord, CertificateRecord
from reconciler.pki.builder import fingerprint_sha256

ACM_ISSUED = frozenset({"AMAZON_ISSUED", "PRIVATE"})


@dataclass(frozen=True)
class Adopted:
    """What ``import --acm-arn`` recorded and what it left to the next apply."""

    address: str
    arn: str
    kind: str
    serial: str
    not_after: datetime
    bound: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)
    """``address: why`` for each declared binding not recorded (the next apply binds it)."""


@dataclass
class _Found:
    """The ACM certificate as read: its description and its PEMs."""

    detail: dict[str, Any]
    certificate: x509.Certificate
    certificate_pem: str
    chain_pem: str

    @property
    def serial(self) -> str:
        return format(self.certificate.serial_number, "x")


def region_of(arn: str) -> str:
    """The region of an ACM certificate ARN; UsageError for anything else."""
    parts = arn.split(":")
    if len(parts) < 6 or parts[0] != "arn" or parts[2] != "acm" or not parts[3]:
        raise UsageError(
            f"--acm-arn {arn!r} is not an ACM certificate ARN "
            "(arn:aws:acm:REGION:ACCOUNT:certificate/ID)"
        )
    return parts[3]


def _declared(validated: Any, name: str) -> Any:
    for certificate in validated.desired.certificates:
        if certificate.name == name:
            return certificate
    raise UsageError(
        f"certificate.{name} is not declared in the configuration; declare it first "
        "(`certform import --from-aws --region R` proposes the YAML for every ACM "
        "certificate), then import it"
    )


def _provider(validated: Any, desired: Any, region: str) -> Any:
    """The AWS connection settings to read the ARN with: the aws-acm authority's
    provider, else the provider of a binding reading ACM in that region, else the
    configuration's first aws provider."""
    from reconciler.providers.aws.config import AwsProviderConfig

    acm = getattr(desired.spec, "acm", None)
    if acm:
        return AwsProviderConfig.model_validate(acm["provider"])
    for binding in validated.desired.bindings:
        settings = binding.target.get("provider_settings")
        if binding.certificate == desired.name and settings and binding.acm_region == region:
            return AwsProviderConfig.model_validate(settings)
    for provider in validated.config.providers.values():
        if getattr(provider, "type", None) == "aws":
            return provider
    raise UsageError("--acm-arn: the configuration declares no aws provider to reach ACM with")


def _read(acm: Any, arn: str) -> _Found:
    from reconciler.providers.aws.session import aws_errors

    with aws_errors(f"reading ACM certificate {arn}"):
        detail = dict(acm.describe_certificate(CertificateArn=arn)["Certificate"])
        if detail.get("Status") != "ISSUED":
            raise UsageError(
                f"{arn} is {detail.get('Status')}, not ISSUED: only an issued certificate "
                "can be adopted (a pending request is continued by apply)"
            )
        pems = acm.get_certificate(CertificateArn=arn)
    pem = str(pems["Certificate"])
    return _Found(
        detail,
        x509.load_pem_x509_certificate(pem.encode()),
        pem,
        str(pems.get("CertificateChain") or ""),
    )


def _acm_issued_record(desired: Any, found: _Found, arn: str, region: str) -> CertificateRecord:
    """Check an ACM-issued certificate against its declaration; its record."""
    from reconciler.issuers.aws_acm import AcmLeafSpec, releases_key
    from reconciler.pki.keys import key_algorithm_of

    spec = desired.spec
    address = desired.address
    if not isinstance(spec, AcmLeafSpec):
        raise UsageError(
            f"{arn} was issued by ACM ({found.detail.get('Type')}): declare {address} with "
            f"issuer: an aws-acm authority (it names {spec.issuer}, of type {spec.issuer_type})"
        )
    if spec.acm.get("region") != region:
        raise UsageError(
            f"{arn} is in {region}, but {address}'s authority {spec.issuer} issues in "
            f"{spec.acm.get('region')}; set region: {region} on it"
        )
    if releases_key(spec.acm):
        raise UsageError(
            f"{address}'s authority {spec.issuer} exports its keys (exportable or a Private "
            "CA): adopting such a certificate is not supported; declare it under an aws-acm "
            "authority without exportable, or let apply request a new one"
        )
    names = sorted(
        {str(n).lower() for n in found.detail.get("SubjectAlternativeNames") or []}
        | {str(found.detail.get("DomainName", "")).lower()} - {""}
    )
    if names != sorted(n.lower() for n in spec.names):
        raise UsageError(
            f"{arn} is for {', '.join(names)}; {address} declares "
            f"{', '.join(spec.names)}: make the names match"
        )
    key = key_algorithm_of(found.certificate.public_key())  # type: ignore[arg-type]
    if key != spec.key:
        raise UsageError(
            f"{arn} has a {key} key; {address} declares key: {spec.key} (set key: {key})"
        )
    after = spec.extended(
        renew_before=desired.renew_before,
        prevent_destroy=desired.prevent_destroy,
        tags=desired.tags,
    )
    return CertificateRecord(
        name=desired.name,
        spec=after.recorded(),
        serial=found.serial,
        not_before=found.certificate.not_valid_before_utc,
        not_after=found.certificate.not_valid_after_utc,
        issuer_key_id="aws-acm",
        fingerprint=fingerprint_sha256(found.certificate),
        prevent_destroy=desired.prevent_destroy,
        tags=dict(desired.tags),
        has_key=False,
        external_id=arn,
    )


def _imported_record(
    desired: Any, found: _Found, arn: str, key: Path | None, root: Path
) -> tuple[CertificateRecord, IssuedMaterial, bytes]:
    """Check a certificate imported into ACM against its declaration and ``--key``;
    its record, its material (from the declared files) and the key to seal."""
    from reconciler.config.imported import ImportError_, load_imported
    from reconciler.issuers.base import leaf_record
    from reconciler.issuers.imported import ImportedLeafSpec
    from reconciler.pki.keys import private_key_to_der
    from reconciler.plan.model import Action, Change

    spec, address = desired.spec, desired.address
    if not isinstance(spec, ImportedLeafSpec):
        raise UsageError(
            f"{arn} was imported into ACM: declare {address} under an imported authority "
            "(type: imported) with its certificate and private_key files, and pass --key"
        )
    if key is None:
        raise UsageError(
            f"{arn} was imported into ACM, which never gives its private key back: "
            "pass the key file with --key"
        )
    files = spec.import_files
    try:
        material = load_imported(
            root, str(files["certificate"]), files.get("chain"), str(key), None
        )
    except ImportError_ as exc:
        raise UsageError(f"--key {key}: {exc}") from None
    if material.fingerprint != fingerprint_sha256(found.certificate):
        raise UsageError(
            f"{arn} holds serial {found.serial}, but {files['certificate']} (declared for "
            f"{address}) holds serial {material.serial}: declare the file of the certificate "
            "ACM serves"
        )
    private = serialization.load_pem_private_key(material.key_pem, None)
    after = spec.extended(
        renew_before=desired.renew_before,
        prevent_destroy=desired.prevent_destroy,
        tags=desired.tags,
    )
    change = Change(address, Action.ISSUE, ("imported from ACM",), None, after)
    record = leaf_record(change, after.recorded(), material.certificate, "imported")
    issued = IssuedMaterial(material.certificate_pem, material.chain_pem, material.root_pem)
    return record, issued, private_key_to_der(private)  # type: ignore[arg-type]


def _bindings(
    validated: Any,
    record: CertificateRecord,
    issued: IssuedMaterial,
    arn: str,
    region: str,
    now: datetime,
) -> tuple[list[BindingRecord], list[str]]:
    """The declared bindings of the certificate that already serve ``arn`` (observed
    as a plan would, with the facts a deploy would have recorded), and why the
    others are left to apply."""
    from reconciler.providers.catalog import target_from_settings

    material = CertificateMaterial(
        f"certificate.{record.name}",
        record.name,
        record.serial,
        record.not_after,
        issued.certificate_pem,
        issued.chain_pem,
        issued.root_pem,
        b"",
        dict(record.tags),
        acm_arn=arn if record.external_id else None,
        not_before=record.not_before,
    )
    found, left = [], []
    for binding in validated.desired.bindings:
        if binding.certificate != record.name:
            continue
        if binding.acm_region is None:
            left.append(f"{binding.address}: not an AWS target; the next apply deploys it")
            continue
        if binding.acm_region != region:
            left.append(
                f"{binding.address}: reads ACM in {binding.acm_region}, not {region}; "
                "the next apply imports a copy there"
            )
            continue
        target = target_from_settings(dict(binding.target), validated.root)
        facts = {"region": region, "certificate_arn": arn, "serial": record.serial}
        facts = target.recorded_facts(material, facts)
        observation = target.observe(facts)
        if observation.status != "in_sync":
            left.append(
                f"{binding.address}: {'; '.join(observation.details)}; the next apply binds it"
            )
            continue
        found.append(
            BindingRecord(
                binding.address, record.name, dict(binding.target), record.serial, facts, now
            )
        )
    return found, left


def _tag(acm: Any, arn: str, address: str) -> None:
    from reconciler.providers.aws.acm import MANAGED_VALUE, TAG_ADDRESS, TAG_MANAGED
    from reconciler.providers.aws.session import aws_errors

    tags = [{"Key": TAG_MANAGED, "Value": MANAGED_VALUE}, {"Key": TAG_ADDRESS, "Value": address}]
    with aws_errors(f"tagging ACM certificate {arn}"):
        acm.add_tags_to_certificate(CertificateArn=arn, Tags=tags)


def adopt_acm(
    validated: Any, store: Any, name: str, arn: str, key: Path | None, lock_timeout: float
) -> Adopted:
    """Record ``arn`` as certificate ``name`` (see the module docstring)."""
    from reconciler.engine.context import actor
    from reconciler.providers.aws.session import client

    name = name.removeprefix("certificate.")
    region = region_of(arn)
    desired = _declared(validated, name)
    acm = client(_provider(validated, desired, region), "acm", region)
    found = _read(acm, arn)
    kind = str(found.detail.get("Type"))
    key_der: bytes | None = None
    if kind in ACM_ISSUED:
        if key is not None:
            raise UsageError(f"{arn} was issued by ACM, which keeps its key: drop --key")
        record = _acm_issued_record(desired, found, arn, region)
        issued = IssuedMaterial(found.certificate_pem, found.chain_pem, "")
    else:
        record, issued, key_der = _imported_record(desired, found, arn, key, validated.root)
    now = datetime.now(UTC)
    store.lock("import", lock_timeout)
    try:
        if store.exists:
            store.open()
        recorded = store.read()
        if name in recorded.certificates:
            raise UsageError(
                f"certificate.{name} is already in the state (serial "
                f"{recorded.certificates[name].serial}); nothing was changed (to adopt "
                f"another certificate under this name: certform state rm certificate.{name})"
            )
        bindings, left = _bindings(validated, record, issued, arn, region, now)
        _tag(acm, arn, f"certificate.{name}")
        store.open()  # creates a new state, under the lock
        with store.transaction() as writer:
            writer.put_certificate(record, issued, key_der)
            for binding in bindings:
                writer.put_binding(binding)
            who = actor()
            writer.audit(
                who,
                "import",
                f"certificate.{name}",
                "import",
                "ok",
                f"adopted {arn} ({kind}) serial {record.serial}",
            )
            for binding in bindings:
                writer.audit(
                    who, "import", binding.address, "import", "ok", f"already serving {arn}"
                )
    finally:
        store.unlock()
        store.close()
    return Adopted(
        f"certificate.{name}",
        arn,
        kind,
        record.serial,
        record.not_after,
        [b.address for b in bindings],
        left,
    )
