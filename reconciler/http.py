"""certform's own HTTP requests, on one stack: ``requests`` with urllib3's ``Retry``.

Who uses it: the webhook sink (``monitoring/notifications.py``) and ACME Renewal
Information with the directory read before it (``acme/ari.py``,
``issuers/acme_renewal_info.py``).  The ACME protocol itself goes through certbot's
``acme`` library, which already uses ``requests``; its retries stay in
``acme/client.py``'s ``_call`` (see there for why), which shares ``retry_after``.

What every request here gets:

* a timeout (connect, then each read): required, never unbounded;
* bodies read only as far as the caller needs (``read_limited``);
* no surprises from the environment: requests' ``trust_env`` is off, and only
  the proxy variables (``HTTPS_PROXY``, ``NO_PROXY``...) are honoured, as urllib
  did before and as the ``acme`` library's session does.  Not honoured:
  ``~/.netrc`` (requests would send its credentials, and replace an
  ``Authorization`` header a webhook was given) and ``REQUESTS_CA_BUNDLE``;
* TLS verified against the given CA bundle, else the system trust store
  (OpenSSL's default locations, ``SSL_CERT_FILE`` included), as before: not
  certifi's copy, which would stop a webhook receiver signed by a company CA
  the system trusts;
* retries only where the caller asks for them (``retrying``), honouring
  ``Retry-After`` (capped) and else backing off exponentially.

``requests`` is imported on first use of a function here, so importing this
module costs nothing at start-up.
"""

from __future__ import annotations

import email.utils
import functools
import logging
import re
import time
import urllib.parse
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import requests
    from urllib3.util.retry import Retry

Pause = Callable[[float], None]

_DELAY_SECONDS = re.compile(r"\s*[0-9]+\s*")
"""RFC 9110 delay-seconds (1*DIGIT), with surrounding whitespace: urllib3's grammar."""

RETRYABLE_STATUS = frozenset({429, *range(500, 600)})
"""Worth another attempt: rate limited, or the server failed (not the request)."""


class HttpError(Exception):
    """A request that got no usable answer; the message is one line without the URL."""


def retry_after(value: str | None, now: datetime | None = None) -> timedelta | None:
    """A ``Retry-After`` header (RFC 9110: delay-seconds or an HTTP-date) as a delay
    from ``now`` (default: the current time), never negative; None when absent or
    malformed (a caller then uses its own interval).

    The one parser every caller uses.  urllib3's ``Retry.parse_retry_after`` has the
    same grammar but raises on a malformed header and measures dates from the
    clock, so a pure caller (ACME Renewal Information) could not anchor them."""
    if value is None or not value.strip():
        return None
    if _DELAY_SECONDS.fullmatch(value):
        return timedelta(seconds=int(value))
    try:
        when = email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110: HTTP-dates are GMT
        when = when.replace(tzinfo=UTC)
    return max(when - (now or datetime.now(UTC)), timedelta(0))


def retrying(
    retries: int,
    *,
    methods: Collection[str],
    backoff: float,
    max_wait: float,
    pause: Pause = time.sleep,
) -> Retry:
    """urllib3's ``Retry`` for ``retries`` more attempts of ``methods``.

    Retried: a failed connection, a timeout, and an answer with a status in
    ``RETRYABLE_STATUS`` (the last such answer is returned, not raised).  The wait
    is the answer's ``Retry-After`` when it has one, else ``backoff`` doubled per
    attempt (1, 2, 4... for ``backoff=1``; urllib3's own formula skips the first
    wait); both at most ``max_wait``.  ``pause`` is for tests."""
    from urllib3.util.retry import Retry

    class _Retry(Retry):
        """Waits as documented above, and through ``pause``."""

        def get_backoff_time(self) -> float:
            return float(min(self.backoff_factor * 2 ** max(len(self.history) - 1, 0), max_wait))

        def get_retry_after(self, response: Any) -> float | None:
            delay = retry_after(response.headers.get("Retry-After"))
            return None if delay is None else min(delay.total_seconds(), max_wait)

        def sleep(self, response: Any = None) -> None:
            wait = None
            if response is not None and self.respect_retry_after_header:
                wait = self.get_retry_after(response)
            pause(self.get_backoff_time() if wait is None else wait)

    return _Retry(
        total=retries,
        redirect=False,
        allowed_methods=frozenset(m.upper() for m in methods),
        status_forcelist=RETRYABLE_STATUS,
        backoff_factor=backoff,
        backoff_max=max_wait,
        respect_retry_after_header=True,
        raise_on_status=False,
    )


def session(retry: Retry | None = None, *, ca_bundle: str | None = None) -> requests.Session:
    """A session with ``retry`` (default: none), TLS verified by ``trust(ca_bundle)``
    and, of the environment, only its proxy for each URL.  Raises ``HttpError`` for
    an unusable ``ca_bundle``."""
    import requests
    from requests.adapters import HTTPAdapter
    from requests.utils import get_environ_proxies

    class _Session(requests.Session):
        def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
            kwargs.setdefault("proxies", get_environ_proxies(str(url)))
            return super().request(method, url, *args, **kwargs)

    _quiet_urllib3()
    new = _Session()
    new.trust_env = False  # no ~/.netrc, no REQUESTS_CA_BUNDLE; proxies as above
    new.verify = trust(ca_bundle)
    adapter = HTTPAdapter(max_retries=retry if retry is not None else 0)
    new.mount("http://", adapter)
    new.mount("https://", adapter)
    return new


def trust(ca_bundle: str | None) -> str | bool:
    """What ``verify=`` gets: ``ca_bundle`` (checked now, for a clear error), else the
    system trust store.  Raises ``HttpError`` naming an unusable bundle."""
    import ssl

    if ca_bundle:
        try:
            ssl.create_default_context(cafile=ca_bundle)
        except (OSError, ssl.SSLError) as error:
            raise HttpError(f"ca_bundle {ca_bundle} is unusable: {error}") from None
        return ca_bundle
    paths = ssl.get_default_verify_paths()
    return paths.cafile or paths.capath or True


@dataclass(frozen=True)
class Reply:
    """An answer: status, reason phrase, headers and the body (as far as read)."""

    status: int
    reason: str
    headers: Mapping[str, str]
    body: bytes


def get(
    url: str,
    *,
    timeout: float,
    limit: int,
    ca_bundle: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Reply:
    """One GET, following redirects (a GET may), without retries; at most ``limit``
    bytes of body whatever the status.  Raises ``HttpError`` when there is no answer,
    the body is larger, or ``ca_bundle`` is unusable."""
    import requests

    try:
        with (
            session(ca_bundle=ca_bundle) as client,
            client.get(url, headers=dict(headers or {}), timeout=timeout, stream=True) as response,
        ):
            body = read_limited(response, limit)
            return Reply(response.status_code, response.reason or "", response.headers, body)
    except (requests.RequestException, OSError) as error:
        raise HttpError(failure(error)) from None


def read_limited(response: requests.Response, limit: int) -> bytes:
    """At most ``limit`` bytes of a streamed body (decompressed); ``HttpError`` past it."""
    body = b""
    for chunk in response.iter_content(chunk_size=16 * 1024):
        body += chunk
        if len(body) > limit:
            raise HttpError(f"response larger than {_size(limit)}")
    return body


def failure(error: BaseException, timeout: float | None = None) -> str:
    """Why a request got no answer, in one line without the URL: ``timed out`` (``no
    answer within Ns`` when ``timeout`` is given), ``cannot connect: <cause>`` (no
    connection or no TLS session) or ``connection failed: <cause>``, where the cause
    is the innermost error as the socket or TLS layer said it (``[Errno 111]
    Connection refused``, ``[SSL: CERTIFICATE_VERIFY_FAILED] ...``)."""
    import ssl

    import requests
    import urllib3.exceptions

    if isinstance(error, HttpError):
        return str(error)
    causes = _causes(error)
    timeouts = (requests.Timeout, urllib3.exceptions.TimeoutError, TimeoutError)
    refused = urllib3.exceptions.NewConnectionError  # a ConnectTimeoutError, for history's sake
    if any(isinstance(c, timeouts) and not isinstance(c, refused) for c in causes):
        return "timed out" if timeout is None else f"no answer within {timeout:g}s"
    wrappers = (requests.RequestException, urllib3.exceptions.HTTPError)
    innermost = next(
        (c for c in reversed(causes) if isinstance(c, OSError) and not isinstance(c, wrappers)),
        causes[-1],
    )
    cause = str(innermost) or type(innermost).__name__
    connecting = (urllib3.exceptions.NewConnectionError, urllib3.exceptions.SSLError, ssl.SSLError)
    if any(isinstance(c, connecting) for c in causes):
        return f"cannot connect: {cause}"
    return f"connection failed: {cause}"


def _causes(error: BaseException) -> list[BaseException]:
    """``error`` and what it wraps (``reason``, ``__cause__``, an exception in ``args``),
    outermost first."""
    seen: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in seen:
        seen.append(current)
        inner = getattr(current, "reason", None)
        if not isinstance(inner, BaseException):
            inner = current.__cause__ or current.__context__
        if inner is None:
            inner = next((a for a in current.args if isinstance(a, BaseException)), None)
        current = inner
    return seen


def origin(url: str) -> str:
    """Scheme, host and port of ``url``: what may be shown of a URL that can hold tokens."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}:{parts.port}" if parts.port else f"{parts.scheme}://{host}"


class _HidePaths(logging.Filter):
    """urllib3's log records name request paths, and a webhook's path can be its token
    (Slack, Teams): hide them, and drop the "Retrying ... after connection broken"
    warning, which would reach stderr with no logging configured (certform reports
    the outcome itself, "after N attempts")."""

    def filter(self, record: logging.LogRecord) -> bool:
        if str(record.msg).startswith("Retrying ("):
            return False
        if isinstance(record.args, tuple):
            record.args = tuple(_hide_path(arg) for arg in record.args)
        return True


def _hide_path(arg: object) -> object:
    if isinstance(arg, str) and (arg.startswith("/") or "://" in arg):
        return origin(arg) + "/…" if "://" in arg else "/…"
    return arg


@functools.cache
def _quiet_urllib3() -> None:
    """Install ``_HidePaths`` on urllib3's loggers, once per process."""
    for name in ("urllib3.connectionpool", "urllib3.util.retry", "urllib3.connection"):
        logging.getLogger(name).addFilter(_HidePaths())


def _size(limit: int) -> str:
    return f"{limit // 1024} KiB" if limit < 1 << 20 else f"{limit >> 20} MiB"
