"""Model pipeline against the real store (DuckDB in memory): train, evaluate, persist, load, serve, retrain."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from nexus_kernel.analysis.models import (
    ModelNotFound,
    StreamModel,
    evaluate,
    load_model,
    retrain,
    save_model,
    serve,
    train,
)
from nexus_kernel.config import load_settings
from nexus_kernel.storage import open_store


def points(n: int, start: str = "2024-06-01", series: tuple[str, ...] = ("p1", "p2"), offset: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(offset)
    ts = pd.date_range(start, periods=n, freq="1h", tz="UTC")
    parts = []
    for i, key in enumerate(series):
        t = np.arange(offset, offset + n)
        y = 10 * (i + 1) + np.sin(t * 2 * np.pi / 24) + rng.normal(0, 0.05, n)
        parts.append(pd.DataFrame({"stream": "pumps", "series": key, "ts": ts, "seq": t.astype("int64"), "value": y}))
    frame = pd.concat(parts, ignore_index=True)
    frame["stream"] = frame["stream"].astype("string")
    frame["series"] = frame["series"].astype("string")
    return frame


@pytest.fixture()
def store():
    s = open_store("memory")
    yield s
    s.close()


@pytest.fixture()
def settings(tmp_path):
    return load_settings(home=tmp_path, store="memory", forecast_lookback="7d", forecast_horizon=6)


def test_retrain_writes_a_versioned_record_and_artifact(store, settings) -> None:
    store.write(points(24 * 12))
    first = retrain("pumps", store=store, settings=settings)
    assert first.version == 1 and first.kind == "auto" and first.name == "pumps:forecast"
    # lookback of 7 days back from the newest point, not from the wall clock
    newest = pd.Timestamp("2024-06-01", tz="UTC") + pd.Timedelta(hours=24 * 12 - 1)
    assert first.train_end == newest and first.train_start == newest - pd.Timedelta("7D")
    assert first.metrics["horizon"] == 6 and first.metrics["evaluated"] == 6  # 2 series x 3 folds
    assert 0 < first.metrics["mase"] < 1 and set(first.metrics["series"]) == {"p1/value", "p2/value"}
    fitted = first.params["fitted"]["p1/value"]  # "auto": the candidate its backtest chose, and why
    assert fitted["m"] == 24 and fitted["chosen"] in fitted["backtest_mae"] and fitted["origins"] == 3
    assert first.features["p1/value"][0] == f"chosen:{fitted['chosen']}"
    assert settings.home in __import__("pathlib").Path(first.artifact).parents

    second = retrain("pumps", store=store, settings=settings, model="gbm", max_iter=20)
    assert second.version == 2 and second.kind == "gbm"
    rows = store.read("models", name="pumps:forecast")
    assert sorted(rows["version"]) == [1, 2]
    assert json.loads(rows.sort_values("version")["metrics"].iloc[0])["horizon"] == 6


def test_load_newest_or_a_given_version(store, settings) -> None:
    store.write(points(24 * 10))
    retrain("pumps", store=store, settings=settings)
    retrain("pumps", store=store, settings=settings, model="seasonal_naive")
    model, record = load_model(store, stream="pumps")
    assert record.version == 2 and isinstance(model, StreamModel) and model.kind == "seasonal_naive"
    model1, record1 = load_model(store, name="pumps:forecast", version=1)
    assert record1.version == 1 and model1.kind == "auto"
    with pytest.raises(ModelNotFound):
        load_model(store, stream="nothing")
    with pytest.raises(ModelNotFound):
        load_model(store, name="pumps:forecast", version=9)


def test_serve_learns_new_points_and_appends_forecasts(store, settings) -> None:
    store.write(points(24 * 10))
    retrain("pumps", store=store, settings=settings)
    store.write(points(12, start="2024-06-11", offset=24 * 10))  # 12 more hours arrive
    out = serve("pumps", store=store, settings=settings)
    assert len(out) == 12 and set(out["series"]) == {"p1", "p2"}
    assert out["made_at"].max() == pd.Timestamp("2024-06-11T11:00Z")  # learned the new points
    stored = store.read("forecasts", stream="pumps")
    assert len(stored) == 12
    assert serve("pumps", store=store, settings=settings).equals(out)  # same data, same forecast
    assert len(store.read("forecasts", stream="pumps")) == 12  # idempotent on its key


def test_missing_artifact_is_a_clear_error(store, settings) -> None:
    store.write(points(24 * 5))
    record = retrain("pumps", store=store, settings=settings)
    __import__("os").remove(record.artifact)
    with pytest.raises(ModelNotFound, match="artifact"):
        load_model(store, stream="pumps")


def test_retrain_without_data_is_a_clear_error(store, settings) -> None:
    with pytest.raises(ValueError, match="no stored points"):
        retrain("empty", store=store, settings=settings)


def test_train_evaluate_save_in_a_notebook(store, tmp_path) -> None:
    df = points(24 * 8).drop(columns="seq")
    model = train(df, model="seasonal_naive")
    assert set(model.forecasters) == {("p1", "value"), ("p2", "value")}
    metrics = evaluate(df, model="seasonal_naive", horizon=12, folds=2)
    assert metrics["evaluated"] == 4 and metrics["mase"] == pytest.approx(metrics["mase"])
    record = save_model(store, model, metrics, directory=tmp_path)
    assert record.version == 1 and record.features["p1/value"] == ["lag24"]
    # a new series seen by the served model gets its own forecaster
    model.update(points(30, start="2024-06-09", series=("p3",), offset=24 * 8).drop(columns="seq"))
    assert ("p3", "value") in model.forecasters
    assert set(model.forecast(3)["series"]) == {"p1", "p2", "p3"}
