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

DURATION_PATTERN = r"^(?:\d+[smhdw])+$"
RENEW_BEFORE_PATTERN = r"^(?:(?:\d+[smhdw])+|\d+(?:\.\d+)?%)$"


@lru_cache(maxsize=4096)
def parse_duration(text: str) -> timedelta:
    """Parse ``90d``/``12h``/``1d12h``; raise ValueError with what is expected."""
    value = text.strip()
    if not _WHOLE.match(value):
        raise ValueError(
            f"invalid duration {text!r}: expected a number with a unit "
            "s, m, h, d or w, e.g. 90d, 12h or 1d12h"
        )
    seconds = sum(int(n) * _UNITS[u] for n, u in _PART.findall(value))
    if seconds <= 0:
        raise ValueError(f"invalid duration {text!r}: must be greater than zero")
    return timedelta(seconds=seconds)


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
                f"invalid renew_before {text!r}: a percentage must be between 0% and 100% "
                "(exclusive)"
            )
        return RenewBefore(percent=percent)
    try:
        return RenewBefore(duration=parse_duration(value))
    except ValueError:
        raise ValueError(
            f"invalid renew_before {text!r}: expected a duration such as 30d "
            "or a percentage of the lifetime such as 33%"
        ) from None
