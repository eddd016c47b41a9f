"""bench detect-peers on generated data: the peers score online (a point's score never depends on a later
point), the self-calibration is scale-free, and the leave-one-group-out protocol chooses on the training
groups only. Needs the ``bench`` extra (river, stumpy, pyod): skipped without it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("stumpy")
pytest.importorskip("pyod")
pytest.importorskip("river")

from bench._peer_detectors import PyodWindows, RiverHST, StumpyDiscord, self_calibrated  # noqa: E402
from bench.detect_peers import evaluate_runs  # noqa: E402
from nexus_kernel.analysis.nab import NabFile  # noqa: E402
from nexus_kernel.analysis.nab._scorer import window_ids  # noqa: E402

SPIKE = 1300


def series(n: int = 1600, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = 10 + np.sin(np.arange(n) * 2 * np.pi / 50) + rng.normal(0, 0.05, n)
    x[SPIKE] += 8.0
    return x


def scores(det, x: np.ndarray, batch: int) -> np.ndarray:
    return np.concatenate([det.score_learn("k", x[a:a + batch]).score for a in range(0, len(x), batch)])


@pytest.mark.parametrize("make", [lambda: StumpyDiscord(m=16, history=400), lambda: PyodWindows(w=4, train=300),
                                  RiverHST])
def test_a_peer_scores_each_point_from_its_past_only(make) -> None:
    x = series()
    full = scores(make(), x, 1000)
    # the same points in other micro-batches, and a prefix alone: the same scores
    np.testing.assert_allclose(scores(make(), x, 37), full)
    np.testing.assert_allclose(scores(make(), x[:SPIKE], 1000), full[:SPIKE])
    assert np.isfinite(full).all()


def test_the_spike_is_the_top_discord() -> None:
    # (HBOS is left out: PyOD bounds the score of a value beyond the fitted histogram's range, so a spike
    # scores little above the edges of the normal range; that is the peer as it is)
    s = scores(StumpyDiscord(m=16, history=400), series(), 1000)
    assert SPIKE <= int(np.argmax(s[500:])) + 500 <= SPIKE + 16


def test_self_calibration_is_causal_and_scale_free() -> None:
    s = np.abs(np.random.default_rng(1).normal(size=800))
    z = self_calibrated(s)
    np.testing.assert_allclose(self_calibrated(1000 * s + 5), z, atol=1e-9)
    np.testing.assert_allclose(self_calibrated(s[:500]), z[:500])
    assert (z[:100] == 0).all() and np.isfinite(self_calibrated(np.zeros(300))).all()


def corpus() -> list[NabFile]:
    """Two files per group, each with one anomaly window (the artificialNoAnomaly file has none)."""
    files = []
    for category, name in [("artificialNoAnomaly", "a0"), ("artificialWithAnomaly", "a1"),
                           ("realKnownCause", "k0"), ("realKnownCause", "k1"),
                           ("realTweets", "t0"), ("realTweets", "t1")]:
        ts = pd.date_range("2024-01-01", periods=1000, freq="5min")
        frame = pd.DataFrame({"timestamp": ts, "value": np.zeros(1000)})
        windows = [] if category == "artificialNoAnomaly" else [(str(ts[600]), str(ts[700]))]
        f = NabFile(category, f"{name}.csv", frame, windows)
        f.ids = window_ids(frame["timestamp"], windows)
        files.append(f)
    return files


def test_leave_one_group_out_chooses_on_the_other_groups() -> None:
    files = corpus()
    perfect = {f.key: (np.arange(1000) == 600).astype(float) if f.windows else np.zeros(1000) for f in files}
    noisy = {f.key: (np.arange(1000) % 97 == 0).astype(float) for f in files}
    res = evaluate_runs(files, [noisy, perfect])
    assert set(res["folds"]) == {"artificial", "realKnownCause", "realTweets"}
    assert res["chosen"] == 1 and all(f["chosen"] == 1 for f in res["folds"].values())
    assert res["in_sample"]["standard"] == pytest.approx(100.0) and res["cv"]["standard"] == pytest.approx(100.0)
    # a run that is perfect on the real groups only, and misses a1's window and fires on a0 instead: the
    # artificial fold is scored with the threshold the real groups chose, and loses there
    real_only = dict(perfect)
    real_only["artificialWithAnomaly/a1.csv"] = np.zeros(1000)
    real_only["artificialNoAnomaly/a0.csv"] = (np.arange(1000) == 600).astype(float)
    res = evaluate_runs(files, [real_only])
    assert res["folds"]["artificial"]["standard"] < 0 < res["folds"]["realTweets"]["standard"]
