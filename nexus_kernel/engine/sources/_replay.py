"""Replay a CSV or Parquet file as a stream, at a speed factor or as fast as it is consumed.

The file is read in chunks (pyarrow's streaming CSV reader, Parquet row groups), so memory stays
bounded by the chunk size whatever the file size. Rows are emitted in file order; with ``speed`` set,
the source sleeps so that event time advances ``speed`` times faster than wall time (``speed=60``:
one hour of data per minute). A tqdm bar shows progress when ``progress=True``.

Caveats: pacing assumes the file is roughly sorted by time; out-of-order rows are emitted as they come
and judged by the validator's lateness rule.

Built from a stream spec (:meth:`Replay.from_spec`, what the gateway, the CLI registry and
``streams.json`` use), the file must lie inside the data directories (``home/data`` and the
``data_dirs`` setting; a relative path is taken inside ``home/data``; symlinks count where they
point; ``..`` is refused), and containment is checked again right before the file is opened. Built
in-process (``nk.sources.replay(path)``), any file the user can read is fine. Errors name the file and
what is wrong with it, never its content (no header, no row text).

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
import re
import time as _time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from ...config import Settings
from .._specs import SpecError, contained, data_path
from ._base import Source, sources

__all__ = ["Replay"]

SUFFIXES = (".csv", ".csv.gz", ".parquet", ".pq")
_COUNTS = re.compile(r"Expected (\d+) columns, got (\d+)")
_COLUMN = re.compile(r"column #(\d+)")


def _unreadable(name: str, exc: Exception, parquet: bool) -> ValueError:
    """What is wrong with a file pyarrow refused, in our words: its messages quote the offending row."""
    text = str(exc)
    if counts := _COUNTS.search(text):
        what = f"a row has {counts[2]} columns where the header has {counts[1]}"
    elif "conversion error" in text:
        column = _COLUMN.search(text)
        what = "a value does not match the type of its column" + (f" (column #{column[1]})" if column else "")
    else:
        what = f"the file cannot be read as {'Parquet' if parquet else 'CSV'}"
    return ValueError(f"{name}: {what}")


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
        super().__init__(path=str(Path(path).absolute()), time=time, series=series, speed=speed,
                         batch_size=batch_size, progress=progress)
        self.path = Path(path)
        self.confined_to: tuple[Path, ...] | None = None  # data directories, when built from a spec
        if not self.path.exists():
            raise FileNotFoundError(f"replay file not found: {self.path}")
        self.time_column = time
        self.series_column = series
        self.speed = speed
        self.batch_size = int(batch_size)
        self.progress = progress
        self._newest: pd.Timestamp | None = None

    @classmethod
    def from_spec(cls, settings: Settings, **params: Any) -> "Replay":
        """A replay of a file inside the data directories (see the module docstring); refuses others."""
        raw = params.pop("path", None)
        path = data_path(raw, settings, "source.params.path")
        if not path.name.lower().endswith(SUFFIXES):
            raise SpecError(f"source.params.path: '{raw}' is not a {', '.join(SUFFIXES)} file",
                            field="source.params.path")
        if not path.exists():  # named as given: the server's own layout is none of the caller's business
            raise SpecError(f"source.params.path: '{raw}' is not in the data directories", field="source.params.path")
        if not path.is_file():
            raise SpecError(f"source.params.path: '{raw}' is not a regular file", field="source.params.path")
        source = cls(path, **params)
        source.confined_to = tuple(settings.allowed_data_dirs)
        return source

    def _parquet(self) -> bool:
        return self.path.name.lower().endswith((".parquet", ".pq"))

    def _checked_path(self) -> Path:
        if not self.path.exists():
            raise FileNotFoundError(f"replay file not found: {self.path}")
        if self.confined_to is not None and not contained(self.path, self.confined_to):
            raise PermissionError(f"replay file {self.path.name} now resolves outside the data directories")
        return self.path

    def _chunks(self) -> Iterator[pa.RecordBatch]:
        path = self._checked_path()
        try:
            if self._parquet():
                yield from pq.ParquetFile(path).iter_batches(batch_size=self.batch_size)
                return
            reader = pacsv.open_csv(
                path,
                read_options=pacsv.ReadOptions(block_size=1 << 20),
                # times stay text: the validator parses them and dead-letters what it cannot read
                convert_options=pacsv.ConvertOptions(column_types={self.time_column: pa.string()}),
            )
            for record_batch in reader:
                for start in range(0, record_batch.num_rows, self.batch_size):
                    yield record_batch.slice(start, self.batch_size)
        except pa.ArrowException as exc:
            raise _unreadable(self.path.name, exc, self._parquet()) from None

    def _total_rows(self) -> int | None:
        if self._parquet() and self.progress:
            try:
                return pq.ParquetFile(self._checked_path()).metadata.num_rows
            except pa.ArrowException as exc:
                raise _unreadable(self.path.name, exc, True) from None
        return None

    def _shape(self, chunk: pa.RecordBatch) -> pd.DataFrame:
        frame = chunk.to_pandas()
        if self.time_column not in frame.columns:
            # the header is the file's content: name what is missing, not what is there
            raise KeyError(f"time column '{self.time_column}' not in {self.path.name} (set time= to the name of "
                           "its time column)")
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
