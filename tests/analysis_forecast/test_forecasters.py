"""What each forecaster is for: accuracy on data it should handle, and the ETS filter algebra."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.signal import lfilter
from scipy.signal import lfiltic as scipy_lfiltic

from nexus_kernel.analysis import backtest
from nexus_kernel.analysis.forecasting import GradientBoosting, HoltWinters, SeasonalNaive
from nexus_kernel.analysis.forecasting.ets import ets_polynomials, lfiltic


def seasonal(n: int, period: int = 24, noise: float = 0.3, trend: float = 0.0, seed: int = 0) -> pd.Series:
    rng = np.random.default_rng(seed)
    ts = pd.date_range("2024-03-01", periods=n, freq="1h", tz="UTC")
    t = np.arange(n)
    return pd.Series(50 + 5 * np.sin(t * 2 * np.pi / period) + trend * t + rng.normal(0, noise, n), index=ts)


@pytest.mark.parametrize("trend", [False, True])
@pytest.mark.parametrize("m", [0, 7])
def test_ets_filter_is_the_holt_winters_recursion(trend: bool, m: int) -> None:
    """The (AR, MA) polynomials reproduce the textbook recursion's errors exactly."""
    rng = np.random.default_rng(1)
    alpha, beta, gamma, phi = 0.3, 0.05, 0.2, 0.9
    y = rng.normal(size=120).cumsum()
    level, slope = 0.5, 0.1
    season = list(rng.normal(size=max(m, 1)))
    errors = []
    for t, value in enumerate(y):
        s = season[t % m] if m else 0.0
        yhat = level + (phi * slope if trend else 0.0) + s
        e = value - yhat
        errors.append(e)
        level, slope = level + (phi * slope if trend else 0.0) + alpha * e, phi * slope + beta * e
        if m:
            season[t % m] = s + gamma * e
    ar, ma = ets_polynomials(alpha, beta, gamma, phi if trend else 1.0, trend, m)
    order = max(len(ar), len(ma))
    e = np.array(errors)
    # same errors from the filter once it is started from the recursion's own past
    zi = lfiltic(ar, ma, e[order - 1::-1], y[order - 1::-1])
    np.testing.assert_allclose(lfilter(ar, ma, y[order:], zi=zi)[0], e[order:], atol=1e-9)


def test_fast_lfiltic_equals_scipy() -> None:
    ar, ma = ets_polynomials(0.4, 0.1, 0.3, 0.95, True, 12)
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=30), rng.normal(size=30)
    np.testing.assert_allclose(lfiltic(ar, ma, y, x), scipy_lfiltic(ar, ma, y, x), atol=1e-12)
    np.testing.assert_allclose(lfiltic(ma, ar, y, x), scipy_lfiltic(ma, ar, y, x), atol=1e-12)


def test_ets_finds_the_season_and_beats_seasonal_naive() -> None:
    y = seasonal(24 * 40, noise=1.0)
    ours = backtest(y, model="ets", horizon=24, folds=3)
    naive = backtest(y, model="seasonal_naive", horizon=24, folds=3)
    assert (ours["season"] == 24).all()
    assert ours["mae"].mean() < 0.85 * naive["mae"].mean()


def test_ets_follows_a_trend() -> None:
    y = seasonal(24 * 30, noise=0.2, trend=0.2)
    f = HoltWinters(background=False).learn(y.index, y.to_numpy())
    assert f.params["trend"] and f.season_length == 24
    out = f.forecast(24)
    expected = 50 + 5 * np.sin(np.arange(720, 744) * 2 * np.pi / 24) + 0.2 * np.arange(720, 744)
    assert np.abs(out["yhat"].to_numpy() - expected).mean() < 1.0


def test_ets_without_season_on_a_random_walk() -> None:
    rng = np.random.default_rng(4)
    ts = pd.date_range("2024-01-01", periods=600, freq="1min", tz="UTC")
    y = rng.normal(size=600).cumsum()
    f = HoltWinters(background=False).learn(ts, y)
    assert f.season_length is None
    assert f.forecast(1)["yhat"].iloc[0] == pytest.approx(y[-1], abs=1.0)


def test_gbm_follows_a_level_beyond_training() -> None:
    """Predicting changes, the trees are not capped by the largest value seen in training."""
    y = seasonal(24 * 30, noise=0.2, trend=0.1)
    f = GradientBoosting(background=False, max_iter=60).learn(y.index, y.to_numpy())
    out = f.forecast(24)
    assert out["yhat"].mean() > y.iloc[-24:].mean()  # keeps climbing past the training maximum region
    truth = 50 + 5 * np.sin(np.arange(720, 744) * 2 * np.pi / 24) + 0.1 * np.arange(720, 744)
    assert np.abs(out["yhat"].to_numpy() - truth).mean() < 2.0
    assert f.features[-2:] == ["hour", "dayofweek"]


def test_seasonal_naive_repeats_the_last_season() -> None:
    y = seasonal(24 * 10)
    f = SeasonalNaive(background=False).learn(y.index, y.to_numpy())
    np.testing.assert_allclose(f.forecast(30)["yhat"].to_numpy(), np.r_[y.to_numpy()[-24:], y.to_numpy()[-24:-18]])


@pytest.mark.parametrize("name", ["ets", "gbm"])
def test_band_coverage_is_near_its_level(name: str) -> None:
    """Split-conformal bands: on stationary noise around a season, coverage lands near the level."""
    y = seasonal(24 * 45, noise=1.0, seed=11)
    res = backtest(y, model=name, horizon=12, folds=12, level=0.9, **({"max_iter": 40} if name == "gbm" else {}))
    cov = float(np.average(res["coverage"], weights=res["n"]))
    assert 0.75 <= cov <= 1.0


def test_online_update_moves_the_forecast() -> None:
    y = seasonal(24 * 20)
    f = HoltWinters(background=False, refit_every=10_000).learn(y.index[:400], y.to_numpy()[:400])
    params = f.params
    f.learn(y.index[400:], y.to_numpy()[400:] + 10.0)  # a level shift, learned without a refit
    assert f.params == params and f.refits == 1
    assert f.forecast(1)["yhat"].iloc[0] > y.iloc[-24] + 5.0


def test_ets_keeps_the_seasonal_naive_corner_when_it_forecasts_a_season_better() -> None:
    """A season that is a fixed random shape: repeating the last season is the best forecast."""
    rng = np.random.default_rng(8)
    shape = rng.normal(0, 5, 24)
    ts = pd.date_range("2024-01-01", periods=24 * 12, freq="1h", tz="UTC")
    y = np.tile(shape, 12) + rng.normal(0, 0.01, len(ts))
    truth = np.tile(shape, 13)[-24:]
    checked = HoltWinters(background=False).learn(ts, y).forecast(24)["yhat"].to_numpy()
    unchecked = HoltWinters(background=False, horizon_check=False).learn(ts, y).forecast(24)["yhat"].to_numpy()
    assert np.abs(checked - truth).mean() < 0.05
    assert np.abs(checked - truth).mean() <= np.abs(unchecked - truth).mean() + 1e-12
