"""Forecasts on a live stream: the default stream publishes them on the bus at a cadence it can afford.

What the monitor's forecast band relies on: a runtime running the default spec publishes forecasts on
``topic(stream, "forecasts")``; ``forecast_every`` thins them to one per series per that many points and
survives a saved spec; and the batch split that made that cheap gives what the per-series loop gave.
Real parts throughout: the runtime with its memory services and the simulator, the registered ``ets``.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd
import pytest

from nexus_kernel.analysis import Analyzer
from nexus_kernel.analysis.forecasting import ForecastStep, make_forecaster
from nexus_kernel.analysis.forecasting.frames import forecast_rows, forecasts_frame, horizon_steps
from nexus_kernel.config import load_settings
from nexus_kernel.engine import Pipeline
from nexus_kernel.runtime import DEFAULT_STREAM, Runtime, default_spec, topic


def analyze_params(spec: dict[str, Any]) -> dict[str, Any]:
    return next(s["params"] for s in spec["steps"] if s["kind"] == "analyze")


def regular(series: list[str], start: int, n: int, step: str = "1s") -> pd.DataFrame:
    """``n`` points per series from point ``start`` on, a noisy daily-ish wave, in contract order."""
    ts = pd.Timestamp("2024-01-01", tz="UTC") + pd.Timedelta(step) * np.arange(start, start + n)
    rows = [pd.DataFrame({"stream": "s", "series": name, "ts": ts,
                          "value": 10 + np.sin(np.arange(start, start + n) / (5 + k)) + 0.01 * k})
            for k, name in enumerate(series)]
    return pd.concat(rows, ignore_index=True)


def test_the_default_stream_forecasts_and_publishes_them_on_the_bus(tmp_path):
    # 2 series at 200 records/s: 100 points a second each, so forecast_every=100 is due about every second
    settings = load_settings(home=tmp_path / "home", store="memory", sim_series=2, sim_rate=200)
    params = analyze_params(default_spec(settings))
    assert params["forecast"] is True and params["horizon"] == 60 and params["forecast_every"] == 100
    with Runtime.open(settings) as rt:
        assert rt.start() == [DEFAULT_STREAM]
        analyze = next(s for s in rt.pipelines[DEFAULT_STREAM].steps if getattr(s, "kind", "") == "analyze")
        assert analyze.analyzer.forecast_every == 100 and analyze.analyzer.horizon == 60
        deadline = time.monotonic() + 30
        kept: list[pd.DataFrame] = []
        while time.monotonic() < deadline:
            kept = [m.frame for m in rt.bus.replay(topic(DEFAULT_STREAM, "forecasts"))]
            if {s for f in kept for s in f["series"]} >= {"sensor-000", "sensor-001"} or len(kept) >= 2:
                break
            time.sleep(0.1)
        assert kept, "no forecast published on the bus within 30 s"
        stored = rt.store.read("forecasts")
    frame = pd.concat(kept, ignore_index=True)
    per_forecast = frame.groupby(["series", "field", "made_at"]).size()
    assert (per_forecast == 60).all()  # the horizon the spec asks for, one row per step ahead
    assert set(frame["model"]) == {"auto"} and (frame["ts"] > frame["made_at"]).all()
    assert (frame["lo"] <= frame["yhat"]).all() and (frame["yhat"] <= frame["hi"]).all()
    assert len(stored) >= len(kept[0])  # the same rows went to the store's forecasts table


def test_a_series_forecasts_once_per_forecast_every_of_its_points():
    every, per_batch = 10, 3
    analyzer = Analyzer(only_anomalies=True, forecast=True, horizon=5, forecast_every=every)
    emitted: dict[str, list[pd.Timestamp]] = {"a": [], "b": []}
    for k in range(40):  # 120 points per series
        out = analyzer.update(regular(["a", "b"], k * per_batch, per_batch))["forecasts"]
        assert out.groupby("series").size().eq(5).all()
        for name, rows in out.groupby("series"):
            assert rows["made_at"].nunique() == 1  # at most one forecast per series per batch
            emitted[str(name)].append(rows["made_at"].iloc[0])
    for name, made in emitted.items():
        gaps = np.diff([t.value for t in made]) / pd.Timedelta("1s").value
        # due after `every` points; a batch brings 3, so it comes with the batch that reaches them
        assert len(made) == 10 and ((gaps >= every) & (gaps < every + per_batch)).all(), (name, gaps)
    every_batch = Analyzer(forecast=True, horizon=5)
    counts = [len(every_batch.update(regular(["a"], k * 3, 3))["forecasts"]) for k in range(4)]
    assert counts == [5, 5, 5, 5]  # the default, 1: every batch that brings a point


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "10"])
def test_a_forecast_cadence_that_is_not_a_whole_number_of_points_is_refused(bad):
    with pytest.raises(ValueError, match="forecast_every"):
        Analyzer(forecast=True, forecast_every=bad)


def test_the_analyze_params_survive_a_saved_spec(settings):
    spec = default_spec(settings)
    pipe = Pipeline.from_spec(spec, settings)
    again = Pipeline.from_spec(pipe.spec(), settings)
    assert again.spec() == pipe.spec()
    assert analyze_params(again.spec()) == analyze_params(spec)
    analyze = next(s for s in again.steps if getattr(s, "kind", "") == "analyze")
    assert (analyze.analyzer.forecast_every, analyze.analyzer.horizon, analyze.analyzer.forecaster) == (100, 60, "auto")


class PerSeriesStep(ForecastStep):
    """The split as it was: one ``iloc`` and time conversion per series (the reference)."""

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        fields = [f for f in self.fields if f in batch.columns]
        parts = []
        for key, rows in batch.groupby("series", sort=True, observed=True).indices.items():
            part = batch.iloc[rows]
            stream = self._streams[str(key)] = str(part["stream"].iloc[0])
            for field in fields:
                ident = (str(key), field)
                f = self.forecasters.get(ident)
                if f is None:
                    f = self.forecasters[ident] = make_forecaster(self.model, **self.options)
                f.learn(part["ts"], part[field].to_numpy(dtype="float64", na_value=np.nan))
                if f.step is None or f.n_points - self._emitted.get(ident, 0) < self.every:
                    continue
                self._emitted[ident] = f.n_points
                out = f.forecast(horizon_steps(self.horizon, f.step), self.level)
                parts.append(forecast_rows(out, stream, ident[0], field, self.model_name, f, self.level))
        return forecasts_frame(parts)


def test_the_batch_split_gives_what_the_per_series_loop_gave():
    rng = np.random.default_rng(3)
    new = ForecastStep(horizon=4, fields=["value", "other"], every=2, background=False)
    old = PerSeriesStep(horizon=4, fields=["value", "other"], every=2, background=False)
    compared = 0
    for k in range(30):
        batch = regular(["c", "a", "b"], k * 4, 4)
        batch["other"] = rng.normal(size=len(batch))
        batch.loc[rng.random(len(batch)) < 0.1, "other"] = np.nan  # gaps in one field only
        batch["stream"] = np.where(batch["series"] == "b", "t", "s")  # a series' stream is its own
        batch["series"] = batch["series"].astype("string")
        batch.loc[rng.random(len(batch)) < 0.05, "series"] = pd.NA  # no series: in no group, as groupby
        batch = batch.sample(frac=1.0, random_state=k).reset_index(drop=True)  # rows in any order
        got, want = new(batch), old(batch)
        pd.testing.assert_frame_equal(got, want)
        compared += len(want)
    assert compared > 0 and set(new.forecasters) == set(old.forecasters)
    pd.testing.assert_frame_equal(new.latest(), old.latest())


def test_bench_forecast_builds_the_default_streams_analyzer():
    """``bench forecast`` runs the default stream's Analyzer: the analyze step's parameters, less the step's
    own cadence, are the Analyzer's (it broke once when the step gained ``every``)."""
    from bench.forecast import default_analyzer_params
    from nexus_kernel.analysis import Analyzer

    params = default_analyzer_params()
    assert "every" not in params and params["forecast"] is True
    analyzer = Analyzer(**params)
    assert analyzer.detector == "ensemble" and analyzer.forecaster == params["forecaster"]
