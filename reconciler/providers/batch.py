"""Read-call memoisation while a plan observes many bindings at once.

Observing 500 SNI bindings on one listener must describe that listener once,
not 500 times.  Inside ``observation_batch()`` (entered by refresh), targets
wrap their read-only calls in ``memo(key, fetch)``; outside it (during apply,
where every read must see the latest writes) ``memo`` simply calls ``fetch``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any, TypeVar

T = TypeVar("T")

_cache: ContextVar[dict[tuple[Any, ...], Any] | None] = ContextVar("certform_batch", default=None)


@contextlib.contextmanager
def observation_batch() -> Iterator[None]:
    token = _cache.set({})
    try:
        yield
    finally:
        _cache.reset(token)


def memo(key: tuple[Any, ...], fetch: Callable[[], T]) -> T:
    """``fetch()``, remembered under ``key`` for the rest of the current batch.

    Exceptions are remembered too, so an unreachable endpoint is tried once."""
    cache = _cache.get()
    if cache is None:
        return fetch()
    if key not in cache:
        try:
            cache[key] = (True, fetch())
        except Exception as exc:
            cache[key] = (False, exc)
    ok, value = cache[key]
    if not ok:
        raise value
    return value  # type: ignore[no-any-return]
