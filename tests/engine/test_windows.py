"""Event-time windows: results equal a brute-force computation, whatever the batch cut or order."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings as hsettings
from hypothesis import strategies as st

from nexus_kernel.config import load_settings
from nexus_kernel.engine import StepContext, Window
from nexus_kernel.records import DeadLetterQueue

T0 = pd.Timestamp("2024-01-01", tz="UTC")


def batch(rows):
    """rows: (series, seconds after T0, value)"""
    frame = pd.DataFrame(rows, columns=["series", "sec", "value"])
    return pd.DataFrame({
        "stream": "s", "series": frame["series"].astype("string"),
        "ts": T0 + pd.to_timedelta(frame["sec"], unit="s"), "seq": np.arange(len(frame), dtype="int64"),
        "value": frame["value"].astype("float64"),
    })


def bound(window: Window) -> DeadLetterQueue:
    dlq = DeadLetterQueue()
    window.bind(StepContext("s", load_settings(allowed_lateness=0), dlq))
    return dlq


def run(window: Window, batches) -> pd.DataFrame:
    outs = [window(b) for b in batches]
    outs.append(window.flush())
    outs = [o for o in outs if o is not None and len(o)]
    return pd.concat(outs, ignore_index=True) if outs else pd.DataFrame()


def brute_tumbling(rows, size):
    frame = pd.DataFrame(rows, columns=["series", "sec", "value"])
    frame["start"] = (frame["sec"] // size) * size
    g = frame.sort_values("sec", kind="mergesort").groupby(["series", "start"])["value"]
    out = pd.DataFrame({"count": g.count(), "sum": g.sum(), "min": g.min(), "max": g.max(),
                        "first": g.first(), "last": g.last(), "std": g.std()}).reset_index()
    return out.sort_values(["series", "start"]).reset_index(drop=True)


def test_tumbling_matches_brute_force_and_emits_on_watermark():
    rows = [("a", 5, 1.0), ("b", 7, 10.0), ("a", 30, 3.0), ("a", 61, 5.0), ("b", 62, 20.0), ("a", 125, 7.0)]
    w = Window("1min", agg=["count", "sum", "min", "max", "first", "last", "std", "mean"], lateness=0)
    bound(w)
    first = w(batch(rows[:3]))
    assert first is None  # nothing has closed yet
    second = w(batch(rows[3:5]))
    assert list(second["series"]) == ["a", "b"] and list(second["value_count"]) == [2, 1]
    assert second["window_start"].iat[0] == T0
    assert second["window_end"].iat[0] == T0 + pd.Timedelta("1min")
    rest = run(w, [batch(rows[5:])])
    got = pd.concat([second, rest], ignore_index=True).sort_values(["series", "window_start"]).reset_index(drop=True)
    want = brute_tumbling(rows, 60)
    assert list(got["value_count"]) == list(want["count"])
    np.testing.assert_allclose(got["value_sum"], want["sum"])
    np.testing.assert_allclose(got["value_first"], want["first"])
    np.testing.assert_allclose(got["value_last"], want["last"])
    np.testing.assert_allclose(got["value_std"], want["std"], equal_nan=True)
    np.testing.assert_allclose(got["value_mean"], want["sum"] / want["count"])


def test_out_of_order_within_lateness_is_counted_and_first_last_follow_event_time():
    w = Window("1min", agg=["count", "first", "last"], lateness=30)
    dlq = bound(w)
    out = run(w, [batch([("a", 50, 2.0), ("a", 70, 9.0)]), batch([("a", 10, 1.0), ("a", 55, 3.0)])])
    row = out[out["window_start"] == T0].iloc[0]
    assert row["value_count"] == 3 and row["value_first"] == 1.0 and row["value_last"] == 3.0
    assert dlq.total == 0


def test_too_late_records_go_to_dead_letters_with_reason_late():
    w = Window("1min", agg=["count"], lateness=0)
    dlq = bound(w)
    out1 = w(batch([("a", 10, 1.0), ("a", 130, 2.0)]))  # watermark 130 s: window [0, 60) closes
    assert list(out1["value_count"]) == [1]
    out2 = w(batch([("a", 20, 5.0), ("a", 131, 6.0)]))
    assert out2 is None  # the late record changed nothing
    assert dlq.counts() == {"late": 1}
    assert "window already emitted" in dlq.recent()["detail"].iat[0]
    final = w.flush()
    assert list(final["value_count"]) == [2]


@pytest.mark.parametrize("kind", ["tumbling", "sliding", "session"])
def test_a_far_future_record_is_dead_lettered_and_never_moves_the_watermark(kind):
    w = Window("1min", agg=["count"], kind=kind, slide="30s" if kind == "sliding" else None, lateness=0)
    dlq = bound(w)
    far = (pd.Timestamp("2200-01-01", tz="UTC") - T0).total_seconds()
    assert w(batch([("a", 10, 1.0), ("a", far, 2.0)])) is None
    assert w.watermark == (T0 + pd.Timedelta("10s")).value and w.future == 1
    assert dlq.counts() == {"future": 1} and "ahead of the stream's clock" in dlq.recent()["detail"].iat[0]
    run(w, [batch([("a", 20, 3.0), ("a", 130, 4.0)])])
    assert dlq.counts() == {"future": 1} and w.late == 0  # the records after it are not late


def test_a_window_judges_the_future_by_its_source_clock_and_unbound_checks_nothing():
    week = pd.Timestamp.now(tz="UTC") + pd.Timedelta(days=7)
    ahead = batch([("a", (week - T0).total_seconds(), 1.0)])
    w = Window("1min", agg=["count"], lateness=0)
    dlq = DeadLetterQueue()
    w.bind(StepContext("s", load_settings(allowed_lateness=0), dlq, clock=lambda: week))  # a fast simulator
    w(ahead)
    assert dlq.total == 0 and w.future == 0 and w.watermark == ahead["ts"].iat[0].value
    loose = Window("1min", agg=["count"], lateness=0)  # never bound: no settings, no clock, no check
    loose(ahead)
    assert loose.future == 0 and loose.watermark == ahead["ts"].iat[0].value


def test_sliding_windows_cover_each_record_size_over_slide_times():
    rows = [("a", s, 1.0) for s in range(0, 120, 10)]
    w = Window("1min", agg=["count"], kind="sliding", slide="30s", lateness=0)
    bound(w)
    out = run(w, [batch(rows)])
    by_start = dict(zip((out["window_start"] - T0).dt.total_seconds().astype(int), out["value_count"]))
    assert by_start == {-30: 3, 0: 6, 30: 6, 60: 6, 90: 3}


def test_session_windows_split_on_gap_and_merge_across_batches():
    w = Window("30s", agg=["count", "min", "max"], kind="session", lateness=0)
    bound(w)
    out = run(w, [batch([("a", 0, 1.0), ("a", 20, 2.0)]), batch([("a", 45, 3.0), ("a", 200, 4.0), ("b", 10, 9.0)])])
    a = out[out["series"] == "a"].sort_values("window_start")
    assert list(a["value_count"]) == [3, 1]
    assert (a["window_start"].iat[0] - T0).total_seconds() == 0
    assert (a["window_end"].iat[0] - T0).total_seconds() == 45 + 30  # last record + gap
    assert list(out[out["series"] == "b"]["value_count"]) == [1]


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError, match="aggregate"):
        Window("1min", agg=["median"])
    with pytest.raises(ValueError, match="slide"):
        Window("1min", kind="sliding", slide="25s")
    with pytest.raises(ValueError, match="positive"):
        Window("0s")


@hsettings(max_examples=60)
@given(
    rows=st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(0, 600),
                            st.floats(-1e3, 1e3, allow_nan=False)), min_size=1, max_size=60),
    cuts=st.lists(st.integers(1, 60), max_size=5),
)
def test_any_batch_cut_gives_the_brute_force_answer(rows, cuts):
    """With lateness covering the whole span nothing is late, so any cut must equal brute force."""
    w = Window("1min", agg=["count", "sum", "min", "max"], lateness=10_000)
    bound(w)
    bounds = sorted({0, len(rows), *[c for c in cuts if c < len(rows)]})
    parts = [batch(rows[a:b]) for a, b in zip(bounds, bounds[1:])]
    got = run(w, parts).sort_values(["series", "window_start"]).reset_index(drop=True)
    want = brute_tumbling(rows, 60)
    assert list(got["value_count"]) == list(want["count"])
    np.testing.assert_allclose(got["value_sum"], want["sum"], rtol=1e-9, atol=1e-6)
    np.testing.assert_allclose(got["value_min"], want["min"])
    np.testing.assert_allclose(got["value_max"], want["max"])
