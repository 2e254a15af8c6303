"""Apply's progress: a bar on a terminal, timestamped lines in a CI log.

The runner and the steps report plain messages (``certificate.web: issue…``,
``certificate.web: issue done``); ``ApplyProgress`` is that reporter.  It counts
a step when its last message arrives (done, FAILED, skipped, not yet, waiting)
and shows:

* on a terminal, a rich progress bar (``12/40``, elapsed, remaining) with the
  step being worked on, every other message printed above it;
* elsewhere, each message on its own line prefixed with a UTC timestamp, and the
  count ``[12/40]`` on the line that finishes a step.

With ``-q`` it shows nothing (the summary line still comes).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from types import TracebackType
from typing import IO, Any

from reconciler import terminal

_FINISHED = re.compile(
    r"^(?P<address>\S+): (?:\w+ done|\w+ FAILED|skipped \(|not yet \(|waiting: )"
)
_STARTED = re.compile(r"^(?P<address>\S+): \w+…$")


LINE_PREFIX = re.compile(r"^\S+Z (?:\[\d+/\d+\] )?")
"""What a plain progress line (not on a terminal) starts with: its time and, for a
finished step, the count (``2026-01-01T00:00:00Z [3/6] ``)."""


def message_of(line: str) -> str:
    """A plain progress line without its time and count: the step's own message,
    as scripts that read apply's output (tests, benchmarks) look for it."""
    return LINE_PREFIX.sub("", line, count=1)


def stamp(moment: datetime | None = None) -> str:
    """ISO-8601 UTC to the second, as a CI log line starts."""
    return f"{(moment or datetime.now(UTC)):%Y-%m-%dT%H:%M:%SZ}"


class ApplyProgress:
    """The reporter of one apply (``ApplyHooks.progress``) and its display."""

    def __init__(self, stream: IO[str], *, quiet: bool = False, live: bool | None = None) -> None:
        self.stream = stream
        self.quiet = quiet
        self.live = terminal.is_terminal(stream) if live is None else live
        self.addresses: set[str] = set()
        self.finished: set[str] = set()
        self.total = 0
        self.started_at = time.monotonic()
        self._bar: Any = None
        self._task: Any = None

    # -- the session's hooks ------------------------------------------------------------
    def start(self, addresses: Iterable[str]) -> None:
        """The steps about to run (``ApplyHooks.starting``): the bar's total."""
        self.addresses = set(addresses)
        self.total = len(self.addresses)
        self.started_at = time.monotonic()
        if self.live and not self.quiet and self.total:
            self._bar = _bar(self.stream)
            self._bar.start()
            self._task = self._bar.add_task("apply", total=self.total, current="")

    def __call__(self, message: str) -> None:
        if self.quiet:
            self._count(message)
            return
        counted = self._count(message)
        if self._bar is not None:
            self._show_live(message)
            return
        count = f"[{len(self.finished)}/{self.total}] " if counted else ""
        print(f"{stamp()} {count}{message}", file=self.stream, flush=True)

    def stop(self) -> None:
        """Close the bar (left on screen, complete or not) or write the closing line."""
        if self.quiet or not self.total:
            return
        elapsed = time.monotonic() - self.started_at
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
            return
        print(
            f"{stamp()} {len(self.finished)}/{self.total} step(s) finished in {elapsed:.1f}s",
            file=self.stream,
            flush=True,
        )

    def __enter__(self) -> ApplyProgress:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- internals ----------------------------------------------------------------------
    def _count(self, message: str) -> bool:
        match = _FINISHED.match(message)
        if match is None:
            return False
        address = match["address"]
        if address not in self.addresses or address in self.finished:
            return False
        self.finished.add(address)
        if self._bar is not None:
            self._bar.update(self._task, completed=len(self.finished))
        return True

    def _show_live(self, message: str) -> None:
        started = _STARTED.match(message)
        if started is not None:  # the bar names the step at work instead
            self._bar.update(self._task, current=started["address"])
            return
        self._bar.console.print(message, markup=False, highlight=False)


def _bar(stream: IO[str]) -> Any:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("Applying"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("elapsed"),
        TimeElapsedColumn(),
        TextColumn("remaining"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[current]}"),
        console=terminal.console(stream),
        transient=False,
    )
