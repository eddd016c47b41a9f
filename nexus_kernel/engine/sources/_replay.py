"""Replay a CSV or Parquet file as a stream, at a speed factor or as fast as it is consumed.

The file is read in chunks (pyarrow's streaming CSV reader, Parquet row groups), so memory stays
bounded by the chunk size whatever the file size. Rows are emitted in file order; with ``speed`` set,
event time advances ``speed`` times faster than wall time (``speed=60``: one minute of data per
second), counted from the first row: the first row's event time ``t0`` is emitted at once and a row at
event time ``t`` when ``(t - t0) / speed`` wall seconds have passed. Rows that fall due together are
emitted together, at most one batch per ``TICK`` (0.1 s) of wall time, so a live view moves steadily
instead of waiting for a whole chunk. A gap in the file that would keep the source silent for more than
``max_gap`` wall seconds (a weekend in a sensor log) is shortened to ``max_gap`` and logged as a
warning on the ``nexus_kernel.engine.sources.replay`` logger; ``max_gap=None`` honours every gap, and
still logs any wait longer than ``LONG_WAIT`` seconds before it starts. A tqdm bar shows progress when
``progress=True``.

Caveats: pacing follows the newest event time seen so far, so a row older than an earlier one (an
out-of-order file) is emitted at once, as it comes, and judged by the validator's lateness rule. Rows
whose time cannot be read are emitted with the rows around them, for the validator to dead-letter.
Pacing is a floor, not a promise: a pipeline slower than the replay receives rows late, never early.

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
import logging
import math
import re
import time as _time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from ...config import Settings
from .._specs import SpecError, contained, data_path
from ._base import Source, sources

__all__ = ["Replay"]

log = logging.getLogger("nexus_kernel.engine.sources.replay")

#: Wall seconds between two paced batches at most once rows are due: short enough for a live view
#: to move, long enough that a dense file does not become one batch per row.
TICK = 0.1
#: A single paced wait longer than this (wall seconds) is announced in the log before it starts.
LONG_WAIT = 10.0

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
        Event-time seconds per wall-clock second, counted from the first row's time; ``None``
        replays as fast as consumed.
    batch_size
        Rows per micro-batch at most (paced batches are smaller: what is due).
    progress
        Show a tqdm progress bar.
    max_gap
        With ``speed``, the longest wall-clock wait (seconds) between two rows; a longer gap in the
        file is shortened to this and a warning is logged. ``None`` honours every gap.

    Example
    -------
    ``Replay("pumps.csv", time="ts", speed=60)`` emits the first row at once and one minute of data
    per second after it; a two-day hole in the file costs 10 s of silence, not 48 minutes.
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
        max_gap: float | None = 10.0,
    ) -> None:
        if speed is not None and not (isinstance(speed, (int, float)) and math.isfinite(speed) and speed > 0):
            raise ValueError(f"replay speed must be a positive number of event seconds per second or None, "
                             f"not {speed!r}")
        if max_gap is not None and not (isinstance(max_gap, (int, float)) and math.isfinite(max_gap)
                                        and max_gap > 0):
            raise ValueError(f"replay max_gap must be a positive number of seconds or None, not {max_gap!r}")
        super().__init__(path=str(Path(path).absolute()), time=time, series=series, speed=speed,
                         batch_size=batch_size, progress=progress, max_gap=max_gap)
        self.path = Path(path)
        self.confined_to: tuple[Path, ...] | None = None  # data directories, when built from a spec
        if not self.path.exists():
            raise FileNotFoundError(f"replay file not found: {self.path}")
        self.time_column = time
        self.series_column = series
        self.speed = speed
        self.batch_size = int(batch_size)
        self.progress = progress
        self.max_gap = max_gap

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
        pacer = _Pacer(self.path.name, self.speed, self.max_gap) if self.speed else None
        try:
            for chunk in self._chunks():
                frame = self._shape(chunk)
                if pacer is None:
                    self.emitted += len(frame)
                    bar.update(len(frame))
                    yield frame
                    await asyncio.sleep(0)
                    continue
                due = pacer.due(frame["ts"])
                start = 0
                while start < len(frame):
                    await pacer.wait(float(due[start]))
                    # everything due by now goes out together; the rest waits for its own time
                    end = int(np.searchsorted(due, _time.monotonic(), side="right"))
                    end = max(end, start + 1)
                    part = frame if (start, end) == (0, len(frame)) else frame.iloc[start:end].reset_index(drop=True)
                    start = end
                    self.emitted += len(part)
                    bar.update(len(part))
                    yield part
                    await asyncio.sleep(0)
        finally:
            bar.close()
        self.exhausted = True


class _Pacer:
    """The wall-clock time each row of a paced replay falls due, and the waiting for it.

    The timeline is the running maximum of event time (an older row is due at once), each step of it
    capped at ``max_gap * speed`` event seconds; the wall clock starts at the first readable time.
    """

    def __init__(self, name: str, speed: float, max_gap: float | None) -> None:
        self.name = name
        self.speed = float(speed)
        self.max_step = math.inf if max_gap is None else float(max_gap) * self.speed
        self.max_gap = max_gap
        self.wall0: float | None = None
        self.event0: pd.Timestamp | None = None
        self.newest = -math.inf  # event seconds after event0, the timeline's high-water mark
        self.paced = 0.0  # event seconds of timeline so far, after gaps were shortened
        self.last_emit = -math.inf

    def due(self, ts: pd.Series) -> np.ndarray:
        """Monotonic wall-clock (``time.monotonic``) due times of one chunk's rows."""
        times = pd.to_datetime(ts, utc=True, errors="coerce")
        known = times.dropna()
        if self.event0 is None:
            if known.empty:  # nothing to pace by yet: these rows go out at once
                return np.full(len(ts), -math.inf)
            self.event0 = known.iloc[0]
            self.newest = 0.0
            self.wall0 = _time.monotonic()
        seconds = ((times - self.event0).dt.total_seconds()).to_numpy(dtype=float, na_value=np.nan)
        # an unreadable time takes the place of the row before it
        high = np.fmax.accumulate(np.concatenate(([self.newest], seconds)))
        steps = np.diff(high)
        capped = np.minimum(steps, self.max_step)
        shortened = steps > capped
        if shortened.any():  # one line per chunk, not per gap: a file of sparse rows must not flood the log
            largest = float(steps[shortened].max())
            log.warning("%s: a gap of %s in event time would pause the replay for %.0f s; shortened to %g s "
                        "(max_gap)%s", self.name, pd.Timedelta(seconds=largest), largest / self.speed,
                        self.max_gap, f", with {int(shortened.sum()) - 1} more such gaps" if shortened.sum() > 1 else "")
        paced = self.paced + np.cumsum(capped)
        self.newest = float(high[-1])
        if len(paced):
            self.paced = float(paced[-1])
        assert self.wall0 is not None
        return self.wall0 + paced / self.speed

    async def wait(self, due: float) -> None:
        """Sleep until ``due`` and at least ``TICK`` after the previous batch, so that dense rows batch up.

        A row already due goes at once: a replay that fell behind (a slow consumer, one-row chunks)
        catches up instead of falling a tick further behind with every batch.
        """
        now = _time.monotonic()
        wake = max(due, self.last_emit + TICK) if due > now else now
        delay = wake - now
        if delay > LONG_WAIT:
            log.warning("%s: the next row is %.0f s of wall time away at this speed", self.name, delay)
        if delay > 0:
            await asyncio.sleep(delay)
        self.last_emit = _time.monotonic()
