"""``--at`` and ``--within`` values: an instant (ISO-8601 or an offset from now such
as ``+61d``) and a window (a duration).

Both are bounded so that every date certform computes from them (``--at`` plus
a validity of at most ``MAX_DURATION``, minus a renewal window) stays inside
what ``datetime`` and X.509 can represent: absurd values are a clear error,
never an ``OverflowError``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from reconciler.durations import parse_duration

#: The range ``--at`` may name: after the Unix epoch, and far enough before the
#: year 9999 (X.509's and ``datetime``'s last) that adding 100 years still fits.
EARLIEST_AT = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_AT = datetime(9000, 1, 1, tzinfo=UTC)


def parse_at(text: str, now: datetime) -> datetime:
    """Naive timestamps are UTC; ``+61d`` / ``-2h`` are relative to ``now``."""
    value = text.strip()
    shown = value if len(value) <= 60 else value[:57] + "..."
    try:
        when = _instant(value, now)
    except ValueError as exc:
        raise ValueError(f"invalid --at {shown!r}: {exc}") from None
    try:
        in_range = EARLIEST_AT <= when <= LATEST_AT
    except OverflowError:  # an offset that pushes year 1 or 9999 off the calendar
        in_range = False
    if not in_range:
        raise ValueError(
            f"invalid --at {shown!r}: must be between {EARLIEST_AT:%Y-%m-%d} and "
            f"{LATEST_AT:%Y-%m-%d}"
        )
    return when


def _instant(value: str, now: datetime) -> datetime:
    if value[:1] in "+-" and value[1:2].isdigit() and "T" not in value and ":" not in value:
        delta = parse_duration(value[1:])
        return now + delta if value[0] == "+" else now - delta
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            "expected an ISO-8601 time such as 2027-01-10T00:00:00Z or an offset such as +61d"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def parse_within(text: str) -> timedelta:
    """``--within 30d``: a duration, at most ``MAX_DURATION``."""
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise ValueError(f"invalid --within: {exc}") from None
