"""``forecast(df)`` for notebooks and :class:`ForecastStep` for pipelines.

Both keep one forecaster per (series, field) and return rows of the ``forecasts`` table schema
(``stream, series, field, model, made_at, ts, yhat, lo, hi, level``), ready to plot (``ts`` against
``yhat`` with a ``lo``–``hi`` band) and to ``store.append("forecasts", ...)``.

``made_at`` is the time of the newest point a forecast was made from (its origin), not the wall clock:
the same data gives the same rows, so re-running a forecast is idempotent in the store.

Example
-------
>>> import numpy as np, pandas as pd
>>> ts = pd.date_range("2024-01-01", periods=24 * 14, freq="1h", tz="UTC")
>>> df = pd.DataFrame({"ts": ts, "value": 10 + np.sin(np.arange(len(ts)) * 2 * np.pi / 24)})
>>> out = forecast(df, horizon="6h")
>>> list(out.columns[:5]), len(out)
(['ts', 'series', 'yhat', 'lo', 'hi'], 6)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from nexus_kernel.analysis.forecasters import BaseForecaster, forecasters
from nexus_kernel.events import SERIES, STREAM, TIME, field_columns

__all__ = ["forecast", "ForecastStep", "FORECAST_COLUMNS", "make_forecaster"]

FORECAST_COLUMNS: tuple[str, ...] = (
    "stream", "series", "field", "model", "made_at", "ts", "yhat", "lo", "hi", "level",
)
_PLOT_FIRST = ["ts", "series", "yhat", "lo", "hi"]

#: the model "auto" stands for: Holt-Winters with a detected season is accurate on the seasonal
#: series streams mostly carry and fits in a fraction of a second (bench/forecast.py)
AUTO_MODEL = "ets"


def make_forecaster(model: str | BaseForecaster | type = "auto", **options: Any) -> BaseForecaster:
    """A fresh forecaster from a registered name (``"auto"`` → ``"ets"``), a class, or a prototype
    instance (copied, unfitted state included)."""
    if isinstance(model, BaseForecaster):
        import copy

        return copy.deepcopy(model)
    if isinstance(model, type):
        return model(**options)
    name = AUTO_MODEL if model == "auto" else model
    return forecasters.get(name)(**options)


def _model_name(model: str | BaseForecaster | type) -> str:
    if isinstance(model, str):
        return AUTO_MODEL if model == "auto" else model
    cls = model if isinstance(model, type) else type(model)
    for name, member in forecasters.items():
        if member is cls:
            return name
    return cls.__name__


def _steps(horizon: str | pd.Timedelta | int, step: pd.Timedelta) -> int:
    if isinstance(horizon, (int, np.integer)):
        return int(horizon)
    span = pd.Timedelta(horizon)
    if span <= pd.Timedelta(0):
        raise ValueError("horizon must be positive")
    return int(np.ceil(span / step))


def _normalise(df: pd.DataFrame | pd.Series, time: str, fields: Sequence[str] | None) -> tuple[pd.DataFrame, list[str]]:
    if isinstance(df, pd.Series):
        if not isinstance(df.index, pd.DatetimeIndex):
            raise ValueError("a Series needs a DatetimeIndex")
        df = pd.DataFrame({TIME: df.index, df.name or "value": df.to_numpy()})
        time = TIME
    if time not in df.columns:
        if isinstance(df.index, pd.DatetimeIndex):
            df = df.rename_axis(time).reset_index()
        else:
            raise ValueError(f"no '{time}' column and no DatetimeIndex")
    df = df.rename(columns={time: TIME}) if time != TIME else df
    if fields is None:
        fields = [c for c in field_columns(df) if pd.api.types.is_numeric_dtype(df[c])]
    else:
        fields = list(fields)
    missing = [f for f in fields if f not in df.columns]
    if missing or not fields:
        raise ValueError(f"no numeric field to forecast (missing: {missing})" if missing else
                         "no numeric field to forecast")
    return df, fields


def forecast(
    df: pd.DataFrame | pd.Series,
    horizon: str | pd.Timedelta | int = "1h",
    level: float = 0.9,
    model: str | BaseForecaster | type = "auto",
    fields: Sequence[str] | None = None,
    time: str = TIME,
    stream: str | None = None,
    **options: Any,
) -> pd.DataFrame:
    """Forecast every series (and field) of ``df`` ``horizon`` ahead of its last point.

    Parameters
    ----------
    df
        A batch-contract frame, any frame with a time column (or DatetimeIndex) and numeric columns, or a
        Series with a DatetimeIndex. Without a ``series`` column the frame is one series ``""``.
    horizon
        A duration (``"1h"``, a Timedelta: rounded up to whole sampling steps) or a number of steps.
    level
        Coverage of the ``lo``–``hi`` band.
    model
        ``"auto"``, a registered forecaster name (``"ets"``, ``"gbm"``, ``"seasonal_naive"``), a class
        or a prototype instance.
    fields
        Value columns to forecast; default every numeric non-key column.
    stream
        Stream name for the output; default the frame's ``stream`` column (else ``""``).
    **options
        Passed to the forecaster (e.g. ``season=24``). Refits here run in the calling thread.

    Returns the ``forecasts`` schema with ``ts, series, yhat, lo, hi`` first. A series too short to know
    its step (one point) has no rows.
    """
    df, fields = _normalise(df, time, fields)
    if SERIES not in df.columns:
        df = df.assign(**{SERIES: ""})
    options.setdefault("background", False)
    name = _model_name(model)
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
            out = f.forecast(_steps(horizon, f.step), level)
            parts.append(_rows(out, stream_name, str(key), field, name, f, level))
    return _assemble(parts)


def _rows(out: pd.DataFrame, stream: str, series: str, field: str, model: str, f: BaseForecaster,
          level: float) -> pd.DataFrame:
    made_at = out["ts"].iloc[0] - f.step if len(out) else pd.NaT
    return out.assign(stream=stream, series=series, field=field, model=model, made_at=made_at, level=level)


def _assemble(parts: list[pd.DataFrame]) -> pd.DataFrame:
    columns = _PLOT_FIRST + [c for c in FORECAST_COLUMNS if c not in _PLOT_FIRST]
    if not parts:
        frame = pd.DataFrame({c: pd.Series([], dtype="float64") for c in columns})
    else:
        frame = pd.concat(parts, ignore_index=True)[columns]
    for c in ("stream", "series", "field", "model"):
        frame[c] = frame[c].astype("string")
    for c in ("ts", "made_at"):
        frame[c] = pd.to_datetime(frame[c], utc=True).astype("datetime64[ns, UTC]")
    for c in ("yhat", "lo", "hi", "level"):
        frame[c] = frame[c].astype("float64")
    return frame.reset_index(drop=True)


class ForecastStep:
    """Pipeline step: learn each micro-batch, return fresh forecasts (``forecasts`` schema).

    Keeps one forecaster per (series, field); a series seen for the first time mid-stream gets a new
    one. After each batch, every (series, field) that received points and whose forecaster knows its
    step emits ``horizon`` rows — or only every ``every`` learned points, to thin the output.
    Refits run in the background (see :class:`~nexus_kernel.analysis.forecasters.BaseForecaster`).

    Parameters
    ----------
    model, horizon, level, fields, **options
        As for :func:`forecast`.
    every
        Emit a series' forecast only when it has learned at least this many points since its last one.
    """

    def __init__(
        self,
        model: str | BaseForecaster | type = "auto",
        horizon: str | pd.Timedelta | int = "1h",
        level: float = 0.9,
        fields: Sequence[str] | None = None,
        every: int = 1,
        **options: Any,
    ) -> None:
        self.model = model
        self.model_name = _model_name(model)
        self.horizon = horizon
        self.level = float(level)
        self.fields = list(fields) if fields is not None else None
        self.every = max(1, int(every))
        self.options = options
        self.forecasters: dict[tuple[str, str], BaseForecaster] = {}
        self._emitted: dict[tuple[str, str], int] = {}

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        if batch.empty:
            return _assemble([])
        batch, fields = _normalise(batch, TIME, self.fields)
        if SERIES not in batch.columns:
            batch = batch.assign(**{SERIES: ""})
        parts = []
        for key, rows in batch.groupby(SERIES, sort=True, observed=True).indices.items():
            part = batch.iloc[rows]
            stream = str(part[STREAM].iloc[0]) if STREAM in part.columns else ""
            for field in fields:
                ident = (str(key), field)
                f = self.forecasters.get(ident)
                if f is None:
                    f = self.forecasters[ident] = make_forecaster(self.model, **self.options)
                f.learn(part[TIME], part[field].to_numpy(dtype="float64", na_value=np.nan))
                if f.step is None or f.n_points - self._emitted.get(ident, 0) < self.every:
                    continue
                self._emitted[ident] = f.n_points
                out = f.forecast(_steps(self.horizon, f.step), self.level)
                parts.append(_rows(out, stream, str(key), field, self.model_name, f, self.level))
        return _assemble(parts)

    def wait(self) -> None:
        """Finish every pending background refit."""
        for f in self.forecasters.values():
            f.wait()
