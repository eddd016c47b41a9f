"""``detect`` and ``forecast`` take the same input shapes and score / forecast every value column.

Issue 12: ``nk.detect(series)`` raised ``AttributeError`` where ``nk.forecast(series)`` worked, and
``detect`` on a two-column frame ignored the second column.
"""

from __future__ import annotations

import doctest
import importlib
import json

import numpy as np
import pandas as pd
import pytest

import nexus_kernel as nk

N = 400
SHIFT = 300


def stamps(n: int = N) -> pd.DatetimeIndex:
    return pd.date_range("2024-01-01", periods=n, freq="min", tz="UTC")


def shifted(seed: int = 0, at: int | None = SHIFT) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=N)
    if at is not None:
        x[at:] += 10
    return x


def test_detect_takes_a_series_with_a_datetime_index() -> None:
    out = nk.detect(pd.Series(shifted(), index=stamps(), name="load"), "level_shift")
    assert len(out) == N and (out["field"] == "load").all() and (out["series"] == "load").all()
    assert bool(out["is_anomaly"].iloc[SHIFT:SHIFT + 5].any()) and not out["is_anomaly"].iloc[:250].any()
    assert out["ts"].iloc[0] == stamps()[0]
    unnamed = nk.detect(pd.Series(shifted(), index=stamps()), "level_shift")
    assert (unnamed["field"] == "value").all()


def test_detect_scores_every_value_column_apart() -> None:
    """The shift is only in ``temp``: ``load`` stays calm, so the fields were not mixed or dropped."""
    wide = pd.DataFrame({"ts": stamps(), "load": shifted(1, at=None), "temp": shifted(2)})
    out = nk.detect(wide, "level_shift")
    assert len(out) == 2 * N and out.groupby("field").size().to_dict() == {"load": N, "temp": N}
    load, temp = out[out["field"] == "load"], out[out["field"] == "temp"]
    assert not load["is_anomaly"].any()
    assert temp["is_anomaly"].iloc[SHIFT:SHIFT + 5].any()
    assert np.allclose(temp["value"].to_numpy(), wide["temp"].to_numpy())
    assert json.loads(temp.loc[temp["is_anomaly"], "reason"].iloc[0])["detector"] == "level_shift"
    assert (out["series"] == out["field"]).all()  # no series column: each field is named as itself


def test_detect_same_result_from_index_or_time_column_and_with_a_series_column() -> None:
    values = {"load": shifted(1), "temp": shifted(2, at=None)}
    by_column = nk.detect(pd.DataFrame({"ts": stamps(), **values}), "robust_z")
    by_index = nk.detect(pd.DataFrame(values, index=stamps()), "robust_z")
    cols = ["ts", "field", "score", "is_anomaly"]
    pd.testing.assert_frame_equal(by_column[cols], by_index[cols])
    keyed = pd.DataFrame({"series": "pump-1", "ts": stamps(), **values})
    out = nk.detect(keyed, "robust_z")
    assert (out["series"] == "pump-1").all() and set(out["field"]) == {"load", "temp"}
    assert np.allclose(out["score"].to_numpy(), by_column["score"].to_numpy())


def test_detect_keeps_series_and_fields_of_a_long_frame_apart() -> None:
    """Two series, two fields: four runs; the shift of series ``b``'s ``temp`` flags only that run."""
    a = pd.DataFrame({"series": "a", "ts": stamps(), "load": shifted(1, at=None), "temp": shifted(2, at=None)})
    b = pd.DataFrame({"series": "b", "ts": stamps(), "load": shifted(3, at=None), "temp": shifted(4)})
    out = nk.detect(pd.concat([a, b], ignore_index=True), "level_shift")
    flagged = out[out["is_anomaly"]].groupby(["series", "field"]).size()
    assert list(flagged.index) == [("b", "temp")]
    assert out.groupby(["series", "field"]).size().eq(N).all()


def test_detect_field_and_fields_choose_columns() -> None:
    wide = pd.DataFrame({"load": shifted(1), "temp": shifted(2)}, index=stamps())
    assert set(nk.detect(wide, "robust_z", field="temp")["field"]) == {"temp"}
    assert set(nk.detect(wide, "robust_z", fields=["load", "temp"])["field"]) == {"load", "temp"}
    with pytest.raises(ValueError, match="not both"):
        nk.detect(wide, "robust_z", field="temp", fields=["load"])
    with pytest.raises(ValueError, match=r"no numeric field \['nope'\]"):
        nk.detect(wide, "robust_z", field="nope")


@pytest.mark.parametrize("call", [nk.detect, nk.forecast], ids=["detect", "forecast"])
def test_bad_shapes_are_a_clear_value_error(call) -> None:
    with pytest.raises(ValueError, match="expected a time column 'ts' or a DatetimeIndex"):
        call(pd.DataFrame({"value": [1.0, 2.0, 3.0]}))
    with pytest.raises(ValueError, match="expected a Series with a DatetimeIndex"):
        call(pd.Series([1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match="no numeric field: expected at least one numeric value column"):
        call(pd.DataFrame({"ts": stamps(3), "series": "a", "note": ["x", "y", "z"]}))
    with pytest.raises(ValueError, match="expected a DataFrame"):
        call([1.0, 2.0])


def test_forecast_takes_the_same_shapes_and_forecasts_every_column() -> None:
    ix = pd.date_range("2024-01-01", periods=48, freq="1h", tz="UTC")
    load, temp = np.arange(48.0), np.full(48, 5.0)
    opts = {"horizon": 2, "model": "seasonal_naive", "season": 24}
    wide = nk.forecast(pd.DataFrame({"load": load, "temp": temp}, index=ix), **opts)
    assert wide.groupby("field").size().to_dict() == {"load": 2, "temp": 2}
    assert np.allclose(wide.loc[wide["field"] == "temp", "yhat"], 5.0)
    single = nk.forecast(pd.Series(load, index=ix, name="load"), **opts)
    cols = ["ts", "series", "yhat", "lo", "hi", "field"]
    pd.testing.assert_frame_equal(single[cols], wide.loc[wide["field"] == "load", cols].reset_index(drop=True))
    nab = nk.forecast(pd.DataFrame({"timestamp": ix, "load": load}), **opts)
    pd.testing.assert_frame_equal(nab[cols], single[cols])


@pytest.mark.parametrize("name", ["nexus_kernel.analysis._detect", "nexus_kernel.analysis.forecasting.frames"])
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
