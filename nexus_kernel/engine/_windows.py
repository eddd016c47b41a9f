"""Per-series event-time windows with watermarks: tumbling, sliding and session.

Every record is first reduced to a *partial aggregate* (count, sum, sum of squares, min, max, first and
last by event time) per window; partials merge associatively, so a window's result does not depend on
how its records were cut into batches or in which order they arrived. All of it is vectorized with
pandas group-bys over the whole micro-batch.

The *watermark* of a stream is the newest event time seen minus ``allowed_lateness``. A window is
emitted, once, when its end is at or behind the watermark. A record whose window has already been
emitted is *late*: it goes to the dead-letter queue with reason ``late`` and changes nothing.

Output columns: ``stream, series, window_start, window_end``, then ``<field>_<agg>`` for every field
and aggregate (``count, sum, mean, min, max, first, last, std, var``).

Caveats: the watermark is per stream, so a series that stops reporting still has its windows closed by
the others' progress; session windows that are still open when the pipeline stops are emitted by
``flush()``.

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

from typing import Any, Literal

import numpy as np
import pandas as pd

from ..events import SERIES, TIME, field_columns, make_dead_letters
from ._steps import StepContext, steps

__all__ = ["Window", "AGGREGATES"]

AGGREGATES = ("count", "sum", "mean", "min", "max", "first", "last", "std", "var")
_PARTS = ("n", "sum", "sq", "min", "max", "first", "first_ts", "last", "last_ts")
_NS = 1_000_000_000


@steps.register("window")
class Window:
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
        Fields to aggregate (default: every field of the batch).
    """

    kind = "window"

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
        self.watermark: int | None = None  # ns since epoch
        self._state: pd.DataFrame | None = None  # open partials, one row per (series, window_start)
        self.context: StepContext | None = None
        self.stream = "stream"
        self.late = 0

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

    # -- the step ------------------------------------------------------------------------------

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame | None:
        if batch is None or batch.empty:
            return None
        if self.lateness is None:
            self.lateness = 0.0
        fields = self.fields or field_columns(batch)
        if self.fields is None:
            self.fields = fields
        ts = batch[TIME].to_numpy(dtype="datetime64[ns]").view("int64") if batch[TIME].dt.tz is None else \
            batch[TIME].dt.tz_convert(None).to_numpy(dtype="datetime64[ns]").view("int64")
        if "stream" in batch.columns and len(batch):
            self.stream = str(batch["stream"].iat[0])
        partial = self._partials(batch[SERIES].array, ts, batch, fields)
        partial = self._assign(partial)
        on_time = self._split_late(partial, batch)
        self._state = _merge(self._state, on_time, ["series", "wstart"] if self.window_kind != "session" else None)
        if self.window_kind == "session":
            self._state = self._sessionize(self._state)
        newest = int(ts.max())
        mark = newest - int(self.lateness * _NS)
        self.watermark = mark if self.watermark is None else max(self.watermark, mark)
        return self._emit(closed_only=True)

    def flush(self) -> pd.DataFrame | None:
        """Emit every open window (at stop, or when the source has ended)."""
        return self._emit(closed_only=False)

    @property
    def open_windows(self) -> int:
        return 0 if self._state is None else len(self._state)

    # -- internals -----------------------------------------------------------------------------

    def _partials(self, series: Any, ts: np.ndarray, batch: pd.DataFrame, fields: list[str]) -> pd.DataFrame:
        data: dict[str, Any] = {"series": series, "t": ts}
        for f in fields:
            v = batch[f].to_numpy(dtype="float64")
            finite = np.isfinite(v)
            data[f"{f}|n"] = finite.astype(np.int64)
            data[f"{f}|v"] = np.where(finite, v, np.nan)
        return pd.DataFrame(data)

    def _assign(self, rows: pd.DataFrame) -> pd.DataFrame:
        """Give each record its window(s): a ``wstart`` (and for sessions its own one-point span)."""
        t = rows["t"].to_numpy()
        if self.window_kind == "tumbling":
            rows["wstart"] = t - np.mod(t, self.size.value)
            return _reduce(rows, self.fields or [], ["series", "wstart"])
        if self.window_kind == "sliding":
            base = t - np.mod(t, self.slide.value)
            copies = self.size.value // self.slide.value
            parts = []
            for j in range(copies):
                part = rows.copy()
                part["wstart"] = base - j * self.slide.value
                parts.append(part)
            return _reduce(pd.concat(parts, ignore_index=True), self.fields or [], ["series", "wstart"])
        rows["wstart"] = t
        rows["wend"] = t
        return _reduce(rows, self.fields or [], ["series", "wstart", "wend"])

    def _window_end(self, frame: pd.DataFrame) -> np.ndarray:
        if self.window_kind == "session":
            return frame["wend"].to_numpy() + self.size.value
        return frame["wstart"].to_numpy() + self.size.value

    def _split_late(self, partial: pd.DataFrame, batch: pd.DataFrame) -> pd.DataFrame:
        if self.watermark is None or partial.empty:
            return partial
        ends = self._window_end(partial)
        late = ends <= self.watermark
        if self.window_kind == "session" and self._state is not None and not self._state.empty and late.any():
            late &= ~self._joins_open_session(partial)
        if not late.any():
            return partial
        self._dead_letter(partial.loc[late], batch)
        return partial.loc[~late]

    def _joins_open_session(self, partial: pd.DataFrame) -> np.ndarray:
        state = self._state
        assert state is not None
        bounds = state.groupby("series")[["wstart", "wend"]].agg({"wstart": "min", "wend": "max"})
        lo = partial["series"].map(bounds["wstart"]).to_numpy(dtype="float64")
        hi = partial["series"].map(bounds["wend"]).to_numpy(dtype="float64")
        t = partial["wstart"].to_numpy(dtype="float64")
        gap = float(self.size.value)
        return (t >= lo - gap) & (t <= hi + gap)

    def _dead_letter(self, late: pd.DataFrame, batch: pd.DataFrame) -> None:
        keys = late[["series", "wstart"]]
        ts_ns = batch[TIME].dt.tz_convert(None).to_numpy(dtype="datetime64[ns]").view("int64")
        if self.window_kind == "tumbling":
            starts = ts_ns - np.mod(ts_ns, self.size.value)
        elif self.window_kind == "sliding":
            starts = ts_ns - np.mod(ts_ns, self.slide.value)  # the newest window the record belongs to
        else:
            starts = ts_ns
        rows = pd.DataFrame({"series": batch[SERIES].astype(object).to_numpy(), "wstart": starts})
        hit = rows.merge(keys.drop_duplicates(), on=["series", "wstart"], how="left", indicator=True)["_merge"]
        mask = (hit == "both").to_numpy()
        records = batch.loc[mask]
        self.late += len(records)
        if self.context is None or records.empty:
            return
        dead = make_dead_letters(records, self.stream, "late",
                                 "window already emitted (event time behind the watermark)")
        self.context.dead_letters.put(dead)

    def _sessionize(self, state: pd.DataFrame) -> pd.DataFrame:
        """Merge point-spans and open sessions of a series that lie within the gap of each other."""
        if state.empty:
            return state
        state = state.sort_values(["series", "wstart"], kind="mergesort").reset_index(drop=True)
        reach = state.groupby("series", sort=False)["wend"].cummax()
        prev = reach.groupby(state["series"], sort=False).shift(1)
        new_series = state["series"].ne(state["series"].shift(1))
        gap = float(self.size.value)
        starts = new_series | (state["wstart"].astype("float64") - prev.astype("float64") > gap)
        state["session"] = starts.cumsum()
        merged = _reduce_partials(state, self.fields or [], ["series", "session"], span=True)
        return merged.drop(columns="session")

    def _emit(self, closed_only: bool) -> pd.DataFrame | None:
        state = self._state
        if state is None or state.empty:
            return None
        if closed_only:
            if self.watermark is None:
                return None
            ends = self._window_end(state)
            closed = ends <= self.watermark
            if not closed.any():
                return None
            out, self._state = state.loc[closed], state.loc[~closed].reset_index(drop=True)
        else:
            out, self._state = state, None
        return self._finish(out)

    def _finish(self, parts: pd.DataFrame) -> pd.DataFrame:
        parts = parts.sort_values(["wstart", "series"], kind="mergesort")
        start = parts["wstart"].to_numpy()
        end = self._window_end(parts)
        result: dict[str, Any] = {
            "stream": pd.array([self.stream] * len(parts), dtype="string"),
            "series": pd.array(parts["series"].to_numpy(dtype=object), dtype="string"),
            "window_start": pd.to_datetime(start, utc=True),
            "window_end": pd.to_datetime(end, utc=True),
        }
        for f in self.fields or []:
            n = parts[f"{f}|n"].to_numpy()
            s = parts[f"{f}|sum"].to_numpy()
            sq = parts[f"{f}|sq"].to_numpy()
            with np.errstate(invalid="ignore", divide="ignore"):
                mean = np.where(n > 0, s / np.maximum(n, 1), np.nan)
                var = np.where(n > 1, (sq - s * s / np.maximum(n, 1)) / np.maximum(n - 1, 1), np.nan)
            var = np.where(np.isfinite(var), np.maximum(var, 0.0), np.nan)
            values = {
                "count": n, "sum": s, "mean": mean, "min": parts[f"{f}|min"].to_numpy(),
                "max": parts[f"{f}|max"].to_numpy(), "first": parts[f"{f}|first"].to_numpy(),
                "last": parts[f"{f}|last"].to_numpy(), "var": var, "std": np.sqrt(var),
            }
            for a in self.agg:
                result[f"{f}_{a}"] = values[a]
        return pd.DataFrame(result).reset_index(drop=True)


def _reduce(rows: pd.DataFrame, fields: list[str], keys: list[str]) -> pd.DataFrame:
    """Reduce one-record rows (``t``, ``<f>|n``, ``<f>|v``) to partials per key."""
    if not rows["t"].is_monotonic_increasing:
        rows = rows.sort_values("t", kind="mergesort")
    spec: dict[str, tuple[str, str]] = {}
    for f in fields:
        v = f"{f}|v"
        rows[f"{f}|sq"] = rows[v] * rows[v]
        spec[f"{f}|n"] = (f"{f}|n", "sum")
        spec[f"{f}|sum"] = (v, "sum")
        spec[f"{f}|sq"] = (f"{f}|sq", "sum")
        spec[f"{f}|min"] = (v, "min")
        spec[f"{f}|max"] = (v, "max")
        spec[f"{f}|first"] = (v, "first")
        spec[f"{f}|last"] = (v, "last")
        spec[f"{f}|first_ts"] = ("t", "min")
        spec[f"{f}|last_ts"] = ("t", "max")
    if "wend" in keys:
        keys = [k for k in keys if k != "wend"]
        spec["wend"] = ("wend", "max")
    out = rows.groupby(keys, sort=False, observed=True).agg(**spec).reset_index()
    # partials are few (one per series and window): plain strings merge across batches safely
    out["series"] = out["series"].astype(object)
    return out


def _reduce_partials(frame: pd.DataFrame, fields: list[str], keys: list[str], span: bool = False) -> pd.DataFrame:
    """Merge partials that share a key: sums add, extremes combine, first/last follow event time."""
    spec: dict[str, tuple[str, str]] = {}
    for f in fields:
        for part, how in (("n", "sum"), ("sum", "sum"), ("sq", "sum"), ("min", "min"), ("max", "max"),
                          ("first_ts", "min"), ("last_ts", "max")):
            spec[f"{f}|{part}"] = (f"{f}|{part}", how)
    if span:
        spec["wstart"] = ("wstart", "min")
        spec["wend"] = ("wend", "max")
    grouped = frame.groupby(keys, sort=False, observed=True)
    out = grouped.agg(**spec)
    for f in fields:
        first = frame.sort_values(f"{f}|first_ts", kind="mergesort").groupby(
            keys, sort=False, observed=True)[f"{f}|first"].first()
        last = frame.sort_values(f"{f}|last_ts", kind="mergesort").groupby(
            keys, sort=False, observed=True)[f"{f}|last"].last()
        out[f"{f}|first"] = first.reindex(out.index)
        out[f"{f}|last"] = last.reindex(out.index)
    return out.reset_index()


def _merge(state: pd.DataFrame | None, partial: pd.DataFrame, keys: list[str] | None) -> pd.DataFrame:
    if state is None or state.empty:
        return partial.reset_index(drop=True)
    if partial.empty:
        return state
    both = pd.concat([state, partial], ignore_index=True)
    if keys is None:  # sessions are merged by _sessionize
        return both
    fields = sorted({c.split("|")[0] for c in both.columns if "|" in c})
    return _reduce_partials(both, fields, keys)


def _seconds(value: str | float | pd.Timedelta) -> float:
    if isinstance(value, (int, float)):
        return float(value)
    return pd.Timedelta(value).total_seconds()
