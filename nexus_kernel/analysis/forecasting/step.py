"""``forecast(df)`` for notebooks and :class:`ForecastStep` for pipelines, monitors and the analyzer.

Both keep one forecaster per (series, field) and return rows of the ``forecasts`` table schema (see
:mod:`.frames`), ready to plot (``ts`` against ``yhat`` with a ``lo``–``hi`` band) and to
``store.append("forecasts", ...)``.

Example
-------
>>> import numpy as np, pandas as pd
>>> ts = pd.date_range("2024-01-01", periods=24 * 14, freq="1h", tz="UTC")
>>> df = pd.DataFrame({"ts": ts, "value": 10 + np.sin(np.arange(len(ts)) * 2 * np.pi / 24)})
>>> out = forecast(df, horizon="6h")
>>> list(out.columns[:5]), len(out)
(['ts', 'series', 'yhat', 'lo', 'hi'], 6)
>>> step = ForecastStep(horizon=3, background=False)
>>> len(step(df.assign(series="a"))), len(step.latest("a"))
(3, 3)
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd

from nexus_kernel.analysis.forecasting._base import BaseForecaster
from nexus_kernel.analysis.forecasting.frames import (forecast_rows, forecasts_frame, horizon_steps, points_frame,
                                                      stack_forecasts)
from nexus_kernel.analysis.forecasting.registry import ModelLike, forecaster_name, make_forecaster
from nexus_kernel.records import SERIES, STREAM, TIME

__all__ = ["forecast", "ForecastStep"]


def forecast(
    df: pd.DataFrame | pd.Series,
    horizon: str | pd.Timedelta | int = "1h",
    level: float = 0.9,
    model: ModelLike = "auto",
    fields: Sequence[str] | None = None,
    time: str = TIME,
    stream: str | None = None,
    **options: Any,
) -> pd.DataFrame:
    """Forecast every series (and field) of ``df`` ``horizon`` ahead of its last point.

    Parameters
    ----------
    df
        The shapes :func:`~nexus_kernel.analysis.detect` takes too (read by :func:`.frames.points_frame`):
        a Series with a DatetimeIndex (its name is the field), or a frame with a ``time`` column (a
        NAB-style ``timestamp`` column will do) or a DatetimeIndex and one or many numeric columns.
        Without a ``series`` column the frame is one series ``""``.
    horizon
        A duration (``"1h"``, a Timedelta: rounded up to whole sampling steps) or a number of steps.
    level
        Coverage of the ``lo``–``hi`` band.
    model
        ``"auto"``, a registered forecaster name (``"ets"``, ``"gbm"``, ``"seasonal_naive"``), a class
        or a prototype instance. An unknown name raises ``LookupError`` naming the known ones.
    fields
        Value columns to forecast; default every numeric non-key column, each forecast apart (``field``
        in the output says which).
    time
        Name of the time column in ``df``.
    stream
        Stream name for the output; default the frame's ``stream`` column (else ``""``).
    **options
        Passed to the forecaster (e.g. ``season=24``). Refits here run in the calling thread.

    Returns the ``forecasts`` schema with ``ts, series, yhat, lo, hi`` first. A series too short to know
    its step (one point) has no rows. Raises ``ValueError`` saying what is expected when ``df`` has no
    time or no numeric column.

    >>> import numpy as np, pandas as pd
    >>> ix = pd.date_range("2024-01-01", periods=48, freq="1h", tz="UTC")
    >>> wide = pd.DataFrame({"load": np.arange(48.0), "temp": np.ones(48)}, index=ix)
    >>> out = forecast(wide, horizon=2, model="seasonal_naive")
    >>> out.groupby("field").size().to_dict()
    {'load': 2, 'temp': 2}
    >>> len(forecast(wide["load"], horizon=2, model="seasonal_naive"))
    2
    """
    df, fields = points_frame(df, time, fields)
    if SERIES not in df.columns:
        df = df.assign(**{SERIES: ""})
    options.setdefault("background", False)
    name = forecaster_name(model)
    parts = []
    for key, rows in df.groupby(SERIES, sort=True, observed=True).indices.items():
        part = df.iloc[rows]
        stream_name = stream if stream is not None else (
            str(part[STREAM].iloc[0]) if STREAM in part.columns else "")
        for field in fields:
            f = make_forecaster(model, **options)
            f.learn(part[TIME], part[field].to_numpy(dtype="float64", na_value=np.nan))
            if f.step is None:
                continue
            out = f.forecast(horizon_steps(horizon, f.step), level)
            parts.append(forecast_rows(out, stream_name, str(key), field, name, f, level))
    return forecasts_frame(parts)


def _split_series(batch: pd.DataFrame, fields: Sequence[str]
                  ) -> Iterator[tuple[str, str, np.ndarray, list[np.ndarray]]]:
    """``(series, stream, ts, [values per field])`` per series of ``batch``, in sorted series order.

    One stable sort and ``np.split`` over the whole batch, times converted once: the same groups, in the
    same order and with rows in batch order, as ``groupby(SERIES, sort=True, observed=True)`` (rows whose
    series is missing belong to none) — without the pandas cost of ``iloc`` and ``to_datetime`` per series,
    which was most of a streaming batch's time. ``ts`` is ``datetime64[ns]`` (UTC), which
    :meth:`BaseForecaster.learn` takes without converting again.
    """
    codes, keys = pd.factorize(batch[SERIES], sort=True)
    order = np.argsort(codes, kind="stable")
    order = order[codes[order] >= 0]  # factorize codes a missing series -1, as groupby drops it
    cuts = np.flatnonzero(np.diff(codes[order])) + 1
    starts = np.r_[0, cuts] if len(order) else np.empty(0, dtype=np.int64)
    # as BaseForecaster.learn reads a time column (UTC, NaT kept: learn drops it), once for the batch
    ts = pd.DatetimeIndex(pd.to_datetime(batch[TIME], utc=True)).as_unit("ns").asi8[order].view("datetime64[ns]")
    values = [batch[f].to_numpy(dtype="float64", na_value=np.nan)[order] for f in fields]
    streams = batch[STREAM].to_numpy()[order][starts] if STREAM in batch.columns else None
    group_keys = keys[codes[order][starts]]
    split_ts = np.split(ts, cuts)
    split_values = [np.split(v, cuts) for v in values]
    for i, key in enumerate(group_keys):
        stream = str(streams[i]) if streams is not None else ""
        yield str(key), stream, split_ts[i], [v[i] for v in split_values]


class ForecastStep:
    """Learn each micro-batch, return fresh forecasts (``forecasts`` schema).

    Keeps one forecaster per (series, field); a series seen for the first time mid-stream gets a new
    one. After each batch, every (series, field) that received points and whose forecaster knows its
    step emits ``horizon`` rows — or only every ``every`` learned points, to thin the output. A listed
    field missing from a batch is skipped for that batch. Refits run in the background by default (see
    :class:`~nexus_kernel.analysis.forecasting.BaseForecaster`): a call never waits for a fit, so a view
    that must not block (a monitor page) can call this on its serving thread and read :meth:`latest`.

    Parameters
    ----------
    model, horizon, level, fields, **options
        As for :func:`forecast` (``background=False`` makes refits run in the call, reproducibly).
    every
        Emit a (series, field)'s forecast only when it has learned at least ``every`` grid points since
        its last one (its first: once it has ``every``). A grid point is one sampling step of that series
        (see :class:`~nexus_kernel.analysis.forecasting.BaseForecaster`: duplicates averaged into one, a
        gap's missing steps counted as they are filled), so the cadence is in the series' own time —
        ``every=100`` at a 0.1 s step refreshes each series' forecast every 10 s of its data, however the
        points are batched. Every call still learns every point; only the forecast rows are thinned.

    Caveats: series that start together and share a step reach their cadence in the same call, so their
    forecasts come in one batch (the cost of a call is uneven; its average is what ``every`` divides).
    """

    def __init__(
        self,
        model: ModelLike = "auto",
        horizon: str | pd.Timedelta | int = "1h",
        level: float = 0.9,
        fields: Sequence[str] | None = None,
        every: int = 1,
        **options: Any,
    ) -> None:
        self.model = model
        self.model_name = forecaster_name(model)  # fails now, with the known names, on a typo
        self.horizon = horizon
        self.level = float(level)
        self.fields = list(fields) if fields is not None else None
        self.every = max(1, int(every))
        self.options = options
        self.forecasters: dict[tuple[str, str], BaseForecaster] = {}
        self._streams: dict[str, str] = {}
        self._emitted: dict[tuple[str, str], int] = {}

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        if batch.empty:
            return forecasts_frame([])
        batch, fields = points_frame(batch, TIME, self.fields, missing="skip")
        if not fields:
            return forecasts_frame([])
        if SERIES not in batch.columns:
            batch = batch.assign(**{SERIES: ""})
        parts = []
        for key, stream, ts, values in _split_series(batch, fields):
            stream = self._streams[key] = stream
            for field, y in zip(fields, values):
                ident = (key, field)
                f = self.forecasters.get(ident)
                if f is None:
                    f = self.forecasters[ident] = make_forecaster(self.model, **self.options)
                f.learn(ts, y)
                # n_points first: it is an int, while ``step`` builds a Timedelta, on every learn
                if f.n_points - self._emitted.get(ident, 0) < self.every or f.step is None:
                    continue
                self._emitted[ident] = f.n_points
                parts.append(self._rows(ident, stream, f, f.step))
        return stack_forecasts(parts)

    def latest(self, series: str | Sequence[str] | None = None, fields: Sequence[str] | None = None
               ) -> pd.DataFrame:
        """The current forecast of ``series`` (default every one) from what was learned, learning
        nothing: a refit that finished meanwhile is used, a pending one is not waited for."""
        wanted = {series} if isinstance(series, str) else (set(series) if series is not None else None)
        parts = [self._rows((key, field), self._streams.get(key, ""), f, f.step)
                 for (key, field), f in sorted(self.forecasters.items())
                 if (wanted is None or key in wanted) and (fields is None or field in fields)
                 and f.step is not None]
        return stack_forecasts(parts)

    def _rows(self, ident: tuple[str, str], stream: str, f: BaseForecaster, step: pd.Timedelta
              ) -> tuple[pd.DataFrame, str, str, str, str, pd.Timedelta, float]:
        """One forecast and its labels, for :func:`.frames.stack_forecasts`."""
        out = f.forecast(horizon_steps(self.horizon, step), self.level)
        return out, stream, ident[0], ident[1], self.model_name, step, self.level

    def wait(self) -> None:
        """Finish every pending background refit."""
        for f in self.forecasters.values():
            f.wait()
