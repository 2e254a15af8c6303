"""ACME Renewal Information (RFC 9773) and the Pebble lab the ACME tests stand on.

The ARI tests are pure or talk to a local ``http.server`` replaying recorded
responses (Pebble 2.4 has no ``renewalInfo``).  The lab tests run a real Pebble
with a real http-01 validation against ``WebrootServer``.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from cryptography.x509.verification import PolicyBuilder, Store

from reconciler.acme.ari import (
    MAX_RETRY_AFTER,
    MIN_RETRY_AFTER,
    RenewalWindow,
    ari_due,
    certificate_id,
    fetch_renewal_info,
    parse_renewal_info,
)
from reconciler.errors import ProviderError
from tests.acme_lab import (
    ChallTestSrv,
    PebbleLab,
    WebrootServer,
    b64url,
    challtestsrv_binary,
    pebble_binary,
    write_lab_tls,
)
from tests.aws_lab import free_port

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)

# RFC 9773 section 4.1: AKI keyIdentifier and serial of its example certificate.
RFC_AKI = bytes.fromhex("69885B6B87464041E1B37B847BA0AE2CDE01C8D4")
RFC_SERIAL = 0x0087654321
RFC_CERT_ID = "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"

# RFC 9773 section 4.2 example response (with its Retry-After of six hours).
RFC_BODY = b"""{
  "suggestedWindow": {
    "start": "2025-01-02T04:00:00Z",
    "end": "2025-01-03T04:00:00Z"
  },
  "explanationURL": "https://acme.example.com/docs/ari"
}"""

# As Boulder (Let's Encrypt) serves it: Go's RFC 3339 with nanoseconds, no explanationURL.
BOULDER_BODY = (
    b'{"suggestedWindow":{"start":"2026-12-01T10:00:00.123456789Z",'
    b'"end":"2026-12-03T10:00:00.987654321Z"}}'
)

# As Google Trust Services serves it: second precision and an empty explanationURL.
GTS_BODY = (
    b'{"suggestedWindow":{"start":"2025-05-31T13:30:09Z","end":"2025-05-31T14:30:09Z"},'
    b'"explanationURL":""}'
)


def make_cert(serial: int, aki: bytes | None = RFC_AKI) -> x509.Certificate:
    """A throwaway certificate with exactly the serial and AKI a test needs."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ari.example.test")])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(NOW - timedelta(days=60))
        .not_valid_after(NOW + timedelta(days=30))
    )
    if aki is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier(aki, None, None), critical=False
        )
    return builder.sign(key, hashes.SHA256())


def suggested(start: str, end: str) -> bytes:
    """A renewalInfo body with just a suggested window."""
    return json.dumps({"suggestedWindow": {"start": start, "end": end}}).encode()


def window(start: datetime, hours: float, **kwargs: Any) -> RenewalWindow:
    values: dict[str, Any] = {"explanation_url": None, "retry_after": None, **kwargs}
    return RenewalWindow(start=start, end=start + timedelta(hours=hours), **values)


# --------------------------------------------------------------------------- certificate_id


def test_certificate_id_matches_the_rfc_example() -> None:
    assert certificate_id(make_cert(RFC_SERIAL)) == RFC_CERT_ID


@pytest.mark.parametrize(
    ("serial", "encoded_serial"),
    [
        (1, "AQ"),  # 01
        (0x7F, "fw"),  # 7f: high bit clear, no padding byte
        (0x80, "AIA"),  # 00 80: high bit set, DER adds a leading zero
        (0xFF00, "AP8A"),  # 00 ff 00
        (0x7FFF, "f_8"),  # base64url, not base64 (no '/')
        # 20 content octets, the RFC 5280 maximum: 19 bytes with the high bit set + 00.
        (int("80" + "00" * 17 + "01", 16), b64url(bytes.fromhex("0080" + "00" * 17 + "01"))),
    ],
)
def test_certificate_id_encodes_the_serial_as_der_integer_content(
    serial: int, encoded_serial: str
) -> None:
    assert certificate_id(make_cert(serial)) == f"aYhba4dGQEHhs3uEe6CuLN4ByNQ.{encoded_serial}"


def test_certificate_id_has_no_padding_and_agrees_with_the_acme_library() -> None:
    from acme import client as acme_client

    # The acme library's own ARI identifier is the oracle. It is private: if a new acme
    # release renames it, this test must fail and be pointed at the new name, not quietly
    # stop comparing.
    assert hasattr(acme_client, "_renewal_info_path_component"), (
        "acme.client._renewal_info_path_component is gone: find its new name"
    )
    oracle = acme_client._renewal_info_path_component
    for serial in (0x0123, 0x8000_0000_0000_0001, x509.random_serial_number()):
        cert = make_cert(serial, aki=os.urandom(20))
        ident = certificate_id(cert)
        assert "=" not in ident and "+" not in ident and "/" not in ident
        assert ident == oracle(cert)


def test_certificate_id_needs_an_authority_key_identifier() -> None:
    with pytest.raises(ValueError, match="authority key identifier"):
        certificate_id(make_cert(5, aki=None))


# --------------------------------------------------------------------------- parsing


def test_parse_the_rfc_example_response() -> None:
    parsed = parse_renewal_info(RFC_BODY, "21600", NOW)
    assert parsed == RenewalWindow(
        start=datetime(2025, 1, 2, 4, tzinfo=UTC),
        end=datetime(2025, 1, 3, 4, tzinfo=UTC),
        explanation_url="https://acme.example.com/docs/ari",
        retry_after=NOW + timedelta(hours=6),
    )


def test_parse_nanoseconds_and_missing_explanation() -> None:
    parsed = parse_renewal_info(BOULDER_BODY.decode(), None, NOW)
    assert parsed.start == datetime(2026, 12, 1, 10, 0, 0, 123456, tzinfo=UTC)
    assert parsed.end == datetime(2026, 12, 3, 10, 0, 0, 987654, tzinfo=UTC)
    assert parsed.explanation_url is None
    assert parsed.retry_after is None


def test_parse_empty_explanation_url_is_absent() -> None:
    assert parse_renewal_info(GTS_BODY, "3600", NOW).explanation_url is None


def test_parse_converts_offsets_to_utc() -> None:
    body = (
        '{"suggestedWindow": {"start": "2026-12-01T12:00:00+02:00", "end": "2026-12-02t10:00:00z"}}'
    )
    parsed = parse_renewal_info(body, None, NOW)
    assert parsed.start == datetime(2026, 12, 1, 10, tzinfo=UTC)
    assert parsed.start.tzinfo is UTC
    assert parsed.end == datetime(2026, 12, 2, 10, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("21600", NOW + timedelta(hours=6)),
        ("Tue, 01 Dec 2026 18:00:00 GMT", NOW + timedelta(hours=6)),
        ("5", NOW + MIN_RETRY_AFTER),  # clamped: do not hammer the CA
        ("864000", NOW + MAX_RETRY_AFTER),  # clamped: never silent for ten days
        ("Mon, 30 Nov 2026 00:00:00 GMT", NOW + MIN_RETRY_AFTER),  # a date in the past
        ("soon", None),
        ("-5", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_retry_after(header: str | None, expected: datetime | None) -> None:
    assert parse_renewal_info(RFC_BODY, header, NOW).retry_after == expected


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"<html>502 Bad Gateway</html>", "not valid JSON"),
        (b"\xff\xfe\x00", "not valid JSON"),
        (b"", "not valid JSON"),
        (b"[]", "must be a JSON object"),
        (b'{"explanationURL": "https://ca.example/x"}', "no suggestedWindow object"),
        (b'{"suggestedWindow": "tomorrow"}', "no suggestedWindow object"),
        (b'{"suggestedWindow": {"end": "2026-12-03T10:00:00Z"}}', "suggestedWindow has no start"),
        (b'{"suggestedWindow": {"start": "2026-12-03T10:00:00Z"}}', "suggestedWindow has no end"),
        (
            b'{"suggestedWindow": {"start": "2026-12-01", "end": "2026-12-03T10:00:00Z"}}',
            "suggestedWindow.start '2026-12-01' is not an RFC 3339 timestamp",
        ),
        (
            b'{"suggestedWindow": {"start": "2026-12-01T10:00:00Z", "end": "2026-12-03T10:00:00"}}',
            "suggestedWindow.end .* is not an RFC 3339 timestamp",
        ),
        (
            b'{"suggestedWindow": {"start": 1764583200, "end": "2026-12-03T10:00:00Z"}}',
            "suggestedWindow.start must be an RFC 3339 string",
        ),
        (
            suggested("2026-02-30T10:00:00Z", "2026-12-03T10:00:00Z"),
            "not a valid date and time",
        ),
        (
            suggested("2026-12-03T10:00:00Z", "2026-12-01T10:00:00Z"),
            r"ends \(2026-12-01T10:00:00Z\) before it starts \(2026-12-03T10:00:00Z\)",
        ),
        (
            b'{"suggestedWindow": {"start": "2026-12-01T10:00:00Z", "end": "2026-12-03T10:00:00Z"},'
            b' "explanationURL": 7}',
            "explanationURL must be a string",
        ),
    ],
)
def test_parse_rejects_malformed_responses(body: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        parse_renewal_info(body, None, NOW)
    assert "\n" not in str(caught.value)


def test_parse_needs_an_aware_now() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        parse_renewal_info(RFC_BODY, "60", datetime(2026, 12, 1, 12))


# --------------------------------------------------------------------------- the window


def test_renewal_time_is_deterministic_and_inside_the_window() -> None:
    span = window(NOW, 48)
    first = span.renewal_time("5f2c9a")
    assert first == span.renewal_time("5f2c9a")
    assert span.start <= first < span.end
    assert first != span.renewal_time("5f2c9b")


def test_renewal_time_spreads_a_fleet_over_the_window() -> None:
    span = window(NOW, 100)
    fractions = [
        (span.renewal_time(format(serial, "x")) - span.start) / (span.end - span.start)
        for serial in range(0x1000, 0x1000 + 2000)
    ]
    assert all(0 <= f < 1 for f in fractions)
    deciles = {int(f * 10) for f in fractions}
    assert deciles == set(range(10))
    assert 0.45 < sum(fractions) / len(fractions) < 0.55


def test_renewal_time_of_an_empty_window_is_its_start() -> None:
    assert window(NOW, 0).renewal_time("abc") == NOW
    inverted = RenewalWindow(NOW, NOW - timedelta(hours=1), None, None)
    assert inverted.renewal_time("abc") == NOW


def test_renewal_time_stays_inside_a_one_microsecond_window() -> None:
    tiny = RenewalWindow(NOW, NOW + timedelta(microseconds=1), None, None)
    assert {tiny.renewal_time(str(i)) for i in range(50)} == {NOW}


def test_ari_due_before_and_after_the_renewal_time() -> None:
    span = RenewalWindow(
        start=datetime(2026, 12, 1, 10, tzinfo=UTC),
        end=datetime(2026, 12, 3, 10, tzinfo=UTC),
        explanation_url=None,
        retry_after=None,
    )
    at = span.renewal_time("87654321")
    expected = (
        "ACME Renewal Information: the CA suggests renewing between 2026-12-01 10:00 and "
        f"2026-12-03 10:00 UTC (renewal time {at:%Y-%m-%d %H:%M})"
    )
    assert ari_due(span, "87654321", span.start - timedelta(days=1)) == (False, expected)
    assert ari_due(span, "87654321", at - timedelta(microseconds=1)) == (False, expected)
    assert ari_due(span, "87654321", at) == (True, f"{expected}: renew now")


def test_ari_due_once_the_window_has_ended() -> None:
    span = window(datetime(2026, 11, 1, 10, tzinfo=UTC), 24, explanation_url="https://ca.test/i")
    due, reason = ari_due(span, "01", NOW)
    assert due
    assert reason == (
        "ACME Renewal Information: the CA suggested renewing between 2026-11-01 10:00 and "
        "2026-11-02 10:00 UTC; the window ended 2026-11-02 10:00 UTC: renew now; "
        "see https://ca.test/i"
    )


def test_ari_due_names_the_explanation_when_not_yet_due() -> None:
    span = window(NOW + timedelta(days=1), 24, explanation_url="https://ca.test/incident")
    due, reason = ari_due(span, "01", NOW)
    assert not due
    assert reason.endswith("; see https://ca.test/incident")


# --------------------------------------------------------------------------- fetching


@dataclass
class Recorded:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


class ReplayServer:
    """A local HTTP(S) server answering ``/renewal-info/<id>`` from recorded responses."""

    def __init__(self, responses: dict[str, Recorded], tls: ssl.SSLContext | None = None) -> None:
        self.seen: list[tuple[str, str | None]] = []
        seen, replies = self.seen, responses

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                seen.append((self.path, self.headers.get("Accept")))
                reply = replies.get(self.path, Recorded(404, b'{"type": "malformed"}'))
                time.sleep(reply.delay)
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        scheme = "https" if tls is not None else "http"
        self.base = f"{scheme}://127.0.0.1:{self.server.server_address[1]}/renewal-info"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def replay() -> Iterator[Callable[..., ReplayServer]]:
    servers: list[ReplayServer] = []

    def start(responses: dict[str, Recorded], tls: ssl.SSLContext | None = None) -> ReplayServer:
        servers.append(ReplayServer(responses, tls))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


RFC_PATH = f"/renewal-info/{RFC_CERT_ID}"


def test_fetch_a_window_with_retry_after(replay: Callable[..., ReplayServer]) -> None:
    server = replay(
        {
            RFC_PATH: Recorded(
                200, RFC_BODY, {"Content-Type": "application/json", "Retry-After": "21600"}
            )
        }
    )
    fetched = fetch_renewal_info(f"{server.base}/", make_cert(RFC_SERIAL), ca_bundle=None, now=NOW)
    assert fetched == parse_renewal_info(RFC_BODY, "21600", NOW)
    assert server.seen == [(RFC_PATH, "application/json")]


def test_fetch_unknown_certificate_is_none(replay: Callable[..., ReplayServer]) -> None:
    server = replay({})
    assert fetch_renewal_info(server.base, make_cert(RFC_SERIAL), ca_bundle=None) is None


def test_fetch_server_error_is_a_one_line_provider_error(
    replay: Callable[..., ReplayServer],
) -> None:
    problem = json.dumps(
        {
            "type": "urn:ietf:params:acme:error:serverInternal",
            "detail": "database\nunavailable",
            "status": 500,
        }
    ).encode()
    server = replay(
        {RFC_PATH: Recorded(500, problem, {"Content-Type": "application/problem+json"})}
    )
    with pytest.raises(ProviderError) as caught:
        fetch_renewal_info(server.base, make_cert(RFC_SERIAL), ca_bundle=None)
    message = str(caught.value)
    assert "\n" not in message
    assert f"{server.base}/{RFC_CERT_ID}: HTTP 500" in message
    assert message.endswith(": database unavailable")


def test_fetch_malformed_body_is_a_provider_error(replay: Callable[..., ReplayServer]) -> None:
    server = replay({RFC_PATH: Recorded(200, b"<html>maintenance</html>")})
    with pytest.raises(ProviderError, match="not valid JSON"):
        fetch_renewal_info(server.base, make_cert(RFC_SERIAL), ca_bundle=None)


def test_fetch_refused_connection_is_a_provider_error() -> None:
    url = f"http://127.0.0.1:{free_port()}/renewal-info"
    with pytest.raises(ProviderError, match=r"refused") as caught:
        fetch_renewal_info(url, make_cert(RFC_SERIAL), ca_bundle=None, timeout=2)
    assert "\n" not in str(caught.value)


def test_fetch_timeout_is_a_provider_error(replay: Callable[..., ReplayServer]) -> None:
    server = replay({RFC_PATH: Recorded(200, RFC_BODY, delay=1.0)})
    started = time.monotonic()
    with pytest.raises(ProviderError, match="timed out"):
        fetch_renewal_info(server.base, make_cert(RFC_SERIAL), ca_bundle=None, timeout=0.2)
    assert time.monotonic() - started < 1.0


def test_fetch_with_a_missing_ca_bundle_is_a_provider_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    with pytest.raises(ProviderError, match=f"ca_bundle {missing} is unusable"):
        fetch_renewal_info("https://127.0.0.1:1/x", make_cert(1), ca_bundle=str(missing))


def test_fetch_verifies_https_with_the_ca_bundle(
    tmp_path: Path, replay: Callable[..., ReplayServer]
) -> None:
    ca, cert, key = write_lab_tls(tmp_path)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    server = replay({RFC_PATH: Recorded(200, RFC_BODY, {"Retry-After": "60"})}, tls)
    leaf = make_cert(RFC_SERIAL)
    fetched = fetch_renewal_info(server.base, leaf, ca_bundle=str(ca), now=NOW)
    assert fetched is not None and fetched.retry_after == NOW + timedelta(minutes=1)
    with pytest.raises(ProviderError, match="CERTIFICATE_VERIFY_FAILED"):
        fetch_renewal_info(server.base, leaf, ca_bundle=None)


# --------------------------------------------------------------------------- the Pebble lab

needs_pebble = pytest.mark.skipif(
    pebble_binary() is None or challtestsrv_binary() is None,
    reason="pebble / pebble-challtestsrv not installed (apt-get install pebble)",
)

T = TypeVar("T")
BAD_NONCE_ATTEMPTS = 10


def retry_bad_nonce(call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Pebble rejects 5 % of nonces and the acme library retries only once."""
    from acme import messages

    for attempt in range(BAD_NONCE_ATTEMPTS):
        try:
            return call(*args, **kwargs)
        except messages.Error as error:
            if error.code != "badNonce" or attempt == BAD_NONCE_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


@dataclass
class Stack:
    lab: PebbleLab
    dns: ChallTestSrv
    web: WebrootServer


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    base = tmp_path_factory.mktemp("pebble")
    dns = ChallTestSrv.start(base / "challtestsrv")
    try:
        lab = PebbleLab.start(base / "pebble", dns_server=dns.dns_address, validity_seconds=3600)
        try:
            web = WebrootServer.start(base / "webroot", lab.http_port)
            try:
                yield Stack(lab, dns, web)
            finally:
                web.stop()
        finally:
            lab.stop()
    finally:
        dns.stop()


def acme_client(lab: PebbleLab, eab: tuple[str, str] | None = None) -> Any:
    """A registered ``ClientV2`` for ``lab`` (EC P-256 account key)."""
    import josepy as jose
    from acme import client, messages

    key = jose.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
    net = client.ClientNetwork(key, alg=jose.ES256, verify_ssl=lab.ca_bundle, user_agent="t")
    directory = client.ClientV2.get_directory(lab.directory_url, net)
    acme = client.ClientV2(directory, net)
    binding = None
    if eab is not None:
        binding = messages.ExternalAccountBinding.from_data(
            account_public_key=key.public_key(), kid=eab[0], hmac_key=eab[1], directory=directory
        )
    registration = messages.NewRegistration.from_data(
        terms_of_service_agreed=True, external_account_binding=binding
    )
    retry_bad_nonce(acme.new_account, registration)
    return acme


def csr_for(name: str) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM)


def issue_http01(acme: Any, web: WebrootServer, name: str, deadline_s: float = 20.0) -> str:
    """One issuance by http-01 through the webroot; returns the full chain PEM.

    Polls every 10 ms instead of ``poll_and_finalize`` (which sleeps a second).
    """
    from acme import challenges, messages

    deadline = time.monotonic() + deadline_s
    order = retry_bad_nonce(acme.new_order, csr_for(name))
    for authz in order.authorizations:
        challb = next(c for c in authz.body.challenges if isinstance(c.chall, challenges.HTTP01))
        response, validation = challb.response_and_validation(acme.net.key)
        web.publish(challb.chall.encode("token"), validation)
        retry_bad_nonce(acme.answer_challenge, challb, response)
        while authz.body.status != messages.STATUS_VALID:
            assert authz.body.status != messages.STATUS_INVALID, authz.body
            assert time.monotonic() < deadline, "authorization not valid in time"
            time.sleep(0.01)
            authz, _ = retry_bad_nonce(acme.poll, authz)
    order = retry_bad_nonce(acme.begin_finalization, order)
    nonce_url = acme.directory["newNonce"]
    body = order.body
    while body.status != messages.STATUS_VALID:
        assert body.status != messages.STATUS_INVALID, body
        assert time.monotonic() < deadline, "order not valid in time"
        time.sleep(0.01)
        # POST-as-GET: ClientNetwork.post with no payload (ClientV2 keeps its own private).
        reply = retry_bad_nonce(acme.net.post, order.uri, None, new_nonce_url=nonce_url)
        body = messages.Order.from_json(reply.json())
    return str(retry_bad_nonce(acme.net.post, body.certificate, None, new_nonce_url=nonce_url).text)


@needs_pebble
@pytest.mark.integration
def test_pebble_directory_answers_over_https_with_the_lab_ca(stack: Stack) -> None:
    lab = stack.lab
    context = ssl.create_default_context(cafile=lab.ca_bundle)
    with urllib.request.urlopen(lab.directory_url, timeout=5, context=context) as reply:
        directory = json.load(reply)
    assert {"newNonce", "newAccount", "newOrder", "revokeCert"} <= set(directory)
    assert directory["meta"]["externalAccountRequired"] is False
    assert "renewalInfo" not in directory  # Pebble 2.4 has no ARI
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        urllib.request.urlopen(lab.directory_url, timeout=5)
    assert len(lab.roots()) == 1 and len(lab.intermediates()) == 1


@needs_pebble
@pytest.mark.integration
def test_pebble_issues_over_http01_and_records_revocation(stack: Stack) -> None:
    lab, web = stack.lab, stack.web
    acme = acme_client(lab)
    started = time.monotonic()
    chain = x509.load_pem_x509_certificates(issue_http01(acme, web, "www.certform.test").encode())
    elapsed = time.monotonic() - started
    assert elapsed < 5, f"issuance took {elapsed:.2f} s"
    leaf, intermediates = chain[0], chain[1:]
    assert any(path.startswith("/.well-known/acme-challenge/") for path in web.requests)
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc <= timedelta(seconds=3600)

    verifier = (
        PolicyBuilder()
        .store(Store(lab.roots()))
        .build_server_verifier(x509.DNSName("www.certform.test"))
    )
    verified = verifier.verify(leaf, intermediates)
    assert verified[-1] in lab.roots()
    assert certificate_id(leaf).endswith(
        "." + b64url(leaf.serial_number.to_bytes(leaf.serial_number.bit_length() // 8 + 1, "big"))
    )

    serial = format(leaf.serial_number, "x")
    status = lab.cert_status(serial)
    assert status["Status"] == "Valid"
    assert x509.load_pem_x509_certificate(status["Certificate"].encode()) == leaf
    retry_bad_nonce(acme.revoke, leaf, 4)  # superseded
    assert lab.is_revoked(serial)
    colons = ":".join(f"{b:02X}" for b in leaf.serial_number.to_bytes(20, "big"))
    assert lab.is_revoked(colons)  # any spelling of the serial works through the lab
    with pytest.raises(LookupError):
        lab.cert_status("1")


@needs_pebble
@pytest.mark.integration
def test_pebble_requires_external_account_binding_when_given_keys(tmp_path: Path) -> None:
    from acme import messages

    hmac_key = b64url(os.urandom(32))
    with (
        ChallTestSrv.start(tmp_path / "dns") as dns,
        PebbleLab.start(
            tmp_path / "pebble", dns_server=dns.dns_address, eab_keys={"kid-1": hmac_key}
        ) as lab,
    ):
        with pytest.raises(messages.Error) as missing:
            acme_client(lab)
        assert missing.value.code == "externalAccountRequired"
        with pytest.raises(messages.Error) as wrong:
            acme_client(lab, eab=("kid-1", b64url(os.urandom(32))))
        assert wrong.value.code == "unauthorized"
        acme_client(lab, eab=("kid-1", hmac_key))
        process = lab.process
    assert process is not None and process.poll() is not None
    assert lab.process is None and dns.process is None


def test_b64url_is_unpadded() -> None:
    assert b64url(b"\xff\xfe") == base64.urlsafe_b64encode(b"\xff\xfe").decode().rstrip("=")
