"""The obvious is never missed: unmistakable anomalies on fresh, short series, flagged by the default
detector as the pipeline's Analyzer runs it and by ``nk.detect``, early, once, with a reason in words.

Each series has 450 one-minute points, N(20, 1) noise (a 25-point season where the case needs one), and
one anomaly from point 300 on. The default detector states its warm-up (``warmup_points``: 116 points
for the ensemble); nothing before the anomaly may be flagged after it, and the anomaly must be flagged
within ``WITHIN[case]`` points of its start.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import nexus_kernel as nk
from nexus_kernel.analysis import Analyzer

N, AT = 450, 300
# points after the start within which the first alarm must come (a trend break needs time to show)
WITHIN = {"spike": 1, "level_shift": 10, "variance": 15, "stuck": 10, "season_stops": 30, "trend_break": 40}
# the member expected to explain each case (one of them)
MEMBERS = {"spike": {"robust_z", "bocpd", "mean_shift", "sequence"},
           "level_shift": {"mean_shift", "bocpd", "robust_z", "sequence"},
           "variance": {"bocpd", "relative_entropy", "robust_z", "sequence", "mean_shift"},
           "stuck": {"stuck"}, "season_stops": {"season_change", "bocpd", "seasonal", "sequence", "relative_entropy"},
           "trend_break": {"mean_shift", "bocpd", "robust_z", "relative_entropy", "sequence"}}
def series(case: str, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    i = np.arange(N)
    season = 5.0 * np.sin(2 * np.pi * i / 25) if case == "season_stops" else 0.0
    x = 20.0 + season + rng.normal(0, 1.0, N)
    if case == "spike":
        x[AT] += 20.0  # 20 sigma
    elif case == "level_shift":
        x[AT:] += 4.0  # 4 sigma
    elif case == "variance":
        x[AT:] = 20.0 + rng.normal(0, 5.0, N - AT)  # the noise x5
    elif case == "stuck":
        x[AT:] = x[AT - 1]
    elif case == "season_stops":
        x[AT:] -= season[AT:]
    elif case == "trend_break":
        x[AT:] += 0.1 * (i[AT:] - AT)  # flat, then a climb of 0.1 sigma a point
    return x


def frame(x: np.ndarray) -> pd.DataFrame:
    ts = pd.date_range("2024-01-01", periods=len(x), freq="min", tz="UTC")
    return pd.DataFrame({"ts": ts, "value": x})


def check(flagged: np.ndarray, reasons: list[str], case: str) -> None:
    early = flagged[flagged < AT]
    assert len(early) == 0, f"{case}: false alarms before the anomaly at {early.tolist()}"
    late = flagged[flagged >= AT]
    assert len(late) >= 1, f"{case}: never flagged"
    assert late[0] - AT < WITHIN[case], f"{case}: first flagged {late[0] - AT} points after the start"
    facts = json.loads(reasons[0])
    member = facts["member"]["detector"]
    assert member in MEMBERS[case], f"{case}: explained by {member}"
    text = facts["text"]
    assert member in text and "threshold" in text and "expected" in text, text
    assert f"value {facts['observed']:.6g}" in text


CASES = sorted(WITHIN)


@pytest.mark.parametrize(("case", "seed"), [(c, s) for c in CASES for s in (0, 1, 2)])
def test_nk_detect_flags_the_obvious(case: str, seed: int) -> None:
    out = nk.detect(frame(series(case, seed)))
    assert out.attrs["warmup_points"] == 116
    assert (out["score"].to_numpy()[:116] == 0).all()  # the stated warm-up: not scored
    flagged = np.flatnonzero(out["is_anomaly"].to_numpy())
    check(flagged, out.loc[out["is_anomaly"], "reason"].tolist(), case)


@pytest.mark.parametrize(("case", "seed"), [(c, 0) for c in CASES])
def test_the_pipelines_analyzer_flags_the_obvious(case: str, seed: int) -> None:
    """As the engine runs it: the default analyze step's detector, micro-batches of 20 points."""
    x = series(case, seed)
    batch = frame(x).assign(stream="lab", series="probe", seq=np.arange(N))
    analyzer = Analyzer(detector="ensemble", only_anomalies=True)
    parts = [analyzer.update(batch.iloc[a:a + 20])["anomalies"] for a in range(0, N, 20)]
    out = pd.concat(parts, ignore_index=True)
    assert analyzer.warmup_points == 116 and parts[-1].attrs["warmup_points"] == 116
    at = batch.set_index("ts").index.get_indexer(out["ts"])
    check(np.sort(at), out.sort_values("ts")["reason"].tolist(), case)


def test_the_notebook_example_flags_the_spike_and_the_step_once_each() -> None:
    rng = np.random.default_rng(0)
    i = np.arange(500)
    x = 20 + 2 * np.sin(i / 30) + rng.normal(0, 0.3, 500)
    x[250] += 6
    x[400:] += 4
    df = frame(x)
    flagged = np.flatnonzero(nk.detect(df)["is_anomaly"].to_numpy())
    assert len(flagged) == 2 and flagged[0] == 250 and 400 <= flagged[1] < 410  # one alarm per incident
    step = np.flatnonzero(nk.detect(df, "level_shift")["is_anomaly"].to_numpy())
    assert len(step) >= 1 and (step >= 400).all() and step[0] < 410  # the step, and nothing else


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_season_change_flags_a_season_that_stops(seed: int) -> None:
    """The member that flags it in the default, on its own: early, never before, in words."""
    out = nk.detect(frame(series("season_stops", seed)), "season_change")
    flagged = np.flatnonzero(out["is_anomaly"].to_numpy())
    assert len(flagged) and flagged[0] >= AT and flagged[0] - AT < 12, flagged[:5]
    facts = json.loads(out.loc[out["is_anomaly"], "reason"].iloc[0])
    assert facts["value"] <= -5.0  # against the cycle
    assert facts["text"].startswith(f"value {facts['observed']:.6g}: over the last season the values moved against")
    assert "the cycle weakened or stopped (threshold 5 sigma)" in facts["text"]
    assert facts["text"].endswith(", season_change") and "expected" in facts["text"]


@pytest.mark.parametrize("case", ["spike", "level_shift", "variance", "trend_break"])
def test_season_change_is_silent_without_a_season(case: str) -> None:
    out = nk.detect(frame(series(case, 0)), "season_change")
    assert not out["is_anomaly"].any() and (out["score"] == 0).all()


def test_season_change_is_silent_while_the_season_holds() -> None:
    i = np.arange(3000)
    x = 20 + 5 * np.sin(2 * np.pi * i / 40) + np.random.default_rng(4).normal(0, 1.0, 3000)
    out = nk.detect(frame(x), "season_change")
    assert not out["is_anomaly"].any()
    x[2000:] += 4.0  # a level shift over whole seasons leaves the matched filter near 0
    stat = nk.detect(frame(x), "season_change")["statistic"].to_numpy()
    assert np.nanmax(np.abs(stat[2040:])) < 5.0


def test_level_shift_reason_reads_as_words() -> None:
    x = series("level_shift", 0)
    out = nk.detect(frame(x), "level_shift")
    facts = json.loads(out.loc[out["is_anomaly"], "reason"].iloc[0])
    assert facts["text"].startswith(f"value {facts['observed']:.6g}: the median of the last 8 points moved ")
    assert facts["text"].endswith("(threshold 5 sigma), level_shift")


# every detector module, found on disk (the package's name is shadowed by the `detectors` registry)
_DETECTOR_MODULES = sorted(p.stem for p in (Path(nk.__file__).parent / "analysis" / "detectors").glob("*.py")
                           if not p.stem.startswith("_"))


@pytest.mark.parametrize("module", _DETECTOR_MODULES)
def test_detector_docstring_examples_run(module: str) -> None:
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(f"nexus_kernel.analysis.detectors.{module}"))
    assert result.attempted > 0 and result.failed == 0
