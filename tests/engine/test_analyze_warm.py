"""The analyze step loads its detector's kernels when its pipeline starts, before records come in."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from nexus_kernel.analysis import Analyzer
from nexus_kernel.analysis import _analyzer
from nexus_kernel.engine import Pipeline, sources


def _key(analyzer: Analyzer) -> tuple[str, str]:
    return (analyzer.detector, repr(sorted(analyzer.params.items())))


def test_warm_leaves_the_analyzers_own_state_untouched_and_runs_once_per_configuration() -> None:
    analyzer = Analyzer(detector="ewma", params={"alpha": 0.37})
    _analyzer._WARMED.discard(_key(analyzer))
    analyzer.warm()
    assert _key(analyzer) in _analyzer._WARMED
    assert analyzer._detectors == {}  # a throwaway detector did the work
    other = Analyzer(detector="ewma", params={"alpha": 0.37})
    other.warm()  # already loaded in this process: nothing to do, and still no state
    assert other._detectors == {}


def test_a_warmed_analyzer_scores_as_a_cold_one() -> None:
    rng = np.random.default_rng(7)
    values = rng.normal(0.0, 1.0, 300)
    values[250] = 40.0
    batch = pd.DataFrame({"stream": pd.array(["s"] * 300, dtype="string"),
                          "series": pd.array(["a"] * 300, dtype="string"),
                          "ts": pd.date_range("2024-01-01", periods=300, freq="s", tz="UTC"),
                          "seq": np.arange(300), "value": values})
    cold = Analyzer().update(batch)["anomalies"]
    warmed = Analyzer()
    warmed.warm()
    pd.testing.assert_frame_equal(warmed.update(batch)["anomalies"], cold)


def test_the_analyze_step_warms_its_detector_when_the_pipeline_starts() -> None:
    pipe = Pipeline(sources.make("iterable", data=[]), name="warm").validate().step(
        "analyze", detector="ewma", params={"alpha": 0.29})
    step = pipe.steps[-1]
    _analyzer._WARMED.discard(_key(step.analyzer))
    pipe.run(timeout=30)
    assert _key(step.analyzer) in _analyzer._WARMED


def _run_spiky(settings, every: float) -> tuple[pd.DataFrame, list[int]]:
    """A pipeline over batches with spikes, analysed each batch (every=0) or on a cadence; the anomalies
    stored, and the sizes of the batches the analyzer was called with."""
    from nexus_kernel.storage import open_bus, open_cache, open_store

    sim = sources.simulator(series=4, freq="1s", rate=None, seed=9, limit=6_000, anomaly_rate=30, bad_rate=0.0,
                            start="2024-01-01", batch_size=200)
    pipe = (Pipeline.from_source(sim, settings=settings).validate().store()
            .step("analyze", every=every).window("1min"))
    store = open_store("memory")
    pipe.services.update({"store": store, "cache": open_cache(backend="memory"), "bus": open_bus(backend="memory")})
    step = pipe.steps[2]
    calls: list[int] = []
    update = step.analyzer.update
    step.analyzer.update = lambda batch: calls.append(len(batch)) or update(batch)  # type: ignore[method-assign]
    pipe.run(timeout=60)
    assert pipe.status()["errors"] == 0
    anomalies = store.read("anomalies", stream="sensors").sort_values(["series", "ts", "detector"])
    store.close()
    return anomalies.reset_index(drop=True), calls


def test_analysis_on_a_cadence_scores_every_row_once_and_finds_what_batch_by_batch_finds(settings) -> None:
    each, each_calls = _run_spiky(settings, every=0.0)
    joined, joined_calls = _run_spiky(settings, every=0.5)
    assert sum(each_calls) == sum(joined_calls) == 6_000  # every row scored exactly once, none left at stop
    assert len(each) > 0
    pd.testing.assert_frame_equal(joined[["series", "ts", "detector", "is_anomaly"]],
                                  each[["series", "ts", "detector", "is_anomaly"]])


def test_every_is_checked_and_kept_in_the_spec() -> None:
    import pytest

    from nexus_kernel.engine import steps

    assert steps.get("analyze")(every=0.5).spec()["params"]["every"] == 0.5
    assert "every" not in steps.get("analyze")().spec()["params"]
    for bad in (-1, 61, "1", True):
        with pytest.raises(ValueError, match="every"):
            steps.get("analyze")(every=bad)


def _paced(settings, limit: int = 800, series: int = 4) -> tuple[Pipeline, Any, Any]:
    """A live-paced pipeline (``limit`` records at 400/s, batches every 0.05 s) analysed on a 0.2 s
    cadence, every score kept; the pipeline, its analyze step and its memory store."""
    from nexus_kernel.storage import open_bus, open_store

    sim = sources.simulator(series=series, freq="1s", rate=400, seed=3, limit=limit, bad_rate=0.0,
                            start="2024-01-01", pace=0.05)
    pipe = Pipeline.from_source(sim, settings=settings).validate().step("analyze", every=0.2,
                                                                         only_anomalies=False)
    store = open_store("memory")
    pipe.services.update({"store": store, "bus": open_bus(backend="memory")})
    return pipe, pipe.steps[1], store


def test_on_a_live_stream_the_cadence_timer_scores_what_waits_and_the_stop_scores_the_rest(settings) -> None:
    # 800 records, about 2 s of wall time: every=0.2 fires meanwhile
    pipe, step, store = _paced(settings)
    fired: list[int] = []
    due = step._due
    step._due = lambda: fired.append(len(step._pending)) or due()  # type: ignore[method-assign]
    pipe.run(timeout=60)
    scored = store.read("anomalies", stream="sensors")
    store.close()
    assert fired and all(n > 0 for n in fired)  # the timer found batches waiting
    assert len(scored) == 800 and not scored.duplicated(["series", "ts", "detector"]).any()


def test_on_a_cadence_the_scoring_runs_on_the_steps_own_thread_and_its_results_go_out_on_the_pipelines(
        settings) -> None:
    """The detectors' kernels release the GIL: scoring on a thread of its own runs beside validation and
    store writes. The store and bus still get the results from the pipeline's loop, in order."""
    import threading

    pipe, step, store = _paced(settings)
    scored_on: list[str] = []
    written_on: list[str] = []
    update, append = step.analyzer.update, store.append
    step.analyzer.update = lambda b: scored_on.append(threading.current_thread().name) or update(b)  # type: ignore[method-assign]
    store.append = lambda t, f: written_on.append(threading.current_thread().name) or append(t, f)  # type: ignore[method-assign]
    pipe.run(timeout=60)
    scored = store.read("anomalies", stream="sensors")
    store.close()
    assert any(name.startswith("analyze-sensors") for name in scored_on)
    assert set(written_on) == {"nexus-engine-loop"}  # the loop pipe.run submits its pump to
    assert len(scored) == 800 and not scored.duplicated(["series", "ts", "detector"]).any()


def test_a_scoring_that_fails_on_the_steps_thread_is_reported_as_a_failing_step(settings) -> None:
    pipe, step, store = _paced(settings, limit=400, series=2)

    def broken(batch: pd.DataFrame) -> None:
        raise RuntimeError("detector broke")

    step.analyzer.update = broken  # type: ignore[method-assign]
    pipe.run(timeout=60)
    status = pipe.status()
    assert status["errors"] >= 1 and "detector broke" in status["last_error"]
    dead = pipe.dead_letters.recent()
    assert len(dead) == 400 and set(dead["reason"]) == {"processing_error"}  # every row, none lost
    assert store.read("anomalies", stream="sensors").empty
    store.close()
