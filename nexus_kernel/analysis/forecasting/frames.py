"""Frames in and out of forecasting: points to forecast, and rows of the ``forecasts`` table.

Every caller of the forecasters (``forecast()``, :class:`~nexus_kernel.analysis.forecasting.ForecastStep`,
the backtests, the model pipeline) reads its input with :func:`points_frame` and writes its output with
:func:`forecast_rows` and :func:`forecasts_frame`, so the schema has one definition.

The ``forecasts`` schema is ``stream, series, field, model, made_at, ts, yhat, lo, hi, level``; frames are
built with ``ts, series, yhat, lo, hi`` first (plot-ready). ``made_at`` is the time of the newest grid point
a forecast was made from (its origin), not the wall clock: the same data gives the same rows, so storing a
forecast again is idempotent.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd

from nexus_kernel.analysis.forecasting._base import BaseForecaster
from nexus_kernel.records import TIME, field_columns

__all__ = ["FORECAST_COLUMNS", "points_frame", "horizon_steps", "forecast_rows", "forecasts_frame", "stack_forecasts"]

FORECAST_COLUMNS: tuple[str, ...] = (
    "stream", "series", "field", "model", "made_at", "ts", "yhat", "lo", "hi", "level",
)
_PLOT_FIRST = ("ts", "series", "yhat", "lo", "hi")
_COLUMNS = list(_PLOT_FIRST) + [c for c in FORECAST_COLUMNS if c not in _PLOT_FIRST]
_EMPTY: pd.DataFrame | None = None


def points_frame(
    df: pd.DataFrame | pd.Series,
    time: str = TIME,
    fields: Sequence[str] | None = None,
    missing: Literal["raise", "skip"] = "raise",
) -> tuple[pd.DataFrame, list[str]]:
    """``df`` with its time column named ``ts``, and the value fields to read: the one input shape.

    ``forecast()``, ``detect()``, the backtests and the model pipeline all read their input here, so a
    Series, a one-column and a many-column frame are taken alike by each of them.

    Parameters
    ----------
    df
        A frame with a ``time`` column (a NAB-style ``timestamp`` column is taken when ``time`` is
        absent) or a DatetimeIndex, with or without a ``series`` column; or a Series with a DatetimeIndex
        (its name, else ``"value"``, is the field).
    fields
        Value columns; default every numeric field column (:func:`nexus_kernel.records.field_columns`:
        not ``stream``, ``series``, ``ts``, ``seq`` or ``attrs``).
    missing
        A listed field absent from ``df``: ``"raise"`` (a notebook call: say so) or ``"skip"`` (a stream's
        batch need not carry every field; the list may come back empty).

    Raises ``ValueError`` saying what is expected: without a time, or (``missing="raise"``) with no
    numeric field.

    >>> import pandas as pd
    >>> ix = pd.date_range("2024-01-01", periods=3, freq="h", tz="UTC")
    >>> frame, fields = points_frame(pd.DataFrame({"load": [1.0, 2, 3], "temp": [5.0, 6, 7]}, index=ix))
    >>> list(frame.columns), fields
    (['ts', 'load', 'temp'], ['load', 'temp'])
    >>> points_frame(pd.Series([1.0, 2.0], index=ix[:2], name="load"))[1]
    ['load']
    """
    if isinstance(df, pd.Series):
        if not isinstance(df.index, pd.DatetimeIndex):
            raise ValueError("expected a Series with a DatetimeIndex (or a frame with a time column); "
                             f"got a {type(df.index).__name__}")
        name = df.name if df.name is not None and str(df.name) not in (TIME, "") else "value"
        df = pd.DataFrame({TIME: df.index, str(name): df.to_numpy()})
        time = TIME
    elif not isinstance(df, pd.DataFrame):
        raise ValueError(f"expected a DataFrame or a Series with a DatetimeIndex; got {type(df).__name__}")
    if time not in df.columns and time == TIME and "timestamp" in df.columns:
        time = "timestamp"  # a replayed NAB-style file
    if time not in df.columns:
        if isinstance(df.index, pd.DatetimeIndex):
            df = df.rename_axis(time).reset_index()
        else:
            raise ValueError(f"expected a time column '{time}' or a DatetimeIndex; got columns "
                             f"{list(df.columns)} and a {type(df.index).__name__}")
    df = df.rename(columns={time: TIME}) if time != TIME else df
    if fields is None:
        chosen = [c for c in field_columns(df) if pd.api.types.is_numeric_dtype(df[c])]
    else:
        chosen = list(fields)
    absent = [f for f in chosen if f not in df.columns]
    if missing == "skip":
        chosen = [f for f in chosen if f in df.columns]
    elif absent:
        raise ValueError(f"no numeric field {absent} in columns {list(df.columns)}")
    if not chosen and missing == "raise":
        raise ValueError("no numeric field: expected at least one numeric value column besides "
                         f"stream/series/ts/seq/attrs; got {dict(df.dtypes.astype(str))}")
    return df, chosen


def horizon_steps(horizon: str | pd.Timedelta | int, step: pd.Timedelta) -> int:
    """Steps of ``step`` that cover ``horizon`` (a duration, rounded up; or a number of steps)."""
    if isinstance(horizon, (int, np.integer)):
        if horizon < 0:
            raise ValueError("horizon must be >= 0 steps")
        return int(horizon)
    span = pd.Timedelta(horizon)
    if span <= pd.Timedelta(0):
        raise ValueError("horizon must be positive")
    return int(np.ceil(span / step))


def forecast_rows(out: pd.DataFrame, stream: str, series: str, field: str, model: str,
                  forecaster: BaseForecaster, level: float) -> pd.DataFrame:
    """A forecaster's ``ts, yhat, lo, hi`` frame labelled with the keys of the ``forecasts`` table."""
    made_at = out["ts"].iloc[0] - forecaster.step if len(out) else pd.NaT
    # one constructor broadcasting the labels: ``out.assign(...)`` inserted them a column at a time,
    # about 3 ms a forecast with pandas' string columns, most of what a live stream paid to forecast
    columns: dict[str, object] = {c: out[c].array for c in out.columns}
    columns.update(stream=stream, series=series, field=field, model=model, made_at=made_at, level=level)
    return pd.DataFrame(columns, index=out.index)


def forecasts_frame(parts: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Labelled parts as one frame of the ``forecasts`` schema (typed, plot columns first; empty: no rows)."""
    global _EMPTY
    if not parts:
        # a streaming step that forecasts once per many points returns this on most calls: built once,
        # because typing an empty frame column by column cost more than the learning around it
        if _EMPTY is None:
            _EMPTY = _typed(pd.DataFrame({c: pd.Series([], dtype="float64") for c in _COLUMNS}))
        return _EMPTY.copy()
    return _typed(pd.concat(parts, ignore_index=True)[_COLUMNS])


def stack_forecasts(items: Sequence[tuple[pd.DataFrame, str, str, str, str, pd.Timedelta, float]]
                    ) -> pd.DataFrame:
    """``forecasts_frame([forecast_rows(out, stream, series, field, model, f, level), ...])`` in one go.

    ``items`` are ``(out, stream, series, field, model, step, level)`` with ``out`` a forecaster's
    ``ts, yhat, lo, hi`` frame and ``step`` its sampling interval. The same frame, built from stacked
    arrays with the labels repeated — labelling and concatenating a small frame per forecast cost a few
    milliseconds each, which a step emitting many series' forecasts in one batch paid per series.
    """
    items = [it for it in items if len(it[0])]
    if not items:
        return forecasts_frame([])
    lengths = np.array([len(it[0]) for it in items])
    ts = np.concatenate([pd.DatetimeIndex(it[0]["ts"]).as_unit("ns").asi8 for it in items])
    made = np.array([int(pd.DatetimeIndex(it[0]["ts"][:1]).as_unit("ns").asi8[0]) - int(pd.Timedelta(it[5]).value)
                     for it in items], dtype=np.int64)

    def labels(k: int) -> pd.api.extensions.ExtensionArray:
        return pd.array(np.repeat(np.array([str(it[k]) for it in items], dtype=object), lengths), dtype="string")

    def values(c: str) -> np.ndarray:
        return np.concatenate([it[0][c].to_numpy(dtype="float64") for it in items])

    frame = pd.DataFrame({
        "ts": pd.to_datetime(ts, utc=True), "series": labels(2), "yhat": values("yhat"), "lo": values("lo"),
        "hi": values("hi"), "stream": labels(1), "field": labels(3), "model": labels(4),
        "made_at": pd.to_datetime(np.repeat(made, lengths), utc=True),
        "level": np.repeat(np.array([float(it[6]) for it in items]), lengths),
    })
    return frame[_COLUMNS]


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    for c in ("stream", "series", "field", "model"):
        frame[c] = frame[c].astype("string")
    for c in ("ts", "made_at"):
        frame[c] = pd.to_datetime(frame[c], utc=True).astype("datetime64[ns, UTC]")
    for c in ("yhat", "lo", "hi", "level"):
        frame[c] = frame[c].astype("float64")
    return frame.reset_index(drop=True)
