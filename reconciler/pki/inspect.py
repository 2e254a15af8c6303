"""What a presented certificate chain is and what is wrong with it: pure checks.

``assess`` judges what a TLS handshake showed (validity at a given time,
self-signed, the name per RFC 6125, whether the chain builds to a trusted
root); ``describe_leaf``, ``days_left`` and ``is_self_signed`` describe one
certificate.  No network and no clock (only the system trust store is read,
once): the time is always passed in, so ``certform check``, the endpoint
observation and imported-certificate validation share these checks, and tests
pin them with fixed times.
The handshake that produces a ``Presented`` lives in ``providers/tls_probe.py``.
Nothing here touches private keys.
"""

from __future__ import annotations

import functools
import ipaddress
import ssl
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509 import verification

from reconciler.pki.builder import verify_chain

_SYSTEM_CA_FILES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt")


@dataclass(frozen=True)
class Presented:
    """What one TLS handshake showed: the leaf, the rest of the chain as sent, the protocol."""

    leaf: x509.Certificate
    chain: tuple[x509.Certificate, ...]  # sent after the leaf, in the server's order
    protocol: str  # e.g. "TLSv1.3"

    @property
    def serial(self) -> str:
        """Lowercase hex serial of the leaf without leading zeros, as certform stores it."""
        return format(self.leaf.serial_number, "x")

    @property
    def fingerprint(self) -> str:
        """Lowercase hex SHA-256 of the leaf DER: the identity used in state and diffs."""
        return self.leaf.fingerprint(hashes.SHA256()).hex()


def assess(
    presented: Presented,
    server_name: str | None,
    now: datetime,
    roots: Sequence[x509.Certificate] | None = None,
) -> list[str]:
    """Problems a monitoring job reports for ``presented``, each a short sentence; [] if none.

    Checks, in order: the leaf's validity at ``now``, a self-signed leaf, the name
    (skipped when ``server_name`` is None) and whether the presented chain builds
    to one of ``roots`` (the system trust store when None).  The chain is checked
    at a time inside the leaf's own validity so an expired leaf is reported once,
    as expired, not again as a broken chain; a self-signed leaf is not also
    reported as an incomplete chain.
    """
    when = _aware(now)
    leaf = presented.leaf
    self_signed = is_self_signed(leaf)
    problems = _validity_problems(leaf, when)
    if self_signed:
        problems.append("self-signed")
    if server_name is not None and not matches_hostname(leaf, server_name):
        names = ", ".join(_san_strings(leaf)) or "none"
        problems.append(f"name mismatch: {server_name} not in SANs ({names})")
    if not self_signed:
        trusted = system_roots() if roots is None else tuple(roots)
        chain_problem = _chain_problem(presented, trusted, _clamp_to_validity(leaf, when))
        if chain_problem:
            problems.append(chain_problem)
    return problems


def days_left(presented: Presented, now: datetime) -> int:
    """Whole days until the leaf expires, rounded down; negative once it has expired."""
    return (presented.leaf.not_valid_after_utc - _aware(now)) // timedelta(days=1)


def is_self_signed(cert: x509.Certificate) -> bool:
    """True when ``cert`` names itself as issuer and its signature verifies with its own key."""
    if cert.issuer != cert.subject:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def matches_hostname(cert: x509.Certificate, name: str) -> bool:
    """RFC 6125 matching of ``name`` against the SANs of ``cert`` (the CN is never used).

    The matching is cryptography's server verifier (``build_server_verifier``).  It
    verifies a chain too, and here only the name is asked: so the store holds
    ``cert`` itself (a trusted certificate is its own chain), the time is inside
    its validity and only the SAN is required of it.  Not the presented chain and
    roots: a broken chain must not hide a name mismatch; ``assess`` reports expiry
    and the chain as findings of their own.

    DNS names compare case-insensitively, ignoring a trailing dot, an IDN by its
    A-label; a SAN wildcard counts only as the whole leftmost label and stands for
    exactly one label; a SAN with a trailing dot (not a valid dNSName) matches
    nothing, nor does a name no certificate can hold (``a_b.test``).  One rule on
    top of cryptography's: a wildcard directly
    under one label (``*.test``) matches nothing, as in OpenSSL's
    ``X509_check_host`` (what HAProxy, nginx and curl check with).  An IP address
    matches IP SANs only.
    """
    subject = _reference(name)
    if subject is None:
        return False
    if isinstance(subject, x509.DNSName) and subject.value.count(".") < 2:
        # Only an exact SAN can match: a wildcard would sit directly under one label.
        exact = {p.rstrip(".").lower() for p in _san_dns(cert) if not p.startswith("*")}
        if subject.value not in exact:
            return False
    policy = (
        verification.PolicyBuilder()
        .store(verification.Store([cert]))
        .time(cert.not_valid_before_utc)
        .extension_policies(
            ca_policy=verification.ExtensionPolicy.webpki_defaults_ca(),
            ee_policy=verification.ExtensionPolicy.permit_all().require_present(
                x509.SubjectAlternativeName, verification.Criticality.AGNOSTIC, None
            ),
        )
    )
    try:
        verifier = policy.build_server_verifier(subject)
    except ValueError:  # not a host name a certificate can hold ("a_b.test", "-a.test")
        return False
    try:
        verifier.verify(cert, [])
    except verification.VerificationError:
        return False
    return True


def _reference(name: str) -> x509.DNSName | x509.IPAddress | None:
    """``name`` as the verifier's subject; None for a name that can match nothing."""
    try:
        return x509.IPAddress(ipaddress.ip_address(name.strip("[]")))
    except ValueError:
        reference = _normalise_dns(name)
    return None if reference is None else x509.DNSName(reference)


@functools.cache
def system_roots() -> tuple[x509.Certificate, ...]:
    """The system's trusted CA certificates, loaded once per process.

    ``certifi`` is not a dependency, so this asks OpenSSL's default locations
    (honouring ``SSL_CERT_FILE``) and falls back to the usual bundle files.
    Certificates cryptography cannot parse are skipped rather than failing the check.
    """
    ders = ssl.create_default_context().get_ca_certs(binary_form=True)
    roots = [cert for cert in map(_load_der, ders) if cert is not None]
    if roots:
        return tuple(roots)
    for path in (ssl.get_default_verify_paths().cafile, *_SYSTEM_CA_FILES):
        if path:
            roots = _load_pem_file(path)
            if roots:
                return tuple(roots)
    return ()


def describe_leaf(leaf: x509.Certificate) -> str:
    """One line naming a served certificate without dumping it."""
    common_names = leaf.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    common_name = str(common_names[0].value) if common_names else "-"
    expiry = leaf.not_valid_after_utc.strftime("%Y-%m-%d %H:%M:%SZ")
    return f"serial {leaf.serial_number:x} (CN {common_name}, not after {expiry})"


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _validity_problems(leaf: x509.Certificate, now: datetime) -> list[str]:
    if now > leaf.not_valid_after_utc:
        return [f"expired on {leaf.not_valid_after_utc:%Y-%m-%d}"]
    if now < leaf.not_valid_before_utc:
        return [f"not valid before {leaf.not_valid_before_utc:%Y-%m-%d %H:%M}Z"]
    return []


def _clamp_to_validity(leaf: x509.Certificate, now: datetime) -> datetime:
    return min(max(now, leaf.not_valid_before_utc), leaf.not_valid_after_utc)


def _chain_problem(
    presented: Presented, roots: Sequence[x509.Certificate], at: datetime
) -> str | None:
    """None when the presented chain builds to one of ``roots`` at ``at``, else a finding.

    Path building is cryptography's Web PKI verifier with the end-entity
    extension checks relaxed (names are judged separately).  That profile forbids
    Ed25519, which certform's private CAs may use, so for that one refusal the
    chain is re-checked with ``pki.builder.verify_chain`` against each root.
    """
    if not roots:
        return "chain incomplete: no trusted roots to build to"
    policy = (
        verification.PolicyBuilder()
        .store(verification.Store(list(roots)))
        .time(at)
        .extension_policies(
            ca_policy=verification.ExtensionPolicy.webpki_defaults_ca(),
            ee_policy=verification.ExtensionPolicy.permit_all(),
        )
    )
    try:
        policy.build_client_verifier().verify(presented.leaf, list(presented.chain))
    except verification.VerificationError as error:
        message = str(error)
        if "Forbidden public key algorithm" in message or "Forbidden signature" in message:
            return _chain_problem_by_hand(presented, roots, at)
        return _verification_finding(presented, roots, message, at)
    return None


def _chain_problem_by_hand(
    presented: Presented, roots: Sequence[x509.Certificate], at: datetime
) -> str | None:
    candidates = [root for root in roots if root.subject == _top_issuer(presented, roots)]
    reasons = [verify_chain(presented.leaf, presented.chain, root, at) for root in candidates]
    if any(reason is None for reason in reasons):
        return None
    if not reasons:
        return _incomplete(presented, roots)
    return f"chain invalid: {reasons[0]}"


def _verification_finding(
    presented: Presented, roots: Sequence[x509.Certificate], message: str, at: datetime
) -> str:
    """Map a verifier error (long, Rust-flavoured) to a short finding."""
    if "no interior errors" in message:
        return _incomplete(presented, roots)
    if "not valid at validation time" in message:
        stale = [c for c in presented.chain if not _valid_at(c, at)]
        who = _subject_text(stale[0]) if stale else "a chain certificate"
        return f"chain invalid: {who} is not valid at {at:%Y-%m-%d}"
    detail = message.removeprefix("validation failed: ").removeprefix("candidates exhausted: ")
    return f"chain invalid: {detail.split(' (encountered', 1)[0]}"


def _incomplete(presented: Presented, roots: Sequence[x509.Certificate]) -> str:
    missing = _top_issuer(presented, roots)
    return f"chain incomplete: issuer {missing.rfc4514_string()!r} neither sent nor trusted"


def _top_issuer(presented: Presented, roots: Sequence[x509.Certificate]) -> x509.Name:
    """Issuer name where following the presented chain by name stops (a root, or the gap)."""
    root_names = {root.subject for root in roots}
    by_subject = {cert.subject: cert for cert in presented.chain}
    current, seen = presented.leaf, set()
    while current.issuer not in root_names and current.issuer in by_subject:
        if current.issuer in seen:
            break
        seen.add(current.issuer)
        current = by_subject[current.issuer]
    return current.issuer


def _valid_at(cert: x509.Certificate, at: datetime) -> bool:
    return cert.not_valid_before_utc <= at <= cert.not_valid_after_utc


def _subject_text(cert: x509.Certificate) -> str:
    return repr(cert.subject.rfc4514_string() or f"serial {cert.serial_number:x}")


def _san(cert: x509.Certificate) -> x509.SubjectAlternativeName | None:
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None


def _san_strings(cert: x509.Certificate) -> list[str]:
    san = _san(cert)
    if san is None:
        return []
    addresses = [str(address) for address in san.get_values_for_type(x509.IPAddress)]
    return [*san.get_values_for_type(x509.DNSName), *addresses]


def _normalise_dns(name: str) -> str | None:
    """Lowercase A-label form without a trailing dot; None for a name that cannot match."""
    name = name.rstrip(".")
    if not name or "*" in name:
        return None
    try:
        return name.encode("idna").decode("ascii").lower()
    except UnicodeError:
        return None


def _san_dns(cert: x509.Certificate) -> list[str]:
    san = _san(cert)
    return san.get_values_for_type(x509.DNSName) if san is not None else []


def _load_der(der: bytes) -> x509.Certificate | None:
    """One trust-store certificate; None if unparseable.  Old roots with non-positive
    serials still load, with a deprecation warning that is not the user's concern."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CryptographyDeprecationWarning)
            return x509.load_der_x509_certificate(der)
    except ValueError:
        return None


def _load_pem_file(path: str) -> list[x509.Certificate]:
    try:
        with open(path, "rb") as handle, warnings.catch_warnings():
            warnings.simplefilter("ignore", CryptographyDeprecationWarning)
            return x509.load_pem_x509_certificates(handle.read())
    except (OSError, ValueError):
        return []
