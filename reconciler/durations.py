"""Durations and renewal windows as users write them: ``90d``, ``12h``, ``1d12h``, ``33%``.

Kept apart from the models so that the policy code (pure) and the CLI (``--at``)
share one parser and one formatter, and a plan prints durations the way the
user wrote them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_PART = re.compile(r"(\d+)([smhdw])")
_WHOLE = re.compile(r"^(?:\d+[smhdw])+$")
_PERCENT = re.compile(r"^(\d+(?:\.\d+)?)%$")

#: The longest duration any setting accepts: 100 years.  Certificate and CA
#: lifetimes beyond it are not useful, and bounding every duration keeps the
#: dates computed from it (now + validity, even at ``--at 9000-01-01``) inside
#: what ``datetime`` and X.509 (GeneralizedTime, up to year 9999) can represent.
MAX_DURATION = timedelta(days=36500)
#: More digits than this in one number is longer than ``MAX_DURATION`` in any
#: unit; checked before ``int()`` so a 5,000-digit number costs nothing.
_MAX_DIGITS = 12

DURATION_PATTERN = r"^(?:\d+[smhdw])+$"
RENEW_BEFORE_PATTERN = r"^(?:(?:\d+[smhdw])+|\d+(?:\.\d+)?%)$"


@lru_cache(maxsize=4096)
def parse_duration(text: str, maximum: timedelta = MAX_DURATION) -> timedelta:
    """Parse ``90d``/``12h``/``1d12h``; raise ValueError with what is expected.

    Never raises anything but ValueError: a duration longer than ``maximum``
    (however many digits it has) is refused before any arithmetic on it.
    """
    value = text.strip()
    if not _WHOLE.match(value):
        raise ValueError(
            f"invalid duration {_shown(text)!r}: expected a number with a unit "
            "s, m, h, d or w, e.g. 90d, 12h or 1d12h"
        )
    parts = _PART.findall(value)
    limit = int(maximum.total_seconds())
    if any(len(number.lstrip("0")) > _MAX_DIGITS for number, _ in parts):
        raise ValueError(_too_long(value, maximum))
    seconds = sum(int(n) * _UNITS[u] for n, u in parts)
    if seconds <= 0:
        raise ValueError(f"invalid duration {_shown(text)!r}: must be greater than zero")
    if seconds > limit:
        raise ValueError(_too_long(value, maximum))
    return timedelta(seconds=seconds)


def _too_long(value: str, maximum: timedelta) -> str:
    return f"{_shown(value)} is longer than the maximum {format_duration(maximum)}"


def _shown(text: str) -> str:
    """``text`` cut to a length fit for an error message (input may be megabytes)."""
    return text if len(text) <= 40 else text[:37] + "..."


def format_duration(delta: timedelta) -> str:
    """Shortest exact spelling, so plans echo ``90d`` rather than ``7776000s``."""
    seconds = int(delta.total_seconds())
    for unit in ("w", "d", "h", "m"):
        size = _UNITS[unit]
        if seconds % size == 0 and seconds >= size and unit != "w":
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


@dataclass(frozen=True)
class RenewBefore:
    """When to renew: a fixed time before expiry, or a share of the lifetime left.

    ``percent`` is the share of the lifetime that may remain at renewal time
    (``33%`` renews when a third of the lifetime is left).
    """

    duration: timedelta | None = None
    percent: float | None = None

    @property
    def text(self) -> str:
        if self.duration is not None:
            return format_duration(self.duration)
        return f"{self.percent:g}%"


@lru_cache(maxsize=4096)
def parse_renew_before(text: str) -> RenewBefore:
    """Parse ``30d`` or ``33%``; raise ValueError saying what is expected."""
    value = text.strip()
    match = _PERCENT.match(value)
    if match:
        percent = float(match.group(1))
        if not 0 < percent < 100:
            raise ValueError(
                f"invalid renew_before {_shown(text)!r}: a percentage must be between 0% and 100% "
                "(exclusive)"
            )
        return RenewBefore(percent=percent)
    if not _WHOLE.match(value):
        raise ValueError(
            f"invalid renew_before {_shown(text)!r}: expected a duration such as 30d "
            "or a percentage of the lifetime such as 33%"
        )
    return RenewBefore(duration=parse_duration(value))  # its ValueError says what is wrong
