"""Replay a CSV or Parquet file as a stream, at a speed factor or as fast as it is consumed.

The file is read in chunks (pyarrow's streaming CSV reader, Parquet row groups), so memory stays
bounded by the chunk size whatever the file size. Rows are emitted in file order; with ``speed`` set,
the source sleeps so that event time advances ``speed`` times faster than wall time (``speed=60``:
one hour of data per minute). A tqdm bar shows progress when ``progress=True``.

Caveats: pacing assumes the file is roughly sorted by time; out-of-order rows are emitted as they come
and judged by the validator's lateness rule.

Example
-------
>>> import asyncio, pandas as pd, tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "pumps.csv")
>>> pd.DataFrame({"ts": pd.date_range("2024-01-01", periods=5, freq="1min"), "value": range(5)}).to_csv(path, index=False)
>>> src = Replay(path, time="ts", speed=None)
>>> async def take():
...     return [b async for b in src.batches()]
>>> len(pd.concat(asyncio.run(take())))
5
"""

from __future__ import annotations

import asyncio
import time as _time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from ._base import Source, sources

__all__ = ["Replay"]


@sources.register("replay")
class Replay(Source):
    """File replay source.

    Parameters
    ----------
    path
        A ``.csv`` (optionally ``.csv.gz``) or ``.parquet`` file.
    time
        Name of the time column (renamed to ``ts``).
    series
        Name of the series-key column, or ``None`` to use the file's stem as the one series key.
    speed
        Event-time seconds per wall-clock second; ``None`` replays as fast as consumed.
    batch_size
        Rows per micro-batch.
    progress
        Show a tqdm progress bar.
    """

    kind = "replay"

    def __init__(
        self,
        path: str | Path,
        time: str = "timestamp",
        series: str | None = None,
        speed: float | None = None,
        batch_size: int = 10_000,
        progress: bool = False,
    ) -> None:
        super().__init__(path=str(path), time=time, series=series, speed=speed,
                         batch_size=batch_size, progress=progress)
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"replay file not found: {self.path}")
        self.time_column = time
        self.series_column = series
        self.speed = speed
        self.batch_size = int(batch_size)
        self.progress = progress
        self._newest: pd.Timestamp | None = None

    def _chunks(self) -> Iterator[pa.RecordBatch]:
        name = self.path.name.lower()
        if name.endswith(".parquet") or name.endswith(".pq"):
            yield from pq.ParquetFile(self.path).iter_batches(batch_size=self.batch_size)
            return
        reader = pacsv.open_csv(
            self.path,
            read_options=pacsv.ReadOptions(block_size=1 << 20),
            # times stay text: the validator parses them and dead-letters what it cannot read
            convert_options=pacsv.ConvertOptions(column_types={self.time_column: pa.string()}),
        )
        for record_batch in reader:
            for start in range(0, record_batch.num_rows, self.batch_size):
                yield record_batch.slice(start, self.batch_size)

    def _total_rows(self) -> int | None:
        if self.path.suffix.lower() in (".parquet", ".pq"):
            return pq.ParquetFile(self.path).metadata.num_rows
        return None

    def _shape(self, chunk: pa.RecordBatch) -> pd.DataFrame:
        frame = chunk.to_pandas()
        if self.time_column not in frame.columns:
            raise KeyError(f"time column '{self.time_column}' not in {self.path.name} (columns: {list(frame.columns)})")
        frame = frame.rename(columns={self.time_column: "ts"})
        if self.series_column is None:
            frame.insert(0, "series", self.path.stem.split(".")[0])
        else:
            frame = frame.rename(columns={self.series_column: "series"})
        return frame

    async def batches(self) -> AsyncIterator[pd.DataFrame]:
        bar = tqdm(total=self._total_rows(), unit="rows", desc=self.path.name, disable=not self.progress)
        wall0 = _time.monotonic()
        event0: pd.Timestamp | None = None
        try:
            for chunk in self._chunks():
                frame = self._shape(chunk)
                if self.speed:
                    times = pd.to_datetime(frame["ts"], utc=True, errors="coerce")
                    first = times.dropna()
                    if not first.empty:
                        if event0 is None:
                            event0 = first.iloc[0]
                        due = wall0 + (first.iloc[-1] - event0).total_seconds() / self.speed
                        delay = due - _time.monotonic()
                        if delay > 0:
                            await asyncio.sleep(delay)
                        self._newest = first.iloc[-1]
                self.emitted += len(frame)
                bar.update(len(frame))
                yield frame
                await asyncio.sleep(0)
        finally:
            bar.close()
        self.exhausted = True
