"""The one event loop asyncssh runs in, on a background thread, and the sync bridge to it.

certform is synchronous (apply's runner uses threads); asyncssh is asyncio.  All
SSH connections of a run live on one loop in one daemon thread; any thread
calls ``call(coroutine, timeout)`` and blocks for the answer.  asyncssh
multiplexes the channels and SFTP requests of several callers on one
connection, so bindings on one host may deploy from several threads at once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None


def _running_loop() -> asyncio.AbstractEventLoop:
    global _loop
    with _lock:
        if _loop is None or _loop.is_closed():
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="certform-ssh", daemon=True)
            thread.start()
            _loop = loop
        return _loop


def call(coroutine: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
    """Run ``coroutine`` on the SSH loop and wait for its result (or its exception).

    ``timeout`` bounds the wait (TimeoutError; the coroutine is cancelled)."""
    future = asyncio.run_coroutine_threadsafe(coroutine, _running_loop())
    try:
        return future.result(timeout)
    except concurrent.futures.TimeoutError:
        future.cancel()
        raise TimeoutError() from None
