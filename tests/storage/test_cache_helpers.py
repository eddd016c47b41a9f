"""The memory cache's vectorised helpers give exactly what the plain pandas recipes they replace give."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nexus_kernel.storage import _cache
from nexus_kernel.storage._cache import SERIES, STREAM, _SORT, MemoryCache


def _frame(rng: np.random.Generator, n: int) -> pd.DataFrame:
    frame = pd.DataFrame({"stream": pd.array(rng.choice(["a", "b", "zz"], n), dtype="string"),
                          "series": pd.array(rng.choice(["s1", "s10", "s2", "é", "S"], n), dtype="string"),
                          "ts": pd.to_datetime(rng.integers(0, 20, n), unit="s", utc=True),
                          "seq": rng.integers(0, 5, n).astype("int64"),
                          "value": rng.choice([0.0, 1.0, np.nan], n)})
    if n > 1 and rng.random() < 0.4:  # exact duplicate rows too
        frame = pd.concat([frame, frame.iloc[: n // 2]], ignore_index=True)
    return frame


@pytest.mark.parametrize("seed", range(40))
def test_newest_per_series_and_recent_match_the_pandas_recipes(seed: int) -> None:
    rng = np.random.default_rng(seed)
    frame = _frame(rng, int(rng.integers(0, 300)))
    newest = frame.sort_values([STREAM, *_SORT], kind="stable").drop_duplicates([STREAM, SERIES], keep="last")
    pd.testing.assert_frame_equal(_cache.newest_per_series(frame), newest)
    size = int(rng.integers(1, 6))
    recent = (frame.sort_values(_SORT, kind="stable").drop_duplicates(keep="last")
              .groupby(SERIES, sort=False, observed=True).tail(size).reset_index(drop=True))
    pd.testing.assert_frame_equal(_cache._recent(frame, size), recent)


@pytest.mark.parametrize("seed", range(20))
def test_categorical_keys_pick_the_rows_text_keys_pick(seed: int) -> None:
    # categories listed out of text order, some unused: rows are ranked by their text all the same
    rng = np.random.default_rng(seed)
    frame = _frame(rng, int(rng.integers(1, 300)))
    shuffled = {c: list(rng.permutation(["s1", "s10", "s2", "é", "S", "unused"] if c == SERIES
                                        else ["a", "b", "zz", "unused"])) for c in (STREAM, SERIES)}
    categorical = frame.assign(**{c: pd.Categorical(frame[c].astype(str), categories=shuffled[c])
                                  for c in (STREAM, SERIES)})
    text_rows = _cache.newest_per_series(frame).index
    pd.testing.assert_index_equal(_cache.newest_per_series(categorical).index, text_rows)


def test_categorical_keys_normalise_as_text_keys_do() -> None:
    frame = _frame(np.random.default_rng(3), 200)
    categorical = frame.assign(stream=frame["stream"].astype("category"), series=frame["series"].astype("category"))
    pd.testing.assert_frame_equal(_cache.normalize(categorical), _cache.normalize(frame))


def test_the_memory_cache_keeps_the_newest_and_the_last_rows_per_series_from_categorical_batches() -> None:
    cache = MemoryCache(recent_size=3)
    ts = pd.date_range("2024-01-01", periods=10, freq="s", tz="UTC")
    batch = pd.DataFrame({"stream": pd.Categorical(["p"] * 10), "series": pd.Categorical(["b", "a"] * 5),
                          "ts": ts, "seq": np.arange(10, dtype="int64"), "value": np.arange(10.0)})
    cache.put_latest(batch)
    latest = cache.latest("p")
    assert latest["series"].tolist() == ["a", "b"] and latest["value"].tolist() == [9.0, 8.0]
    assert cache.recent("p", "a")["value"].tolist() == [5.0, 7.0, 9.0]
