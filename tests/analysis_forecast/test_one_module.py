"""Issue 11, deliverable 6: one forecasting module, one registry name space, one period finder, and an
analysis package that opens no store.

Every test here fails on the tree before the change: the Analyzer's default forecaster was the detector
name ``"holt_winters"`` (silently replaced by the first registered forecaster), models.py opened a store
and read the settings itself, backtest.py and models.py imported private helpers of _forecast.py, and
the detectors had a period finder of their own.
"""

from __future__ import annotations

import ast
import json
import re
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import nexus_kernel.analysis as nka
from nexus_kernel._registry import UnknownPluginError
from nexus_kernel.analysis import Analyzer, ForecastStep, backtest, forecast
from nexus_kernel.analysis.detectors import HoltWintersResidual, detectors
from nexus_kernel.analysis.forecasting import (
    AUTO_MODEL,
    AutoForecaster,
    BaseForecaster,
    HoltWinters,
    forecaster_class,
    forecasters,
    make_forecaster,
)
from nexus_kernel.analysis.models import MOVED_MODULES, load_model, retrain, save_model, serve
from nexus_kernel.analysis.seasonality import dominant_period, find_period
from nexus_kernel.records import Schema, Validator
from nexus_kernel.storage import open_store

ANALYSIS = Path(nka.__file__).parent
DATA = Path(__file__).parent / "data"
KNOWN = "(known: auto, ets, gbm, seasonal_naive)"


def hourly(n: int = 24 * 10, series: tuple[str, ...] = ("p1",), seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ts = pd.date_range("2024-06-01", periods=n, freq="1h", tz="UTC")
    parts = [pd.DataFrame({"stream": "pumps", "series": key, "ts": ts, "seq": np.arange(n),
                           "value": 10 * (i + 1) + np.sin(np.arange(n) * 2 * np.pi / 24) + rng.normal(0, 0.05, n)})
             for i, key in enumerate(series)]
    return pd.concat(parts, ignore_index=True)


@pytest.fixture()
def store():
    s = open_store("memory")  # the test is the caller: it opens the store and hands it over
    yield s
    s.close()


# -- one registry name space ------------------------------------------------------------------------


@pytest.mark.parametrize("call", [
    lambda: forecast(hourly(), model="holt_winters"),
    lambda: ForecastStep(model="holt_winters"),
    lambda: backtest(hourly(), model="holt_winters"),
    lambda: make_forecaster("holt_winters"),
    lambda: Analyzer(forecast=True, forecaster="holt_winters"),
])
def test_an_unknown_forecaster_is_an_error_naming_the_known_ones(call) -> None:
    # "holt_winters" is a detector: before, the Analyzer quietly used the first registered forecaster
    with pytest.raises(UnknownPluginError, match=re.escape(f"unknown forecasters 'holt_winters' {KNOWN}")):
        call()


def test_analyzer_forecasts_with_the_real_default_forecaster() -> None:
    assert Analyzer().forecaster == AUTO_MODEL == "auto" and forecaster_class(AUTO_MODEL) is AutoForecaster
    df = hourly(series=("p1", "p2"))
    good, _ = Validator(Schema("pumps"))(df.drop(columns="seq"))
    out = Analyzer(forecast=True, horizon=6, level=0.8).update(good)["forecasts"]
    assert (out["model"] == "auto").all() and set(out["series"]) == {"p1", "p2"} and len(out) == 12
    # the same numbers as the forecaster itself on the same points: no fallback, no second code path
    for key in ("p1", "p2"):
        rows = good[good["series"] == key]
        alone = AutoForecaster(background=False).learn(rows["ts"], rows["value"].to_numpy()).forecast(6, 0.8)
        mine = out[out["series"] == key]
        np.testing.assert_allclose(mine["yhat"], alone["yhat"])
        np.testing.assert_allclose(mine["hi"] - mine["lo"], alone["hi"] - alone["lo"])
        assert (mine["made_at"] == rows["ts"].max()).all() and (mine["stream"] == "pumps").all()


def test_analyzer_forecasts_skip_a_field_a_batch_lacks() -> None:
    df = hourly().drop(columns="seq")
    analyzer = Analyzer(forecast=True, horizon=3, fields=["value", "pressure"])
    out = analyzer.update(df)["forecasts"]
    assert set(out["field"]) == {"value"} and len(out) == 3
    both = analyzer.update(df.assign(ts=df["ts"] + pd.Timedelta("240h"), pressure=2.0))["forecasts"]
    assert set(both["field"]) == {"value", "pressure"}


def test_every_forecaster_comes_from_the_one_registry() -> None:
    """Each concrete forecaster class of the package is registered once, and every caller sees that
    registry: what the conformance suite parametrizes over is all there is."""
    import importlib
    import pkgutil

    import nexus_kernel.analysis.forecasting as forecasting

    for info in pkgutil.iter_modules(forecasting.__path__):
        importlib.import_module(f"{forecasting.__name__}.{info.name}")
    concrete = {cls for cls in _subclasses(BaseForecaster) if cls.__module__.startswith("nexus_kernel.")}
    registered = dict(forecasters.items())
    assert concrete == set(registered.values())
    assert len(registered) == len(concrete)  # one name per class
    assert nka.forecasters is forecasting.forecasters
    from tests.analysis_forecast.test_conformance import NAMES

    assert NAMES == forecasters.names()
    assert not (ANALYSIS / "forecasters").exists() and not (ANALYSIS / "_forecast.py").exists()


def _subclasses(cls: type) -> set[type]:
    out = set()
    for sub in cls.__subclasses__():
        out |= {sub} | _subclasses(sub)
    return out


def test_forecast_step_latest_reads_without_learning() -> None:
    df = hourly(series=("a", "b"))
    step = ForecastStep(horizon=4, background=False)
    emitted = step(df)
    before = {k: f.n_points for k, f in step.forecasters.items()}
    latest = step.latest()
    pd.testing.assert_frame_equal(latest, emitted)
    assert {k: f.n_points for k, f in step.forecasters.items()} == before
    assert set(step.latest("b")["series"]) == {"b"} and step.latest("nope").empty


# -- the two Holt-Winters -------------------------------------------------------------------------


def test_the_two_holt_winters_have_two_names_and_stable_registry_names() -> None:
    assert detectors.get("holt_winters") is HoltWintersResidual
    assert forecaster_class("ets") is HoltWinters and "holt_winters" not in forecasters
    with pytest.warns(DeprecationWarning, match="HoltWintersResidual"):
        old = nka.HoltWinters
    assert old is HoltWintersResidual
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        from nexus_kernel.analysis import HoltWintersResidual as named  # the new name does not warn
    assert named is HoltWintersResidual


# -- one period finder ----------------------------------------------------------------------------


def test_the_detectors_period_finder_is_dominant_period() -> None:
    rng = np.random.default_rng(3)
    t = np.arange(600)
    for y in (np.sin(2 * np.pi * t / 24) + rng.normal(0, 0.3, 600), np.where(t % 48 < 24, 1.0, 0.0),
              rng.normal(size=600), np.cumsum(rng.normal(size=600))):
        assert find_period(y)[0] == dominant_period(y, max_period=300, robust=False)
    period, strength = find_period(np.sin(2 * np.pi * t / 24))
    assert period == 24 and strength > 0.99


def test_dominant_period_keeps_the_season_under_spikes() -> None:
    """What decided between the two finders: one spike in 50 points hid the season from the old
    autocorrelation-peak finder on 216 of 240 such series (the ranks here do not care)."""
    rng = np.random.default_rng(0)
    found = 0
    for _ in range(20):
        t = np.arange(24 * 10)
        y = np.sin(2 * np.pi * t / 24) + rng.normal(0, 0.3, len(t))
        spikes = rng.choice(len(t), len(t) // 50 + 1)
        y[spikes] += rng.normal(0, 15, len(spikes))
        found += dominant_period(y) == 24
    assert found >= 18


# -- analysis stays pure --------------------------------------------------------------------------


def test_models_use_the_store_they_are_handed(store, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("NEXUS_FORECAST_HORIZON", "5")  # read only if analysis loaded settings itself
    store.write(hourly())
    record = retrain("pumps", store, directory=tmp_path, lookback="7d")
    assert record.metrics["horizon"] == 24  # the declared default, not the environment
    assert Path(record.artifact).parent == tmp_path and len(store.read("models", name="pumps:forecast")) == 1
    out = serve("pumps", store, horizon=3)
    assert len(out) == 3 and len(store.read("forecasts", stream="pumps")) == 3


@pytest.mark.parametrize("call", [
    lambda: retrain("pumps", None),
    lambda: serve("pumps", None),
    lambda: load_model(None, stream="pumps"),
])
def test_without_a_store_the_error_says_what_to_pass(call) -> None:
    with pytest.raises(TypeError, match="needs the store to use.*analysis opens none itself"):
        call()


def test_an_artifact_needs_a_place(store) -> None:
    store.write(hourly())
    with pytest.raises(ValueError, match="directory= or settings="):
        retrain("pumps", store, lookback=None, model="seasonal_naive")
    assert store.read("models").empty  # nothing half-saved


def test_a_wrong_lookback_is_a_clear_error(store, tmp_path) -> None:
    store.write(hourly())
    with pytest.raises(ValueError, match="lookback is not a duration: 'a fortnight'"):
        retrain("pumps", store, directory=tmp_path, lookback="a fortnight")


def test_analysis_imports_no_store_backend_no_settings_loader_and_no_private_helper() -> None:
    """Analysis is handed its store and settings; a module uses only public names of another."""
    offences = []
    for path in sorted(ANALYSIS.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                       and ast.unparse(node.test) == "TYPE_CHECKING" for n in ast.walk(node)}
        for node in ast.walk(tree):
            where = f"{path.relative_to(ANALYSIS)}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.ImportFrom) and id(node) not in typing_only:
                module = node.module or ""
                if module.endswith("storage") or ".storage." in module:
                    offences.append(f"{where} imports {module}")
                for alias in node.names:
                    if node.module is None:  # "from . import _kernel": a package's own private module
                        continue
                    if alias.name in ("open_store", "load_settings", "parse_span"):
                        offences.append(f"{where} imports {alias.name}")
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        offences.append(f"{where} imports the private {module}.{alias.name}")
    assert offences == []


# -- artifacts written before the move ------------------------------------------------------------


@pytest.mark.parametrize("kind", ["ets", "seasonal_naive", "gbm"])
def test_an_artifact_written_before_the_move_still_loads(store, tmp_path, monkeypatch, kind) -> None:
    """The files were written by the tree before issue 11: their pickles name analysis.forecasters.*."""
    import joblib

    from nexus_kernel.analysis.forecasting import StreamModel

    legacy = DATA / f"legacy-{kind}.joblib"
    for old in MOVED_MODULES:  # as in a fresh process: the old paths exist nowhere
        monkeypatch.delitem(sys.modules, old, raising=False)
    with pytest.raises(ModuleNotFoundError, match="nexus_kernel.analysis.forecasters"):
        joblib.load(legacy)
    # a record naming the old file, as a home written before the move has
    record = save_model(store, StreamModel(stream="pumps", kind=kind), directory=tmp_path)
    store.append("models", record.frame().assign(version=2, artifact=str(legacy)))
    loaded, rec = load_model(store, stream="pumps")
    assert rec.version == 2 and loaded.kind == kind and isinstance(loaded, StreamModel)
    expected = json.loads((DATA / "legacy-expected.json").read_text())[kind]
    np.testing.assert_allclose(loaded.forecast(6)["yhat"], expected, rtol=0, atol=1e-9)
