"""Tests for reconciler.pki: names, keys, certificate building and chain checks.

Certificates are cross-checked against two independent implementations: OpenSSL
(``openssl verify``) for chain validity and pkilint's RFC 5280 linter for
profile conformance.  All times are fixed so results never depend on the clock.
"""

from __future__ import annotations

import functools
import hashlib
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from reconciler.pki.builder import (
    Subject,
    build_ca_certificate,
    build_leaf_certificate,
    certificate_from_pem,
    certificate_to_pem,
    fingerprint_sha256,
    new_serial,
    verify_chain,
)
from reconciler.pki.keys import (
    KEY_ALGORITHMS,
    PrivateKey,
    generate_private_key,
    key_algorithm_of,
    private_key_from_der,
    private_key_to_der,
    private_key_to_pem,
    public_key_matches,
    signing_hash_for,
)
from reconciler.pki.names import constraint_error, dns_name_error, is_ip_address, name_permitted
from tests.conftest import pkilint_findings

T0 = datetime(2025, 1, 1, tzinfo=UTC)
CA_END = T0 + timedelta(days=3650)
LEAF_END = T0 + timedelta(days=90)
AT = T0 + timedelta(days=30)

needs_openssl = pytest.mark.skipif(
    shutil.which("openssl") is None, reason="openssl binary not installed"
)


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    "name",
    [
        "example.test",
        "www.example.test",
        "WWW.Example.TEST",
        "a-b.c-d.example.test",
        "*.example.test",
        "*.api.example.test",
        "xn--bcher-kva.example",
        "123.example.test",
        "a" * 63 + ".example.test",
        ".".join(["a" * 61] * 4) + ".abcde",  # exactly 253 characters
        "10.0.0.1",
        "2001:db8::1",
        "::1",
    ],
)
def test_dns_name_error_accepts(name: str) -> None:
    assert dns_name_error(name) is None


@pytest.mark.parametrize(
    ("name", "message_part"),
    [
        ("", "empty"),
        ("localhost", "at least one dot"),
        ("example.test.", "trailing dot"),
        (".example.test", "empty label"),
        ("a..example.test", "empty label"),
        ("under_score.example.test", "'_'"),
        ("sp ace.example.test", "whitespace"),
        ("tab\t.example.test", "whitespace"),
        ("-lead.example.test", "start or end with '-'"),
        ("trail-.example.test", "start or end with '-'"),
        ("bad!char.example.test", "invalid characters"),
        ("*", "at least two labels"),
        ("*.test", "at least two labels"),
        ("a.*.example.test", "leftmost label"),
        ("w*.example.test", "leftmost label"),
        ("*w.example.test", "leftmost label"),
        ("*.*.example.test", "leftmost label"),
        ("bücher.example", "xn--"),
        ("xn--9999999999999.example.test", "punycode"),
        ("a" * 64 + ".example.test", "at most 63"),
        (".".join(["a" * 61] * 4) + ".abcdef", "at most 253"),
        ("1.2.3.999", "all digits"),
        ("10.0.0", "all digits"),
        ("[2001:db8::1]", "without brackets"),
        ("fe80::1%eth0", "zone"),
        ("2001:db8::g", "IPv6"),
        ("example.test:443", "IPv6"),
    ],
)
def test_dns_name_error_rejects(name: str, message_part: str) -> None:
    error = dns_name_error(name)
    assert error is not None
    assert message_part in error


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("10.0.0.1", True),
        ("2001:db8::1", True),
        ("::ffff:192.0.2.1", True),
        ("010.0.0.1", False),
        ("256.0.0.1", False),
        ("fe80::1%eth0", False),
        ("example.test", False),
        ("", False),
    ],
)
def test_is_ip_address(name: str, expected: bool) -> None:
    assert is_ip_address(name) is expected


@pytest.mark.parametrize(
    ("name", "permitted", "excluded", "expected"),
    [
        # No constraints at all.
        ("anything.test", [], [], True),
        # Domain constraint: the domain itself and every subdomain.
        ("example.test", ["example.test"], [], True),
        ("www.example.test", ["example.test"], [], True),
        ("a.b.example.test", ["example.test"], [], True),
        ("badexample.test", ["example.test"], [], False),
        ("example.test.evil", ["example.test"], [], False),
        ("other.test", ["example.test"], [], False),
        ("WWW.EXAMPLE.TEST", ["Example.Test"], [], True),
        ("www.other.test", ["example.test", "other.test"], [], True),
        # Leading dot: subdomains only.
        ("example.test", [".example.test"], [], False),
        ("www.example.test", [".example.test"], [], True),
        ("badexample.test", [".example.test"], [], False),
        # Excluded wins over permitted.
        ("secret.example.test", ["example.test"], ["secret.example.test"], False),
        ("x.secret.example.test", ["example.test"], ["secret.example.test"], False),
        ("www.example.test", ["example.test"], ["secret.example.test"], True),
        ("www.example.test", [], ["other.test"], True),
        # An excluded leading-dot domain also excludes the apex (certificates cannot
        # encode "subdomains only"), but still never matches a sibling.
        ("www.example.test", [], [".example.test"], False),
        ("example.test", [], [".example.test"], False),
        ("badexample.test", [], [".example.test"], True),
        # Wildcards are judged by their suffix...
        ("*.example.test", ["example.test"], [], True),
        ("*.x.example.test", ["example.test"], [], True),
        ("*.x.example.test", ["x.example.test"], [], True),
        ("*.x.example.test", [".x.example.test"], [], True),
        ("*.example.test", ["www.example.test"], [], False),
        ("*.other.test", ["example.test"], [], False),
        # ...and excluded when any name they stand for is excluded.
        ("*.example.test", [], ["secret.example.test"], False),
        ("*.example.test", [], ["a.b.example.test"], True),
        ("*.example.test", [], [".secret.example.test"], False),
        # IP names only meet IP constraints, DNS names only DNS constraints.
        ("10.1.2.3", ["10.0.0.0/8"], [], True),
        ("11.1.2.3", ["10.0.0.0/8"], [], False),
        ("10.1.2.3", ["example.test"], [], True),
        ("www.example.test", ["10.0.0.0/8"], [], True),
        ("10.9.0.1", ["10.0.0.0/8"], ["10.9.0.0/16"], False),
        ("10.8.0.1", ["10.0.0.0/8"], ["10.9.0.0/16"], True),
        ("2001:db8::1", ["2001:db8::/32"], [], True),
        ("2001:db9::1", ["2001:db8::/32"], [], False),
        ("2001:db8::1", ["10.0.0.0/8"], [], False),
        ("10.0.0.1", ["2001:db8::/32"], [], False),
        ("192.0.2.1", ["example.test"], ["192.0.2.0/24"], False),
    ],
)
def test_name_permitted(
    name: str, permitted: list[str], excluded: list[str], expected: bool
) -> None:
    assert name_permitted(name, permitted, excluded) is expected


@pytest.mark.parametrize(
    ("constraint", "ok"),
    [
        ("example.test", True),
        (".example.test", True),
        ("test", True),
        ("10.0.0.0/8", True),
        ("2001:db8::/32", True),
        ("10.0.0.1", False),
        ("10.0.0.0/33", False),
        ("*.example.test", False),
        ("", False),
        ("bad_name.test", False),
        ("example..test", False),
    ],
)
def test_constraint_error(constraint: str, ok: bool) -> None:
    assert (constraint_error(constraint) is None) is ok


# ---------------------------------------------------------------------------- keys


@functools.cache
def cached_key(algorithm: str, slot: int = 0) -> PrivateKey:
    """Keys are slow to make (RSA-4096); tests share them by algorithm and slot."""
    return generate_private_key(algorithm)


@pytest.mark.parametrize("algorithm", KEY_ALGORITHMS)
def test_key_round_trip(algorithm: str) -> None:
    key = cached_key(algorithm)
    loaded = private_key_from_der(private_key_to_der(key))
    assert key_algorithm_of(loaded.public_key()) == algorithm
    assert private_key_to_der(loaded) == private_key_to_der(key)
    pem = private_key_to_pem(key)
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert serialization.load_pem_private_key(pem, None).public_key() == key.public_key()


@pytest.mark.parametrize(
    ("algorithm", "hash_name"),
    [
        ("ec-p256", "sha256"),
        ("ec-p384", "sha384"),
        ("rsa-2048", "sha256"),
        ("rsa-3072", "sha256"),
        ("rsa-4096", "sha256"),
        ("ed25519", None),
    ],
)
def test_signing_hash_for(algorithm: str, hash_name: str | None) -> None:
    chosen = signing_hash_for(cached_key(algorithm))
    assert (chosen.name if chosen else None) == hash_name


def test_unknown_key_algorithm() -> None:
    with pytest.raises(ValueError, match="unknown key algorithm"):
        generate_private_key("rsa-1024")


def test_key_algorithm_of_unsupported_key() -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    assert key_algorithm_of(ec.generate_private_key(ec.SECP521R1()).public_key()) == "unknown"


# ------------------------------------------------------------------- certificates


@dataclass(frozen=True)
class Authority:
    cert: x509.Certificate
    key: PrivateKey


def make_root(algorithm: str = "ec-p384", name: str = "Certform Test Root") -> Authority:
    key = cached_key(algorithm, 1 if name.endswith("Other") else 0)
    cert = build_ca_certificate(
        public_key=key.public_key(),
        subject=Subject(name, organization="Certform Tests", country="NL"),
        issuer_cert=None,
        issuer_key=key,
        not_before=T0,
        not_after=CA_END,
        path_length=None,
    )
    return Authority(cert, key)


def make_sub(
    issuer: Authority,
    *,
    name: str = "Certform Test Issuing CA",
    slot: int = 2,
    permitted: Sequence[str] = ("example.test",),
    path_length: int = 0,
) -> Authority:
    """A subordinate CA; distinct ``name``/``slot`` give distinct CAs."""
    key = cached_key("ec-p256", slot)
    cert = build_ca_certificate(
        public_key=key.public_key(),
        subject=Subject(name, organization="Certform Tests"),
        issuer_cert=issuer.cert,
        issuer_key=issuer.key,
        not_before=T0,
        not_after=CA_END,
        path_length=path_length,
        permitted=permitted,
    )
    return Authority(cert, key)


def make_leaf(
    issuer: Authority,
    names: Sequence[str] = ("www.example.test", "api.example.test"),
    algorithm: str = "ec-p256",
    **options: bool,
) -> x509.Certificate:
    return build_leaf_certificate(
        public_key=cached_key(algorithm, 3).public_key(),
        names=names,
        issuer_cert=issuer.cert,
        issuer_key=issuer.key,
        not_before=T0,
        not_after=LEAF_END,
        **options,
    )


@pytest.fixture(scope="module")
def root() -> Authority:
    return make_root()


@pytest.fixture(scope="module")
def sub(root: Authority) -> Authority:
    return make_sub(root)


def write_pem(directory: Path, name: str, cert: x509.Certificate) -> Path:
    path = directory / f"{name}.pem"
    path.write_text(certificate_to_pem(cert))
    return path


def openssl_verify(
    tmp_path: Path,
    leaf: x509.Certificate,
    root: x509.Certificate,
    intermediates: Sequence[x509.Certificate] = (),
    purpose: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``openssl verify`` strictly, at the fixed test time."""
    command = ["openssl", "verify", "-x509_strict", "-attime", str(int(AT.timestamp()))]
    command += ["-CAfile", str(write_pem(tmp_path, "root", root))]
    if intermediates:
        bundle = tmp_path / "untrusted.pem"
        bundle.write_text("".join(certificate_to_pem(c) for c in intermediates))
        command += ["-untrusted", str(bundle)]
    if purpose:
        command += ["-purpose", purpose]
    command.append(str(write_pem(tmp_path, "leaf", leaf)))
    return subprocess.run(command, capture_output=True, text=True, check=False)


def assert_lints_clean(tmp_path: Path, name: str, cert: x509.Certificate) -> None:
    """pkilint's RFC 5280 linter must report nothing at ERROR or FATAL severity."""
    findings = pkilint_findings(write_pem(tmp_path, name, cert))
    for finding in findings:
        print(f"pkilint {name}: {finding}")
    assert not [f for f in findings if f[1] in ("ERROR", "FATAL")]


@needs_openssl
@pytest.mark.parametrize("algorithm", KEY_ALGORITHMS)
def test_chain_verifies_with_openssl(
    tmp_path: Path, root: Authority, sub: Authority, algorithm: str
) -> None:
    leaf = make_leaf(sub, ("www.example.test", "api.example.test", "192.0.2.10"), algorithm)
    result = openssl_verify(tmp_path, leaf, root.cert, [sub.cert], purpose="sslserver")
    assert result.returncode == 0, result.stdout + result.stderr
    assert verify_chain(leaf, [sub.cert], root.cert, AT) is None


@needs_openssl
@pytest.mark.parametrize("algorithm", KEY_ALGORITHMS)
def test_root_of_every_algorithm_verifies_with_openssl(tmp_path: Path, algorithm: str) -> None:
    authority = make_root(algorithm)
    leaf = make_leaf(authority, client_auth=True)
    result = openssl_verify(tmp_path, leaf, authority.cert, purpose="sslclient")
    assert result.returncode == 0, result.stdout + result.stderr
    assert verify_chain(leaf, [], authority.cert, AT) is None


@needs_openssl
def test_name_outside_constraints_is_rejected(
    tmp_path: Path, root: Authority, sub: Authority
) -> None:
    leaf = make_leaf(sub, ["web.other.test"])
    result = openssl_verify(tmp_path, leaf, root.cert, [sub.cert])
    assert result.returncode != 0
    assert "permitted subtree violation" in result.stdout + result.stderr
    reason = verify_chain(leaf, [sub.cert], root.cert, AT)
    assert reason is not None
    assert "web.other.test" in reason


def test_pkilint_accepts_cas(tmp_path: Path, root: Authority, sub: Authority) -> None:
    assert_lints_clean(tmp_path, "root", root.cert)
    assert_lints_clean(tmp_path, "sub", sub.cert)


@pytest.mark.parametrize("algorithm", KEY_ALGORITHMS)
def test_pkilint_accepts_leaf(tmp_path: Path, sub: Authority, algorithm: str) -> None:
    leaf = make_leaf(sub, ("www.example.test", "192.0.2.10"), algorithm)
    assert_lints_clean(tmp_path, f"leaf-{algorithm}", leaf)


@pytest.mark.parametrize("algorithm", KEY_ALGORITHMS)
def test_pkilint_accepts_root_of_every_algorithm(tmp_path: Path, algorithm: str) -> None:
    authority = make_root(algorithm)
    assert_lints_clean(tmp_path, f"root-{algorithm}", authority.cert)
    assert_lints_clean(tmp_path, f"leaf-of-{algorithm}", make_leaf(authority, client_auth=True))


def test_pkilint_accepts_name_constraints_of_every_kind(tmp_path: Path, root: Authority) -> None:
    key = cached_key("ec-p256", 4)
    cert = build_ca_certificate(
        public_key=key.public_key(),
        subject=Subject("Constrained", organizational_unit="Ops", state="NH", locality="Ams"),
        issuer_cert=root.cert,
        issuer_key=root.key,
        not_before=T0,
        not_after=CA_END,
        path_length=None,
        permitted=[".example.test", "10.0.0.0/8", "2001:db8::/32"],
        excluded=["secret.example.test", "10.9.0.0/16"],
    )
    assert_lints_clean(tmp_path, "constrained", cert)


@needs_openssl
def test_long_first_name_gives_empty_subject_and_critical_san(
    tmp_path: Path, root: Authority, sub: Authority
) -> None:
    long_name = "a" * 60 + ".example.test"
    leaf = make_leaf(sub, [long_name, "www.example.test"])
    assert len(leaf.subject) == 0
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.critical
    assert san.value.get_values_for_type(x509.DNSName) == [long_name, "www.example.test"]
    assert_lints_clean(tmp_path, "long", leaf)
    result = openssl_verify(tmp_path, leaf, root.cert, [sub.cert])
    assert result.returncode == 0, result.stdout + result.stderr


def test_leaf_profile(sub: Authority) -> None:
    leaf = make_leaf(sub, ["www.example.test", "10.0.0.1"], "rsa-2048", client_auth=True)
    ext = leaf.extensions
    assert leaf.subject.rfc4514_string() == "CN=www.example.test"
    assert not ext.get_extension_for_class(x509.SubjectAlternativeName).critical
    assert ext.get_extension_for_class(x509.BasicConstraints).value.ca is False
    usage = ext.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature and usage.value.key_encipherment
    eku = ext.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [x509.OID_SERVER_AUTH, x509.OID_CLIENT_AUTH]
    aki = ext.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = sub.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    assert leaf.signature_hash_algorithm is not None
    assert leaf.signature_hash_algorithm.name == "sha256"


def test_ec_leaf_has_no_key_encipherment(sub: Authority) -> None:
    usage = make_leaf(sub).extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and not usage.key_encipherment


def test_ca_profile(root: Authority, sub: Authority) -> None:
    ext = sub.cert.extensions
    constraints = ext.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca and constraints.value.path_length == 0
    usage = ext.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.key_cert_sign and usage.value.crl_sign
    names = ext.get_extension_for_class(x509.NameConstraints)
    assert names.critical
    assert names.value.permitted_subtrees == [x509.DNSName("example.test")]
    assert sub.cert.issuer == root.cert.subject
    assert root.cert.issuer == root.cert.subject
    assert root.cert.signature_hash_algorithm is not None
    assert root.cert.signature_hash_algorithm.name == "sha384"
    root_aki = root.cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    root_ski = root.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert root_aki.key_identifier == root_ski.digest


def test_leading_dot_constraint_is_encoded_without_dot(root: Authority) -> None:
    sub = make_sub(root, name="Dotted CA", slot=10, permitted=[".Example.Test", "10.0.0.0/8"])
    names = sub.cert.extensions.get_extension_for_class(x509.NameConstraints).value
    assert names.permitted_subtrees is not None
    assert names.permitted_subtrees[0] == x509.DNSName("example.test")
    assert names.excluded_subtrees is None


def test_serials_are_long_and_distinct(sub: Authority) -> None:
    first, second = make_leaf(sub), make_leaf(sub)
    assert first.serial_number.bit_length() >= 64
    assert second.serial_number.bit_length() >= 64
    assert first.serial_number != second.serial_number
    assert 0 < new_serial() < 2**159


def test_verify_chain_reasons(root: Authority, sub: Authority) -> None:
    leaf = make_leaf(sub)
    other_root = make_root(name="Certform Test Root Other")
    assert verify_chain(leaf, [sub.cert], root.cert, AT) is None
    assert verify_chain(leaf, [sub.cert], root.cert, AT.replace(tzinfo=None)) is None
    assert verify_chain(sub.cert, [], root.cert, AT) is None
    assert verify_chain(root.cert, [], root.cert, AT) is None
    assert "not signed" in (verify_chain(leaf, [sub.cert], other_root.cert, AT) or "")
    assert "not signed" in (verify_chain(leaf, [], root.cert, AT) or "")
    assert "expired" in (verify_chain(leaf, [sub.cert], root.cert, LEAF_END + timedelta(1)) or "")
    assert "expired" in (verify_chain(leaf, [sub.cert], root.cert, CA_END + timedelta(1)) or "")
    assert "not valid before" in (
        verify_chain(leaf, [sub.cert], root.cert, T0 - timedelta(1)) or ""
    )


def test_verify_chain_ignores_order_and_unused_intermediates(root: Authority) -> None:
    middle = make_sub(root, name="Middle CA", slot=7, permitted=(), path_length=1)
    lower = make_sub(middle, name="Lower CA", slot=8)
    leaf = make_leaf(lower)
    assert verify_chain(leaf, [middle.cert, lower.cert], root.cert, AT) is None
    assert verify_chain(make_leaf(root), [middle.cert, lower.cert], root.cert, AT) is None


def test_verify_chain_enforces_path_length_and_ca_flag(root: Authority, sub: Authority) -> None:
    below_zero = make_sub(sub, name="Too Deep CA", slot=9)
    leaf = make_leaf(below_zero)
    reason = verify_chain(leaf, [below_zero.cert, sub.cert], root.cert, AT)
    assert reason is not None and "allows 0" in reason
    # A leaf's key is not a CA key: certificates "issued" by a leaf never verify.
    fake_ca = Authority(make_leaf(sub, algorithm="ec-p256"), cached_key("ec-p256", 3))
    victim = make_leaf(fake_ca, algorithm="ed25519")
    reason = verify_chain(victim, [fake_ca.cert, sub.cert], root.cert, AT)
    assert reason is not None and "not a CA" in reason


def test_builder_guards(root: Authority, sub: Authority) -> None:
    wrong_key = cached_key("ec-p256", 5)
    with pytest.raises(ValueError, match="own key"):
        build_ca_certificate(
            public_key=cached_key("ec-p256", 6).public_key(),
            subject=Subject("Bad Root"),
            issuer_cert=None,
            issuer_key=wrong_key,
            not_before=T0,
            not_after=CA_END,
            path_length=None,
        )
    with pytest.raises(ValueError, match="issuer_key"):
        make_leaf(Authority(sub.cert, wrong_key))
    with pytest.raises(ValueError, match="wildcard"):
        make_leaf(sub, ["a.*.example.test"])
    with pytest.raises(ValueError, match="at least one name"):
        make_leaf(sub, [])
    with pytest.raises(ValueError, match="server_auth"):
        make_leaf(sub, server_auth=False)
    with pytest.raises(ValueError, match="name constraint"):
        make_sub(root, permitted=["*.example.test"])
    with pytest.raises(ValueError, match="not_after"):
        build_leaf_certificate(
            public_key=wrong_key.public_key(),
            names=["www.example.test"],
            issuer_cert=sub.cert,
            issuer_key=sub.key,
            not_before=LEAF_END,
            not_after=T0,
        )
    with pytest.raises(ValueError, match="common name"):
        Subject("x" * 65).to_name()


def test_pem_fingerprint_and_key_match(sub: Authority) -> None:
    leaf = make_leaf(sub)
    pem = certificate_to_pem(leaf)
    assert pem.startswith("-----BEGIN CERTIFICATE-----")
    assert certificate_from_pem(pem) == leaf
    der = leaf.public_bytes(serialization.Encoding.DER)
    assert fingerprint_sha256(leaf) == hashlib.sha256(der).hexdigest()
    assert fingerprint_sha256(leaf) == leaf.fingerprint(hashes.SHA256()).hex()
    assert public_key_matches(cached_key("ec-p256", 3), leaf)
    assert not public_key_matches(cached_key("ec-p256", 0), leaf)
    assert not public_key_matches(cached_key("ed25519", 3), leaf)
    with pytest.raises(ValueError):
        certificate_from_pem("not a certificate")
