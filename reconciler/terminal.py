"""What the terminal certform writes to can take: colour, width, a live progress bar.

One place decides, from the global options (``-q``, ``--no-color``), ``NO_COLOR``
(https://no-color.org: any non-empty value) and whether the stream is a
terminal.  Output that is not a terminal (a pipe, a CI log, a test) stays plain
text, byte for byte what it was before colour existed.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:  # rich is imported by the output that needs it
    from rich.console import Console

PIPE_WIDTH = 200
"""Width of tables written to a pipe without ``COLUMNS``: wide enough for a row a
line (grep-able), as ``show`` always printed."""


@dataclass
class Settings:
    """The global options of this process (set once by the application callback)."""

    quiet: bool = False
    no_color: bool = False


settings = Settings()


def is_terminal(stream: IO[str] | None = None) -> bool:
    stream = stream if stream is not None else sys.stdout
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def color_enabled(stream: IO[str] | None = None) -> bool:
    """Colour only on a terminal, and never with ``--no-color`` or ``NO_COLOR``."""
    if settings.no_color or os.environ.get("NO_COLOR", ""):
        return False
    return is_terminal(stream)


def width(stream: IO[str] | None = None) -> int:
    """Columns to fit: ``COLUMNS`` if set, the terminal's, else ``PIPE_WIDTH``."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    if is_terminal(stream):
        return shutil.get_terminal_size().columns
    return PIPE_WIDTH


def console(stream: IO[str] | None = None) -> Console:
    """A rich console for ``stream`` (stdout by default) that fits its width and
    colours only when ``color_enabled``."""
    from rich.console import Console

    stream = stream if stream is not None else sys.stdout
    colored = color_enabled(stream)
    return Console(
        file=stream,
        width=width(stream),
        color_system="auto" if colored else None,
        force_terminal=colored or None,
        no_color=not colored,
        highlight=False,
        soft_wrap=False,
    )


# -- plans in colour, as Terraform shows them -----------------------------------------
GREEN, YELLOW, RED, BOLD, RESET = "\x1b[32m", "\x1b[33m", "\x1b[31m", "\x1b[1m", "\x1b[0m"

_COLORS = {"+": GREEN, "~": YELLOW, "-": RED, "-/+": RED}
_CHANGE_LINE = re.compile(r"^(  )(-/\+|[+~-])( )")


def colorize_plan(text: str) -> str:
    """The plan text with each change symbol coloured (``+`` green, ``~`` yellow,
    ``-`` and ``-/+`` red), headings bold; strip the escapes and it is the plain plan."""
    return "".join(_colorize_line(line) for line in text.splitlines(keepends=True))


def _colorize_line(line: str) -> str:
    match = _CHANGE_LINE.match(line)
    if match is not None:
        indent, symbol, space = match.groups()
        return f"{indent}{_COLORS[symbol]}{symbol}{RESET}{space}{line[match.end() :]}"
    if line.startswith("  # ") and not line.startswith("  #   "):
        body = line.rstrip("\n")
        return f"{BOLD}{body}{RESET}{line[len(body) :]}"
    for head, color in (("Warning:", YELLOW), ("Error:", RED), ("Plan:", BOLD)):
        if line.startswith(head):
            return f"{BOLD}{color}{head}{RESET}{line[len(head) :]}"
    return line
