"""Build and check X.509 certificates: CAs, leaves, chain verification, PEM.

Everything here is pure: keys, names and times come in as arguments, so plans
are reproducible and tests need no clock.  The extension profiles are chosen to
lint clean under pkilint's RFC 5280 linter and to verify under OpenSSL.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from reconciler.pki.keys import PrivateKey, PublicKey, signing_hash_for
from reconciler.pki.names import (
    constraint_error,
    dns_name_error,
    is_ip_address,
    name_permitted,
    parse_cidr,
)

MAX_COMMON_NAME_LENGTH = 64  # ub-common-name in RFC 5280

_E = TypeVar("_E", bound=x509.ExtensionType)
_IP_NETWORK_TYPES = (ipaddress.IPv4Network, ipaddress.IPv6Network)


@dataclass(frozen=True)
class Subject:
    """Distinguished name of a CA, in the handful of attributes people actually set."""

    common_name: str
    organization: str | None = None
    organizational_unit: str | None = None
    country: str | None = None
    state: str | None = None
    locality: str | None = None

    def to_name(self) -> x509.Name:
        """The X.509 name, most significant attribute first (C, ST, L, O, OU, CN)."""
        if not 0 < len(self.common_name) <= MAX_COMMON_NAME_LENGTH:
            raise ValueError(f"common name must be 1-{MAX_COMMON_NAME_LENGTH} characters")
        pairs = [
            (NameOID.COUNTRY_NAME, self.country),
            (NameOID.STATE_OR_PROVINCE_NAME, self.state),
            (NameOID.LOCALITY_NAME, self.locality),
            (NameOID.ORGANIZATION_NAME, self.organization),
            (NameOID.ORGANIZATIONAL_UNIT_NAME, self.organizational_unit),
            (NameOID.COMMON_NAME, self.common_name),
        ]
        return x509.Name([x509.NameAttribute(oid, value) for oid, value in pairs if value])


def new_serial() -> int:
    """A random positive serial with 159 bits of entropy (fits the 20-octet limit)."""
    return x509.random_serial_number()


def build_ca_certificate(
    *,
    public_key: PublicKey,
    subject: Subject,
    issuer_cert: x509.Certificate | None,
    issuer_key: PrivateKey,
    not_before: datetime,
    not_after: datetime,
    path_length: int | None,
    permitted: Sequence[str] = (),
    excluded: Sequence[str] = (),
    crl_url: str | None = None,
) -> x509.Certificate:
    """A CA certificate: self-signed root when ``issuer_cert`` is None, else a subordinate.

    ``permitted``/``excluded`` hold domains (``example.test``) and CIDR strings.  A
    leading dot (``.example.test``, "subdomains only") is dropped: RFC 5280 dNSName
    syntax has no such form and linters reject it, so the certificate then covers
    the domain itself too.  ``names.name_permitted`` accounts for that.
    """
    if issuer_cert is None:
        _require_same_key(
            issuer_key.public_key(), public_key, "a root must be signed by its own key"
        )
        issuer_name = subject.to_name()
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(public_key)
    else:
        _require_same_key(
            issuer_key.public_key(),
            issuer_cert.public_key(),
            "issuer_key is not the key of issuer_cert",
        )
        issuer_name = issuer_cert.subject
        aki = _aki_from_issuer(issuer_cert)
    builder = (
        _base_builder(public_key, not_before, not_after)
        .subject_name(subject.to_name())
        .issuer_name(issuer_name)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(_key_usage(digital_signature=True, cert_sign=True), critical=True)
        .add_extension(aki, critical=False)
    )
    if permitted or excluded:
        builder = builder.add_extension(_name_constraints(permitted, excluded), critical=True)
    if crl_url and issuer_cert is not None:
        builder = builder.add_extension(_crl_distribution_point(crl_url), critical=False)
    return _sign(builder, issuer_key)


def build_leaf_certificate(
    *,
    public_key: PublicKey,
    names: Sequence[str],
    issuer_cert: x509.Certificate,
    issuer_key: PrivateKey,
    not_before: datetime,
    not_after: datetime,
    client_auth: bool = False,
    server_auth: bool = True,
    crl_url: str | None = None,
) -> x509.Certificate:
    """An end-entity certificate for ``names`` (DNS names and IP literals, SAN order kept).

    The subject CN repeats the first name for old clients; when that name is too
    long for a CN the subject is empty and, as RFC 5280 requires, the SAN critical.
    """
    _check_leaf_names(names)
    if not (server_auth or client_auth):
        raise ValueError("a leaf certificate needs server_auth, client_auth or both")
    _require_same_key(
        issuer_key.public_key(),
        issuer_cert.public_key(),
        "issuer_key is not the key of issuer_cert",
    )
    use_cn = len(names[0]) <= MAX_COMMON_NAME_LENGTH
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])] if use_cn else [])
    builder = (
        _base_builder(public_key, not_before, not_after)
        .subject_name(subject)
        .issuer_name(issuer_cert.subject)
        .add_extension(_subject_alt_name(names), critical=not use_cn)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            _key_usage(
                digital_signature=True, key_encipherment=isinstance(public_key, rsa.RSAPublicKey)
            ),
            critical=True,
        )
        .add_extension(_extended_key_usage(server_auth, client_auth), critical=False)
        .add_extension(_aki_from_issuer(issuer_cert), critical=False)
    )
    if crl_url:
        builder = builder.add_extension(_crl_distribution_point(crl_url), critical=False)
    return _sign(builder, issuer_key)


def verify_chain(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    root: x509.Certificate,
    at: datetime,
) -> str | None:
    """None when ``leaf`` chains to ``root`` through ``intermediates`` at time ``at``.

    Otherwise a one-line reason.  Checks signatures, every validity window, that
    each issuer is a CA allowed to sign (basicConstraints, keyUsage, path length)
    and the issuers' name constraints.  Intermediates may come in any order and
    unused ones are ignored; ``leaf`` may itself be a CA or the root.

    This is done by hand rather than with ``cryptography.x509.verification``
    because that verifier enforces the Web PKI profile, which refuses Ed25519 CA
    keys, and certform supports those.
    """
    when = at if at.tzinfo else at.replace(tzinfo=UTC)
    path = _build_path(leaf, intermediates, root)
    if isinstance(path, str):
        return path
    return _validity_error(path, when) or _issuer_error(path) or _constraint_violation(path)


def certificate_to_pem(cert: x509.Certificate) -> str:
    """PEM text of ``cert``, as written to certificate files."""
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def certificate_from_pem(text: str) -> x509.Certificate:
    """The first certificate in PEM ``text``; ValueError when there is none."""
    return x509.load_pem_x509_certificate(text.encode("ascii"))


def fingerprint_sha256(cert: x509.Certificate) -> str:
    """Lowercase hex SHA-256 of the DER certificate: the identity used in state and diffs."""
    return cert.fingerprint(hashes.SHA256()).hex()


def _base_builder(
    public_key: PublicKey, not_before: datetime, not_after: datetime
) -> x509.CertificateBuilder:
    if not_after <= not_before:
        raise ValueError("not_after must be later than not_before")
    return (
        x509.CertificateBuilder()
        .public_key(public_key)
        .serial_number(new_serial())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def _sign(builder: x509.CertificateBuilder, issuer_key: PrivateKey) -> x509.Certificate:
    return builder.sign(issuer_key, signing_hash_for(issuer_key))  # type: ignore[arg-type]


def _require_same_key(
    actual: PublicKey, expected: x509.CertificatePublicKeyTypes, message: str
) -> None:
    if actual != expected:
        raise ValueError(message)


def _aki_from_issuer(issuer_cert: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    """AKI copied from the issuer's SKI so chain building matches whatever method made it."""
    ski = _extension(issuer_cert, x509.SubjectKeyIdentifier)
    if ski is None:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_cert.public_key())  # type: ignore[arg-type]
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def _crl_distribution_point(url: str) -> x509.CRLDistributionPoints:
    """Where relying parties fetch the issuer's CRL (RFC 5280 4.2.1.13)."""
    point = x509.DistributionPoint(
        full_name=[x509.UniformResourceIdentifier(url)],
        relative_name=None,
        reasons=None,
        crl_issuer=None,
    )
    return x509.CRLDistributionPoints([point])


def _key_usage(
    *, digital_signature: bool, cert_sign: bool = False, key_encipherment: bool = False
) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=key_encipherment,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _extended_key_usage(server_auth: bool, client_auth: bool) -> x509.ExtendedKeyUsage:
    usages = [
        *([ExtendedKeyUsageOID.SERVER_AUTH] if server_auth else []),
        *([ExtendedKeyUsageOID.CLIENT_AUTH] if client_auth else []),
    ]
    return x509.ExtendedKeyUsage(usages)


def _check_leaf_names(names: Sequence[str]) -> None:
    if not names:
        raise ValueError("a leaf certificate needs at least one name")
    for name in names:
        error = dns_name_error(name)
        if error:
            raise ValueError(f"{name!r}: {error}")


def _general_name(name: str) -> x509.GeneralName:
    if is_ip_address(name):
        return x509.IPAddress(ipaddress.ip_address(name))
    return x509.DNSName(name)


def _subject_alt_name(names: Sequence[str]) -> x509.SubjectAlternativeName:
    return x509.SubjectAlternativeName([_general_name(name) for name in names])


def _name_constraints(permitted: Sequence[str], excluded: Sequence[str]) -> x509.NameConstraints:
    return x509.NameConstraints(
        permitted_subtrees=[_constraint_subtree(c) for c in permitted] or None,
        excluded_subtrees=[_constraint_subtree(c) for c in excluded] or None,
    )


def _constraint_subtree(constraint: str) -> x509.GeneralName:
    """One subtree; the leading dot is dropped because RFC 5280 dNSName syntax has none."""
    error = constraint_error(constraint)
    if error:
        raise ValueError(f"name constraint {constraint!r}: {error}")
    network = parse_cidr(constraint)
    if network is not None:
        return x509.IPAddress(network)
    return x509.DNSName(constraint.lower().removeprefix("."))


def _describe(cert: x509.Certificate) -> str:
    """A short human handle for a certificate in error messages."""
    subject = cert.subject.rfc4514_string()
    if subject:
        return f"'{subject}'"
    names = _san_names(cert)
    return f"'{names[0]}'" if names else f"serial {cert.serial_number:x}"


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def _build_path(
    leaf: x509.Certificate, intermediates: Sequence[x509.Certificate], root: x509.Certificate
) -> list[x509.Certificate] | str:
    """Leaf-to-root path, or why there is none."""
    if leaf == root:
        return [root]
    path, pool = [leaf], list(intermediates)
    while not _issued_by(path[-1], root):
        issuer = next((c for c in pool if c != path[-1] and _issued_by(path[-1], c)), None)
        if issuer is None:
            return f"{_describe(path[-1])} is not signed by the root or any given intermediate"
        pool.remove(issuer)
        path.append(issuer)
    return [*path, root]


def _validity_error(path: list[x509.Certificate], at: datetime) -> str | None:
    for cert in path:
        if at < cert.not_valid_before_utc:
            return f"{_describe(cert)} is not valid before {cert.not_valid_before_utc.isoformat()}"
        if at > cert.not_valid_after_utc:
            return f"{_describe(cert)} expired at {cert.not_valid_after_utc.isoformat()}"
    return None


def _issuer_error(path: list[x509.Certificate]) -> str | None:
    """Every issuer must be a signing CA whose path length covers the CAs below it."""
    for depth, issuer in enumerate(path[1:]):
        constraints = _extension(issuer, x509.BasicConstraints)
        if constraints is None or not constraints.ca:
            return f"{_describe(issuer)} is not a CA (basicConstraints CA:TRUE missing)"
        usage = _extension(issuer, x509.KeyUsage)
        if usage is not None and not usage.key_cert_sign:
            return f"{_describe(issuer)} may not sign certificates (keyUsage lacks keyCertSign)"
        if constraints.path_length is not None and depth > constraints.path_length:
            return (
                f"{_describe(issuer)} allows {constraints.path_length} CAs below it, found {depth}"
            )
    return None


def _constraint_violation(path: list[x509.Certificate]) -> str | None:
    """Names of every certificate below a constrained CA must satisfy its constraints."""
    for index, issuer in enumerate(path[1:], start=1):
        constraints = _extension(issuer, x509.NameConstraints)
        if constraints is None:
            continue
        permitted = _constraint_strings(constraints.permitted_subtrees)
        excluded = _constraint_strings(constraints.excluded_subtrees)
        for cert in path[:index]:
            for name in _san_names(cert):
                if not name_permitted(name, permitted, excluded):
                    return f"{name} is outside the name constraints of {_describe(issuer)}"
    return None


def _extension(cert: x509.Certificate, kind: type[_E]) -> _E | None:
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def _san_names(cert: x509.Certificate) -> list[str]:
    san = _extension(cert, x509.SubjectAlternativeName)
    if san is None:
        return []
    ips = [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    return san.get_values_for_type(x509.DNSName) + ips


def _constraint_strings(subtrees: Sequence[x509.GeneralName] | None) -> list[str]:
    """DNS and IP subtrees as ``name_permitted`` strings; other name types do not apply."""
    strings: list[str] = []
    for subtree in subtrees or ():
        if isinstance(subtree, x509.DNSName):
            strings.append(subtree.value)
        elif isinstance(subtree, x509.IPAddress) and isinstance(subtree.value, _IP_NETWORK_TYPES):
            strings.append(str(subtree.value))
    return strings
