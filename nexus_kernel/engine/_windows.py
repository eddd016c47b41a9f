"""Per-series event-time windows with watermarks: tumbling, sliding and session.

Every record is first turned into a *partial aggregate* (count, sum, sum of squares, min, max, first and
last by event time); partials merge associatively, so a window's result does not depend on how its
records were cut into batches or in which order they arrived. Merging is vectorized with NumPy over the
whole micro-batch: rows get a dense group id (series × window), and ``bincount`` / ``ufunc.at`` reduce
each group in one pass.

The *watermark* of a stream is the newest event time seen minus ``allowed_lateness``. A window is
emitted, once, when its end is at or behind the watermark. A record whose window has already been
emitted is *late*: it goes to the dead-letter queue with reason ``late`` and changes nothing.

A record further ahead of the stream's clock than the ``max_future`` setting goes to the dead-letter
queue with reason ``future`` and changes nothing either — above all not the watermark, which one
far-future record would otherwise push past every real record to come (all of them ``late``, every
window emitted at once). The validator already refuses such records; the window judges them again so
that a pipeline without a ``validate`` step before its window is not poisoned. The stream's clock is the
one the validator uses (:func:`~nexus_kernel.records.future_horizon`: the later of wall-clock UTC and the
source's clock, which the pipeline passes in the step context). A window that was never bound to a
pipeline has no settings and no source: it trusts its input and checks nothing.

Output columns: ``stream, series, window_start, window_end``, then ``<field>_<agg>`` for every field
and aggregate (``count, sum, mean, min, max, first, last, std, var``). Session windows end at their last
record plus the gap.

Caveats: the watermark is per stream, so a series that stops reporting still has its windows closed by
the others' progress; windows still open when the pipeline stops are emitted by ``flush()``.

Example
-------
>>> import pandas as pd
>>> from nexus_kernel.engine import Window
>>> w = Window("1min", agg=["count", "mean"], lateness="0s")
>>> batch = pd.DataFrame({"stream": "s", "series": "a", "seq": range(3),
...     "ts": pd.to_datetime(["2024-01-01 00:00:10", "2024-01-01 00:00:50", "2024-01-01 00:01:05"], utc=True),
...     "value": [1.0, 3.0, 5.0]})
>>> w(batch)[["window_start", "value_count", "value_mean"]].to_dict("records")  # doctest: +NORMALIZE_WHITESPACE
[{'window_start': Timestamp('2024-01-01 00:00:00+0000', tz='UTC'), 'value_count': 2, 'value_mean': 2.0}]
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal

import numpy as np
import pandas as pd

from ..records import (SERIES, TIME, Clock, SeriesIds, field_columns, future_bound, future_detail, future_horizon,
                      make_dead_letters)
from ._steps import BaseStep, StepContext, steps

__all__ = ["Window", "AGGREGATES"]

AGGREGATES = ("count", "sum", "mean", "min", "max", "first", "last", "std", "var")
_NS = 1_000_000_000
_BIG = np.iinfo(np.int64).max
_SMALL = np.iinfo(np.int64).min


class _Partials:
    """Columns of partial aggregates: keys (``sid``, ``start``, ``end``) and, per field, the parts."""

    __slots__ = ("sid", "start", "end", "parts")

    def __init__(self, sid: np.ndarray, start: np.ndarray, end: np.ndarray, parts: dict[str, dict[str, np.ndarray]]):
        self.sid, self.start, self.end, self.parts = sid, start, end, parts

    def __len__(self) -> int:
        return len(self.sid)

    def take(self, index: np.ndarray) -> "_Partials":
        return _Partials(self.sid[index], self.start[index], self.end[index],
                         {f: {k: v[index] for k, v in p.items()} for f, p in self.parts.items()})

    @staticmethod
    def concat(a: "_Partials | None", b: "_Partials") -> "_Partials":
        if a is None or len(a) == 0:
            return b
        return _Partials(np.concatenate([a.sid, b.sid]), np.concatenate([a.start, b.start]),
                         np.concatenate([a.end, b.end]),
                         {f: {k: np.concatenate([a.parts[f][k], b.parts[f][k]]) for k in b.parts[f]}
                          for f in b.parts})

    @staticmethod
    def of_records(sid: np.ndarray, t: np.ndarray, values: dict[str, np.ndarray]) -> "_Partials":
        parts = {}
        for f, v in values.items():
            ok = np.isfinite(v)
            clean = np.where(ok, v, 0.0)
            parts[f] = {
                "n": ok.astype(np.int64), "sum": clean, "sq": clean * clean,
                "min": np.where(ok, v, np.inf), "max": np.where(ok, v, -np.inf),
                "first": clean, "first_ts": np.where(ok, t, _BIG), "last": clean, "last_ts": np.where(ok, t, _SMALL),
            }
        return _Partials(sid, t.copy(), t.copy(), parts)


def _combine(rows: _Partials, ids: np.ndarray, groups: int, span: bool) -> _Partials:
    """Merge rows that share a group id: sums add, extremes combine, first/last follow event time."""
    index = np.arange(len(ids))
    rep = np.full(groups, len(ids), dtype=np.int64)
    np.minimum.at(rep, ids, index)  # one representative row per group, for its keys
    sid, start = rows.sid[rep], rows.start[rep]
    end = rows.end[rep]
    if span:  # sessions: a group spans from its earliest start to its latest end
        start = np.full(groups, _BIG, dtype=np.int64)
        np.minimum.at(start, ids, rows.start)
        end = np.full(groups, _SMALL, dtype=np.int64)
        np.maximum.at(end, ids, rows.end)
    parts = {}
    for f, p in rows.parts.items():
        out = {
            "n": np.bincount(ids, weights=p["n"], minlength=groups).astype(np.int64),
            "sum": np.bincount(ids, weights=p["sum"], minlength=groups),
            "sq": np.bincount(ids, weights=p["sq"], minlength=groups),
        }
        lo = np.full(groups, np.inf)
        np.minimum.at(lo, ids, p["min"])
        hi = np.full(groups, -np.inf)
        np.maximum.at(hi, ids, p["max"])
        out["min"], out["max"] = lo, hi
        first_ts = np.full(groups, _BIG, dtype=np.int64)
        np.minimum.at(first_ts, ids, p["first_ts"])
        last_ts = np.full(groups, _SMALL, dtype=np.int64)
        np.maximum.at(last_ts, ids, p["last_ts"])
        # among rows holding the group's first (last) time, the earliest (latest) row wins ties
        pick = np.full(groups, len(ids), dtype=np.int64)
        hit = np.flatnonzero(p["first_ts"] == first_ts[ids])
        np.minimum.at(pick, ids[hit], hit)
        out["first"] = np.where(pick < len(ids), p["first"][np.minimum(pick, len(ids) - 1)], 0.0)
        pick = np.full(groups, -1, dtype=np.int64)
        hit = np.flatnonzero(p["last_ts"] == last_ts[ids])
        np.maximum.at(pick, ids[hit], hit)
        out["last"] = np.where(pick >= 0, p["last"][np.maximum(pick, 0)], 0.0)
        out["first_ts"], out["last_ts"] = first_ts, last_ts
        parts[f] = out
    return _Partials(sid, start, end, parts)


@steps.register("window")
class Window(BaseStep):
    """Event-time window aggregation per series.

    Parameters
    ----------
    size
        Window length (``"1min"``) — for session windows, the inactivity gap that ends a session.
    agg
        Aggregates to compute, from :data:`AGGREGATES`.
    kind
        ``"tumbling"``, ``"sliding"`` or ``"session"``.
    slide
        For sliding windows: how far apart windows start; ``size`` must be a whole multiple of it.
    lateness
        Allowed lateness; ``None`` takes the ``allowed_lateness`` setting when bound, else 0.
    fields
        Fields to aggregate (default: every field of the first batch).
    """

    kind = "window"
    examples = ({"size": "10s", "agg": ["count", "mean"]}, {"size": "20s", "kind": "sliding", "slide": "10s"},
                {"size": "5s", "kind": "session", "lateness": 0})

    def __init__(
        self,
        size: str | pd.Timedelta = "1min",
        agg: list[str] | tuple[str, ...] = ("count", "mean", "min", "max"),
        kind: Literal["tumbling", "sliding", "session"] = "tumbling",
        slide: str | pd.Timedelta | None = None,
        lateness: str | float | pd.Timedelta | None = None,
        fields: list[str] | None = None,
    ) -> None:
        unknown = set(agg) - set(AGGREGATES)
        if unknown:
            raise ValueError(f"unknown aggregate(s) {sorted(unknown)}; choose from {AGGREGATES}")
        if kind not in ("tumbling", "sliding", "session"):
            raise ValueError(f"unknown window kind '{kind}'")
        self.size = pd.Timedelta(size)
        if self.size <= pd.Timedelta(0):
            raise ValueError("window size must be positive")
        self.slide = pd.Timedelta(slide) if slide is not None else self.size
        if kind == "sliding" and (self.slide <= pd.Timedelta(0) or self.size.value % self.slide.value):
            raise ValueError("sliding windows need a positive slide that divides the size")
        self.window_kind = kind
        self.agg = tuple(agg)
        self.fields = list(fields) if fields else None
        self._lateness_param = lateness
        self.lateness = _seconds(lateness) if lateness is not None else None
        self.watermark: int | None = None  # ns since the epoch
        self._state: _Partials | None = None
        self._ids = SeriesIds()
        self.context: StepContext | None = None
        self.stream = "stream"
        self.late = 0  # records dead-lettered as late
        self.future = 0  # records dead-lettered as ahead of the stream's clock
        self._max_future: timedelta | None = None  # None until bound: nothing is judged as future
        self._clock: Clock | None = None

    def spec(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "params": {
                "size": str(self.size), "agg": list(self.agg), "kind": self.window_kind,
                "slide": str(self.slide) if self.window_kind == "sliding" else None,
                "lateness": _seconds(self._lateness_param) if self._lateness_param is not None else None,
                "fields": self.fields,
            },
        }

    def bind(self, context: StepContext) -> None:
        self.context = context
        self.stream = context.stream
        if self.lateness is None:
            self.lateness = float(context.settings.allowed_lateness)
        self._max_future = future_bound(context.settings.max_future)
        self._clock = context.clock

    @property
    def open_windows(self) -> int:
        return 0 if self._state is None else len(self._state)

    # -- the step ------------------------------------------------------------------------------

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame | None:
        if batch is None or batch.empty:
            return None
        if self.lateness is None:
            self.lateness = 0.0
        if self.fields is None:
            self.fields = field_columns(batch)
        if "stream" in batch.columns:
            self.stream = str(batch["stream"].iat[0])
        t = _nanoseconds(batch[TIME])
        sid = self._series_ids(batch[SERIES])
        values = {f: batch[f].to_numpy(dtype="float64") if f in batch.columns else np.full(len(batch), np.nan)
                  for f in self.fields}
        future = self._future(batch, t)
        late = self._late(sid, t) & ~future
        if late.any():
            self._dead_letter(batch.loc[late], "late", "window already emitted (event time behind the watermark)")
            self.late += int(late.sum())
        refused = future | late
        if refused.any():
            keep = ~refused
            sid, t, values = sid[keep], t[keep], {f: v[keep] for f, v in values.items()}
        if len(t):
            self._absorb(_Partials.of_records(sid, t, values))
            mark = int(t.max()) - int(self.lateness * _NS)
            self.watermark = mark if self.watermark is None else max(self.watermark, mark)
        return self._emit(closed_only=True)

    def flush(self) -> pd.DataFrame | None:
        """Emit every open window (at stop, or when the source has ended)."""
        return self._emit(closed_only=False)

    # -- internals -----------------------------------------------------------------------------

    def _series_ids(self, column: pd.Series) -> np.ndarray:
        if isinstance(column.dtype, pd.CategoricalDtype):
            codes, names = column.cat.codes.to_numpy(), column.cat.categories
        else:
            codes, names = pd.factorize(column)
            names = pd.Index(names)
        return self._ids.lookup(names)[codes]

    @property
    def _names(self) -> list[str]:
        return self._ids.names

    def _future(self, batch: pd.DataFrame, t: np.ndarray) -> np.ndarray:
        """Rows ahead of the stream's clock by more than ``max_future``, dead-lettered here."""
        if self._max_future is None:
            return np.zeros(len(t), dtype=bool)
        now, horizon = future_horizon(self._max_future, self._clock)
        future = t > horizon
        if future.any():
            self._dead_letter(batch.loc[future], "future", future_detail(self._max_future, now))
            self.future += int(future.sum())
        return future

    def _late(self, sid: np.ndarray, t: np.ndarray) -> np.ndarray:
        if self.watermark is None:
            return np.zeros(len(t), dtype=bool)
        if self.window_kind == "tumbling":
            return t - np.mod(t, self.size.value) + self.size.value <= self.watermark
        if self.window_kind == "sliding":  # late when even its newest window has closed
            return t - np.mod(t, self.slide.value) + self.size.value <= self.watermark
        late = t + self.size.value <= self.watermark
        if late.any() and self._state is not None and len(self._state):
            gap = self.size.value
            lo = np.full(len(self._names), _BIG, dtype=np.int64)
            hi = np.full(len(self._names), _SMALL, dtype=np.int64)
            np.minimum.at(lo, self._state.sid, self._state.start)
            np.maximum.at(hi, self._state.sid, self._state.end)
            lo, hi = lo[sid], hi[sid]
            joins = (hi != _SMALL) & (t >= lo - gap) & (t <= hi + gap)
            late &= ~joins
        return late

    def _absorb(self, rows: _Partials) -> None:
        if self.window_kind == "sliding":
            copies = self.size.value // self.slide.value
            base = rows.start - np.mod(rows.start, self.slide.value)
            starts = np.concatenate([base - j * self.slide.value for j in range(copies)])
            rows = rows.take(np.tile(np.arange(len(rows)), copies))
            rows.start = starts
            if self.watermark is not None:  # copies whose window has already been emitted are dropped
                rows = rows.take(np.flatnonzero(starts + self.size.value > self.watermark))
        elif self.window_kind == "tumbling":
            rows.start = rows.start - np.mod(rows.start, self.size.value)
        if self.window_kind == "session":
            self._state = self._sessionize(_Partials.concat(self._state, rows))
            return
        # reduce the batch on its own first: the merge with the (small) open state then stays small
        self._state = self._by_window(_Partials.concat(self._state, self._by_window(rows)))

    def _by_window(self, rows: _Partials) -> _Partials:
        if len(rows) == 0:
            return rows
        step = self.slide.value if self.window_kind == "sliding" else self.size.value
        key = rows.sid * (1 << 40) + (rows.start - rows.start.min()) // step
        ids, uniques = pd.factorize(key)
        return _combine(rows, ids, len(uniques), span=False)

    def _sessionize(self, rows: _Partials) -> _Partials:
        """Merge spans of a series that lie within the gap of each other into sessions."""
        order = np.lexsort((rows.start, rows.sid))
        rows = rows.take(order)
        # running furthest end within each series (series are contiguous after the sort)
        new_series = np.r_[True, rows.sid[1:] != rows.sid[:-1]]
        reach = pd.Series(rows.end).groupby(np.cumsum(new_series)).cummax().to_numpy()
        prev = np.r_[_SMALL, reach[:-1]]
        breaks = new_series | (rows.start - prev > self.size.value)
        ids = np.cumsum(breaks) - 1
        return _combine(rows, ids, int(ids[-1]) + 1 if len(ids) else 0, span=True)

    def _ends(self, state: _Partials) -> np.ndarray:
        if self.window_kind == "session":
            return state.end + self.size.value
        return state.start + self.size.value

    def _emit(self, closed_only: bool) -> pd.DataFrame | None:
        state = self._state
        if state is None or len(state) == 0:
            return None
        if closed_only:
            if self.watermark is None:
                return None
            closed = self._ends(state) <= self.watermark
            if not closed.any():
                return None
            out = state.take(np.flatnonzero(closed))
            self._state = state.take(np.flatnonzero(~closed))
        else:
            out, self._state = state, None
        return self._finish(out)

    def _finish(self, parts: _Partials) -> pd.DataFrame:
        order = np.lexsort((parts.sid, parts.start))
        parts = parts.take(order)
        names = np.asarray(self._names, dtype=object)
        result: dict[str, Any] = {
            "stream": pd.array([self.stream] * len(parts), dtype="string"),
            "series": pd.array(names[parts.sid], dtype="string"),
            "window_start": pd.to_datetime(parts.start, utc=True),
            "window_end": pd.to_datetime(self._ends(parts), utc=True),
        }
        for f in self.fields or []:
            p = parts.parts[f]
            n, s, sq = p["n"], p["sum"], p["sq"]
            empty = n == 0
            with np.errstate(invalid="ignore", divide="ignore"):
                mean = np.where(empty, np.nan, s / np.maximum(n, 1))
                var = np.where(n > 1, (sq - s * s / np.maximum(n, 1)) / np.maximum(n - 1, 1), np.nan)
            var = np.where(np.isfinite(var), np.maximum(var, 0.0), np.nan)
            values = {
                "count": n, "sum": s, "mean": mean,
                "min": np.where(empty, np.nan, p["min"]), "max": np.where(empty, np.nan, p["max"]),
                "first": np.where(empty, np.nan, p["first"]), "last": np.where(empty, np.nan, p["last"]),
                "var": var, "std": np.sqrt(var),
            }
            for a in self.agg:
                result[f"{f}_{a}"] = values[a]
        return pd.DataFrame(result)

    def _dead_letter(self, records: pd.DataFrame, reason: str, detail: str) -> None:
        if self.context is None or records.empty:
            return
        self.context.dead_letters.put(make_dead_letters(records, self.stream, reason, detail))


def _nanoseconds(column: pd.Series) -> np.ndarray:
    if isinstance(column.dtype, pd.DatetimeTZDtype):
        column = column.dt.tz_convert(None)
    return column.to_numpy(dtype="datetime64[ns]").view("int64")


def _seconds(value: str | float | pd.Timedelta) -> float:
    if isinstance(value, (int, float)):
        return float(value)
    return pd.Timedelta(value).total_seconds()
