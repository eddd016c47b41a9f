"""Columnar JSON of every column kind a frame may hold (the live path and every query answer use it)."""

from __future__ import annotations

import numpy as np
import orjson
import pandas as pd

from nexus_kernel.client._core import frame_from_columns
from nexus_kernel.gateway._frames import columns, dumps


def test_every_dtype_encodes_with_nulls():
    frame = pd.DataFrame({
        "text": pd.array(["x", None], dtype="string"), "obj": ["o", None], "cat": pd.Categorical(["k", None]),
        "int": [1, 2], "nint": pd.array([1, None], dtype="Int64"), "float": [1.5, np.nan],
        "nfloat": pd.array([2.5, None], dtype="Float64"), "inf": [np.inf, 1.0], "bool": [True, False],
        "nbool": pd.array([True, None], dtype="boolean"),
        "utc": pd.to_datetime(["2024-01-01T00:00:00.123456Z", None], utc=True),
        "paris": pd.to_datetime(["2024-01-01T01:00:00"]).tz_localize("Europe/Paris").append(pd.DatetimeIndex([pd.NaT], tz="Europe/Paris")),
        "naive": pd.to_datetime(["2024-01-01", None]),
    })
    assert orjson.loads(dumps(columns(frame))) == {
        "text": ["x", None], "obj": ["o", None], "cat": ["k", None], "int": [1, 2], "nint": [1, None],
        "float": [1.5, None], "nfloat": [2.5, None], "inf": [None, 1.0], "bool": [True, False],
        "nbool": [True, None], "utc": ["2024-01-01T00:00:00.123456Z", None],
        "paris": ["2024-01-01T00:00:00.000000Z", None], "naive": ["2024-01-01T00:00:00.000000Z", None],
    }


def test_a_batch_round_trips_through_the_client():
    batch = pd.DataFrame({"stream": pd.array(["s"] * 2, dtype="string"), "series": pd.array(["a", "b"], dtype="string"),
                          "ts": pd.to_datetime(["2024-01-01T00:00:00Z", "2024-01-01T00:00:01Z"]),
                          "seq": np.asarray([1, 2], dtype=np.int64), "value": [1.0, 2.0]})
    back = frame_from_columns(orjson.loads(dumps({"rows": 2, "columns": columns(batch)})))
    assert back["series"].astype(str).tolist() == ["a", "b"] and back["seq"].tolist() == [1, 2]
    assert (back["ts"] == batch["ts"]).all() and back["value"].tolist() == [1.0, 2.0]
