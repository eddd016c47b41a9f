"""ONE conformance suite, run against every registered detector."""

import pickle

import numpy as np
import pandas as pd

from .conftest import labelled, make


def run(det, x, batch=97, key="s"):
    return np.concatenate([det.score_learn(key, x[a : a + batch]).score for a in range(0, len(x), batch)])


def test_scores_finite_and_in_range(name):
    s = run(make(name), labelled())
    assert s.shape == (900,) and np.isfinite(s).all() and (s >= 0).all() and (s <= 1).all()


def test_deterministic_under_seed(name):
    assert np.array_equal(run(make(name), labelled()), run(make(name), labelled()))


def test_batching_does_not_change_scores(name):
    if name == "iforest":  # the forest is refitted at batch edges: documented caveat
        return
    assert np.allclose(run(make(name), labelled(), batch=1000), run(make(name), labelled(), batch=37))


def test_pickle_mid_stream_gives_identical_scores(name):
    x = labelled()
    det = make(name)
    run(det, x[:450])
    copy = pickle.loads(pickle.dumps(det))
    assert np.array_equal(run(det, x[450:]), run(copy, x[450:]))


def test_finds_the_injected_anomalies(name):
    s = run(make(name), labelled())
    if name in ("iforest", "trend", "bocpd", "cusum", "relative_entropy"):  # these rise over a window
        assert s[490:760].max() > s[200:480].max() or s[490:760].max() > 0.99
    elif name == "stuck":  # sees repeats only: silent on the noisy spike and shift, sure on a stuck stretch
        x = labelled()
        x[800:] = x[799]
        assert s.max() < 0.5 and run(make(name), x)[800:810].max() > 0.99
    elif name == "context_ose":  # CAD's score is (1 - active share + new share) / 2: 1 only in the limit
        assert max(s[500], s[700:720].max()) > 0.95 and s[500] > s[200:480].max()
    else:
        assert max(s[500], s[700:720].max()) > 0.99


def test_nan_scores_zero_and_is_skipped(name):
    x = labelled()
    with_nan = x.copy()
    with_nan[300] = np.nan
    s = run(make(name), with_nan)
    assert s[300] == 0.0 and np.isfinite(s).all()
    if name == "iforest":  # refits fall at batch edges, which the NaN moves: documented caveat
        return
    # skipping: the rest equals a run where the NaN never arrived
    ref = run(make(name), np.delete(x, 300))
    assert np.allclose(np.delete(s, 300), ref)


def test_single_point_and_warmup_score_zero(name):
    assert make(name).score_learn("s", [5.0]).score.tolist() == [0.0]


def test_constant_series_scores_zero_then_departure_scores(name):
    det = make(name)
    flat = run(det, np.full(400, 3.0))
    assert flat.max() < min(det.score_threshold, 0.01)
    after = run(det, np.r_[np.full(30, 3.0 + 50.0)])
    if name == "relative_entropy":  # a distribution detector: the departure is scored as it fills the window
        assert after[-1] > 0.3 and after[-1] > after[0] > flat.max()
    elif name == "stuck":  # a constant series repeats from its start: a new constant is no stuck sensor
        assert after.max() < det.score_threshold
    elif name == "season_change":  # a constant series has no cycle, so none can stop or grow: it stays silent
        assert after.max() == 0.0
    elif name not in ("iforest",):
        assert after.max() > 0.9


def test_series_appearing_mid_stream_gets_its_own_state(name):
    det = make(name)
    x = labelled()
    a = run(det, x, key="a")
    b = run(det, x, key="b")
    assert np.array_equal(a, b) and set(det.series) == {"a", "b"}


def test_update_handles_duplicates_gaps_and_irregular_times(name):
    det = make(name)
    rng = np.random.default_rng(1)
    gaps = np.cumsum(rng.integers(1, 600, 300))  # irregular sampling with gaps
    ts = pd.to_datetime(gaps, unit="s", utc=True)
    ts = ts.insert(100, ts[100])  # a duplicate timestamp
    frame = pd.DataFrame({"series": "s", "ts": ts, "seq": np.arange(301), "value": rng.normal(size=301)})
    out = det.update(frame.sample(frac=1.0, random_state=0))  # arrives shuffled
    assert len(out) == 301 and out["ts"].is_monotonic_increasing
    assert np.isfinite(out["score"]).all()
    flagged = out[out["is_anomaly"]]
    assert (flagged["reason"].str.len() > 0).all()
