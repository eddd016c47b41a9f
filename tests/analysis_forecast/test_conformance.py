"""One suite for every registered forecaster: determinism, pickling mid-stream, bad input, bands.

Each bad input has the behaviour documented in nexus_kernel/analysis/forecasters/_base.py; the tests
here check exactly that behaviour, for every member of the registry.
"""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from nexus_kernel.analysis import ForecastStep
from nexus_kernel.analysis.forecasting import BaseForecaster, Forecaster, forecasters

# options that keep the suite fast; the algorithms are the same
FAST: dict[str, dict] = {"gbm": {"max_iter": 25}}
NAMES = forecasters.names()


def make(name: str, **kw) -> BaseForecaster:
    options = {"background": False, "seed": 3, **FAST.get(name, {}), **kw}
    return forecasters.get(name)(**options)


def seasonal(n: int = 24 * 12, seed: int = 0, period: int = 24) -> tuple[pd.DatetimeIndex, np.ndarray]:
    rng = np.random.default_rng(seed)
    ts = pd.date_range("2024-03-01", periods=n, freq="1h", tz="UTC")
    y = 20 + 3 * np.sin(np.arange(n) * 2 * np.pi / period) + 0.01 * np.arange(n) + rng.normal(0, 0.3, n)
    return ts, y


def test_registry_has_the_builtins() -> None:
    assert {"ets", "gbm", "seasonal_naive"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_follows_the_protocol(name: str) -> None:
    assert isinstance(make(name), Forecaster)


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_under_a_seed(name: str) -> None:
    ts, y = seasonal()
    a = make(name).learn(ts, y).forecast(12)
    b = make(name).learn(ts, y).forecast(12)
    pd.testing.assert_frame_equal(a, b)


@pytest.mark.parametrize("name", NAMES)
def test_pickle_mid_stream_then_identical_forecasts(name: str) -> None:
    ts, y = seasonal()
    cut = 200
    # refit_every small enough that a refit happens after the cut too
    original = make(name, refit_every=40).learn(ts[:cut], y[:cut])
    restored = pickle.loads(pickle.dumps(original))
    pd.testing.assert_frame_equal(original.forecast(6), restored.forecast(6))
    for lo in range(cut, len(y), 17):  # uneven micro-batches
        original.learn(ts[lo:lo + 17], y[lo:lo + 17])
        restored.learn(ts[lo:lo + 17], y[lo:lo + 17])
    assert original.refits == restored.refits >= 2
    pd.testing.assert_frame_equal(original.forecast(12), restored.forecast(12))


@pytest.mark.parametrize("name", NAMES)
def test_pickle_waits_for_a_background_refit(name: str) -> None:
    ts, y = seasonal()
    f = make(name, background=True, refit_every=50).learn(ts[:150], y[:150])
    f.learn(ts[150:], y[150:])  # triggers background refits; this call does not wait
    restored = pickle.loads(pickle.dumps(f))  # waits, installs, then copies
    assert restored._future is None
    pd.testing.assert_frame_equal(f.forecast(6), restored.forecast(6))


@pytest.mark.parametrize("name", NAMES)
def test_background_refit_lands_after_wait(name: str) -> None:
    ts, y = seasonal()
    f = make(name, background=True)
    f.learn(ts, y)
    early = f.forecast(3)  # never blocks: the naive forecast while the first fit runs, or the model
    assert len(early) == 3
    f.wait()
    assert f.fitted and f.refits == 1
    assert np.isfinite(f.forecast(3)[["yhat", "lo", "hi"]].to_numpy()).all()


@pytest.mark.parametrize("name", NAMES)
def test_nan_values_are_ignored(name: str) -> None:
    ts, y = seasonal()
    holes = y.copy()
    holes[[30, 31, 100, 250]] = np.nan
    holes[-1] = np.inf
    keep = np.isfinite(holes)
    with_nan = make(name).learn(ts, holes).forecast(8)
    without = make(name).learn(ts[keep], y[keep]).forecast(8)
    pd.testing.assert_frame_equal(with_nan, without)
    assert np.isfinite(with_nan[["yhat", "lo", "hi"]].to_numpy()).all()


@pytest.mark.parametrize("name", NAMES)
def test_gaps_are_filled_on_the_grid(name: str) -> None:
    ts, y = seasonal()
    keep = np.ones(len(y), dtype=bool)
    keep[120:150] = False  # 30 missing hours after the first fit
    f = make(name).learn(ts[keep][:100], y[keep][:100])
    f.learn(ts[keep][100:], y[keep][100:])
    assert f.n_points == len(y)  # the missing slots are on the grid
    out = f.forecast(5)
    assert out["ts"].iloc[0] == ts[-1] + pd.Timedelta("1h")
    assert np.isfinite(out[["yhat", "lo", "hi"]].to_numpy()).all()
    assert f.step == pd.Timedelta("1h")


@pytest.mark.parametrize("name", NAMES)
def test_constant_series(name: str) -> None:
    ts = pd.date_range("2024-01-01", periods=200, freq="5min", tz="UTC")
    out = make(name).learn(ts, np.full(200, 7.5)).forecast(10)
    np.testing.assert_allclose(out["yhat"], 7.5, atol=1e-9)
    np.testing.assert_allclose(out["hi"] - out["lo"], 0.0, atol=1e-9)


@pytest.mark.parametrize("name", NAMES)
def test_single_point_then_second(name: str) -> None:
    f = make(name)
    f.learn([pd.Timestamp("2024-01-01T00:00Z")], [3.0])
    out = f.forecast(4)
    assert out.empty and list(out.columns) == ["ts", "yhat", "lo", "hi"]
    assert f.step is None
    f.learn([pd.Timestamp("2024-01-01T00:10Z")], [5.0])
    out = f.forecast(2)
    assert f.step == pd.Timedelta("10min")
    assert list(out["ts"]) == [pd.Timestamp("2024-01-01T00:20Z"), pd.Timestamp("2024-01-01T00:30Z")]
    assert np.isfinite(out["yhat"]).all()


@pytest.mark.parametrize("name", NAMES)
def test_single_point_with_freq_forecasts(name: str) -> None:
    f = make(name, freq="1min").learn([pd.Timestamp("2024-01-01T00:00Z")], [3.0])
    out = f.forecast(2)
    assert list(out["yhat"]) == [3.0, 3.0] and (out["lo"] == out["hi"]).all()


@pytest.mark.parametrize("name", NAMES)
def test_duplicate_timestamps_are_averaged(name: str) -> None:
    ts, y = seasonal()
    dup_ts = ts.append(ts[50:60])
    dup_y = np.r_[y, y[50:60] + 2.0]
    order = np.argsort(dup_ts.asi8, kind="stable")
    averaged = y.copy()
    averaged[50:60] += 1.0
    a = make(name).learn(dup_ts[order], dup_y[order]).forecast(6)
    b = make(name).learn(ts, averaged).forecast(6)
    pd.testing.assert_frame_equal(a, b)


@pytest.mark.parametrize("name", NAMES)
def test_irregular_sampling_goes_on_a_regular_grid(name: str) -> None:
    ts, y = seasonal()
    rng = np.random.default_rng(5)
    jitter = pd.to_timedelta(rng.integers(-600, 600, len(ts)), unit="s")  # ±10 min around each hour
    irregular = ts + jitter
    f = make(name).learn(irregular, y)
    assert f.step is not None and abs(f.step - pd.Timedelta("1h")) < pd.Timedelta("10min")
    out = f.forecast(4)
    steps = np.diff(out["ts"].to_numpy()).astype("timedelta64[ns]")
    assert (steps == steps[0]).all()
    assert np.isfinite(out[["yhat", "lo", "hi"]].to_numpy()).all()


@pytest.mark.parametrize("name", NAMES)
def test_late_points_are_dropped_and_counted(name: str) -> None:
    ts, y = seasonal()
    f = make(name).learn(ts, y)
    before = f.forecast(4)
    f.learn(ts[:5], y[:5] + 100)
    assert f.dropped == 5
    pd.testing.assert_frame_equal(before, f.forecast(4))


@pytest.mark.parametrize("name", NAMES)
def test_series_appearing_mid_stream(name: str) -> None:
    ts, y = seasonal()
    step = ForecastStep(model=name, horizon=3, **{"background": False, "seed": 3, **FAST.get(name, {})})
    first = pd.DataFrame({"stream": "s", "series": "a", "ts": ts[:150], "value": y[:150]})
    out1 = step(first)
    assert set(out1["series"]) == {"a"}
    second = pd.concat([
        pd.DataFrame({"stream": "s", "series": "a", "ts": ts[150:], "value": y[150:]}),
        pd.DataFrame({"stream": "s", "series": "b", "ts": ts[150:], "value": y[150:] * 2}),
    ])
    out2 = step(second)
    assert set(out2["series"]) == {"a", "b"}
    alone = make(name).learn(ts[:150], y[:150]).learn(ts[150:], y[150:]).forecast(3)  # same batches
    np.testing.assert_allclose(out2.loc[out2["series"] == "a", "yhat"], alone["yhat"])
    b = out2[out2["series"] == "b"]
    assert b["ts"].iloc[0] == ts[-1] + pd.Timedelta("1h") and np.isfinite(b["yhat"]).all()


@pytest.mark.parametrize("name", NAMES)
def test_band_contains_the_point_forecast(name: str) -> None:
    ts, y = seasonal(seed=9)
    for level in (0.5, 0.8, 0.95):
        out = make(name).learn(ts, y).forecast(30, level=level)
        assert (out["lo"] <= out["yhat"]).all() and (out["yhat"] <= out["hi"]).all()
        assert (out["hi"] > out["lo"]).all()  # noisy data: a real band
    narrow = make(name).learn(ts, y).forecast(5, level=0.5)
    wide = make(name).learn(ts, y).forecast(5, level=0.95)
    assert ((wide["hi"] - wide["lo"]) >= (narrow["hi"] - narrow["lo"])).all()


@pytest.mark.parametrize("name", NAMES)
def test_bad_arguments_are_clear_errors(name: str) -> None:
    f = make(name)
    with pytest.raises(ValueError, match="differ in length"):
        f.learn(pd.date_range("2024-01-01", periods=3, tz="UTC"), [1.0, 2.0])
    with pytest.raises(ValueError, match="level"):
        f.forecast(3, level=1.5)
    with pytest.raises(ValueError, match="horizon"):
        f.forecast(-1)


class _Failing(BaseForecaster):
    """A plugin whose fit always raises: the base class must keep the stream going."""

    def _fit(self, y, start_slot):
        raise RuntimeError("singular matrix")


@pytest.mark.parametrize("background", [False, True])
def test_a_failing_refit_keeps_the_stream_going(background: bool) -> None:
    ts, y = seasonal()
    f = _Failing(background=background).learn(ts, y)
    f.wait()
    assert not f.fitted and f.refit_errors == 1 and f.last_error == "RuntimeError: singular matrix"
    out = f.forecast(3)  # the naive fallback
    assert np.allclose(out["yhat"], y[-1]) and (out["lo"] <= out["hi"]).all()
