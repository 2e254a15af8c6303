"""Read-call memoisation while a plan observes many bindings at once.

Observing 500 SNI bindings on one listener must describe that listener once,
not 500 times.  Inside ``observation_batch()`` (entered by refresh), targets
wrap their read-only calls in ``memo(key, fetch)``; outside it (during apply,
where every read must see the latest writes) ``memo`` simply calls ``fetch``.

Some reads are cheap only in bulk: stamping the files of 500 bindings on one SSH
host is one remote command, or 500.  Targets announce what they will read with
``want(group, item, fetch_many)`` (refresh asks every target first, through
``Target.prefetch``); ``fetch_wanted()`` then makes one ``fetch_many`` call per
group, and ``lookup_many`` answers the reads from that (fetching what nobody
announced, in one call per lookup, outside a batch too).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from typing import Any, TypeVar

T = TypeVar("T")

_cache: ContextVar[dict[tuple[Any, ...], Any] | None] = ContextVar("certform_batch", default=None)
FetchMany = Callable[[list[str]], Mapping[str, Any]]
_wanted: ContextVar[dict[Any, tuple[FetchMany, dict[str, None]]] | None] = ContextVar(
    "certform_wanted", default=None
)


@contextlib.contextmanager
def observation_batch() -> Iterator[None]:
    token = _cache.set({})
    wanted = _wanted.set({})
    try:
        yield
    finally:
        _wanted.reset(wanted)
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


def want(group: Any, item: str, fetch_many: FetchMany) -> None:
    """Announce that ``item`` of ``group`` will be read (no I/O; nothing outside a batch)."""
    wanted = _wanted.get()
    if wanted is not None:
        wanted.setdefault(group, (fetch_many, {}))[1][item] = None


def fetch_wanted() -> None:
    """One ``fetch_many`` per group for everything announced since the last call.

    The groups are fetched at the same time (one thread each): a group is one
    host, and five SSH hosts cost one connect and one stamp, not five in a row."""
    wanted, cache = _wanted.get(), _cache.get()
    if not wanted or cache is None:
        return
    jobs = [
        (group, fetch_many, [i for i in items if (group, i) not in cache])
        for group, (fetch_many, items) in wanted.items()
    ]
    wanted.clear()
    jobs = [job for job in jobs if job[2]]
    if len(jobs) == 1:
        group, fetch_many, items = jobs[0]
        _fill(cache, group, items, fetch_many)
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(len(jobs), 16)) as pool:
        answers = list(pool.map(lambda job: _answers(job[1], job[2]), jobs))
    for (group, _, items), answer in zip(jobs, answers, strict=True):
        _store(cache, group, items, answer)


def lookup_many(group: Any, items: Iterable[str], fetch_many: FetchMany) -> dict[str, Any]:
    """``fetch_many(items)`` answered from the batch where it can be (what it lacks is
    fetched in one call); a remembered failure of the group is raised again."""
    items = list(items)
    cache = _cache.get()
    if cache is None:
        return dict(fetch_many(items))
    _fill(cache, group, [i for i in items if (group, i) not in cache], fetch_many)
    found: dict[str, Any] = {}
    for item in items:
        ok, value = cache[(group, item)]
        if not ok:
            raise value
        found[item] = value
    return found


def _fill(
    cache: dict[tuple[Any, ...], Any], group: Any, items: list[str], fetch_many: FetchMany
) -> None:
    if items:
        _store(cache, group, items, _answers(fetch_many, items))


def _answers(fetch_many: FetchMany, items: list[str]) -> Mapping[str, Any] | Exception:
    try:
        return fetch_many(items)
    except Exception as exc:
        return exc


def _store(
    cache: dict[tuple[Any, ...], Any],
    group: Any,
    items: list[str],
    answers: Mapping[str, Any] | Exception,
) -> None:
    for item in items:
        if isinstance(answers, Exception):
            cache[(group, item)] = (False, answers)
        else:
            cache[(group, item)] = (True, answers.get(item))
