import json

import numpy as np
import pandas as pd

from nexus_kernel.analysis import Analyzer, detect, find_period
from nexus_kernel.records import Schema, Validator


def frame(n=2000, shift_at=1500):
    ts = pd.date_range("2024-01-01", periods=n, freq="min", tz="UTC")
    x = np.random.default_rng(0).normal(size=n)
    x[shift_at:] += 10
    return pd.DataFrame({"ts": ts, "value": x})


def test_detect_gives_plot_ready_frame_with_structured_reasons():
    out = detect(frame())
    assert list(out.columns[:6]) == ["ts", "series", "value", "score", "is_anomaly", "reason"]
    hits = out[out["is_anomaly"]]
    assert len(hits) and hits.index.min() >= 1500 and hits.index.min() < 1520
    facts = json.loads(hits["reason"].iloc[0])
    # a level shift is explained by a change member: the level gap or the change-point posterior
    assert facts["detector"] == "ensemble" and facts["member"]["detector"] in ("level_shift", "bocpd")
    assert facts["value"] >= facts["threshold"] and facts["since"].startswith("2024-01-02")


def test_detect_accepts_a_nab_style_file():
    df = frame().rename(columns={"ts": "timestamp"})
    df["timestamp"] = df["timestamp"].dt.tz_localize(None)
    out = detect(df, "robust_z")
    assert len(out) == len(df) and out["is_anomaly"].iloc[1500]


def test_since_carries_across_batches():
    from nexus_kernel.analysis import RobustZ

    det = RobustZ(window=64, warmup=16)
    ts = pd.date_range("2024-01-01", periods=300, freq="s", tz="UTC")
    x = np.r_[np.random.default_rng(0).normal(size=200), np.full(100, 50.0)]
    f = pd.DataFrame({"series": "a", "ts": ts, "value": x})
    det.update(f.iloc[:202])
    out = det.update(f.iloc[202:205])
    assert isinstance(out["since"].dtype, pd.DatetimeTZDtype) and str(out["since"].dt.tz) == "UTC"
    assert (out["since"] == ts[200]).all()


def test_one_batch_of_many_series_keeps_each_series_run_apart():
    """A live batch holds a few points of many series: runs and reasons stay per series."""
    from nexus_kernel.analysis import RobustZ

    det = RobustZ(window=64, warmup=16)
    ts = pd.date_range("2024-01-01", periods=200, freq="s", tz="UTC")
    rng = np.random.default_rng(1)
    calm = pd.concat([pd.DataFrame({"series": k, "ts": ts, "value": rng.normal(size=200)}) for k in "abc"])
    det.update(calm)
    later = pd.date_range(ts[-1] + pd.Timedelta("1s"), periods=3, freq="s", tz="UTC")
    batch = pd.concat([pd.DataFrame({"series": k, "ts": later, "value": v})
                       for k, v in (("a", rng.normal(size=3)), ("b", [40.0, 41.0, 42.0]), ("c", rng.normal(size=3)))])
    out = det.update(batch.sample(frac=1.0, random_state=0))  # rows of the series interleaved
    assert list(out["series"]) == ["a"] * 3 + ["b"] * 3 + ["c"] * 3
    flagged = out[out["is_anomaly"]]
    assert set(flagged["series"]) == {"b"}
    assert (flagged["since"] == later[0]).all() and out.loc[out["series"] != "b", "since"].isna().all()
    assert all(json.loads(r)["since"].startswith(later[0].isoformat()[:19]) for r in flagged["reason"])


def test_find_period():
    assert find_period(np.sin(2 * np.pi * np.arange(600) / 24))[0] == 24
    assert find_period(np.random.default_rng(0).normal(size=600))[0] is None


def test_analyzer_emits_anomalies_table_schema():
    good, _ = Validator(Schema("pumps"))(frame().assign(series="p1"))
    out = Analyzer().update(good)
    an = out["anomalies"]
    assert list(an.columns) == ["stream", "series", "field", "ts", "detector", "score", "is_anomaly", "reason"]
    assert str(an["ts"].dtype) == "datetime64[ns, UTC]" and an["score"].between(0, 1).all()
    assert an["is_anomaly"].any() and (an["stream"] == "pumps").all()
    only = Analyzer(only_anomalies=True).update(good)["anomalies"]
    assert only["is_anomaly"].all() and len(only) == an["is_anomaly"].sum()
