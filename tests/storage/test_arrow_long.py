"""The Arrow fast path of the DuckDB write stores exactly what the checked pandas path stores."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nexus_kernel.storage import DuckDBStore
from nexus_kernel.storage._arrow_long import long_table
from nexus_kernel.storage._duckdb import _as_arrow
from nexus_kernel.storage._protocol import batch_to_long_rows


def _engine_batch(rng: np.random.Generator, n: int, fields: int) -> pd.DataFrame:
    zone = rng.choice(["UTC", "Europe/Paris", "America/New_York"])
    frame = pd.DataFrame({
        # categories listed out of text order and some unused, as a validator's dictionary grows
        "stream": pd.Categorical(rng.choice(["s", "t"], n), categories=["t", "zz", "s"]),
        "series": pd.Categorical(rng.choice(["b", "a", "é", ""], n), categories=["é", "b", "", "a", "unused"]),
        "ts": (pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(rng.integers(0, 10**12, n), unit="ns"))
        .tz_convert(str(zone)),
        "seq": rng.integers(-5, 50, n).astype(np.int64),
    })
    for i in range(fields):
        values = rng.normal(size=n)
        values[rng.random(n) < 0.3] = np.nan  # empty cells give no long row
        frame[f"f{i}"] = values if i % 2 == 0 else np.round(values * 10).astype("float64")
    if fields and rng.random() < 0.5:
        frame["count"] = rng.integers(0, 9, n).astype(np.int64)  # an integer field
    return frame


@pytest.mark.parametrize("seed", range(25))
def test_the_fast_long_rows_are_the_checked_ones(seed):
    rng = np.random.default_rng(seed)
    batch = _engine_batch(rng, int(rng.integers(1, 200)), int(rng.integers(1, 4)))
    fast = long_table(batch)
    assert fast is not None
    slow, slow_rows = batch_to_long_rows(batch)
    assert fast[0].equals(_as_arrow(slow)), seed
    assert np.array_equal(fast[1], slow_rows)


@pytest.mark.parametrize("keys", ["string", "object"])
def test_text_keys_take_the_fast_way_too(keys):
    batch = _engine_batch(np.random.default_rng(4), 120, 2)
    text = batch.assign(stream=batch["stream"].astype(str).astype(keys), series=batch["series"].astype(str).astype(keys))
    fast = long_table(text)
    assert fast is not None
    assert fast[0].equals(long_table(batch)[0]) and fast[0].equals(_as_arrow(batch_to_long_rows(text)[0]))


@pytest.mark.parametrize("change", [
    lambda b: b.assign(series=[1, 2] * (len(b) // 2)),  # numbers as keys: the checked way refuses them
    lambda b: b.assign(series=pd.array(["a", None] * (len(b) // 2), dtype="string")),  # an empty text key
    lambda b: b.assign(stream=pd.Categorical([None] * len(b), categories=["s"])),  # an empty key cell
    lambda b: b.assign(ts=b["ts"].where(b.index > 0)),  # a time missing
    lambda b: b.assign(ts=b["ts"].dt.tz_localize(None)),  # naive times
    lambda b: b.assign(attrs=pd.array(['{"a": 1}'] + [None] * (len(b) - 1), dtype="string")),
    lambda b: b.assign(flag=True),  # a bool field
    lambda b: b.assign(seq=b["seq"].astype("Int64")),
    lambda b: b.iloc[:0],
])
def test_other_shapes_take_the_checked_way(change):
    batch = change(_engine_batch(np.random.default_rng(1), 20, 1))
    assert long_table(batch) is None


def test_a_checked_way_refusal_is_the_same_through_the_store():
    batch = _engine_batch(np.random.default_rng(2), 5, 1)
    batch["ts"] = batch["ts"].dt.tz_localize(None)
    with pytest.raises(Exception, match="naive datetimes"):
        DuckDBStore(":memory:").write(batch)


def test_both_ways_store_the_same_points():
    rng = np.random.default_rng(3)
    batch = _engine_batch(rng, 300, 2)
    fast, checked = DuckDBStore(":memory:"), DuckDBStore(":memory:")
    assert fast.write(batch) == checked._write_long(batch_to_long_rows(batch)[0]) > 0
    for stream in ("s", "t"):
        pd.testing.assert_frame_equal(fast.query(stream), checked.query(stream))


def test_write_groups_stores_a_repeated_key_from_its_lowest_group_and_first_row():
    t = pd.to_datetime(["2024-01-01T00:00:00Z"] * 4)
    batch = pd.DataFrame({"stream": pd.Categorical(["s"] * 4), "series": pd.Categorical(["x"] * 4), "ts": t,
                          "seq": [1, 1, 1, 1], "value": [30.0, 31.0, 10.0, 11.0]})
    store = DuckDBStore(":memory:")
    assert store.write_groups(batch, [2, 2, 1, 1], 3) == [0, 1, 0]
    assert store.query("s")["value"].tolist() == [10.0]
