"""Issue 13, deliverable 6: "auto" picks per series, on a backtest over its own last seasons, the
candidate that forecast them best — seasonal naive when it wins on the recent past — and is the default.

(The registry conformance suite, tests/analysis_forecast/test_conformance.py, runs against "auto" too:
it iterates over every registered name.)
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nexus_kernel.analysis import Analyzer
from nexus_kernel.analysis.forecasting import (
    AUTO_MODEL,
    AutoForecaster,
    HoltWinters,
    SeasonalNaive,
    forecast,
    forecaster_class,
)

M = 24


def hours(n: int) -> pd.DatetimeIndex:
    return pd.date_range("2024-01-01", periods=n, freq="1h", tz="UTC")


def drifting_season(n: int = M * 20, seed: int = 1) -> np.ndarray:
    """Each day is the day before plus a fresh change per hour: the last day is the best guess of the next
    (a seasonal random walk), so seasonal naive forecasts it best."""
    rng = np.random.default_rng(seed)
    days = np.cumsum(rng.normal(0, 3.0, (n // M, M)), axis=0) + 5 * np.sin(np.arange(M) * 2 * np.pi / M)
    return days.reshape(-1)[:n]


def noisy_stable_season(n: int = M * 20, seed: int = 2) -> np.ndarray:
    """A fixed daily shape under heavy noise: copying yesterday copies its noise, smoothing averages it."""
    rng = np.random.default_rng(seed)
    return 50 + 5 * np.sin(np.arange(n) * 2 * np.pi / M) + rng.normal(0, 2.0, n)


def test_auto_is_the_registered_default() -> None:
    assert AUTO_MODEL == "auto" and forecaster_class("auto") is AutoForecaster
    assert Analyzer().forecaster == "auto"


def test_seasonal_naive_is_chosen_when_it_wins_on_the_recent_past() -> None:
    y = drifting_season()
    f = AutoForecaster(background=False).learn(hours(len(y)), y)
    bt = f.params["backtest_mae"]
    assert f.chosen == "seasonal_naive" and f.params["origins"] == 3 and f.season_length == M
    assert bt["seasonal_naive"] <= bt["ets"]
    # it then forecasts exactly as seasonal naive does on the same points
    alone = SeasonalNaive(season=M, background=False).learn(hours(len(y)), y).forecast(M)
    np.testing.assert_allclose(f.forecast(M)["yhat"], alone["yhat"])
    np.testing.assert_allclose(f.forecast(M)["yhat"], y[-M:])


def test_ets_is_chosen_when_it_forecasts_the_last_seasons_better() -> None:
    y = noisy_stable_season()
    f = AutoForecaster(background=False).learn(hours(len(y)), y)
    bt = f.params["backtest_mae"]
    assert f.chosen == "ets" and bt["ets"] < bt["seasonal_naive"]
    alone = HoltWinters(season=M, background=False).learn(hours(len(y)), y).forecast(M)
    np.testing.assert_allclose(f.forecast(M)["yhat"], alone["yhat"])


def test_the_backtest_scores_each_candidate_on_points_after_its_fit() -> None:
    # the backtest errors are those of each candidate fitted before the first of the last 3 seasons and
    # rolled forward a season at a time: recomputed here from the public forecasters on the same points
    y = noisy_stable_season()
    f = AutoForecaster(background=False).learn(hours(len(y)), y)
    first = len(y) - 3 * M
    naive_errors = [np.mean(np.abs(y[first + k * M - M:first + k * M] - y[first + k * M:first + (k + 1) * M]))
                    for k in range(3)]
    assert f.params["backtest_mae"]["seasonal_naive"] == pytest.approx(np.mean(naive_errors))
    ets = HoltWinters(season=M, background=False, refit_every=10**9).learn(hours(first), y[:first])
    errors = []
    for k in range(3):
        lo = first + k * M
        errors.append(np.mean(np.abs(ets.forecast(M)["yhat"].to_numpy() - y[lo:lo + M])))
        ets.learn(hours(len(y))[lo:lo + M], y[lo:lo + M])
    assert f.params["backtest_mae"]["ets"] == pytest.approx(np.mean(errors))


def test_a_refit_chooses_again_on_the_newer_history() -> None:
    stable, drifting = noisy_stable_season(M * 12), drifting_season(M * 12) + 50
    y = np.r_[stable, drifting]
    f = AutoForecaster(background=False, refit_every=M * 12).learn(hours(M * 12), stable)
    assert f.chosen == "ets"
    f.learn(hours(len(y))[M * 12:], drifting)
    # the backtest only covers the last 3 seasons, all of the drifting kind now
    assert f.refits == 2 and f.chosen == "seasonal_naive"


def test_too_short_for_a_backtest_uses_the_first_candidate() -> None:
    y = noisy_stable_season(M * 3)  # a season is found, but 3 seasons must precede the first origin
    f = AutoForecaster(background=False).learn(hours(len(y)), y)
    assert f.params["origins"] == 0 and f.params["backtest_mae"] == {} and f.chosen == "ets"
    g = AutoForecaster(candidates=("seasonal_naive", "ets"), background=False).learn(hours(len(y)), y)
    assert g.chosen == "seasonal_naive"


def test_without_a_season_the_backtest_uses_the_horizon() -> None:
    rng = np.random.default_rng(5)
    y = np.cumsum(rng.normal(0, 1, 400))
    f = AutoForecaster(season=None, horizon=20, background=False).learn(hours(len(y)), y)
    assert f.season_length is None and f.params["origins"] == 3 and set(f.params["backtest_mae"]) == {
        "ets", "seasonal_naive"}


@pytest.mark.parametrize("kwargs, message", [
    ({"candidates": ()}, "at least one"),
    ({"candidates": ("ets", "nope")}, "unknown candidate forecasters \\['nope'\\]"),
    ({"candidates": ("auto",)}, "unknown candidate forecasters \\['auto'\\]"),
    ({"seasons": 0}, "seasons and horizon"),
    ({"season": 1}, "season must be"),
])
def test_bad_options_are_refused_with_a_clear_error(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        AutoForecaster(**kwargs)


def test_a_candidate_that_cannot_fit_is_not_chosen() -> None:
    y = noisy_stable_season()
    # a gbm with an invalid option raises when fitted: the backtest counts it as never best
    f = AutoForecaster(candidates=("gbm", "seasonal_naive"), candidate_options={"gbm": {"max_iter": -1}},
                       background=False).learn(hours(len(y)), y)
    assert f.params["backtest_mae"]["gbm"] == float("inf") and f.chosen == "seasonal_naive"


def test_forecast_reports_the_model_auto_and_the_record_says_what_was_chosen() -> None:
    y = drifting_season()
    out = forecast(pd.DataFrame({"ts": hours(len(y)), "value": y}), horizon=M)
    assert (out["model"] == "auto").all() and len(out) == M
    np.testing.assert_allclose(out["yhat"], y[-M:])
