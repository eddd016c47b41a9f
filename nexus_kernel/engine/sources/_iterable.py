"""A source over data already in memory: a DataFrame, or any iterable of records or DataFrames.

Meant for notebooks and tests: ``Pipeline.from_source(iterable(df))``. A DataFrame is cut into
micro-batches of ``batch_size`` rows; an iterable of dicts is grouped into DataFrames of that size;
an iterable of DataFrames is passed through batch by batch. Asynchronous iterables work too.

Example
-------
>>> import asyncio, pandas as pd
>>> src = Iterable([{"series": "a", "ts": "2024-01-01", "value": 1.0}] * 5, batch_size=2)
>>> async def take():
...     return [len(b) async for b in src.batches()]
>>> asyncio.run(take())
[2, 2, 1]
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator
from collections.abc import Iterable as IterableABC
from typing import Any

import pandas as pd

from ._base import Source, sources

__all__ = ["Iterable"]


@sources.register("iterable")
class Iterable(Source):
    """In-memory source.

    Parameters
    ----------
    data
        A DataFrame, an iterable (sync or async) of dicts, or of DataFrames.
    batch_size
        Rows per micro-batch.

    Caveat: not persistable — a stream manager cannot rebuild it after a restart.
    """

    kind = "iterable"

    def __init__(self, data: Any, batch_size: int = 10_000) -> None:
        super().__init__(batch_size=batch_size)
        self.data = data
        self.batch_size = int(batch_size)

    def spec(self) -> dict[str, Any]:
        raise TypeError("an iterable source holds data in memory and cannot be persisted; use replay")

    async def batches(self) -> AsyncIterator[pd.DataFrame]:
        async for frame in self._frames():
            if frame.empty:
                continue
            self.emitted += len(frame)
            yield frame
            await asyncio.sleep(0)
        self.exhausted = True

    async def _frames(self) -> AsyncIterator[pd.DataFrame]:
        data = self.data
        if isinstance(data, pd.DataFrame):
            for start in range(0, len(data), self.batch_size):
                yield data.iloc[start : start + self.batch_size].reset_index(drop=True)
            return
        pending: list[dict[str, Any]] = []
        async for item in _aiter(data):
            if isinstance(item, pd.DataFrame):
                if pending:
                    yield pd.DataFrame(pending)
                    pending = []
                yield item
                continue
            pending.append(dict(item))
            if len(pending) >= self.batch_size:
                yield pd.DataFrame(pending)
                pending = []
        if pending:
            yield pd.DataFrame(pending)


async def _aiter(data: Any) -> AsyncIterator[Any]:
    if isinstance(data, AsyncIterable):
        async for item in data:
            yield item
    elif isinstance(data, IterableABC):
        for item in data:
            yield item
    else:
        raise TypeError(f"cannot iterate over {type(data).__name__}")
