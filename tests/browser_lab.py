"""Headless Chromium (Debian ``chromium``) for the HTML report's tests: the DOM as
the browser parsed it, its console (where Content-Security-Policy violations are
logged), a screenshot, and a tiny PNG reader to look at the screenshot's colours.

Each run gets its own ``--user-data-dir`` under the test's tmp directory and a
timeout, so runs neither share a profile nor hang the suite.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
TIMEOUT = 90


def chromium() -> str:
    """The browser, or the test is skipped saying why."""
    found = CHROMIUM if os.access(CHROMIUM, os.X_OK) else shutil.which("chromium")
    if not found:
        pytest.skip("headless Chromium is not installed (Debian package chromium)")
    return found


def _run(profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [
        chromium(),
        "--headless",
        f"--user-data-dir={profile}",
        "--no-first-run",
        "--disable-gpu",
        "--enable-logging=stderr",
        "--v=0",
        *args,
    ]
    if os.geteuid() == 0:
        # Chromium refuses to start its sandbox as root (CI containers run as root).
        argv.insert(2, "--no-sandbox")
    return subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT, check=False)


def dump_dom(page: Path, profile: Path) -> tuple[str, str]:
    """(the DOM after loading ``page``, the browser's log with its console lines)."""
    done = _run(profile, "--dump-dom", page.resolve().as_uri())
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout, done.stderr


def screenshot(page: Path, png: Path, profile: Path, size: str = "1280,2000") -> str:
    """Write a screenshot of ``page`` to ``png``; the browser's log."""
    done = _run(
        profile, "--hide-scrollbars", f"--screenshot={png}", f"--window-size={size}",
        page.resolve().as_uri(),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stderr


def console_lines(log: str) -> list[str]:
    """The page's console messages in Chromium's log (``INFO:CONSOLE``)."""
    return [line for line in log.splitlines() if ":CONSOLE" in line]


def png_size(png: Path) -> tuple[int, int]:
    width, height = struct.unpack(">II", png.read_bytes()[16:24])
    return width, height


def png_colours(png: Path) -> set[tuple[int, int, int]]:
    """Every RGB colour in an 8-bit, non-interlaced RGB or RGBA PNG (what Chromium
    writes), for asserting that the page's colour bands were really drawn."""
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks, header = 8, [], b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            chunks.append(body)
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and colour in (2, 6) and interlace == 0, (depth, colour, interlace)
    step = 4 if colour == 6 else 3
    raw = zlib.decompress(b"".join(chunks))
    stride = width * step
    previous = bytearray(stride)
    colours: set[tuple[int, int, int]] = set()
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        _unfilter(kind, line, previous, step)
        colours.update(zip(line[0::step], line[1::step], line[2::step], strict=True))
        previous = line
    return colours


def _unfilter(kind: int, line: bytearray, previous: bytearray, step: int) -> None:
    for i in range(len(line)):
        left = line[i - step] if i >= step else 0
        up = previous[i]
        corner = previous[i - step] if i >= step else 0
        if kind == 1:
            line[i] = (line[i] + left) & 0xFF
        elif kind == 2:
            line[i] = (line[i] + up) & 0xFF
        elif kind == 3:
            line[i] = (line[i] + (left + up) // 2) & 0xFF
        elif kind == 4:
            estimate = left + up - corner
            pa, pb, pc = abs(estimate - left), abs(estimate - up), abs(estimate - corner)
            predictor = left if pa <= pb and pa <= pc else up if pb <= pc else corner
            line[i] = (line[i] + predictor) & 0xFF
