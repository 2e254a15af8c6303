"""The configuration as pydantic models: the single source of the JSON Schema.

Only shape and per-field rules live here; rules that relate entries to each
other (references, cycles, name constraints) live in ``semantic.py`` where the
whole config is visible.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal, Union

from pydantic import AfterValidator, ConfigDict, Field, field_validator, model_validator

from reconciler.acme.config import AcmeSolver, ExternalAccountBinding
from reconciler.config.types import (
    Duration,
    EntryName,
    KeyAlgorithm,
    RenewBefore,
    StrictModel,
)
from reconciler.monitoring.cloudwatch import CloudWatchConfig
from reconciler.monitoring.notifications import NotificationsConfig
from reconciler.pki.names import dns_name_error
from reconciler.providers.catalog import ProviderConfig, TargetConfig
from reconciler.providers.endpoint import WatchedEndpoint

SCHEMA_URL = "../../schemas/certform.schema.json"


def _check_name(value: str) -> str:
    error = dns_name_error(value)
    if error:
        raise ValueError(error)
    return value.lower()


CertificateName = Annotated[
    str,
    Field(description="A DNS name (wildcard only as the whole leftmost label) or an IP address."),
    AfterValidator(_check_name),
]


class Subject(StrictModel):
    """Distinguished name of a CA certificate."""

    common_name: str = Field(min_length=1, max_length=64)
    organization: str | None = Field(default=None, max_length=64)
    organizational_unit: str | None = Field(default=None, max_length=64)
    country: str | None = Field(default=None, pattern=r"^[A-Z]{2}$")
    state: str | None = Field(default=None, max_length=128)
    locality: str | None = Field(default=None, max_length=128)


class NameConstraints(StrictModel):
    """RFC 5280 name constraints: DNS suffixes (``example.test``) or CIDRs."""

    permitted: list[str] = Field(default_factory=list)
    excluded: list[str] = Field(default_factory=list)


class Lifecycle(StrictModel):
    """Guards against accidental removal."""

    prevent_destroy: bool = Field(
        default=False,
        description="Refuse any plan that destroys this resource; remembered in state.",
    )


_UNGUARDED = Lifecycle()


def _unguarded() -> Lifecycle:
    """The default ``lifecycle``: one shared (frozen) instance rather than a new model
    built and validated for each of 10,000 certificates; a factory, not a default
    value, so that the JSON Schema stays as it was."""
    return _UNGUARDED


class CrlS3(StrictModel):
    """An S3 object the CRL (DER, ``application/pkix-crl``) is put to, as AWS
    Private CA publishes its CRLs; ``url`` is where relying parties fetch it."""

    provider: str = Field(min_length=1, description="The aws provider entry to write with.")
    bucket: str = Field(
        pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", description="The S3 bucket (it must exist)."
    )
    key: str = Field(
        min_length=1,
        max_length=1024,
        description="The object key, e.g. crl/issuing.crl; {key_id} as in url.",
    )


class CrlPublish(StrictModel):
    """Where each CRL goes: a directory, an S3 object, or both."""

    directory: str | None = Field(
        default=None,
        min_length=1,
        description="Where NAME.crl (DER) and NAME.crl.pem are written.",
    )
    s3: CrlS3 | None = Field(default=None, description="An S3 object the DER CRL is put to.")

    @model_validator(mode="after")
    def _somewhere(self) -> CrlPublish:
        if self.directory is None and self.s3 is None:
            raise ValueError("give directory, s3 or both")
        return self


class CrlConfig(StrictModel):
    """A CRL for the certificates this CA issues (AWS Private CA's CRL configuration)."""

    publish: CrlPublish
    validity: Duration = Field(default="7d", description="nextUpdate - thisUpdate.")
    url: str = Field(
        pattern=r"^https?://",
        description="CRL distribution point put in the certificates this CA issues.",
    )

    @model_validator(mode="after")
    def _key_per_ca_key(self) -> CrlConfig:
        """With {key_id} in url each CA key has its own CRL; an S3 key without it
        would overwrite the old key's final CRL with the new key's."""
        s3 = self.publish.s3
        if s3 is not None and ("{key_id}" in self.url) != ("{key_id}" in s3.key):
            raise ValueError("publish.s3.key must contain {key_id} exactly when url does")
        return self


class _AuthorityBase(StrictModel):
    subject: Subject
    key: KeyAlgorithm = "ec-p384"
    renew_before: RenewBefore | None = Field(
        default=None, description="Default: when a third of the lifetime remains."
    )
    name_constraints: NameConstraints | None = None
    lifecycle: Lifecycle = Field(default_factory=_unguarded)
    crl: CrlConfig | None = None


class PrivateRootAuthority(_AuthorityBase):
    """A self-signed root CA whose key certform keeps (encrypted) in its state."""

    type: Literal["private-root"]
    validity: Duration = "3650d"
    path_length: int | None = Field(default=None, ge=0, le=16)


class PrivateSubordinateAuthority(_AuthorityBase):
    """An intermediate CA signed by another certform authority (``parent``)."""

    type: Literal["private-subordinate"]
    parent: EntryName
    validity: Duration = "1825d"
    path_length: int | None = Field(default=0, ge=0, le=16)


class AcmValidation(StrictModel):
    """Where ACM's DNS validation CNAME records go."""

    route53_zone_id: str | None = Field(
        default=None, description="Hosted zone for the CNAMEs; default: found by name."
    )
    route53: bool = Field(
        default=True,
        description="Write the CNAMEs into Route 53; false prints them for a DNS "
        "elsewhere and waits.",
    )


class AwsAcmAuthority(StrictModel):
    """AWS Certificate Manager issues the certificate itself (DNS validation); the
    private key never leaves ACM, and ACM renews it."""

    type: Literal["aws-acm"]
    provider: EntryName = Field(description="Name of an `aws` entry under providers.")
    region: str | None = Field(
        default=None, description="Region of the certificates; default: the provider's."
    )
    validation: AcmValidation | Literal["dns", "email"] = Field(
        default_factory=AcmValidation,
        description="DNS validation settings, or `email`: ACM emails the domain's "
        "contacts and apply reports the request as waiting for their approval.",
    )
    certificate_transparency: bool = Field(
        default=True, description="CertificateTransparencyLoggingPreference ENABLED."
    )
    exportable: bool = Field(
        default=False,
        description="Request an exportable public certificate (Options.Export ENABLED): "
        "apply exports it so that it may be bound to any target, not only AWS ones.",
    )
    certificate_authority_arn: str | None = Field(
        default=None,
        pattern=r"^arn:aws[a-z-]*:acm-pca:[a-z0-9-]+:\d{12}:certificate-authority/[A-Za-z0-9-]+$",
        description="An AWS Private CA: ACM issues private certificates from it "
        "(always exportable, no validation).",
    )
    timeout: Duration = Field(default="10m", description="How long to wait for ISSUED.")
    lifecycle: Lifecycle = Field(default_factory=_unguarded)

    @field_validator("validation", mode="before")
    @classmethod
    def _validation_word(cls, value: object) -> object:
        if isinstance(value, str) and value not in ("dns", "email"):
            raise ValueError(
                f"expected dns, email or DNS settings ({{route53_zone_id, route53}}), got {value!r}"
            )
        return value

    @model_validator(mode="after")
    def _private_needs_no_validation(self) -> AwsAcmAuthority:
        if self.certificate_authority_arn and self.validation == "email":
            raise ValueError(
                "validation: email is for public certificates; a certificate from "
                "certificate_authority_arn needs no validation"
            )
        return self

    @property
    def validation_method(self) -> str:
        """``DNS`` or ``EMAIL`` (RequestCertificate's ValidationMethod)."""
        return "EMAIL" if self.validation == "email" else "DNS"

    @property
    def dns_validation(self) -> AcmValidation:
        """Where DNS validation records go (the defaults for ``validation: dns``)."""
        return self.validation if isinstance(self.validation, AcmValidation) else AcmValidation()

    @property
    def releases_key(self) -> bool:
        """True when ACM lets the key be exported (exportable or private certificates)."""
        return self.exportable or self.certificate_authority_arn is not None


AwsPcaKeyAlgorithm = Literal[
    "RSA_2048", "RSA_3072", "RSA_4096", "EC_prime256v1", "EC_secp384r1", "EC_secp521r1"
]
AwsPcaSigningAlgorithm = Literal[
    "SHA256WITHECDSA",
    "SHA384WITHECDSA",
    "SHA512WITHECDSA",
    "SHA256WITHRSA",
    "SHA384WITHRSA",
    "SHA512WITHRSA",
]


class AwsPcaCrlConfig(StrictModel):
    """The CA's CRL, published by AWS Private CA itself into an S3 bucket."""

    s3_bucket: str = Field(
        pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", description="Bucket AWS writes the CRL to."
    )
    expiration_days: int = Field(
        default=7, ge=1, le=5000, description="Days each published CRL stays valid."
    )


class AwsPcaCreate(StrictModel):
    """A CA certform creates in AWS Private CA (its key never leaves AWS)."""

    subject: Subject
    key_algorithm: AwsPcaKeyAlgorithm = "EC_secp384r1"
    signing_algorithm: AwsPcaSigningAlgorithm = "SHA384WITHECDSA"
    type: Literal["ROOT", "SUBORDINATE"]
    parent: EntryName | None = Field(
        default=None, description="SUBORDINATE: the aws-pca authority that signs this CA."
    )
    validity: Duration | None = Field(
        default=None, description="Of the CA certificate; default 3650d (ROOT), 1825d."
    )
    crl: AwsPcaCrlConfig | None = None

    @model_validator(mode="after")
    def _consistent(self) -> AwsPcaCreate:
        if self.type == "SUBORDINATE" and self.parent is None:
            raise ValueError("parent: a SUBORDINATE CA needs the aws-pca authority that signs it")
        if self.type == "ROOT" and self.parent is not None:
            raise ValueError("parent is for SUBORDINATE CAs; a ROOT signs itself")
        family = "ECDSA" if self.key_algorithm.startswith("EC_") else "RSA"
        if not self.signing_algorithm.endswith(f"WITH{family}"):
            raise ValueError(
                f"signing_algorithm {self.signing_algorithm} does not match key_algorithm "
                f"{self.key_algorithm}; use a ...WITH{family} algorithm"
            )
        return self


class AwsPcaAuthority(StrictModel):
    """AWS Private CA: an existing CA (``certificate_authority_arn``) or one certform
    creates and manages (``create``).  certform generates each certificate's key and
    CSR; the CA signs it."""

    type: Literal["aws-pca"]
    provider: EntryName = Field(description="Name of an `aws` entry under providers.")
    certificate_authority_arn: str | None = Field(
        default=None,
        pattern=r"^arn:aws[a-z-]*:acm-pca:[a-z0-9-]+:\d{12}:certificate-authority/[A-Za-z0-9-]+$",
        description="An existing CA; absent when `create` is given.",
    )
    template_arn: str | None = Field(
        default=None,
        pattern=r"^arn:aws[a-z-]*:acm-pca:::template/[A-Za-z0-9_]+/V\d+$",
        description="Certificate template of issued certificates; default EndEntityCertificate/V1.",
    )
    signing_algorithm: AwsPcaSigningAlgorithm | None = Field(
        default=None, description="Of issued certificates; default: the CA's own."
    )
    create: AwsPcaCreate | None = None
    renew_before: RenewBefore | None = Field(
        default=None, description="Created CAs: default when a third of the lifetime remains."
    )
    timeout: Duration = Field(
        default="2m", description="How long to wait for AWS to issue one certificate."
    )
    lifecycle: Lifecycle = Field(default_factory=_unguarded)

    @model_validator(mode="after")
    def _arn_or_create(self) -> AwsPcaAuthority:
        if (self.certificate_authority_arn is None) == (self.create is None):
            raise ValueError(
                "give exactly one of certificate_authority_arn (an existing CA) and create "
                "(a CA certform creates)"
            )
        return self

    @property
    def parent(self) -> str | None:
        """The authority that signs this one (a created SUBORDINATE)."""
        return self.create.parent if self.create is not None else None


_BARE_EMAIL = re.compile(r"^[^@\s:/]+@[^@\s:/]+\.[^@\s:/]+$")
"""An address an ACME CA accepts as a contact, with or without ``mailto:``."""


class AcmeAuthority(StrictModel):
    """An ACME CA (RFC 8555): Let's Encrypt, ZeroSSL, step-ca, Vault, Pebble..."""

    type: Literal["acme"]
    directory: str = Field(pattern=r"^https?://", description="The ACME directory URL.")
    contact: list[str] = Field(
        min_length=1,
        description="Email addresses for the account (`ops@example.com` or `mailto:ops@...`).",
    )
    terms_of_service_agreed: bool = Field(description="Must be true to create an account.")
    ca_bundle: str | None = Field(
        default=None, description="PEM trust for a private ACME server's HTTPS."
    )
    external_account_binding: ExternalAccountBinding | None = None
    profile: str | None = Field(default=None, description="Certificate profile to request.")
    preferred_chain: str | None = Field(
        default=None, description="Common name of the root (or top issuer) to prefer."
    )
    solvers: list[AcmeSolver] = Field(min_length=1)
    timeout: Duration = Field(default="5m", description="Deadline of one order, end to end.")
    lifecycle: Lifecycle = Field(default_factory=_unguarded)

    @field_validator("contact", mode="after")
    @classmethod
    def _mailto(cls, contact: list[str]) -> list[str]:
        """A bare ``ops@example.com`` is what people write: it means ``mailto:`` (RFC
        8555 wants the URL), so it is normalised rather than refused."""
        bad = [c for c in contact if not _BARE_EMAIL.match(c.removeprefix("mailto:"))]
        if bad:
            raise ValueError(
                f"contact entries must be email addresses (mailto: optional), got {bad[0]!r}"
            )
        return [c if c.startswith("mailto:") else f"mailto:{c}" for c in contact]

    @model_validator(mode="after")
    def _terms(self) -> AcmeAuthority:
        if not self.terms_of_service_agreed:
            raise ValueError(
                "terms_of_service_agreed must be true: the CA requires agreeing to its terms"
            )
        return self


class ImportedAuthority(StrictModel):
    """Certificates issued elsewhere and imported from PEM files (never renewed by certform)."""

    type: Literal["imported"]
    lifecycle: Lifecycle = Field(default_factory=_unguarded)


PRIVATE_AUTHORITY_TYPES = ("private-root", "private-subordinate")

Authority = Annotated[
    Union[  # noqa: UP007
        PrivateRootAuthority,
        PrivateSubordinateAuthority,
        AwsAcmAuthority,
        AwsPcaAuthority,
        AcmeAuthority,
        ImportedAuthority,
    ],
    Field(discriminator="type"),
]

Usage = Literal["server_auth", "client_auth"]


class PrivateKeyPolicy(StrictModel):
    """What a renewal does with the private key."""

    rotation: Literal["always", "never"] = Field(
        default="always",
        description="always: every renewal gets a new key (default); never: renewals keep "
        "the key (a changed key algorithm still makes a new one).",
    )


class Certificate(StrictModel):
    """A leaf certificate: its names, issuer, key and renewal policy."""

    names: list[CertificateName] = Field(
        default_factory=list,
        description="First name is the subject CN; DNS names, wildcards, IPs. Required, "
        "except for imported certificates (where, if given, the file must match them).",
    )
    issuer: EntryName | list[EntryName] = Field(
        description="An authority, or an ordered list of ACME authorities to fall back through."
    )
    key: KeyAlgorithm | None = Field(default=None, description="Default: defaults.key or ec-p256.")
    validity: Duration | None = Field(
        default=None, description="Default: defaults.validity or 90d."
    )
    renew_before: RenewBefore | None = Field(
        default=None, description="Default: defaults.renew_before, else a third of the lifetime."
    )
    usages: list[Usage] = Field(default_factory=lambda: ["server_auth"], min_length=1)
    tags: dict[str, str] = Field(default_factory=dict)
    lifecycle: Lifecycle = Field(default_factory=_unguarded)
    exportable: bool = False
    revoke_replaced: bool = Field(
        default=False,
        description="Revoke the previous certificate (reason superseded) once every binding "
        "serves its successor.",
    )
    certificate: str | None = Field(
        default=None, description="Imported: PEM file of the certificate (issuer: imported)."
    )
    chain: str | None = Field(default=None, description="Imported: PEM file of the chain.")
    private_key: str | PrivateKeyPolicy | None = Field(
        default=None,
        description="{rotation: always|never} for issued certificates; for imported ones, "
        "the PEM file of the unencrypted private key.",
    )
    private_key_env: str | None = Field(
        default=None, description="Imported: environment variable holding the PEM key."
    )

    @property
    def key_rotation(self) -> str:
        policy = self.private_key
        return policy.rotation if isinstance(policy, PrivateKeyPolicy) else "always"

    @property
    def private_key_file(self) -> str | None:
        return self.private_key if isinstance(self.private_key, str) else None

    @model_validator(mode="after")
    def _check(self) -> Certificate:
        """One validator, calling the checks in order (the first problem wins): each
        model validator is a call from pydantic-core into Python, per certificate."""
        self._names_or_file()
        self._issuer_list()
        return self

    def _names_or_file(self) -> None:
        if not self.names and self.certificate is None:
            raise ValueError("names: give at least one name")
        if self.certificate is None and isinstance(self.private_key, str):
            raise ValueError(
                "private_key is a file only for imported certificates (with certificate: "
                "PATH); for issued ones it takes {rotation: always|never}"
            )
        if self.certificate is not None and (self.private_key_file is None) == (
            self.private_key_env is None
        ):
            raise ValueError("an imported certificate needs exactly one of private_key or "
                             "private_key_env")  # fmt: skip

    def _issuer_list(self) -> None:
        if isinstance(self.issuer, list):
            if not self.issuer:
                raise ValueError("issuer: give at least one authority")
            if len(set(self.issuer)) != len(self.issuer):
                raise ValueError("issuer: an authority is listed twice")

    @property
    def issuers(self) -> list[str]:
        """The issuers in the order to try them (a single issuer is a list of one)."""
        return [self.issuer] if isinstance(self.issuer, str) else list(self.issuer)

    @property
    def primary_issuer(self) -> str:
        """The first of ``issuers``, without building the list: validation and
        resolution ask for it several times per certificate."""
        issuer = self.issuer
        return issuer if isinstance(issuer, str) else issuer[0]


class Binding(StrictModel):
    """Where a certificate is served."""

    certificate: EntryName
    target: TargetConfig


class Defaults(StrictModel):
    """Values used by certificates that do not set their own."""

    key: KeyAlgorithm = "ec-p256"
    validity: Duration = "90d"
    renew_before: RenewBefore | None = None


class LocalKeyStoreConfig(StrictModel):
    """Private keys sealed under the master key (CERTFORM_MASTER_KEY or a key file)."""

    type: Literal["local"]


class KmsKeyStoreConfig(StrictModel):
    """AWS KMS envelope encryption: only the KMS-encrypted data key is stored."""

    type: Literal["aws-kms"]
    key_id: str = Field(min_length=1, description="KMS key ARN, key id or alias/NAME.")
    provider: EntryName = Field(description="Name of an `aws` entry under providers.")


KeyStoreConfig = Annotated[
    Union[LocalKeyStoreConfig, KmsKeyStoreConfig],  # noqa: UP007
    Field(discriminator="type"),
]


class StateConfig(StrictModel):
    """Where the state lives: an embedded SQLite file (relative to the config) or a
    named state in a shared PostgreSQL database (for teams and CI)."""

    backend: Literal["sqlite", "postgres"] = "sqlite"
    path: str = Field(default=".certform/state.db", description="sqlite: the state file.")
    dsn_env: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$",
        description="postgres: the environment variable holding the libpq connection "
        "string (never the config itself: it usually holds a password).",
    )
    name: str = Field(
        default="default",
        pattern=r"^[a-z0-9][a-z0-9_-]{0,47}$",
        description="postgres: the state's name; several states share one database, each "
        "with its own lineage, serial and lock.",
    )
    master_key_file: str | None = Field(
        default=None,
        description="File holding the base64 master key; default .certform/master.key "
        "unless CERTFORM_MASTER_KEY is set.",
    )
    key_store: KeyStoreConfig = Field(
        default_factory=lambda: LocalKeyStoreConfig(type="local"),
        description="What wraps the state's data key: local (default) or aws-kms.",
    )

    @model_validator(mode="after")
    def _backend_settings(self) -> StateConfig:
        given = self.model_fields_set
        if self.backend == "postgres":
            if self.dsn_env is None:
                raise ValueError(
                    "dsn_env: the postgres backend needs the name of the environment "
                    "variable holding its connection string (e.g. dsn_env: CERTFORM_PG_DSN)"
                )
            if "path" in given:
                raise ValueError("path is for the sqlite backend; postgres uses dsn_env and name")
        elif given & {"dsn_env", "name"}:
            raise ValueError("dsn_env and name are for the postgres backend (backend: postgres)")
        return self


class ChangeLimitConfig(StrictModel):
    """Above this share of the managed certificates, apply needs --force."""

    percent: float = Field(default=30, gt=0, le=100)
    minimum_certificates: int = Field(
        default=10,
        ge=1,
        le=1_000_000,
        description="Below this many managed certificates, no limit.",
    )


class PolicyConfig(StrictModel):
    """Guard rails checked at validate time, and the change limit checked at plan time."""

    allowed_domains: list[str] | None = Field(
        default=None,
        description="Domain suffixes certificates may name (e.g. example.com covers "
        "www.example.com); any other DNS name is refused.",
    )
    min_rsa_bits: int | None = Field(default=None, ge=2048, le=4096)
    allowed_keys: list[KeyAlgorithm] | None = None
    max_validity: Duration | None = None
    change_limit: ChangeLimitConfig = Field(default_factory=ChangeLimitConfig)


CertificateAddress = Annotated[
    str, Field(pattern=r"^certificate\.[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
]


class MovedBlock(StrictModel):
    """A certificate renamed in the config: its state (key, certificate, bindings,
    history) follows it instead of a destroy and a new issuance (Terraform's
    ``moved``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    from_: CertificateAddress = Field(alias="from", description="The old address.")
    to: CertificateAddress = Field(description="The new address, declared in the config.")


class CertformConfig(StrictModel):
    """Root of a certform configuration (one file or a directory of files merged)."""

    schema_ref: str | None = Field(default=None, alias="$schema")
    state: StateConfig = Field(default_factory=StateConfig)
    defaults: Defaults = Field(default_factory=Defaults)
    providers: dict[EntryName, ProviderConfig] = Field(
        default_factory=dict,
        description="Connection settings (AWS region, endpoint, profile) that targets name.",
    )
    authorities: dict[EntryName, Authority] = Field(default_factory=dict)
    certificates: dict[EntryName, Certificate] = Field(default_factory=dict)
    bindings: list[Binding] = Field(default_factory=list)
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    notifications: NotificationsConfig | None = Field(
        default=None,
        description="Expiry events `certform check` sends, like ACM's daily expiry events.",
    )
    cloudwatch: CloudWatchConfig | None = Field(
        default=None,
        description="`certform check` publishes DaysToExpiry per certificate to CloudWatch.",
    )
    endpoints: dict[EntryName, WatchedEndpoint] = Field(
        default_factory=dict,
        description="TLS endpoints `certform check` watches without deploying there.",
    )
    moved: list[MovedBlock] = Field(
        default_factory=list,
        max_length=10_000,
        description="Renamed certificates: [{from: certificate.old, to: certificate.new}].",
    )

    @model_validator(mode="after")
    def _moves_are_renames(self) -> CertformConfig:
        seen: set[str] = set()
        for index, move in enumerate(self.moved):
            old, new = move.from_.split(".", 1)[1], move.to.split(".", 1)[1]
            where = f"moved[{index}]"
            if move.from_ in seen:
                raise ValueError(f"{where}: {move.from_} is moved twice")
            seen.add(move.from_)
            if old == new:
                raise ValueError(f"{where}: from and to are the same address")
            if old in self.certificates:
                raise ValueError(
                    f"{where}: {move.from_} is still declared; a moved certificate "
                    "keeps only its new name"
                )
            if new not in self.certificates:
                raise ValueError(f"{where}: {move.to} is not declared under certificates")
        return self
