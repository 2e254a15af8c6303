"""ACME Renewal Information in the plan: the window a CA suggests replaces
renew_before (and the plan says so), fetched from a recorded server over HTTP.

Pebble 2.4 has no ``renewalInfo``; these tests serve recorded RFC 9773
responses from a local HTTP server instead."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from reconciler.acme.ari import RenewalWindow, certificate_id
from reconciler.engine.renewal_info import renewal_windows
from reconciler.model.desired import DesiredCertificate, DesiredState
from reconciler.model.records import CertificateRecord, RecordedState
from reconciler.pki.builder import (
    Subject,
    build_ca_certificate,
    build_leaf_certificate,
    certificate_to_pem,
)
from reconciler.pki.keys import generate_private_key
from reconciler.plan.diff import diff

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
ISSUED = NOW - timedelta(days=10)
EXPIRES = ISSUED + timedelta(days=90)


def _certificate() -> str:
    ca_key, leaf_key = generate_private_key("ec-p256"), generate_private_key("ec-p256")
    ca = build_ca_certificate(
        public_key=ca_key.public_key(),
        subject=Subject("Test CA"),
        issuer_cert=None,
        issuer_key=ca_key,
        not_before=ISSUED,
        not_after=EXPIRES,
        path_length=None,
    )
    leaf = build_leaf_certificate(
        public_key=leaf_key.public_key(),
        names=["web.example.test"],
        issuer_cert=ca,
        issuer_key=ca_key,
        not_before=ISSUED,
        not_after=EXPIRES,
    )
    return certificate_to_pem(leaf)


PEM = _certificate()


def _states(directory: str) -> tuple[DesiredState, RecordedState]:
    spec = {
        "names": ["web.example.test"],
        "issuer": "le",
        "issuers": ["le"],
        "key": "ec-p256",
        "validity": "90d",
        "usages": ["server_auth"],
        "issuer_type": "acme",
        "acme": {"le": {"type": "acme", "directory": directory}},
    }
    desired = DesiredState((), (DesiredCertificate("web", spec, "30d", False),), ())
    record = CertificateRecord(
        "web", {**spec, "issued_by": "le"}, "abc", ISSUED, EXPIRES, "acme:le", "ff", False, {},
        True,
    )  # fmt: skip
    return desired, RecordedState("lineage", 3, certificates={"web": record})


class _Recorded(BaseHTTPRequestHandler):
    responses: dict[str, tuple[int, dict[str, str], bytes]] = {}

    def do_GET(self) -> None:
        status, headers, body = self.responses.get(self.path, (404, {}, b""))
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return None


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Recorded)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _serve(base: str, start: datetime, end: datetime) -> None:
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(PEM.encode())
    window = {"suggestedWindow": {"start": start.isoformat(), "end": end.isoformat()}}
    _Recorded.responses = {
        "/dir": (200, {"Content-Type": "application/json"},
                 json.dumps({"renewalInfo": f"{base}/ari"}).encode()),
        f"/ari/{certificate_id(cert)}": (
            200, {"Content-Type": "application/json", "Retry-After": "21600"},
            json.dumps(window).encode(),
        ),
    }  # fmt: skip


def test_window_in_the_past_renews_now_and_says_why(server: str) -> None:
    _serve(server, NOW - timedelta(days=2), NOW - timedelta(days=1))
    desired, recorded = _states(f"{server}/dir")
    windows, warnings = renewal_windows(desired, recorded, lambda name: PEM, root=None)  # type: ignore[arg-type]
    assert warnings == []
    window = windows["certificate.web"]
    assert isinstance(window, RenewalWindow)
    result = diff(desired, recorded, {}, NOW, windows)
    (change,) = result.changes
    assert change.action.value == "renew"
    assert "ACME Renewal Information" in change.reasons[0]
    assert "renew now" in change.reasons[0]


def test_window_ahead_overrides_renew_before(server: str) -> None:
    # renew_before 30d would renew 50 days from now; the CA suggests days 40-41.
    # Before the window nothing happens; after it, ARI renews although
    # renew_before would still wait.
    _serve(server, NOW + timedelta(days=40), NOW + timedelta(days=41))
    desired, recorded = _states(f"{server}/dir")
    windows, _ = renewal_windows(desired, recorded, lambda name: PEM, root=None)  # type: ignore[arg-type]
    assert diff(desired, recorded, {}, NOW, windows).changes == ()
    later = NOW + timedelta(days=41, hours=1)
    (change,) = diff(desired, recorded, {}, later, windows).changes
    assert "ACME Renewal Information" in change.reasons[0]


def test_directory_without_renewal_info_falls_back_to_renew_before(server: str) -> None:
    _Recorded.responses = {"/dir": (200, {}, json.dumps({"newOrder": "x"}).encode())}
    desired, recorded = _states(f"{server}/dir")
    windows, warnings = renewal_windows(desired, recorded, lambda name: PEM, root=None)  # type: ignore[arg-type]
    assert windows == {} and warnings == []
    due = EXPIRES - timedelta(days=29)
    (change,) = diff(desired, recorded, {}, due, windows).changes
    assert "renew_before 30d" in change.reasons[0]


def test_unreachable_ca_is_a_warning_not_a_failure() -> None:
    desired, recorded = _states("http://127.0.0.1:9/dir")
    windows, warnings = renewal_windows(desired, recorded, lambda name: PEM, root=None)  # type: ignore[arg-type]
    assert windows == {}
    assert len(warnings) == 1 and "no renewal information from le" in warnings[0]
