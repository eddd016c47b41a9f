"""The analyze step loads its detector's kernels when its pipeline starts, before records come in."""

from __future__ import annotations

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
