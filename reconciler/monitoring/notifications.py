"""Expiry notifications shaped like ACM's daily expiry events, and their delivery.

``expiry_events`` is pure: one event per certificate that is revoked, expired
or expires within ``days``, as ACM emits "ACM Certificate Approaching
Expiration" once a day.  An event's ``id`` depends only on the certificate,
the kind of event and the UTC day, so a scheduled job that runs (or retries)
several times a day sends the same ids and a receiver can drop duplicates.

``deliver`` is the I/O edge: standard output, a JSON-lines file, a webhook or
an EventBridge bus (``eventbridge.py``: ACM's own event shape).
It never raises for a failed delivery; it returns a ``DeliveryReport``.  Header
values (secrets, typically) are never part of a report, a reason or a repr.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
import urllib.parse
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TextIO

from pydantic import Field, field_validator, model_validator

from reconciler import __version__, http
from reconciler.config.types import StrictModel

if TYPE_CHECKING:  # the config models import this module: no issuer registry for them
    import requests

    from reconciler.monitoring.prometheus import CertificateMetric

SOURCE = "certform"
APPROACHING = "Certificate Approaching Expiration"
EXPIRED = "Certificate Expired"
REVOKED = "Certificate Revoked"

_ID_NAMESPACE = uuid.UUID("5d0f3a52-6c1e-4b8e-9a51-2f0c8e7b4d10")
"""Fixed: event ids must not change between certform versions."""

MAX_WAIT = 60.0
"""The longest a webhook delivery waits between attempts, whatever Retry-After says."""
BACKOFF_BASE = 1.0
"""Seconds before the first retry; doubled for each further one (1, 2, 4, ...)."""

Event = dict[str, Any]


# -- events ---------------------------------------------------------------------------
def expiry_events(
    certificates: Sequence[CertificateMetric],
    now: datetime,
    days: int = 45,
    run_id: str | None = None,
) -> list[Event]:
    """Pure: the events due as of ``now``, ordered by certificate name.

    Revoked beats expired beats approaching (within ``days``, boundary
    included); a certificate not issued yet has nothing to expire.  Every event
    is JSON-serialisable as is."""
    now = _utc(now)
    window = timedelta(days=days)
    events = []
    for certificate in sorted(certificates, key=lambda c: c.name):
        kind = _event_kind(certificate, now, window)
        if kind is not None:
            events.append(_event(certificate, kind, now, run_id))
    return events


def event_id(name: str, not_after: datetime, kind: str, now: datetime) -> str:
    """Deterministic per certificate (name and expiry), kind of event and UTC day."""
    day = _utc(now).date().isoformat()
    return str(uuid.uuid5(_ID_NAMESPACE, "\x1f".join((name, _iso(not_after), kind, day))))


def _event_kind(certificate: CertificateMetric, now: datetime, window: timedelta) -> str | None:
    if certificate.not_after is None:
        return None
    if certificate.revoked:
        return REVOKED
    left = _utc(certificate.not_after) - now
    if left <= timedelta(0):
        return EXPIRED
    if left <= window:
        return APPROACHING
    return None


def _event(certificate: CertificateMetric, kind: str, now: datetime, run_id: str | None) -> Event:
    assert certificate.not_after is not None
    not_after = _utc(certificate.not_after)
    detail: dict[str, Any] = {
        "name": certificate.name,
        "issuer": certificate.issuer,
        "tags": dict(certificate.tags),
        "not_after": _iso(not_after),
        "days_to_expiry": (not_after - now).days,
    }
    if certificate.serial is not None:
        detail["serial"] = certificate.serial
    if certificate.common_name is not None:
        detail["common_name"] = certificate.common_name
    if certificate.arn is not None:
        detail["certificate_arn"] = certificate.arn
    if run_id is not None:
        detail["run_id"] = run_id
    return {
        "version": "0",
        "id": event_id(certificate.name, not_after, kind, now),
        "detail-type": kind,
        "source": SOURCE,
        "time": _iso(now),
        "resources": [f"certificate.{certificate.name}"],
        "detail": detail,
    }


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _iso(moment: datetime) -> str:
    return _utc(moment).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- configuration --------------------------------------------------------------------
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class StdoutSink(StrictModel):
    """Print each event as one JSON object per line on standard output."""

    type: Literal["stdout"]

    def describe(self) -> str:
        return "stdout"


class FileSink(StrictModel):
    """Append each event as one JSON line to a file (created with mode 0644)."""

    type: Literal["file"]
    path: str = Field(
        min_length=1, description="The JSON-lines file; relative to the configuration directory."
    )

    def describe(self) -> str:
        return f"file {self.path}"


class WebhookSink(StrictModel):
    """POST each event as JSON; connection errors, 5xx and 429 are retried.

    Give ``url``, or ``url_env`` when the URL itself is a secret (Slack and
    Teams webhooks carry their token in the path)."""

    type: Literal["webhook"]
    url: str | None = Field(
        default=None,
        description="An http:// or https:// URL; redirects are not followed.",
    )
    url_env: str | None = Field(
        default=None,
        pattern=_ENV_NAME.pattern,
        description="Instead of url: the environment variable holding the URL.",
    )
    timeout: float = Field(default=10.0, gt=0, le=300, description="Seconds per attempt.")
    retries: int = Field(default=3, ge=0, le=10, description="Retries after the first attempt.")
    headers: dict[str, str] = Field(
        default_factory=dict,
        repr=False,
        description="Headers sent with every request. Not for secrets: see headers_env.",
    )
    headers_env: dict[str, str] = Field(
        default_factory=dict,
        description="Header name → the environment variable holding its value (tokens).",
    )

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and _url_problem(value):
            raise ValueError(_url_problem(value))
        return value

    @field_validator("headers")
    @classmethod
    def _header_values(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            _check_header_name(name)
            problem = _header_value_problem(text)
            if problem:
                raise ValueError(f"header {name}: {problem}")
        return value

    @field_validator("headers_env")
    @classmethod
    def _header_env_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name, variable in value.items():
            _check_header_name(name)
            if not _ENV_NAME.match(variable):
                raise ValueError(f"header {name}: {variable!r} is not an environment variable name")
        return value

    @model_validator(mode="after")
    def _one_url_no_header_twice(self) -> WebhookSink:
        if (self.url is None) == (self.url_env is None):
            raise ValueError("give exactly one of url and url_env")
        both = {n.lower() for n in self.headers} & {n.lower() for n in self.headers_env}
        if both:
            raise ValueError(f"headers and headers_env both set {', '.join(sorted(both))}")
        return self

    def describe(self) -> str:
        """Scheme, host and port only: user info, path and query may hold tokens."""
        if self.url is None:
            return f"webhook ${self.url_env}"
        return f"webhook {http.origin(self.url)}"


def _url_problem(url: str) -> str | None:
    """Why ``url`` cannot be posted to (never quoting it: it may be a secret)."""
    if not url.isascii() or any(c.isspace() or not c.isprintable() for c in url):
        return "the URL must be ASCII without spaces (percent-encode the rest)"
    try:
        parts = urllib.parse.urlsplit(url)
        _ = parts.port  # raises ValueError for a port out of range
    except ValueError:
        return "not a valid URL"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "give an http:// or https:// URL with a host"
    return None


def _header_value_problem(value: str) -> str | None:
    """Why http.client would refuse ``value`` (never quoting it: it may be a secret)."""
    if "\r" in value or "\n" in value:
        return "the value contains a line break"
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        return "the value has characters outside ISO-8859-1"
    return None


def _check_header_name(name: str) -> None:
    if not _HEADER_NAME.match(name):
        raise ValueError(f"{name!r} is not a valid HTTP header name")


class EventBridgeSink(StrictModel):
    """PutEvents to an EventBridge bus in ACM's own event shape, so rules written
    for ACM's expiry events fire on certform's certificates too.

    EventBridge reserves sources starting with ``aws.`` for AWS services: the
    events keep ACM's ``detail-type`` and ``detail`` and carry ``source``
    (default ``certform``) instead of ``aws.acm``."""

    type: Literal["eventbridge"]
    provider: str = Field(min_length=1, description="The aws provider entry to send with.")
    bus: str = Field(
        default="default",
        min_length=1,
        max_length=1600,
        pattern=r"^(arn:[\w+=/,.@:-]+|[/.\-_A-Za-z0-9]{1,256})$",
        description="The event bus: name or ARN (default: the account's default bus).",
    )
    source: str = Field(
        default=SOURCE,
        min_length=1,
        max_length=256,
        pattern=r"^[/.\-_A-Za-z0-9]+$",
        description="The events' source; EventBridge refuses aws.* for custom events.",
    )

    @field_validator("source")
    @classmethod
    def _not_aws(cls, value: str) -> str:
        if value.startswith("aws."):
            raise ValueError("sources starting with aws. are reserved for AWS services")
        return value

    def describe(self) -> str:
        return f"eventbridge {self.bus}"


AnySink = StdoutSink | FileSink | WebhookSink | EventBridgeSink
NotificationSink = Annotated[AnySink, Field(discriminator="type")]


class NotificationsConfig(StrictModel):
    """``notifications:``: where ``certform check`` sends expiry events."""

    days: int = Field(
        default=45,
        ge=1,
        le=397,
        description="Notify about certificates that expire within this many days (as ACM: 45).",
    )
    sinks: list[NotificationSink] = Field(
        min_length=1, description="Where to send the events: stdout, file, webhook or eventbridge."
    )


# -- delivery -------------------------------------------------------------------------
@dataclass(frozen=True)
class DeliveryFailure:
    event_id: str
    reason: str


@dataclass(frozen=True)
class DeliveryReport:
    """What reached one sink.  ``sink`` and reasons never contain header values."""

    sink: str
    sent: tuple[str, ...] = ()
    failed: tuple[DeliveryFailure, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        text = f"{self.sink}: {len(self.sent)} sent, {len(self.failed)} failed"
        reasons = sorted({f.reason for f in self.failed})
        return f"{text} ({'; '.join(reasons)})" if reasons else text

    def to_json(self) -> dict[str, Any]:
        return {
            "sink": self.sink,
            "sent": list(self.sent),
            "failed": [asdict(f) for f in self.failed],
        }


Sleep = Callable[[float], None]


def deliver(
    events: Sequence[Event],
    sink: AnySink,
    *,
    root: Path | None = None,
    out: TextIO | None = None,
    sleep: Sleep = time.sleep,
    providers: Mapping[str, Any] | None = None,
) -> DeliveryReport:
    """Send ``events`` to ``sink``; never raises for a delivery that failed.

    ``root``: the directory a relative file path is resolved against.  ``out``:
    where the stdout sink writes (default ``sys.stdout``; pass ``sys.stderr``
    when stdout carries other machine-readable output).  ``providers``: the
    configuration's provider entries (the eventbridge sink names one).  ``sleep``
    (the wait between webhook attempts) is for tests.  Safe to repeat: event ids
    are stable for a day."""
    if not events:
        return DeliveryReport(sink.describe())
    if isinstance(sink, StdoutSink):
        return _deliver_stream(events, out or sys.stdout, sink.describe())
    if isinstance(sink, FileSink):
        path = Path(sink.path)
        if root is not None and not path.is_absolute():
            path = root / path
        return _deliver_file(events, path, sink.describe())
    if isinstance(sink, EventBridgeSink):
        from reconciler.monitoring.eventbridge import deliver_eventbridge

        return deliver_eventbridge(events, sink, providers or {})
    return _deliver_webhook(events, sink, sleep)


def deliver_all(
    events: Sequence[Event],
    sinks: Sequence[AnySink],
    **options: Any,
) -> list[DeliveryReport]:
    """``deliver`` to every sink in turn; one report per sink."""
    return [deliver(events, sink, **options) for sink in sinks]


def notify(
    config: NotificationsConfig,
    certificates: Sequence[CertificateMetric],
    now: datetime,
    *,
    run_id: str | None = None,
    **options: Any,
) -> list[DeliveryReport]:
    """The ``notifications:`` block in one call: the events due as of ``now``
    (``config.days``) delivered to every sink.  ``run_id`` (default: a fresh
    UUID) lands in each event's detail; ``options`` as for ``deliver``."""
    events = expiry_events(certificates, now, config.days, run_id or str(uuid.uuid4()))
    return deliver_all(events, config.sinks, **options)


def _line(event: Event) -> str:
    return json.dumps(event, separators=(",", ":")) + "\n"


def _all_failed(events: Sequence[Event], sink: str, reason: str) -> DeliveryReport:
    return DeliveryReport(sink, (), tuple(DeliveryFailure(e["id"], reason) for e in events))


def _deliver_stream(events: Sequence[Event], out: TextIO, sink: str) -> DeliveryReport:
    try:
        out.write("".join(_line(e) for e in events))
        out.flush()
    except (OSError, ValueError) as exc:  # closed pipe, closed stream
        return _all_failed(events, sink, f"cannot write: {exc}")
    return DeliveryReport(sink, tuple(e["id"] for e in events))


def _deliver_file(events: Sequence[Event], path: Path, sink: str) -> DeliveryReport:
    """One ``write`` in append mode, so concurrent appenders do not interleave lines."""
    data = memoryview("".join(_line(e) for e in events).encode("utf-8"))
    try:
        fd = _open_append(path)
        try:
            while data:
                data = data[os.write(fd, data) :]
        finally:
            os.close(fd)
    except OSError as exc:
        return _all_failed(events, sink, f"cannot append to {path}: {exc.strerror or exc}")
    return DeliveryReport(sink, tuple(e["id"] for e in events))


def _open_append(path: Path) -> int:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return os.open(path, os.O_WRONLY | os.O_APPEND)
    os.fchmod(fd, 0o644)  # whatever the umask
    return fd


# -- webhook --------------------------------------------------------------------------
@dataclass(frozen=True)
class _Outcome:
    reason: str | None = None
    """None: delivered."""
    unavailable: bool = False
    """The endpoint stayed unreachable or overloaded through every retry."""


def _deliver_webhook(events: Sequence[Event], sink: WebhookSink, sleep: Sleep) -> DeliveryReport:
    """Events in order; once one exhausts its retries, the rest are reported
    without being attempted (one dead endpoint must not hold the job for
    events × retries × timeout).

    Retries are urllib3's (``http.retrying``): a failed connection, a timeout, 429
    and 5xx, after ``Retry-After`` (at most ``MAX_WAIT``) or 1, 2, 4... seconds.
    Retrying a POST is safe here: every event carries a stable ``id``, also sent
    as ``Idempotency-Key``, so a receiver that got it twice can drop the copy."""
    where = sink.describe()
    try:
        url, headers = _resolve(sink)
    except _Unresolved as exc:
        return _all_failed(events, where, str(exc))
    retry = http.retrying(
        sink.retries, methods={"POST"}, backoff=BACKOFF_BASE, max_wait=MAX_WAIT, pause=sleep
    )
    sent: list[str] = []
    failed: list[DeliveryFailure] = []
    given_up: str | None = None  # the reason for every event after a dead endpoint
    with http.session(retry) as client:
        for event in events:
            if given_up is not None:
                failed.append(DeliveryFailure(event["id"], given_up))
                continue
            outcome = _post(client, event, url, sink, headers)
            if outcome.reason is None:
                sent.append(event["id"])
                continue
            failed.append(DeliveryFailure(event["id"], outcome.reason))
            if outcome.unavailable:
                given_up = "not attempted: an earlier event failed"
    return DeliveryReport(where, tuple(sent), tuple(failed))


class _Unresolved(Exception):
    """An environment variable the sink needs is unset or unusable (names it, never its value)."""


def _resolve(sink: WebhookSink) -> tuple[str, dict[str, str]]:
    """The URL and headers to send, reading ``url_env`` and ``headers_env``."""
    url = sink.url if sink.url is not None else _environ(sink.url_env or "")
    problem = _url_problem(url)
    if problem:
        raise _Unresolved(f"environment variable {sink.url_env}: {problem}")
    headers = dict(sink.headers)
    for name, variable in sink.headers_env.items():
        value = _environ(variable)
        problem = _header_value_problem(value)
        if problem:
            raise _Unresolved(f"environment variable {variable}: {problem}")
        headers[name] = value
    return url, headers


def _environ(variable: str) -> str:
    value = os.environ.get(variable)
    if not value:
        raise _Unresolved(f"environment variable {variable} is not set")
    return value


def _post(
    client: requests.Session,
    event: Event,
    url: str,
    sink: WebhookSink,
    headers: Mapping[str, str],
) -> _Outcome:
    """One event, with the session's retries; the answer's body is never read."""
    import requests

    request_headers = {
        "Content-Type": "application/json",
        "User-Agent": f"certform/{__version__}",
        "Idempotency-Key": event["id"],
        **headers,
    }
    attempts = f"(after {sink.retries + 1} attempts)"
    try:
        with client.post(
            url,
            data=json.dumps(event).encode("utf-8"),
            headers=request_headers,
            timeout=sink.timeout,
            allow_redirects=False,  # a redirect would carry the headers to another URL
            stream=True,
        ) as response:
            status, phrase = response.status_code, response.reason or ""
    except ValueError:  # invalid URL or header: their messages quote the URL or a header
        return _Outcome("the request cannot be built: the URL or a header value is invalid")
    except (requests.RequestException, OSError) as exc:
        return _Outcome(f"{http.failure(exc, sink.timeout)} {attempts}", unavailable=True)
    if status < 300:
        return _Outcome()
    reason = f"HTTP {status} {phrase}".strip()
    if status in http.RETRYABLE_STATUS:  # urllib3 retried it as often as allowed
        return _Outcome(f"{reason} {attempts}", unavailable=True)
    if status < 400:
        reason += " (redirects are not followed)"
    return _Outcome(reason)
