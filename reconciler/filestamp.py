"""Cheap change detection for files certform wrote: size, mtime and SHA-256.

A no-change plan must cost a few ``stat`` calls per binding, so the hash is
only recomputed when size or mtime moved (a ``touch`` is not drift; an edit
is).  Shared by every target that writes certificate files and by the
private CA's CRL publishing, so it lives outside ``providers/``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

Stamp = list[int | str]
"""``[size, mtime_ns, sha256]`` as recorded in a binding's facts (JSON)."""


def stamp_of(path: str | Path, data: bytes) -> Stamp:
    """The stamp of a file just written with ``data``."""
    return stamp_from(os.stat(path), data)


def stamp_from(stat: os.stat_result, data: bytes) -> Stamp:
    """The stamp of a file just written with ``data``, from its ``stat`` (as
    ``fsutil.write_atomic`` returns it: no second lookup of the path)."""
    return [stat.st_size, stat.st_mtime_ns, hashlib.sha256(data).hexdigest()]


def _sha256_file(path: str) -> str:
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def stamp_problems(
    entries: Iterable[tuple[str, str, Stamp]], private: Iterable[str] = ()
) -> tuple[list[str], int]:
    """Compare ``(label, path, stamp)`` entries with the disk.

    Returns the problems found and how many files are missing; ``private``
    labels must also still be mode 0600.  (One ``stat`` and a comparison per file
    when nothing changed: a plan calls this for 50,000 files.)"""
    secret = private if isinstance(private, tuple | frozenset | set) else tuple(private)
    problems: list[str] = []
    missing = 0
    stat_of = os.stat
    for label, path, (size, mtime_ns, digest) in entries:
        try:
            stat = stat_of(path)
        except FileNotFoundError:
            problems.append(f"{label} missing")
            missing += 1
            continue
        if (stat.st_size != size or stat.st_mtime_ns != mtime_ns) and _sha256_file(path) != digest:
            problems.append(f"{label} changed on disk")
        if label in secret and stat.st_mode & 0o777 != 0o600:
            problems.append(f"{label} has mode {stat.st_mode & 0o777:o}, expected 600")
    return problems, missing


def read_if_present(path: str | Path) -> bytes | None:
    """A file's bytes, or None when it does not exist (for snapshots before a deploy)."""
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        return Path(path).read_bytes()
    return None
