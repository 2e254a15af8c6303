"""Tests for providers/tls_probe.py (handshakes against a real nginx) and pki/inspect.py.

The network tests start nginx (``tests.nginx_lab``) with certificates built by
certform's own pki helpers; the assessment and hostname tests need no server and
use fixed times.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from reconciler.errors import ProviderError
from reconciler.pki.builder import Subject, build_ca_certificate, build_leaf_certificate
from reconciler.pki.inspect import Presented, assess, days_left, matches_hostname, system_roots
from reconciler.pki.keys import PrivateKey, generate_private_key
from reconciler.providers.tls_probe import (
    EndpointMismatch,
    EndpointUnreachable,
    probe,
    wait_for_serial,
)
from tests.aws_lab import free_port
from tests.nginx_lab import NginxLab, ServerSpec, nginx_binary, write_pem_files, write_self_signed

NOW = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)
LOCALHOST = "127.0.0.1"


@dataclass(frozen=True)
class Pki:
    """root → intermediate, and a way to issue leaves under the intermediate."""

    root: x509.Certificate
    intermediate: x509.Certificate
    intermediate_key: PrivateKey

    def leaf(
        self,
        names: Sequence[str],
        *,
        not_before: datetime,
        not_after: datetime,
        algorithm: str = "ec-p256",
    ) -> tuple[x509.Certificate, PrivateKey]:
        key = generate_private_key(algorithm)
        cert = build_leaf_certificate(
            public_key=key.public_key(),
            names=names,
            issuer_cert=self.intermediate,
            issuer_key=self.intermediate_key,
            not_before=not_before,
            not_after=not_after,
        )
        return cert, key


def make_pki(
    not_before: datetime,
    not_after: datetime,
    algorithm: str = "ec-p256",
    root_name: str = "Probe Test Root",
) -> Pki:
    root_key = generate_private_key(algorithm)
    root = build_ca_certificate(
        public_key=root_key.public_key(),
        subject=Subject(root_name),
        issuer_cert=None,
        issuer_key=root_key,
        not_before=not_before,
        not_after=not_after,
        path_length=1,
    )
    intermediate_key = generate_private_key(algorithm)
    intermediate = build_ca_certificate(
        public_key=intermediate_key.public_key(),
        subject=Subject("Probe Test Intermediate"),
        issuer_cert=root,
        issuer_key=root_key,
        not_before=not_before,
        not_after=not_after,
        path_length=0,
    )
    return Pki(root, intermediate, intermediate_key)


@pytest.fixture(scope="module")
def live_pki() -> Pki:
    """A PKI valid around the real clock, for certificates nginx serves."""
    now = datetime.now(UTC)
    return make_pki(now - timedelta(days=1), now + timedelta(days=3650))


@pytest.fixture(scope="module")
def fixed_pki() -> Pki:
    """A PKI valid around NOW, for the pure tests."""
    return make_pki(NOW - timedelta(days=365), NOW + timedelta(days=3650))


def live_leaf(pki: Pki, names: Sequence[str]) -> tuple[x509.Certificate, PrivateKey]:
    now = datetime.now(UTC)
    return pki.leaf(names, not_before=now - timedelta(hours=1), not_after=now + timedelta(days=90))


def serial_of(cert: x509.Certificate) -> str:
    return format(cert.serial_number, "x")


@pytest.fixture
def nginx_available() -> None:
    if nginx_binary() is None:
        pytest.skip("nginx is not installed (apt-get install nginx)")


@dataclass
class Served:
    lab: NginxLab
    leaf: x509.Certificate
    cert_path: Path
    key_path: Path


@pytest.fixture
def served(nginx_available: None, tmp_path: Path, live_pki: Pki) -> Iterator[Served]:
    """nginx serving a.test (leaf + intermediate) and self.test (self-signed) on one port."""
    leaf, key = live_leaf(live_pki, ["a.test", "www.a.test"])
    a_cert, a_key = tmp_path / "a" / "fullchain.pem", tmp_path / "a" / "key.pem"
    write_pem_files(a_cert, a_key, [leaf, live_pki.intermediate], key)
    s_cert, s_key = tmp_path / "self" / "cert.pem", tmp_path / "self" / "key.pem"
    write_self_signed(s_cert, s_key, "self.test")
    servers = [ServerSpec("a.test", a_cert, a_key), ServerSpec("self.test", s_cert, s_key)]
    with NginxLab.start(tmp_path / "nginx", servers) as lab:
        yield Served(lab, leaf, a_cert, a_key)


# --- probe against nginx ------------------------------------------------------------------------


@pytest.mark.integration
def test_probe_returns_leaf_and_chain_as_served(served: Served, live_pki: Pki) -> None:
    presented = probe(LOCALHOST, served.lab.port, "a.test")

    assert presented.leaf == served.leaf
    assert presented.serial == serial_of(served.leaf)
    assert presented.chain == (live_pki.intermediate,)
    assert presented.protocol == "TLSv1.3"
    assert len(presented.fingerprint) == 64


@pytest.mark.integration
def test_probe_selects_certificate_by_sni(served: Served) -> None:
    other = probe(LOCALHOST, served.lab.port, "self.test")
    default = probe(LOCALHOST, served.lab.port, None)

    assert other.leaf.subject == other.leaf.issuer
    assert other.chain == ()
    assert default.leaf == served.leaf  # the first server is the default


@pytest.mark.integration
def test_assess_good_chain_with_root_is_clean(served: Served, live_pki: Pki) -> None:
    presented = probe(LOCALHOST, served.lab.port, "a.test")

    assert assess(presented, "a.test", datetime.now(UTC), roots=[live_pki.root]) == []
    assert assess(presented, "WWW.A.test.", datetime.now(UTC), roots=[live_pki.root]) == []


@pytest.mark.integration
def test_assess_flags_self_signed_endpoint(served: Served, live_pki: Pki) -> None:
    presented = probe(LOCALHOST, served.lab.port, "self.test")

    assert assess(presented, "self.test", datetime.now(UTC), roots=[live_pki.root]) == [
        "self-signed"
    ]


@pytest.mark.integration
def test_assess_flags_chain_incomplete_when_only_leaf_served(
    nginx_available: None, tmp_path: Path, live_pki: Pki
) -> None:
    leaf, key = live_leaf(live_pki, ["a.test"])
    write_pem_files(tmp_path / "cert.pem", tmp_path / "key.pem", [leaf], key)
    spec = ServerSpec("a.test", tmp_path / "cert.pem", tmp_path / "key.pem")
    with NginxLab.start(tmp_path / "nginx", [spec]) as lab:
        presented = probe(LOCALHOST, lab.port, "a.test")

    assert presented.chain == ()
    problems = assess(presented, "a.test", datetime.now(UTC), roots=[live_pki.root])
    assert problems == [
        "chain incomplete: issuer 'CN=Probe Test Intermediate' neither sent nor trusted"
    ]


@pytest.mark.integration
def test_wait_for_serial_sees_new_certificate_after_reload(served: Served, live_pki: Pki) -> None:
    current = served.leaf
    for _ in range(3):  # old workers answer for ~100 ms after each reload: a race, so repeat
        assert probe(LOCALHOST, served.lab.port, "a.test").serial == serial_of(current)
        new_leaf, new_key = live_leaf(live_pki, ["a.test", "www.a.test"])
        chain = [new_leaf, live_pki.intermediate]
        write_pem_files(served.cert_path, served.key_path, chain, new_key)
        served.lab.reload()  # test_command, then reload_command

        presented = wait_for_serial(LOCALHOST, served.lab.port, "a.test", serial_of(new_leaf))

        assert presented.leaf == new_leaf
        assert presented.chain == (live_pki.intermediate,)
        for _ in range(50):  # once confirmed, the old certificate is gone for good
            assert probe(LOCALHOST, served.lab.port, "a.test").serial == serial_of(new_leaf)
        current = new_leaf


@pytest.mark.integration
def test_wait_for_serial_requires_a_steady_run(served: Served) -> None:
    with pytest.raises(EndpointMismatch, match="not served steadily") as caught:
        wait_for_serial(
            LOCALHOST, served.lab.port, "a.test", serial_of(served.leaf), timeout=0.2, settle=1
        )

    assert caught.value.presented.leaf == served.leaf


@pytest.mark.integration
def test_wait_for_serial_accepts_serial_spellings(served: Served) -> None:
    spelled = ":".join(f"{served.leaf.serial_number:042X}"[i : i + 2] for i in range(0, 42, 2))

    presented = wait_for_serial(LOCALHOST, served.lab.port, "a.test", spelled, timeout=2)

    assert presented.leaf == served.leaf


@pytest.mark.integration
def test_wait_for_serial_reports_what_is_served_instead(served: Served) -> None:
    started = time.monotonic()
    with pytest.raises(EndpointMismatch) as caught:
        wait_for_serial(LOCALHOST, served.lab.port, "a.test", "abc123", timeout=0.3)

    assert time.monotonic() - started < 2
    message = str(caught.value)
    assert f"127.0.0.1:{served.lab.port} (sni a.test)" in message
    assert "expected serial abc123" in message
    assert f"serial {serial_of(served.leaf)}" in message
    assert "CN a.test" in message
    assert f"not after {served.leaf.not_valid_after_utc:%Y-%m-%d}" in message
    assert caught.value.presented.leaf == served.leaf
    assert isinstance(caught.value, ProviderError)


# --- unreachable endpoints (no nginx needed) ---------------------------------------------------


def test_probe_closed_port_is_unreachable_quickly() -> None:
    port = free_port()
    started = time.monotonic()
    with pytest.raises(EndpointUnreachable) as caught:
        probe(LOCALHOST, port, "a.test")

    assert time.monotonic() - started < 1
    assert str(caught.value) == f"127.0.0.1:{port} (sni a.test): connection refused"
    assert isinstance(caught.value, ProviderError)


def test_wait_for_serial_on_closed_port_is_unreachable() -> None:
    port = free_port()
    with pytest.raises(EndpointUnreachable, match="connection refused"):
        wait_for_serial(LOCALHOST, port, "a.test", "abc", timeout=0.2)


@pytest.fixture
def silent_listener() -> Iterator[int]:
    """A port that accepts TCP connections but never speaks TLS."""
    with socket.socket() as server:
        server.bind((LOCALHOST, 0))
        server.listen(8)
        yield server.getsockname()[1]


def test_probe_times_out_when_server_never_answers(silent_listener: int) -> None:
    started = time.monotonic()
    with pytest.raises(EndpointUnreachable, match=r"timed out after 0\.2s"):
        probe(LOCALHOST, silent_listener, "a.test", timeout=0.2)

    assert time.monotonic() - started < 1


@pytest.fixture
def plaintext_server() -> Iterator[int]:
    """A port that answers every connection with plain HTTP and closes it."""
    stop = threading.Event()
    server = socket.socket()
    server.bind((LOCALHOST, 0))
    server.listen(8)
    server.settimeout(0.05)  # so the thread notices ``stop``

    def answer() -> None:
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except TimeoutError:
                continue
            with connection:
                connection.sendall(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n")

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=5)
        server.close()


def test_probe_of_plaintext_server_is_a_handshake_failure(plaintext_server: int) -> None:
    with pytest.raises(EndpointUnreachable, match="TLS handshake failed"):
        probe(LOCALHOST, plaintext_server, "a.test", timeout=2)


def test_probe_dns_failure_is_unreachable() -> None:
    with pytest.raises(EndpointUnreachable, match="DNS lookup failed") as caught:
        probe("no-such-host.invalid", 443, None, timeout=2)

    assert str(caught.value).startswith("no-such-host.invalid:443 (sni none): ")


# --- assess and days_left (pure) ---------------------------------------------------------------


def presented_leaf(pki: Pki, names: Sequence[str], *, chain: bool = True) -> Presented:
    leaf, _ = pki.leaf(
        names, not_before=NOW - timedelta(days=10), not_after=NOW + timedelta(days=80)
    )
    return Presented(leaf=leaf, chain=(pki.intermediate,) if chain else (), protocol="TLSv1.3")


def test_assess_expired_leaf_reported_once(fixed_pki: Pki) -> None:
    presented = presented_leaf(fixed_pki, ["a.test"])
    later = NOW + timedelta(days=81)

    assert assess(presented, "a.test", later, roots=[fixed_pki.root]) == [
        f"expired on {presented.leaf.not_valid_after_utc:%Y-%m-%d}"
    ]


def test_assess_not_yet_valid_leaf(fixed_pki: Pki) -> None:
    presented = presented_leaf(fixed_pki, ["a.test"])
    earlier = NOW - timedelta(days=11)

    assert assess(presented, "a.test", earlier, roots=[fixed_pki.root]) == [
        f"not valid before {presented.leaf.not_valid_before_utc:%Y-%m-%d %H:%M}Z"
    ]


def test_assess_name_mismatch_lists_sans(fixed_pki: Pki) -> None:
    presented = presented_leaf(fixed_pki, ["a.test", "*.b.test", "10.0.0.1"])

    assert assess(presented, "c.test", NOW, roots=[fixed_pki.root]) == [
        "name mismatch: c.test not in SANs (a.test, *.b.test, 10.0.0.1)"
    ]
    assert assess(presented, None, NOW, roots=[fixed_pki.root]) == []


def test_assess_reports_every_problem_in_order(fixed_pki: Pki) -> None:
    presented = presented_leaf(fixed_pki, ["a.test"], chain=False)
    problems = assess(presented, "x.test", NOW + timedelta(days=100), roots=[fixed_pki.root])

    assert [p.split(":")[0].split(" on ")[0] for p in problems] == [
        "expired",
        "name mismatch",
        "chain incomplete",
    ]


def test_assess_chain_to_unrelated_root_is_incomplete(fixed_pki: Pki) -> None:
    other = make_pki(NOW - timedelta(days=1), NOW + timedelta(days=1), root_name="Other Root")
    presented = presented_leaf(fixed_pki, ["a.test"])

    assert assess(presented, "a.test", NOW, roots=[other.root]) == [
        "chain incomplete: issuer 'CN=Probe Test Root' neither sent nor trusted"
    ]


def test_assess_root_with_same_name_but_other_key_is_invalid(fixed_pki: Pki) -> None:
    impostor = make_pki(NOW - timedelta(days=1), NOW + timedelta(days=1))
    presented = presented_leaf(fixed_pki, ["a.test"])

    assert assess(presented, "a.test", NOW, roots=[impostor.root]) == [
        "chain invalid: signature does not match"
    ]


def test_assess_private_chain_is_not_trusted_by_system_store(fixed_pki: Pki) -> None:
    presented = presented_leaf(fixed_pki, ["a.test"])

    problems = assess(presented, "a.test", NOW)

    assert len(system_roots()) > 10
    assert problems == ["chain incomplete: issuer 'CN=Probe Test Root' neither sent nor trusted"]


def test_assess_expired_intermediate_is_invalid_chain() -> None:
    short = make_pki(NOW - timedelta(days=30), NOW + timedelta(days=5))
    leaf, _ = short.leaf(
        ["a.test"], not_before=NOW - timedelta(days=1), not_after=NOW + timedelta(days=30)
    )
    presented = Presented(leaf=leaf, chain=(short.intermediate,), protocol="TLSv1.3")
    later = NOW + timedelta(days=10)

    assert assess(presented, "a.test", NOW, roots=[short.root]) == []
    assert assess(presented, "a.test", later, roots=[short.root]) == [
        f"chain invalid: 'CN=Probe Test Intermediate' is not valid at {later:%Y-%m-%d}"
    ]


def test_assess_chain_checked_within_leaf_validity() -> None:
    short = make_pki(NOW - timedelta(days=30), NOW + timedelta(days=5))
    leaf, _ = short.leaf(["a.test"], not_before=NOW - timedelta(days=1), not_after=NOW)
    presented = Presented(leaf=leaf, chain=(short.intermediate,), protocol="TLSv1.3")

    # The CAs have expired as well, but the chain was fine while the leaf was valid:
    # one finding, not a second one about the chain.
    assert assess(presented, "a.test", NOW + timedelta(days=6), roots=[short.root]) == [
        f"expired on {NOW:%Y-%m-%d}"
    ]


def test_assess_ed25519_chain_builds() -> None:
    pki = make_pki(NOW - timedelta(days=1), NOW + timedelta(days=30), algorithm="ed25519")
    leaf, _ = pki.leaf(
        ["a.test"], not_before=NOW - timedelta(days=1), not_after=NOW + timedelta(days=1)
    )
    good = Presented(leaf=leaf, chain=(pki.intermediate,), protocol="TLSv1.3")
    missing = Presented(leaf=leaf, chain=(), protocol="TLSv1.3")

    assert assess(good, "a.test", NOW, roots=[pki.root]) == []
    assert assess(missing, "a.test", NOW, roots=[pki.root]) == [
        "chain incomplete: issuer 'CN=Probe Test Intermediate' neither sent nor trusted"
    ]


def test_assess_without_roots_reports_it() -> None:
    pki = make_pki(NOW - timedelta(days=1), NOW + timedelta(days=30))
    presented = presented_leaf(pki, ["a.test"])

    assert assess(presented, "a.test", NOW, roots=[]) == [
        "chain incomplete: no trusted roots to build to"
    ]


def test_days_left_rounds_down_and_goes_negative(fixed_pki: Pki) -> None:
    presented = presented_leaf(fixed_pki, ["a.test"])  # expires NOW + 80 days

    assert days_left(presented, NOW) == 80
    assert days_left(presented, NOW + timedelta(hours=1)) == 79
    assert days_left(presented, NOW + timedelta(days=80, seconds=1)) == -1
    assert days_left(presented, NOW.replace(tzinfo=None)) == 80


# --- hostname matching (RFC 6125) --------------------------------------------------------------


@pytest.mark.parametrize(
    ("san", "name", "expected"),
    [
        ("a.test", "a.test", True),
        ("a.test", "A.TEST", True),
        ("A.Test", "a.test", True),
        ("a.test", "a.test.", True),
        ("a.test", "b.test", False),
        ("a.test", "x.a.test", False),
        ("*.a.test", "x.a.test", True),
        ("*.a.test", "X.A.Test", True),
        ("*.a.test", "a.test", False),  # the wildcard needs a label
        ("*.a.test", "y.x.a.test", False),  # exactly one label
        ("*.a.test", "x.b.test", False),
        ("*.test", "a.test", False),  # no wildcard directly under a top-level label
        ("f*.a.test", "foo.a.test", False),  # partial-label wildcards are not honoured
        ("x.*.a.test", "x.y.a.test", False),  # only the leftmost label
        ("*.a.test", "*.a.test", False),  # a reference name is never a pattern
        ("xn--bcher-kva.test", "bücher.test", True),  # IDN against its A-label
        ("127.0.0.1", "127.0.0.1", True),  # an IP SAN
        ("127.0.0.1", "127.0.0.2", False),
        ("::1", "0:0::1", True),
        ("::1", "[::1]", True),
        ("a.test", "127.0.0.1", False),
    ],
)
def test_matches_hostname(fixed_pki: Pki, san: str, name: str, expected: bool) -> None:
    try:
        general_name: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(san))
    except ValueError:
        general_name = x509.DNSName(san)
    leaf = _leaf_with_san(fixed_pki, x509.SubjectAlternativeName([general_name]))

    assert matches_hostname(leaf, name) is expected


def test_ip_reference_never_matches_dns_san_with_same_text(fixed_pki: Pki) -> None:
    leaf = _leaf_with_san(fixed_pki, x509.SubjectAlternativeName([x509.DNSName("127.0.0.1")]))

    assert not matches_hostname(leaf, "127.0.0.1")


def test_common_name_is_ignored_without_sans(fixed_pki: Pki) -> None:
    leaf = _leaf_with_san(fixed_pki, None)

    assert not matches_hostname(leaf, "a.test")
    problems = assess(Presented(leaf, (), "TLSv1.3"), "a.test", NOW, roots=[fixed_pki.root])
    assert "name mismatch: a.test not in SANs (none)" in problems


@pytest.mark.parametrize("name", ["a_b.a.test", "-x.a.test", "x..a.test", "", "."])
def test_a_name_no_certificate_can_hold_matches_nothing(fixed_pki: Pki, name: str) -> None:
    leaf = _leaf_with_san(fixed_pki, x509.SubjectAlternativeName([x509.DNSName("*.a.test")]))

    assert not matches_hostname(leaf, name)


def test_names_match_whatever_the_validity_and_key() -> None:
    """The verifier judges the name only: expiry and the chain are assess's other checks."""
    pki = make_pki(NOW - timedelta(days=90), NOW + timedelta(days=30), algorithm="ed25519")
    expired = {"not_before": NOW - timedelta(days=60), "not_after": NOW - timedelta(days=2)}
    leaf, _ = pki.leaf(["a.test", "*.b.test"], **expired)

    assert matches_hostname(leaf, "a.test") and matches_hostname(leaf, "x.b.test")
    assert not matches_hostname(leaf, "b.test")


def _leaf_with_san(pki: Pki, san: x509.SubjectAlternativeName | None) -> x509.Certificate:
    """A leaf with a SAN the builder would refuse to make (or none at all)."""
    key = generate_private_key("ec-p256")
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "a.test")]))
        .issuer_name(pki.intermediate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=1))
    )
    if san is not None:
        builder = builder.add_extension(san, critical=False)
    return builder.sign(pki.intermediate_key, hashes.SHA256())  # type: ignore[arg-type]


# --- the lab itself ------------------------------------------------------------------------------


@pytest.mark.integration
def test_lab_commands_and_include(nginx_available: None, tmp_path: Path) -> None:
    write_self_signed(tmp_path / "c.pem", tmp_path / "k.pem", "a.test")
    include = tmp_path / "snippets" / "a.conf"
    spec = ServerSpec("a.test", tmp_path / "c.pem", tmp_path / "k.pem", include=include)
    lab = NginxLab.start(tmp_path / "nginx", [spec])
    try:
        assert include.read_text() == ""
        assert lab.test_command == [
            *lab.test_command[:1],
            "-c",
            str(lab.conf),
            "-p",
            str(lab.prefix),
            "-t",
        ]
        include.write_text('add_header X-Lab "yes";\n')
        lab.reload()
        probe(LOCALHOST, lab.port, "a.test")
    finally:
        lab.stop()
    assert lab.process.returncode is not None
    with pytest.raises(EndpointUnreachable):
        probe(LOCALHOST, lab.port, "a.test", timeout=1)
