"""The source protocol: an asynchronous iterator of micro-batches with a bounded buffer.

A source yields raw micro-batches (pandas DataFrames following the batch contract of
:mod:`nexus_kernel.records`, before validation: columns ``series``, ``ts``, fields, optional ``seq`` and
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
from ...config import Settings

__all__ = ["Source", "BoundedBuffer", "sources"]

sources: Registry[type["Source"]] = Registry("sources")


class Source:
    """Base class of every source.

    Subclasses implement :meth:`batches` (an async generator of raw DataFrames) and, where the
    transport acknowledges, :meth:`commit`. ``spec()`` returns the keyword arguments that rebuild the
    source, so that the stream manager can persist it; ``kind`` is its registry name; ``from_spec``
    builds it from a spec (data from the network), refusing params a spec may not use.
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

    def clock(self) -> pd.Timestamp | None:
        """The event time this source has reached when it keeps a timeline of its own (a simulator
        running faster than real time), or ``None`` (the default): it follows the wall clock.

        The validator refuses records further ahead than ``max_future`` of the later of this and
        wall-clock UTC now (see :mod:`nexus_kernel.records`), so a clock can only admit more, never
        refuse what wall time admits. Records from outside (the network, a broker, a file) must not
        set it: one far-future record would then admit itself.
        """
        return None

    def spec(self) -> dict[str, Any]:
        return {"kind": self.kind, "params": dict(self.params)}

    @classmethod
    def from_spec(cls, settings: Settings, **params: Any) -> "Source":
        """Build the source from a stream spec's params (secret references already resolved).

        This is the spec boundary for sources: :meth:`Pipeline.from_spec
        <nexus_kernel.engine.Pipeline.from_spec>` calls it, in-process code calls the class itself. A
        source whose params name files, sockets or other local resources must override it and refuse
        what a spec may not reach (see :meth:`Replay.from_spec <nexus_kernel.engine.sources.Replay.from_spec>`);
        the default accepts the params as they are.
        """
        return cls(**params)

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
