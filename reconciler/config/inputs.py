"""What validating a configuration reads besides the configuration's own files.

Validation and resolution are a pure function of the parsed configuration,
except where a check looks outside it: an imported certificate's PEM files (and
the environment variable that may hold its key), a CA bundle, an nginx snippet
template, an SSH provider's identity and known_hosts files.  Those reads go
through ``input_path`` / ``input_env`` here, which note them while a
``recording()`` is active, so that the validated-config cache
(``validated_cache``) can stamp them and drop its entry when one changes.  A
check whose answer depends on the time (an imported certificate must not be
expired) calls ``note_volatile``: such a result is never cached.

A read that bypasses these functions would let a cached verdict outlive the
file it depends on: ``tests/test_validated_cache.py`` validates every example
under an audit hook and fails on any file opened during validation that was not
noted here.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path

from reconciler.fsutil import config_path


@dataclass
class InputRecorder:
    """The outside inputs one validation read."""

    files: set[str] = field(default_factory=set)
    environment: set[str] = field(default_factory=set)
    volatile: bool = False
    """A check depended on something no stamp captures (the time)."""


_RECORDER: ContextVar[InputRecorder | None] = ContextVar("certform_inputs", default=None)


@contextmanager
def recording() -> Iterator[InputRecorder]:
    """Note every outside input read inside the block."""
    recorder = InputRecorder()
    token = _RECORDER.set(recorder)
    try:
        yield recorder
    finally:
        _RECORDER.reset(token)


def input_path(root: Path | str, value: str) -> Path:
    """``config_path(root, value)`` of a file a check is about to read or stat."""
    path = config_path(root, value)
    recorder = _RECORDER.get()
    if recorder is not None:
        recorder.files.add(str(path))
    return path


def input_env(name: str) -> str | None:
    """The environment variable a check reads (its value is never stored: the
    cache keeps a keyed hash of it)."""
    recorder = _RECORDER.get()
    if recorder is not None:
        recorder.environment.add(name)
    return os.environ.get(name)


def note_volatile() -> None:
    """The check being run depends on the time: its result must not be cached."""
    recorder = _RECORDER.get()
    if recorder is not None:
        recorder.volatile = True
