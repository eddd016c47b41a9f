"""The source protocol: an asynchronous iterator of micro-batches with a bounded buffer.

A source yields raw micro-batches (pandas DataFrames following the batch contract of
:mod:`nexus_kernel.events`, before validation: columns ``series``, ``ts``, fields, optional ``seq`` and
``attrs``). The pipeline calls :meth:`Source.commit` after a batch has been fully handled — every sink
has returned — so that sources with acknowledgements (Redis Streams) acknowledge only what is durable.
If handling fails, ``commit`` is not called and those records are delivered again.

Backpressure: a producer never runs more than ``buffer`` batches ahead of the consumer
(:class:`BoundedBuffer`), so a slow pipeline slows the source instead of growing memory.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pandas as pd

from ..._registry import Registry

__all__ = ["Source", "BoundedBuffer", "sources"]

sources: Registry[type["Source"]] = Registry("sources")


class Source:
    """Base class of every source.

    Subclasses implement :meth:`batches` (an async generator of raw DataFrames) and, where the
    transport acknowledges, :meth:`commit`. ``spec()`` returns the keyword arguments that rebuild the
    source, so that the stream manager can persist it; ``kind`` is its registry name.
    """

    kind: str = "source"
    #: True when ``batches()`` returns an iterator that bounds its own read-ahead and survives a
    #: cancelled ``__anext__``; the pipeline then reads it directly, with no buffer of its own in
    #: between, so that ``commit()`` never covers a batch the pipeline has not handled yet.
    self_buffered: bool = False

    def __init__(self, **params: Any) -> None:
        self.params = params
        self.emitted = 0  # records handed to the pipeline
        self.exhausted = False

    def batches(self) -> AsyncIterator[pd.DataFrame]:
        raise NotImplementedError

    async def commit(self) -> None:
        """Everything yielded so far has been handled durably."""

    async def close(self) -> None:
        """Release connections and files. Idempotent."""

    def lag(self) -> float | None:
        """Seconds or entries behind the head of the feed, when the source can tell."""
        return None

    def spec(self) -> dict[str, Any]:
        return {"kind": self.kind, "params": dict(self.params)}

    def __aiter__(self) -> AsyncIterator[pd.DataFrame]:
        return self.batches()

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{type(self).__name__}({args})"


_DONE = object()


class BoundedBuffer:
    """A producer task feeding at most ``size`` batches ahead of the consumer.

    ``produce`` is an async iterator of batches; iteration over the buffer yields them in order and
    re-raises the producer's exception at the point it happened.
    """

    def __init__(self, produce: AsyncIterator[pd.DataFrame], size: int) -> None:
        self._produce = produce
        self._queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=size)
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        try:
            async for batch in self._produce:
                await self._queue.put(batch)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # handed to the consumer, which re-raises it
            await self._queue.put(exc)
            return
        await self._queue.put(_DONE)

    def __aiter__(self) -> "BoundedBuffer":
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    async def __anext__(self) -> pd.DataFrame:
        item = await self._queue.get()
        if item is _DONE:
            raise StopAsyncIteration
        if isinstance(item, BaseException):
            raise item
        return item

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    async def aclose(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
