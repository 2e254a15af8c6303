"""Expiry monitoring: Prometheus textfile gauges and ACM-style expiry events.

The Prometheus output is read back with prometheus_client's own parser; the
webhook sink talks to a real HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import stat
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import TypeAdapter, ValidationError

from reconciler.model.desired import DesiredCertificate, DesiredState
from reconciler.model.records import CertificateRecord, RecordedState
from reconciler.monitoring.notifications import (
    APPROACHING,
    EXPIRED,
    MAX_WAIT,
    REVOKED,
    FileSink,
    NotificationsConfig,
    StdoutSink,
    WebhookSink,
    deliver,
    deliver_all,
    expiry_events,
    notify,
)
from reconciler.monitoring.prometheus import (
    CertificateMetric,
    certificate_metrics,
    render_prometheus,
    tag_label_names,
    write_textfile,
)
from reconciler.policy.renewal import renewal_time

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def metric(name: str, left: timedelta | None, **changes: Any) -> CertificateMetric:
    """A 90-day certificate with ``left`` until expiry (None: not issued)."""
    not_after = NOW + left if left is not None else None
    fields: dict[str, Any] = {
        "name": name,
        "issuer": "issuing",
        "tags": {},
        "not_before": not_after - 90 * DAY if not_after else None,
        "not_after": not_after,
        "renewal_at": not_after - 30 * DAY if not_after else None,
        "revoked": False,
        "serial": "0a1b" if not_after else None,
    }
    fields.update(changes)
    return CertificateMetric(**fields)


FLEET = [
    metric("web", 60 * DAY, tags={"team": "web", "cost-center": "42"}),
    metric("old", -2 * DAY),
    metric("gone", 60 * DAY, revoked=True),
    metric("new", None),
]


# -- Prometheus -----------------------------------------------------------------------
Samples = dict[str, tuple[dict[str, str], float]]


def parse(text: str) -> dict[str, Samples]:
    """{family: {certificate name: (labels, value)}}, read by prometheus_client."""
    return {
        family.name: {s.labels["name"]: (s.labels, s.value) for s in family.samples}
        for family in text_string_to_metric_families(text)
    }


def test_prometheus_gauges_parse_with_values_and_labels() -> None:
    text = render_prometheus(FLEET, NOW)
    families = parse(text)
    assert set(families) == {
        "certform_certificate_expiration_timestamp_seconds",
        "certform_certificate_not_before_timestamp_seconds",
        "certform_certificate_ready",
        "certform_certificate_renewal_timestamp_seconds",
    }
    for family in text_string_to_metric_families(text):
        assert family.type == "gauge" and family.documentation
        assert f"# TYPE {family.name} gauge" in text
    expiration = families["certform_certificate_expiration_timestamp_seconds"]
    labels, value = expiration["web"]
    assert value == (NOW + 60 * DAY).timestamp()
    assert labels == {
        "name": "web",
        "issuer": "issuing",
        "tag_team": "web",
        "tag_cost_center": "42",
    }
    not_before = families["certform_certificate_not_before_timestamp_seconds"]
    assert not_before["web"][1] == (NOW - 30 * DAY).timestamp()
    renewal = families["certform_certificate_renewal_timestamp_seconds"]
    assert renewal["web"][1] == (NOW + 30 * DAY).timestamp()


def test_ready_is_zero_for_expired_revoked_and_not_issued() -> None:
    ready = parse(render_prometheus(FLEET, NOW))["certform_certificate_ready"]
    assert {name: value for name, (_, value) in ready.items()} == {
        "web": 1.0,
        "old": 0.0,
        "gone": 0.0,
        "new": 0.0,
    }


def test_not_issued_has_only_the_ready_gauge() -> None:
    families = parse(render_prometheus(FLEET, NOW))
    # All four gauges are rendered (a loop over nothing would check nothing) ...
    assert set(families) == {
        "certform_certificate_expiration_timestamp_seconds",
        "certform_certificate_not_before_timestamp_seconds",
        "certform_certificate_ready",
        "certform_certificate_renewal_timestamp_seconds",
    }
    # ... the issued certificate is in each of them, the not-issued one only in ready.
    assert {name for name, family in families.items() if "web" in family} == set(families)
    assert {name for name, family in families.items() if "new" in family} == {
        "certform_certificate_ready"
    }


def test_label_values_are_escaped_and_tag_keys_sanitised() -> None:
    nasty = 'a "quoted" back\\slash\nnewline'
    certificate = metric(
        "web", 60 * DAY, issuer="le\\prod", tags={"team-a": nasty, "team_a": "x", "1st.tag": "y"}
    )
    text = render_prometheus([certificate], NOW)
    assert r'tag_team_a="a \"quoted\" back\\slash\nnewline"' in text
    assert r'issuer="le\\prod"' in text
    labels, _ = parse(text)["certform_certificate_ready"]["web"]
    assert labels == {
        "name": "web",
        "issuer": "le\\prod",
        "tag_team_a": nasty,  # "team-a" sorts first and keeps the plain name
        "tag_team_a_2": "x",
        "tag_1st_tag": "y",
    }


def test_tag_label_names_are_valid_and_unique() -> None:
    names = tag_label_names(["a b", "a-b", "a_b", "ä", ""])
    assert len(set(names.values())) == 5
    for label in names.values():
        assert label.startswith("tag_")
        assert label.replace("_", "a").isalnum() and label.isascii()


def test_rendering_is_deterministic_and_rejects_duplicate_names() -> None:
    assert render_prometheus(FLEET, NOW) == render_prometheus(list(reversed(FLEET)), NOW)
    assert render_prometheus([], NOW).count("# TYPE") == 4
    with pytest.raises(ValueError, match="unique"):
        render_prometheus([metric("web", DAY), metric("web", 2 * DAY)], NOW)


def test_write_textfile_is_atomic_and_world_readable(tmp_path: Path) -> None:
    target = tmp_path / "certform.prom"
    target.write_text("stale\n")
    old_umask = os.umask(0o077)
    try:
        write_textfile(target, render_prometheus(FLEET, NOW))
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert parse(target.read_text())["certform_certificate_ready"]["web"][1] == 1.0
    assert [p.name for p in tmp_path.iterdir()] == ["certform.prom"]


def test_write_textfile_leaves_no_temp_file_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "certform.prom"
    target.mkdir()  # os.replace onto a directory fails
    with pytest.raises(OSError):
        write_textfile(target, "x 1\n")
    assert [p.name for p in tmp_path.iterdir()] == ["certform.prom"]


# -- from state and config ------------------------------------------------------------
def record(name: str, **changes: Any) -> CertificateRecord:
    fields: dict[str, Any] = {
        "name": name,
        "spec": {"issuer": "issuing"},
        "serial": "7f",
        "not_before": NOW - 10 * DAY,
        "not_after": NOW + 80 * DAY,
        "issuer_key_id": "k",
        "fingerprint": "f",
        "prevent_destroy": False,
        "tags": {"team": "recorded"},
        "has_key": True,
    }
    fields.update(changes)
    return CertificateRecord(**fields)


def desired(name: str, renew_before: str | None = None, **tags: str) -> DesiredCertificate:
    return DesiredCertificate(name, {"issuer": "issuing"}, renew_before, False, dict(tags))


def test_certificate_metrics_from_state_and_config() -> None:
    revoked_at = NOW - DAY
    state = RecordedState(
        "lineage",
        3,
        certificates={
            "web": record("web", spec={"issuer": "le", "issued_by": "le-backup"}),
            "acm": record("acm", external_id="arn:aws:acm:eu-west-1:1:certificate/x"),
            "bad": record("bad", revoked_at=revoked_at),
            "orphan": record("orphan"),
        },
    )
    config = DesiredState(
        authorities=(),
        certificates=(
            desired("web", "30d", team="web"),
            desired("acm"),
            desired("bad"),
            desired("new", team="new"),
        ),
        bindings=(),
    )
    metrics = {m.name: m for m in certificate_metrics(state, config)}
    assert list(metrics) == ["web", "acm", "bad", "new", "orphan"]
    web = metrics["web"]
    assert (web.issuer, dict(web.tags), web.serial) == ("le-backup", {"team": "web"}, "7f")
    assert web.renewal_at == NOW + 50 * DAY
    assert metrics["acm"].renewal_at is None  # ACM renews it, not certform
    assert metrics["acm"].not_after == NOW + 80 * DAY
    assert metrics["bad"].revoked and metrics["bad"].renewal_at == revoked_at
    assert metrics["orphan"].renewal_at is None and metrics["orphan"].tags == {"team": "recorded"}
    new = metrics["new"]
    assert (new.not_before, new.not_after, new.renewal_at, new.revoked) == (
        None,
        None,
        None,
        False,
    )
    default = certificate_metrics(
        RecordedState("l", 1, certificates={"x": record("x")}),
        DesiredState((), (desired("x"),), ()),
    )
    assert default[0].renewal_at == renewal_time(NOW - 10 * DAY, NOW + 80 * DAY, None)


# -- expiry events --------------------------------------------------------------------
def kinds(events: list[dict[str, Any]]) -> dict[str, str]:
    return {e["detail"]["name"]: e["detail-type"] for e in events}


def test_events_within_the_window_expired_and_revoked() -> None:
    fleet = [
        metric("edge", 45 * DAY),
        metric("outside", 45 * DAY + timedelta(seconds=1)),
        metric("soon", 3 * DAY),
        metric("old", -2 * DAY),
        metric("gone", 300 * DAY, revoked=True),
        metric("new", None),
    ]
    events = expiry_events(fleet, NOW)
    assert kinds(events) == {
        "edge": APPROACHING,
        "gone": REVOKED,
        "old": EXPIRED,
        "soon": APPROACHING,
    }
    assert [e["detail"]["name"] for e in events] == ["edge", "gone", "old", "soon"]
    assert kinds(expiry_events(fleet, NOW, days=2)) == {"gone": REVOKED, "old": EXPIRED}


def test_event_shape_is_acm_like_and_json_serialisable() -> None:
    certificate = metric("web", 10 * DAY + timedelta(hours=5), tags={"team": "web"})
    (event,) = expiry_events([certificate], NOW, run_id="run-1")
    assert json.loads(json.dumps(event)) == event
    assert event["source"] == "certform"
    assert event["detail-type"] == "Certificate Approaching Expiration"
    assert event["time"] == "2025-06-01T12:00:00Z"
    assert event["resources"] == ["certificate.web"]
    assert event["detail"] == {
        "name": "web",
        "issuer": "issuing",
        "tags": {"team": "web"},
        "not_after": "2025-06-11T17:00:00Z",
        "days_to_expiry": 10,
        "serial": "0a1b",
        "run_id": "run-1",
    }
    (expired,) = expiry_events([metric("old", -timedelta(hours=30))], NOW)
    assert expired["detail"]["days_to_expiry"] == -2
    assert "run_id" not in expired["detail"]


def test_event_ids_are_stable_within_a_day_and_change_with_it() -> None:
    fleet = [metric("web", 10 * DAY), metric("api", 10 * DAY)]

    def ids(now: datetime, run_id: str | None = None) -> list[str]:
        return [e["id"] for e in expiry_events(fleet, now, run_id=run_id)]

    morning = NOW.replace(hour=0, minute=5)
    assert ids(NOW) == ids(morning) == ids(NOW, run_id="retry")
    assert len(set(ids(NOW))) == 2
    assert set(ids(NOW + DAY)).isdisjoint(ids(NOW))
    renewed = expiry_events([metric("web", 11 * DAY)], NOW)[0]["id"]
    assert renewed not in ids(NOW)


# -- configuration --------------------------------------------------------------------
def test_notifications_config_parses_each_sink_type() -> None:
    config = NotificationsConfig.model_validate(
        {
            "sinks": [
                {"type": "stdout"},
                {"type": "file", "path": "events.jsonl"},
                {
                    "type": "webhook",
                    "url": "https://hooks.example.test/certs?token=abc",
                    "headers": {"X-Team": "team-header-value"},
                    "headers_env": {"Authorization": "HOOK_TOKEN"},
                },
            ]
        }
    )
    assert config.days == 45
    stdout, file, hook = config.sinks
    assert isinstance(stdout, StdoutSink) and isinstance(file, FileSink)
    assert isinstance(hook, WebhookSink)
    assert (hook.timeout, hook.retries) == (10.0, 3)
    assert hook.describe() == "webhook https://hooks.example.test"
    assert "team-header-value" not in repr(hook)


@pytest.mark.parametrize(
    "data",
    [
        {"sinks": []},
        {"days": 0, "sinks": [{"type": "stdout"}]},
        {"days": 398, "sinks": [{"type": "stdout"}]},
        {"sinks": [{"type": "stdout", "path": "x"}]},
        {"sinks": [{"type": "email"}]},
        {"sinks": [{"type": "stdout"}], "extra": 1},
        {"sinks": [{"type": "webhook", "url": "ftp://example.test/"}]},
        {"sinks": [{"type": "webhook", "url": "https://example.test:99999/"}]},
        {"sinks": [{"type": "webhook", "url": "https://example.test/a b"}]},
        {"sinks": [{"type": "webhook", "url": "https://example.test/\u00e9"}]},
        {"sinks": [{"type": "webhook", "url": "https://x.test", "headers": {"A": "\u2019"}}]},
        {"sinks": [{"type": "webhook"}]},
        {"sinks": [{"type": "webhook", "url": "https://x.test", "url_env": "HOOK_URL"}]},
        {"sinks": [{"type": "webhook", "url_env": "not a name"}]},
        {"sinks": [{"type": "webhook", "url": "https://x.test", "retries": -1}]},
        {"sinks": [{"type": "webhook", "url": "https://x.test", "headers": {"A B": "1"}}]},
        {"sinks": [{"type": "webhook", "url": "https://x.test", "headers": {"A": "1\r\nB: 2"}}]},
        {"sinks": [{"type": "webhook", "url": "https://x.test", "headers_env": {"A": "1X"}}]},
        {
            "sinks": [
                {
                    "type": "webhook",
                    "url": "https://x.test",
                    "headers": {"authorization": "x"},
                    "headers_env": {"Authorization": "TOKEN"},
                }
            ]
        },
    ],
)
def test_notifications_config_rejects(data: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        NotificationsConfig.model_validate(data)


def test_notifications_config_json_schema() -> None:
    schema = TypeAdapter(NotificationsConfig).json_schema()
    assert schema["additionalProperties"] is False
    assert schema["properties"]["days"]["maximum"] == 397


# -- stdout and file sinks ------------------------------------------------------------
EVENTS = expiry_events([metric("web", 10 * DAY), metric("old", -DAY)], NOW)


def test_stdout_sink_prints_one_json_object_per_line(capsys: pytest.CaptureFixture[str]) -> None:
    report = deliver(EVENTS, StdoutSink(type="stdout"))
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line) for line in lines] == EVENTS
    assert report.ok and report.sent == tuple(e["id"] for e in EVENTS)
    deliver([], StdoutSink(type="stdout"))
    assert capsys.readouterr().out == ""


def test_file_sink_appends_json_lines(tmp_path: Path) -> None:
    sink = FileSink(type="file", path="events.jsonl")
    old_umask = os.umask(0o077)
    try:
        first = deliver(EVENTS, sink, root=tmp_path)
        second = deliver(EVENTS[:1], sink, root=tmp_path)
    finally:
        os.umask(old_umask)
    target = tmp_path / "events.jsonl"
    assert first.ok and second.ok
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    lines = [json.loads(line) for line in target.read_text().splitlines()]
    assert lines == [*EVENTS, EVENTS[0]]


def test_notify_sends_the_due_events_to_every_sink(tmp_path: Path) -> None:
    config = NotificationsConfig.model_validate(
        {"days": 20, "sinks": [{"type": "file", "path": "a.jsonl"}, {"type": "stdout"}]}
    )
    fleet = [metric("soon", 10 * DAY), metric("later", 30 * DAY)]
    out = io.StringIO()
    reports = notify(config, fleet, NOW, root=tmp_path, out=out)
    assert [len(r.sent) for r in reports] == [1, 1]
    (event,) = [json.loads(line) for line in out.getvalue().splitlines()]
    assert event["detail"]["name"] == "soon" and event["detail"]["run_id"]
    assert (tmp_path / "a.jsonl").read_text() == out.getvalue()


def test_file_sink_reports_a_write_failure(tmp_path: Path) -> None:
    report = deliver(EVENTS, FileSink(type="file", path=str(tmp_path / "no" / "such.jsonl")))
    assert not report.ok and report.sent == ()
    assert len(report.failed) == 2
    assert "No such file or directory" in report.failed[0].reason


# -- webhook --------------------------------------------------------------------------
class Hook:
    """A real HTTP server that records requests and answers from a script."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.script: list[tuple[int, dict[str, str], float]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                hook.requests.append(
                    {
                        "path": self.path,
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                        "body": json.loads(body),
                    }
                )
                status, headers, delay = hook.script.pop(0) if hook.script else (200, {}, 0.0)
                time.sleep(delay)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/events"

    def sink(self, **options: Any) -> WebhookSink:
        return WebhookSink(type="webhook", url=self.url, **options)


@pytest.fixture
def hook(monkeypatch: pytest.MonkeyPatch) -> Iterator[Hook]:
    for variable in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy"):
        monkeypatch.delenv(variable, raising=False)
    with serving(Hook()) as server:
        yield server


@contextlib.contextmanager
def serving(server: Hook) -> Iterator[Hook]:
    """``server`` answering in a thread until the block ends."""
    thread = threading.Thread(target=server.server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.server.shutdown()
        server.server.server_close()
        thread.join(5)


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def test_webhook_posts_each_event_as_json(hook: Hook) -> None:
    sleeps = Sleeps()
    report = deliver(EVENTS, hook.sink(headers={"X-Team": "web"}), sleep=sleeps)
    assert report.ok and report.sent == tuple(e["id"] for e in EVENTS)
    assert [r["body"] for r in hook.requests] == EVENTS
    first = hook.requests[0]
    assert first["path"] == "/events"
    assert first["headers"]["content-type"] == "application/json"
    assert first["headers"]["idempotency-key"] == EVENTS[0]["id"]
    assert first["headers"]["x-team"] == "web"
    assert first["headers"]["user-agent"].startswith("certform/")
    assert sleeps == []


def test_webhook_retries_a_503_honouring_retry_after(hook: Hook) -> None:
    hook.script = [(503, {"Retry-After": "0"}, 0.0)]
    sleeps = Sleeps()
    report = deliver(EVENTS[:1], hook.sink(), sleep=sleeps)
    assert report.ok and report.sent == (EVENTS[0]["id"],)
    assert len(hook.requests) == 2
    assert hook.requests[0]["body"] == hook.requests[1]["body"]
    assert sleeps == [0.0]


def test_webhook_caps_a_long_retry_after_and_retries_429(hook: Hook) -> None:
    hook.script = [(429, {"Retry-After": "86400"}, 0.0), (500, {}, 0.0)]
    sleeps = Sleeps()
    report = deliver(EVENTS[:1], hook.sink(retries=3), sleep=sleeps)
    assert report.ok and len(hook.requests) == 3
    assert sleeps == [MAX_WAIT, 2.0]  # capped Retry-After, then exponential backoff


def test_webhook_does_not_retry_a_400(hook: Hook) -> None:
    hook.script = [(400, {}, 0.0)]
    sleeps = Sleeps()
    report = deliver(EVENTS, hook.sink(), sleep=sleeps)
    assert len(hook.requests) == 2  # the 400 once, then the next event
    assert report.sent == (EVENTS[1]["id"],)
    (failure,) = report.failed
    assert failure.event_id == EVENTS[0]["id"]
    assert failure.reason == "HTTP 400 Bad Request"
    assert sleeps == []
    assert "1 sent, 1 failed (HTTP 400 Bad Request)" in report.summary()


def test_webhook_does_not_follow_redirects(hook: Hook) -> None:
    hook.script = [(302, {"Location": "http://elsewhere.test/"}, 0.0)]
    report = deliver(EVENTS[:1], hook.sink(), sleep=Sleeps())
    assert len(hook.requests) == 1
    assert report.failed[0].reason == "HTTP 302 Found (redirects are not followed)"


def test_webhook_connection_refused_is_retried_then_reported() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sink = WebhookSink(type="webhook", url=f"http://127.0.0.1:{port}/", retries=2, timeout=2)
    sleeps = Sleeps()
    report = deliver(EVENTS, sink, sleep=sleeps)
    assert report.sent == ()
    first, second = report.failed
    assert "Connection refused" in first.reason and first.reason.endswith("(after 3 attempts)")
    assert second.reason == "not attempted: an earlier event failed"
    assert sleeps == [1.0, 2.0]


def test_webhook_timeout_is_reported(hook: Hook) -> None:
    hook.script = [(200, {}, 1.0)]
    report = deliver(EVENTS[:1], hook.sink(timeout=0.2, retries=0), sleep=Sleeps())
    assert report.failed[0].reason == "no answer within 0.2s (after 1 attempts)"


def test_webhook_headers_from_env_are_sent_and_never_printed(
    hook: Hook, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = "Bearer s3cr3t-t0ken"
    monkeypatch.setenv("CERTFORM_HOOK_TOKEN", secret)
    sink = hook.sink(headers_env={"Authorization": "CERTFORM_HOOK_TOKEN"})
    hook.script = [(401, {}, 0.0)]
    reports = deliver_all(EVENTS, [sink, StdoutSink(type="stdout")], sleep=Sleeps())
    assert [r["headers"]["authorization"] for r in hook.requests] == [secret, secret]
    for report in reports:
        print(report.summary(), json.dumps(report.to_json()), repr(report))
    print(repr(sink), sink.describe())
    captured = capsys.readouterr()
    assert "s3cr3t" not in captured.out + captured.err
    assert reports[0].failed[0].reason == "HTTP 401 Unauthorized"


def test_webhook_missing_env_header_fails_without_sending(
    hook: Hook, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CERTFORM_HOOK_TOKEN", raising=False)
    sink = hook.sink(headers_env={"Authorization": "CERTFORM_HOOK_TOKEN"})
    report = deliver(EVENTS, sink, sleep=Sleeps())
    assert hook.requests == []
    assert [f.reason for f in report.failed] == [
        "environment variable CERTFORM_HOOK_TOKEN is not set"
    ] * 2


def test_webhook_url_from_env_is_used_and_never_printed(
    hook: Hook, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CERTFORM_HOOK_URL", hook.url + "/T0/B0/s3cr3t")
    sink = WebhookSink(type="webhook", url_env="CERTFORM_HOOK_URL")
    report = deliver(EVENTS[:1], sink, sleep=Sleeps())
    assert report.ok and hook.requests[0]["path"] == "/events/T0/B0/s3cr3t"
    assert report.sink == "webhook $CERTFORM_HOOK_URL"
    monkeypatch.setenv("CERTFORM_HOOK_URL", "ftp://s3cr3t@example.test/")
    report = deliver(EVENTS[:1], sink, sleep=Sleeps())
    assert report.failed[0].reason == (
        "environment variable CERTFORM_HOOK_URL: give an http:// or https:// URL with a host"
    )
    monkeypatch.setenv("CERTFORM_HOOK_URL", hook.url + "/s3cr3t path")
    report = deliver(EVENTS[:1], sink, sleep=Sleeps())
    assert "s3cr3t" not in report.summary() and len(hook.requests) == 1
    secret_path = WebhookSink(type="webhook", url="https://u:p@hooks.test:8443/T0/s3cr3t?k=v")
    assert secret_path.describe() == "webhook https://hooks.test:8443"


def test_webhook_env_header_outside_latin1_is_reported_not_raised(
    hook: Hook, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CERTFORM_HOOK_TOKEN", "s3cr3t\u2019")
    sink = hook.sink(headers_env={"Authorization": "CERTFORM_HOOK_TOKEN"})
    report = deliver(EVENTS[:1], sink, sleep=Sleeps())
    assert hook.requests == []
    assert report.failed[0].reason == (
        "environment variable CERTFORM_HOOK_TOKEN: the value has characters outside ISO-8859-1"
    )
