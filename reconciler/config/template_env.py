"""Which environment variables ``env()`` in a template may read.

A rendered template ends up in plans (``plan --json``, saved plan files), the
state's tags, ``show`` output, Prometheus labels and, for nginx snippets, a
0644 file: none of them is a place for a secret.  So ``env()`` refuses the
names ``childenv`` withholds from child processes: ``CERTFORM_MASTER_KEY`` and
the AWS credentials at once, and every variable a ``*_env`` setting of the
configuration names.

Those last names are only known once the configuration is parsed, which is
after its templates ran.  So rendering records every name ``env()`` read
(``recording_env_reads``); once the files are parsed, ``validate`` compares
the record with the configuration's ``*_env`` names and, on a match, renders
again with those names refused (``refusing_env_names``), which turns the read
into an error at its template line.  Nothing of the rendered text is shown or
stored before that check.

Kept free of jinja2 so that ``validate`` can use it without importing Jinja
for configurations that have no template.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from contextvars import ContextVar

from reconciler.childenv import ALWAYS_SECRET, secret_names

__all__ = ["note_env_read", "recording_env_reads", "refusal_reason", "refusing_env_names"]

_reads: ContextVar[set[str] | None] = ContextVar("certform_env_reads", default=None)
_used: ContextVar[set[str] | None] = ContextVar("certform_variables_used", default=None)
_refused: ContextVar[frozenset[str]] = ContextVar("certform_env_refused", default=frozenset())


@contextlib.contextmanager
def recording_env_reads() -> Iterator[set[str]]:
    """Collect the names ``env()`` reads while the block renders templates."""
    reads: set[str] = set()
    token = _reads.set(reads)
    try:
        yield reads
    finally:
        _reads.reset(token)


@contextlib.contextmanager
def recording_variable_uses() -> Iterator[set[str]]:
    """Collect the variable names templates refer to while the block renders them
    (a ``--var`` no template names is a typo worth a warning)."""
    used: set[str] = set()
    token = _used.set(used)
    try:
        yield used
    finally:
        _used.reset(token)


def note_variables_used(names: Iterable[str]) -> None:
    recorder = _used.get()
    if recorder is not None:
        recorder.update(names)


@contextlib.contextmanager
def refusing_env_names(names: Iterable[str]) -> Iterator[None]:
    """Refuse ``names`` to ``env()`` as well, while the block renders templates."""
    token = _refused.set(_refused.get() | frozenset(names))
    try:
        yield
    finally:
        _refused.reset(token)


def note_env_read(name: str) -> None:
    """Record that a template read ``name`` (when a recording is under way)."""
    reads = _reads.get()
    if reads is not None:
        reads.add(name)


def refusal_reason(name: str) -> str | None:
    """Why a template may not read ``name``; None when it may."""
    if name in ALWAYS_SECRET:
        return "it holds a secret of certform or of its cloud credentials"
    if name in _refused.get() or name in secret_names():
        return "the configuration names it in a *_env setting, so it holds a secret"
    return None
