"""ACME Renewal Information (ARI, RFC 9773): when the CA wants a certificate renewed.

A CA that supports ARI lists a ``renewalInfo`` URL in its directory.  An
unauthenticated ``GET {renewalInfo}/{certID}`` returns a suggested renewal window
and a ``Retry-After`` header saying when to ask again.  The window moves earlier
when the CA plans to revoke (an incident, a key compromise), which is why a plan
should prefer it over the fixed "two thirds of the lifetime" rule.

The module is split so the decision stays pure: ``certificate_id`` and
``parse_renewal_info`` compute, ``fetch_renewal_info`` is the only I/O, and
``ari_due`` turns a window into a yes/no and a reason for the plan, with the
clock injected.  The renewal time inside the window is derived from a seed
(normally the certificate serial) rather than drawn at random, so the same
inputs always give the same plan, yet a fleet spreads over the window instead
of renewing in lockstep (RFC 9773 recommends a uniform choice in the window).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509

from reconciler import http
from reconciler.errors import ProviderError

# RFC 9773 suggests treating Retry-After values outside [1 minute, 1 day] as the
# nearest bound, so a broken or hostile server can neither make us hammer it nor
# silence us for months.
MIN_RETRY_AFTER = timedelta(minutes=1)
MAX_RETRY_AFTER = timedelta(days=1)

_MAX_BODY = 64 * 1024  # a renewalInfo document is a few hundred bytes
_USER_AGENT = "certform (ACME renewal information)"

# RFC 3339 date-time: full date, full time with seconds, a mandatory offset.
_RFC3339 = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})[Tt ](?P<time>\d{2}:\d{2}:\d{2})"
    r"(?:\.(?P<fraction>\d+))?(?P<offset>[Zz]|[+-]\d{2}:\d{2})"
)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _serial_content_octets(serial: int) -> bytes:
    """The content octets of the DER INTEGER ``serial``: minimal two's complement.

    A positive serial whose high bit is set gets a leading 0x00, exactly as in
    the certificate itself; RFC 9773 builds the identifier from these bytes.
    """
    magnitude = serial if serial >= 0 else ~serial
    return serial.to_bytes(magnitude.bit_length() // 8 + 1, "big", signed=True)


def certificate_id(cert: x509.Certificate) -> str:
    """The RFC 9773 identifier of ``cert``: ``base64url(AKI keyIdentifier).base64url(serial)``.

    Both parts are unpadded base64url.  Raises ``ValueError`` when the
    certificate carries no authority key identifier (with a keyIdentifier):
    without it the CA cannot be asked about this certificate.
    """
    try:
        aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    except x509.ExtensionNotFound:
        raise ValueError(
            "certificate has no authority key identifier: ACME Renewal Information needs one"
        ) from None
    if aki.key_identifier is None:
        raise ValueError(
            "certificate's authority key identifier has no keyIdentifier: "
            "ACME Renewal Information needs one"
        )
    serial = _serial_content_octets(cert.serial_number)
    return f"{_b64url(aki.key_identifier)}.{_b64url(serial)}"


@dataclass(frozen=True)
class RenewalWindow:
    """A window the CA suggested for renewal, and when to ask it again.

    ``start``/``end`` are timezone-aware UTC; ``retry_after`` is the absolute
    time from the ``Retry-After`` header (clamped), or None when absent.
    """

    start: datetime
    end: datetime
    explanation_url: str | None
    retry_after: datetime | None

    def renewal_time(self, seed: str) -> datetime:
        """A point in ``[start, end)`` chosen by ``seed``; ``start`` for an empty window.

        The fraction of the window comes from SHA-256 of the seed, so it is
        reproducible (a saved plan means the same thing tomorrow) and spread
        uniformly across certificates.
        """
        if self.end <= self.start:
            return self.start
        digest = hashlib.sha256(seed.encode("utf-8")).digest()
        span_us = (self.end - self.start) // timedelta(microseconds=1)
        # Integer arithmetic: the offset is exactly floor(span * h / 2**64) < span.
        offset_us = (span_us * int.from_bytes(digest[:8], "big")) >> 64
        return self.start + timedelta(microseconds=offset_us)


def _parse_rfc3339(value: Any, field: str) -> datetime:
    """A strict RFC 3339 timestamp as an aware UTC datetime; ``ValueError`` otherwise."""
    if not isinstance(value, str):
        raise ValueError(f"renewal information: {field} must be an RFC 3339 string")
    match = _RFC3339.fullmatch(value.strip())
    if match is None:
        raise ValueError(f"renewal information: {field} {value!r} is not an RFC 3339 timestamp")
    # Go servers send nanoseconds: keep microseconds, which is all datetime holds.
    fraction = f".{match['fraction'][:6].ljust(6, '0')}" if match["fraction"] else ""
    offset = "+00:00" if match["offset"] in ("Z", "z") else match["offset"]
    try:
        parsed = datetime.fromisoformat(f"{match['date']}T{match['time']}{fraction}{offset}")
    except ValueError:
        raise ValueError(
            f"renewal information: {field} {value!r} is not a valid date and time"
        ) from None
    return parsed.astimezone(UTC)


def _parse_retry_after(header: str | None, now: datetime) -> datetime | None:
    """``Retry-After`` as a time, clamped to [1 minute, 1 day]; None if absent or unusable.

    A missing or malformed header is not an error: the window itself is still
    good, and the caller falls back to its own re-check interval.
    """
    delay = http.retry_after(header, now)
    if delay is None:
        return None
    return now + min(max(delay, MIN_RETRY_AFTER), MAX_RETRY_AFTER)


def parse_renewal_info(body: bytes | str, retry_after: str | None, now: datetime) -> RenewalWindow:
    """Validate a renewalInfo response body and its ``Retry-After`` header.

    ``now`` (timezone-aware) anchors a relative ``Retry-After``.  Raises
    ``ValueError`` with a one-line message for a body that is not JSON, lacks
    ``suggestedWindow.start``/``end``, has timestamps that are not RFC 3339, or
    a window that ends before it starts.  An empty ``explanationURL`` counts as
    absent.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"renewal information is not valid JSON: {error}") from None
    if not isinstance(document, dict):
        raise ValueError("renewal information must be a JSON object")
    window = document.get("suggestedWindow")
    if not isinstance(window, dict):
        raise ValueError("renewal information has no suggestedWindow object")
    for name in ("start", "end"):
        if name not in window:
            raise ValueError(f"renewal information: suggestedWindow has no {name}")
    start = _parse_rfc3339(window["start"], "suggestedWindow.start")
    end = _parse_rfc3339(window["end"], "suggestedWindow.end")
    if end < start:
        raise ValueError(
            f"renewal information: suggestedWindow ends ({window['end']}) "
            f"before it starts ({window['start']})"
        )
    explanation = document.get("explanationURL")
    if explanation is not None and not isinstance(explanation, str):
        raise ValueError("renewal information: explanationURL must be a string")
    return RenewalWindow(
        start=start,
        end=end,
        explanation_url=explanation or None,
        retry_after=_parse_retry_after(retry_after, now),
    )


def _problem_detail(body: bytes) -> str:
    """The ``detail`` of an RFC 7807 problem document, if the body is one."""
    try:
        problem = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return ""
    if isinstance(problem, dict) and isinstance(problem.get("detail"), str):
        return f": {' '.join(problem['detail'].split())[:200]}"
    return ""


def fetch_renewal_info(
    renewal_info_url: str,
    cert: x509.Certificate,
    *,
    ca_bundle: str | None,
    timeout: float = 10.0,
    now: datetime | None = None,
) -> RenewalWindow | None:
    """GET the CA's renewal information for ``cert``; None when the CA does not know it.

    ``renewal_info_url`` is the directory's ``renewalInfo``; HTTPS is verified
    against ``ca_bundle`` when given, else the system trust store.  ``now``
    defaults to the current time and only anchors ``Retry-After``.

    Raises ``ValueError`` when ``cert`` has no authority key identifier, and
    ``ProviderError`` (one line, no body dump) on network errors, TLS failures,
    HTTP errors other than 404, and malformed responses.  Read-only; safe to
    repeat.  Not retried here: this runs at plan time, where a CA that does not
    answer costs a warning and the ``renew_before`` schedule rather than a wait,
    and the answer's ``Retry-After`` says when to ask again (RFC 9773), not to
    repeat this request.
    """
    url = f"{renewal_info_url.rstrip('/')}/{certificate_id(cert)}"
    where = f"ACME renewal information {url}"
    try:
        reply = http.get(
            url,
            timeout=timeout,
            limit=_MAX_BODY,
            ca_bundle=ca_bundle,
            headers={"Accept": "application/json", "User-Agent": _USER_AGENT},
        )
    except http.HttpError as error:
        raise ProviderError(f"{where}: {error}") from None
    if reply.status == 404:
        return None
    if reply.status >= 300:
        detail = _problem_detail(reply.body)
        raise ProviderError(f"{where}: HTTP {reply.status} {reply.reason}{detail}")
    try:
        return parse_renewal_info(
            reply.body, reply.headers.get("Retry-After"), now or datetime.now(UTC)
        )
    except ValueError as error:
        raise ProviderError(f"{where}: {error}") from None


def _minute(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M")


def ari_due(window: RenewalWindow, seed: str, now: datetime) -> tuple[bool, str]:
    """Whether to renew at ``now`` per the CA's window, and the reason for the plan.

    Due once ``now`` reaches the seeded renewal time, and always once the
    window has ended (the CA may be about to revoke).  The reason names the
    window, the chosen time and, when given, the CA's explanation URL.
    """
    at = window.renewal_time(seed)
    span = f"between {_minute(window.start)} and {_minute(window.end)} UTC"
    see = f"; see {window.explanation_url}" if window.explanation_url else ""
    if now >= window.end:
        return (
            True,
            f"ACME Renewal Information: the CA suggested renewing {span}; "
            f"the window ended {_minute(window.end)} UTC: renew now{see}",
        )
    reason = (
        f"ACME Renewal Information: the CA suggests renewing {span} (renewal time {_minute(at)})"
    )
    if now >= at:
        return True, f"{reason}: renew now{see}"
    return False, f"{reason}{see}"
