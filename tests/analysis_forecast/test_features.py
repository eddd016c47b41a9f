from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nexus_kernel.analysis.features import FeatureExtractor, rolling_features
from nexus_kernel.analysis.seasonality import acf, dominant_period, seasonal_strength


def frame(n: int = 300, series: tuple[str, ...] = ("a", "b"), seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    parts = []
    for i, key in enumerate(series):
        ts = pd.date_range("2024-01-01", periods=n, freq="1min", tz="UTC")
        y = 5 * i + np.sin(np.arange(n) * 2 * np.pi / 30) + rng.normal(0, 0.2, n)
        parts.append(pd.DataFrame({"stream": "s", "series": key, "ts": ts, "seq": np.arange(n), "value": y}))
    # interleave series, as a live batch would
    return pd.concat(parts).sort_values(["ts", "series"], kind="stable").reset_index(drop=True)


def test_matches_plain_pandas_for_each_series() -> None:
    df = frame()
    out = FeatureExtractor(window=20, lags=(1, 3), quantiles=(0.25,))(df)
    assert len(out) == len(df)
    for key in ("a", "b"):
        mine = out[out["series"] == key]
        y = df.loc[df["series"] == key, "value"].reset_index(drop=True)
        r = y.rolling(20, min_periods=2)
        np.testing.assert_allclose(mine["mean"], r.mean(), rtol=1e-9)
        np.testing.assert_allclose(mine["std"], r.std(), rtol=1e-9)
        np.testing.assert_allclose(mine["min"], r.min())
        np.testing.assert_allclose(mine["max"], r.max())
        np.testing.assert_allclose(mine["q25"], r.quantile(0.25), rtol=1e-9)
        # slope per second: least squares on the last window, checked at one row
        i = 150
        secs = np.arange(i - 19, i + 1) * 60.0
        expected = np.polyfit(secs, y[i - 19:i + 1], 1)[0]
        assert mine["slope"].iloc[i] == pytest.approx(expected, rel=1e-6)
        roc = (y[i] - y[i - 19]) / (19 * 60.0)
        assert mine["roc"].iloc[i] == pytest.approx(roc, rel=1e-9)
        pair = np.corrcoef(y[i - 16:i + 1], y[i - 19:i - 2])[0, 1]
        assert mine["acf3"].iloc[i] == pytest.approx(pair, rel=1e-6)
        assert (mine["period"] == 30).all()
        assert (mine["seasonality"] > 0.8).all()


def test_output_keeps_input_order_and_index() -> None:
    df = frame().sample(frac=1.0, random_state=1)  # shuffled rows
    out = FeatureExtractor(window=10)(df)
    assert list(out.index) == list(df.index)
    assert (out["ts"].to_numpy() == df["ts"].to_numpy()).all()
    assert list(out.columns[:4]) == ["stream", "series", "ts", "field"]


def test_micro_batches_give_the_same_features_as_the_whole() -> None:
    df = frame(n=240)
    whole = FeatureExtractor(window=25, season_window=2000)(df)
    ext = FeatureExtractor(window=25, season_window=2000)
    cuts = [0, 7, 100, 101, 333, len(df)]
    parts = [ext(df.iloc[a:b]) for a, b in zip(cuts, cuts[1:])]
    pieces = pd.concat(parts)
    cols = ["mean", "std", "min", "max", "q50", "slope", "roc", "acf1"]
    np.testing.assert_allclose(pieces[cols].to_numpy(), whole[cols].to_numpy(), rtol=1e-7, atol=1e-9)


def test_nan_rows_are_kept_with_nan_features_and_skipped_by_windows() -> None:
    df = frame(series=("a",))
    df.loc[10, "value"] = np.nan
    out = FeatureExtractor(window=5)(df)
    assert len(out) == len(df)
    assert out.loc[10, ["mean", "std"]].isna().all()
    clean = df.drop(index=10)
    expected = FeatureExtractor(window=5)(clean)
    pd.testing.assert_frame_equal(out.drop(index=10)[["mean", "std"]], expected[["mean", "std"]])


def test_several_fields_long_format() -> None:
    df = frame(series=("a",)).assign(other=lambda d: d["value"] * 2)
    out = FeatureExtractor(window=10)(df)
    assert len(out) == 2 * len(df)
    assert set(out["field"]) == {"value", "other"}
    a = out[out["field"] == "value"]["mean"].to_numpy()
    b = out[out["field"] == "other"]["mean"].to_numpy()
    np.testing.assert_allclose(b, 2 * a)


def test_rolling_features_without_series_column() -> None:
    df = frame(series=("a",)).drop(columns=["series", "stream", "seq"])
    out = rolling_features(df, window=12)
    assert len(out) == len(df) and (out["series"] == "").all()


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="window"):
        FeatureExtractor(window=1)
    with pytest.raises(ValueError, match="lag"):
        FeatureExtractor(window=5, lags=(5,))
    with pytest.raises(ValueError, match="fields not in the batch"):
        FeatureExtractor(fields=["nope"])(frame())
    with pytest.raises(ValueError, match="'series' and 'ts'"):
        FeatureExtractor()(pd.DataFrame({"value": [1.0]}))


def test_seasonality_detection() -> None:
    rng = np.random.default_rng(2)
    t = np.arange(2000)
    assert dominant_period(np.sin(t * 2 * np.pi / 48) + rng.normal(0, 0.3, len(t))) == 48
    # a trend and a season: the trend does not hide the season
    assert dominant_period(0.01 * t + np.sin(t * 2 * np.pi / 24)) == 24
    assert dominant_period(rng.normal(size=2000)) is None
    assert dominant_period(np.cumsum(rng.normal(size=2000))) is None  # random walk: no season
    assert dominant_period(np.full(500, 3.0)) is None
    assert dominant_period(np.array([1.0, 2.0])) is None
    assert seasonal_strength(np.sin(t * 2 * np.pi / 24), 24) > 0.99
    assert seasonal_strength(rng.normal(size=2000), 24) < 0.1
    assert seasonal_strength(np.full(100, 1.0), 10) == 0.0
    r = acf(np.sin(t * 2 * np.pi / 50), 100)
    assert r[0] == pytest.approx(1.0) and r[50] > 0.9 and r[25] < -0.9
