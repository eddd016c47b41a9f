"""The one event loop a process runs its pipelines on.

Inside Jupyter, Voila or ``nexus up`` an asyncio loop already runs in the main thread, and pipelines
are scheduled on it. From plain synchronous code (a script, a test) there is none, so one daemon thread
runs a loop for all pipelines of the process — the same arrangement streamz uses for its IOLoop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

__all__ = ["engine_loop", "running_loop", "submit"]

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None


def running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def engine_loop() -> asyncio.AbstractEventLoop:
    """The background loop, started on first use."""
    global _loop
    with _lock:
        if _loop is None or _loop.is_closed():
            loop = asyncio.new_event_loop()
            ready = threading.Event()

            def run() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(ready.set)
                loop.run_forever()

            threading.Thread(target=run, name="nexus-engine-loop", daemon=True).start()
            ready.wait()
            _loop = loop
        return _loop


def submit(coro: Coroutine[Any, Any, T]) -> Future[T]:
    """Run ``coro`` on the background loop; returns a concurrent future."""
    return asyncio.run_coroutine_threadsafe(coro, engine_loop())
