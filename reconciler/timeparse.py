"""``--at`` values: an ISO-8601 instant, or an offset from now such as ``+61d``."""

from __future__ import annotations

from datetime import UTC, datetime

from reconciler.durations import parse_duration


def parse_at(text: str, now: datetime) -> datetime:
    """Naive timestamps are UTC; ``+61d`` / ``-2h`` are relative to ``now``."""
    value = text.strip()
    if value[:1] in "+-" and value[1:2].isdigit() and "T" not in value and ":" not in value:
        delta = parse_duration(value[1:])
        return now + delta if value[0] == "+" else now - delta
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"invalid --at {text!r}: expected an ISO-8601 time such as 2027-01-10T00:00:00Z "
            "or an offset such as +61d"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)
