"""The notebook surface: forecast(df), ForecastStep, backtest and its metrics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import nexus_kernel.analysis as nka
from nexus_kernel.analysis import FORECAST_COLUMNS, ForecastStep, backtest, forecast, summarize
from nexus_kernel.analysis.forecasting import coverage, mae, mase, mase_scale, smape


def hourly(n: int = 24 * 14, series: str = "a", scale: float = 1.0, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ts = pd.date_range("2024-05-01", periods=n, freq="1h", tz="UTC")
    y = scale * (10 + np.sin(np.arange(n) * 2 * np.pi / 24)) + rng.normal(0, 0.1, n)
    return pd.DataFrame({"stream": "pumps", "series": series, "ts": ts, "seq": np.arange(n), "value": y})


def test_forecast_is_plot_ready_and_in_the_forecasts_schema() -> None:
    df = pd.concat([hourly(series="a"), hourly(series="b", scale=3.0, seed=1)])
    out = forecast(df, horizon="6h", level=0.8)
    assert list(out.columns[:5]) == ["ts", "series", "yhat", "lo", "hi"]
    assert set(FORECAST_COLUMNS) == set(out.columns)
    assert len(out) == 12 and set(out["series"]) == {"a", "b"}
    assert str(out["ts"].dtype) == "datetime64[ns, UTC]" and str(out["made_at"].dtype) == "datetime64[ns, UTC]"
    assert (out["stream"] == "pumps").all() and (out["field"] == "value").all() and (out["model"] == "auto").all()
    assert (out["level"] == 0.8).all()
    a = out[out["series"] == "a"]
    assert a["made_at"].iloc[0] == df["ts"].max()  # the origin: the newest point used
    assert a["ts"].iloc[0] == df["ts"].max() + pd.Timedelta("1h")
    truth = 10 + np.sin(np.arange(24 * 14, 24 * 14 + 6) * 2 * np.pi / 24)
    assert np.abs(a["yhat"].to_numpy() - truth).max() < 0.3
    assert ((out["lo"] <= out["yhat"]) & (out["yhat"] <= out["hi"])).all()


def test_forecast_accepts_a_series_and_a_plain_frame() -> None:
    df = hourly()
    s = pd.Series(df["value"].to_numpy(), index=pd.DatetimeIndex(df["ts"]), name="load")
    out = forecast(s, horizon=3)
    assert len(out) == 3 and (out["field"] == "load").all() and (out["series"] == "").all()
    plain = df[["ts", "value"]].rename(columns={"ts": "time"})
    out2 = forecast(plain, horizon="2h30min", time="time", stream="x", model="seasonal_naive")
    assert len(out2) == 3 and (out2["stream"] == "x").all()  # 2.5 h rounds up to 3 steps


def test_forecast_model_choice_and_errors() -> None:
    df = hourly()
    assert (forecast(df, horizon=2, model="gbm", max_iter=20)["model"] == "gbm").all()
    known = r"\(known: auto, ets, gbm, seasonal_naive\)"
    with pytest.raises(LookupError, match=rf"unknown forecasters 'nope' {known}"):
        forecast(df, model="nope")
    with pytest.raises(ValueError, match="no numeric field"):
        forecast(df[["ts", "series"]])
    with pytest.raises(ValueError, match="DatetimeIndex"):
        forecast(pd.Series([1.0, 2.0]))


def test_forecast_of_a_single_point_is_empty_not_an_error() -> None:
    out = forecast(hourly().iloc[:1])
    assert out.empty and list(out.columns[:5]) == ["ts", "series", "yhat", "lo", "hi"]


def test_forecast_step_emits_every_n_points() -> None:
    df = hourly()
    step = ForecastStep(horizon=2, every=50, background=False)
    emitted = [len(step(df.iloc[i:i + 10])) for i in range(0, 200, 10)]
    # 2 rows whenever 50 new points have been learned since the last emission (the first after 1 point)
    assert emitted.count(2) == 4 and set(emitted) <= {0, 2}
    step.wait()


def test_forecast_exports_from_the_package() -> None:
    assert nka.forecast is forecast and "ets" in nka.forecasters


def test_metrics() -> None:
    y = np.array([1.0, 2.0, 3.0, 4.0])
    assert mae(y, y + 1) == 1.0
    assert mase_scale(np.array([1.0, 3.0, 5.0]), 1) == 2.0
    assert mase(y, y + 1, np.array([1.0, 3.0, 5.0])) == 0.5
    assert np.isnan(mase(y, y, np.full(5, 2.0)))  # constant training: no scale
    assert smape(np.array([0.0, 1.0]), np.array([0.0, 3.0])) == pytest.approx(50.0)
    assert coverage(y, y - 1, y + [1, 1, -2, 1]) == 0.75


def test_backtest_rows_and_summary() -> None:
    df = pd.concat([hourly(series="a"), hourly(series="b", seed=2)])
    res = backtest(df, model="ets", horizon=12, folds=2)
    assert len(res) == 4 and set(res["series"]) == {"a", "b"}
    assert (res["n"] == 12).all() and (res["season"] == 24).all()
    assert res["origin"].is_monotonic_increasing or set(res.groupby("series")["origin"].nunique()) == {2}
    summary = summarize(res)
    assert list(summary["series"]) == ["a", "b"] and (summary["mase"] < 1).all()


def test_backtest_skips_gap_steps() -> None:
    df = hourly()
    df = df.drop(index=df.index[-5:-2])  # three missing hours
    res = backtest(df, model="seasonal_naive", horizon=12, folds=1)
    # the origin is 12 rows before the end; its 12 forecast hours hold 10 of those rows (the last two
    # rows lie beyond the horizon because of the gap)
    assert res["n"].iloc[0] == 10
