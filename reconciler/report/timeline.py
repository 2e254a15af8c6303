"""The expiry timeline: the next 90 days as an SVG axis, one lane per expiry.

Geometry is computed here, in Python, so that the template only places
elements (no arithmetic in jinja2) and a test can check positions directly.
One lane per certificate keeps labels from overlapping whatever the dates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from reconciler.report.model import Expiry

HORIZON_DAYS = 90
WIDTH = 1000
LEFT = 10
RIGHT = 990
AXIS_Y = 30
LANE = 22
TICK_DAYS = (0, 7, 15, 30, 45, 60, 75, 90)


@dataclass(frozen=True)
class Tick:
    x: float
    label: str
    anchor: str


@dataclass(frozen=True)
class Marker:
    address: str
    x: float
    y: float
    band: str
    days_left: int
    date: str
    anchor: str  # SVG text-anchor: labels near the right edge grow leftwards
    label_x: float


@dataclass(frozen=True)
class Timeline:
    width: int
    height: int
    axis_y: int
    left: int
    right: int
    ticks: tuple[Tick, ...]
    markers: tuple[Marker, ...]
    beyond: int
    """How many expire after the horizon (not drawn)."""


def _x(days: float) -> float:
    share = min(max(days, 0.0), HORIZON_DAYS) / HORIZON_DAYS
    return round(LEFT + share * (RIGHT - LEFT), 1)


def timeline(items: Sequence[tuple[str, Expiry]], now: datetime) -> Timeline:
    """Markers for what expires within 90 days of ``now`` (what has expired sits at
    day 0 in its own colour), soonest first."""
    horizon = now + timedelta(days=HORIZON_DAYS)
    due = sorted(
        ((address, e) for address, e in items if e.not_after and e.not_after <= horizon),
        key=lambda item: (item[1].not_after, item[0]),
    )
    markers = []
    for lane, (address, e) in enumerate(due):
        assert e.not_after is not None and e.days_left is not None
        x = _x((e.not_after - now).total_seconds() / 86400)
        right_side = x < WIDTH * 0.6
        markers.append(
            Marker(
                address, x, AXIS_Y + LANE * (lane + 1), e.band, e.days_left,
                f"{e.not_after:%Y-%m-%d}", "start" if right_side else "end",
                x + 9 if right_side else x - 9,
            )
        )  # fmt: skip
    ticks = tuple(
        Tick(_x(d), "today" if d == 0 else f"{(now + timedelta(days=d)):%b %d}", _anchor(d))
        for d in TICK_DAYS
    )
    beyond = sum(1 for _, e in items if e.not_after and e.not_after > horizon)
    height = AXIS_Y + LANE * (len(markers) + 1)
    return Timeline(WIDTH, height, AXIS_Y, LEFT, RIGHT, ticks, tuple(markers), beyond)


def _anchor(days: int) -> str:
    """The first tick's label starts at the axis, the last ends there."""
    return {0: "start", HORIZON_DAYS: "end"}.get(days, "middle")
