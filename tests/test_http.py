"""The one HTTP stack (``reconciler/http.py``): its Retry-After parser, and what it
takes from the environment (proxies only), checked through the webhook sink and
ACME Renewal Information against real local HTTP(S) servers.

The ARI ``replay`` server and its helpers come from ``test_acme_ari``; the webhook
``Hook`` from ``test_monitoring``.
"""

from __future__ import annotations

import logging
import socket
import ssl
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from reconciler import http
from reconciler.acme.ari import fetch_renewal_info
from reconciler.errors import ProviderError
from reconciler.monitoring.notifications import WebhookSink, deliver
from tests.acme_lab import write_lab_tls
from tests.test_acme_ari import RFC_BODY, RFC_PATH, RFC_SERIAL, Recorded, ReplayServer, make_cert
from tests.test_acme_ari import replay as replay  # the fixture
from tests.test_monitoring import EVENTS, Hook, Sleeps, serving
from tests.test_monitoring import hook as hook  # the fixture

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


# -- Retry-After ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("7", timedelta(seconds=7)),
        (" 120 ", timedelta(seconds=120)),
        ("Tue, 01 Dec 2026 12:00:30 GMT", timedelta(seconds=30)),
        ("Wed, 21 Oct 2015 07:28:00 GMT", timedelta(0)),  # in the past: now
        ("1.5", None),  # delay-seconds is 1*DIGIT
        ("-5", None),
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_takes_seconds_and_http_dates(
    header: str | None, expected: timedelta | None
) -> None:
    assert http.retry_after(header, NOW) == expected


def test_retry_after_dates_default_to_the_clock() -> None:
    future = datetime.now(UTC) + timedelta(seconds=30)
    later = http.retry_after(future.strftime("%a, %d %b %Y %H:%M:%S GMT"))
    assert later is not None and timedelta(seconds=25) <= later <= timedelta(seconds=31)


def test_webhook_a_malformed_retry_after_falls_back_to_backoff(hook: Hook) -> None:
    """urllib3's own parser raises on such a header; the retry must still happen."""
    hook.script = [(503, {"Retry-After": "whenever"}, 0.0)]
    sleeps = Sleeps()
    report = deliver(EVENTS[:1], hook.sink(), sleep=sleeps)
    assert report.ok and len(hook.requests) == 2
    assert sleeps == [1.0]


# -- what the environment may change ---------------------------------------------------
@pytest.fixture
def proxy() -> Iterator[Hook]:
    """A second recording server, used as a forward proxy: a request sent through it
    arrives with the absolute URL as its path (and gets a 200 from it)."""
    with serving(Hook()) as server:
        yield server


def test_webhook_goes_through_the_proxy_the_environment_names(
    hook: Hook, proxy: Hook, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.setenv("HTTP_PROXY", proxy.url.removesuffix("/events"))
    report = deliver(EVENTS[:1], hook.sink(), sleep=Sleeps())
    assert report.ok
    assert [r["path"] for r in proxy.requests] == [hook.url] and hook.requests == []

    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    assert deliver(EVENTS[:1], hook.sink(), sleep=Sleeps()).ok
    assert len(proxy.requests) == 1 and len(hook.requests) == 1


def test_webhook_never_sends_netrc_credentials(
    hook: Hook, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """requests with ``trust_env`` would send them, replacing the configured header."""
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login netrc-user password netrc-secret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".netrc").write_text(netrc.read_text())
    (tmp_path / ".netrc").chmod(0o600)
    report = deliver(EVENTS[:1], hook.sink(headers={"Authorization": "Bearer configured"}))
    assert report.ok
    assert hook.requests[0]["headers"]["authorization"] == "Bearer configured"
    assert deliver(EVENTS[:1], hook.sink()).ok
    assert "authorization" not in hook.requests[1]["headers"]


def test_ari_ignores_requests_ca_bundle(
    tmp_path: Path, replay: Callable[..., ReplayServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Trust is the configured ca_bundle or the system store, as before requests."""
    ca, cert, key = write_lab_tls(tmp_path)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    server = replay({RFC_PATH: Recorded(200, RFC_BODY)}, tls)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca))
    with pytest.raises(ProviderError, match=r"cannot connect: .*CERTIFICATE_VERIFY_FAILED"):
        fetch_renewal_info(server.base, make_cert(RFC_SERIAL), ca_bundle=None)
    assert fetch_renewal_info(server.base, make_cert(RFC_SERIAL), ca_bundle=str(ca), now=NOW)


def test_ari_reads_at_most_64_kib(replay: Callable[..., ReplayServer]) -> None:
    server = replay({RFC_PATH: Recorded(200, b" " * (64 * 1024) + RFC_BODY)})
    with pytest.raises(ProviderError, match=r"response larger than 64 KiB$"):
        fetch_renewal_info(server.base, make_cert(RFC_SERIAL), ca_bundle=None)


def test_retries_log_no_request_path(
    hook: Hook, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """A webhook's path can be its token; urllib3 logs paths when it retries (and
    warns, on stderr when logging is not configured, after a broken connection)."""
    hook.script = [(503, {}, 0.0)]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}/T0/s3cr3t"
    with caplog.at_level(logging.DEBUG):
        assert deliver(EVENTS[:1], WebhookSink(type="webhook", url=hook.url + "/T0/s3cr3t")).ok
        refused = deliver(EVENTS[:1], WebhookSink(type="webhook", url=closed, retries=1))
    assert hook.requests[1]["path"] == "/events/T0/s3cr3t"
    assert refused.failed[0].reason.startswith("cannot connect: [Errno 111] Connection refused")
    logged = [record.getMessage() for record in caplog.records]
    assert any("/…" in line for line in logged)  # urllib3 did log the requests
    assert not any("s3cr3t" in line or "Retrying (" in line for line in logged)
    captured = capsys.readouterr()
    assert "s3cr3t" not in captured.out + captured.err
