"""Rolling-origin backtests of forecasters: MAE, MASE, sMAPE and interval coverage.

For each of ``folds`` origins — the last one ``horizon`` points before the end, the others ``stride``
points apart going back — a fresh forecaster learns every point before the origin and forecasts
``horizon`` points, which are compared with what happened. Forecast steps with no observation (gaps)
are left out of the errors.

Metrics
-------
``mae``       mean absolute error.
``mase``      MAE divided by the in-sample MAE of the seasonal naive forecast on the training points
              (season ``m``; ``m = 1``: the naive forecast). Below 1: better than (seasonal) naive
              in-sample. NaN when that scale is 0 (a constant training series).
``smape``     symmetric MAPE in percent, ``200·|y-ŷ|/(|y|+|ŷ|)`` averaged (0/0 counted as 0).
``coverage``  share of observations inside [lo, hi]; compare with ``level``.

Example
-------
>>> import numpy as np, pandas as pd
>>> ts = pd.date_range("2024-01-01", periods=24 * 30, freq="1h", tz="UTC")
>>> noise = np.random.default_rng(0).normal(0, 0.1, len(ts))
>>> y = pd.Series(10 + np.sin(np.arange(len(ts)) * 2 * np.pi / 24) + noise, index=ts)
>>> res = backtest(y, model="ets", horizon=24, folds=2)
>>> list(res.columns)[:4], bool((res["mase"] < 1).all())
(['series', 'origin', 'mae', 'mase'], True)

References
----------
Hyndman & Koehler, "Another look at measures of forecast accuracy", IJF 22 (2006) (MASE);
Tashman, "Out-of-sample tests of forecasting accuracy", IJF 16 (2000) (rolling origin).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd

from nexus_kernel.analysis.forecasting.frames import points_frame
from nexus_kernel.analysis.forecasting.registry import ModelLike, forecaster_name, make_forecaster
from nexus_kernel.analysis.seasonality import dominant_period
from nexus_kernel.records import SERIES, TIME

__all__ = ["backtest", "summarize", "mae", "mase", "smape", "coverage", "mase_scale"]


def mae(y: np.ndarray, yhat: np.ndarray) -> float:
    return float(np.mean(np.abs(np.asarray(y) - np.asarray(yhat))))


def mase_scale(train: np.ndarray, m: int = 1) -> float:
    """In-sample MAE of the (seasonal) naive forecast: the MASE denominator."""
    train = np.asarray(train, dtype="float64")
    m = max(1, int(m))
    if len(train) <= m:
        return float("nan")
    return float(np.mean(np.abs(train[m:] - train[:-m])))


def mase(y: np.ndarray, yhat: np.ndarray, train: np.ndarray, m: int = 1) -> float:
    scale = mase_scale(train, m)
    return mae(y, yhat) / scale if scale > 0 else float("nan")


def smape(y: np.ndarray, yhat: np.ndarray) -> float:
    y, yhat = np.asarray(y, dtype="float64"), np.asarray(yhat, dtype="float64")
    denom = np.abs(y) + np.abs(yhat)
    terms = np.divide(200.0 * np.abs(y - yhat), denom, out=np.zeros_like(denom), where=denom > 0)
    return float(np.mean(terms))


def coverage(y: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> float:
    y = np.asarray(y, dtype="float64")
    return float(np.mean((y >= np.asarray(lo)) & (y <= np.asarray(hi))))


def backtest(
    df: pd.DataFrame | pd.Series,
    model: ModelLike = "auto",
    horizon: int = 24,
    folds: int = 3,
    stride: int | None = None,
    level: float = 0.9,
    season: int | None = None,
    field: str | None = None,
    time_column: str = TIME,
    **options: Any,
) -> pd.DataFrame:
    """Rolling-origin backtest; one row per (series, origin).

    Parameters
    ----------
    df
        As for :func:`~nexus_kernel.analysis.forecasting.forecast` (a frame, or a Series with a DatetimeIndex).
    model, **options
        The forecaster (name, class or prototype) and its options.
    horizon
        Points forecast from each origin.
    folds, stride
        Number of origins and points between them (default ``horizon``).
    season
        Season of the MASE scale; default detected on each series' first training window (1 if none).
    field
        Value column (default: the only numeric one, else the first).

    Columns: ``series, origin, mae, mase, smape, coverage, n, seconds, model, season``.
    """
    frame, fields = points_frame(df, time_column, [field] if field else None)
    field = fields[0]
    if SERIES not in frame.columns:
        frame = frame.assign(**{SERIES: ""})
    stride = int(stride or horizon)
    name = forecaster_name(model)
    options.setdefault("background", False)
    rows = []
    for key, idx in frame.groupby(SERIES, sort=True, observed=True).indices.items():
        part = frame.iloc[idx].sort_values(TIME, kind="stable")
        ts = pd.DatetimeIndex(pd.to_datetime(part[TIME], utc=True))
        y = part[field].to_numpy(dtype="float64", na_value=np.nan)
        n = len(y)
        origins = [n - horizon - k * stride for k in range(folds - 1, -1, -1)]
        origins = [o for o in origins if o >= 2]
        if not origins:
            continue
        m = season or dominant_period(y[: origins[0]][np.isfinite(y[: origins[0]])]) or 1
        for origin in origins:
            train, test = y[:origin], y[origin:origin + horizon]
            started = time.perf_counter()
            f = make_forecaster(model, **options).learn(ts[:origin], train)
            out = f.forecast(horizon, level)
            seconds = time.perf_counter() - started
            # align on time: the forecaster's grid may differ from the raw rows
            merged = pd.DataFrame({"ts": ts[origin:origin + horizon], "y": test}).merge(out, on="ts")
            merged = merged[np.isfinite(merged["y"])]
            finite_train = train[np.isfinite(train)]
            if merged.empty:
                continue
            rows.append({
                "series": str(key), "origin": ts[origin],
                "mae": mae(merged["y"], merged["yhat"]),
                "mase": mase(merged["y"], merged["yhat"], finite_train, m),
                "smape": smape(merged["y"], merged["yhat"]),
                "coverage": coverage(merged["y"], merged["lo"], merged["hi"]),
                "n": len(merged), "seconds": seconds, "model": name, "season": int(m),
            })
    return pd.DataFrame(rows, columns=["series", "origin", "mae", "mase", "smape", "coverage", "n",
                                       "seconds", "model", "season"])


def summarize(results: pd.DataFrame) -> pd.DataFrame:
    """Mean of each metric per series and model, over the folds."""
    return (results.groupby(["series", "model"], sort=True)
            [["mae", "mase", "smape", "coverage", "seconds"]].mean().reset_index())
