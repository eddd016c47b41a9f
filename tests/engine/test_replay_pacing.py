"""Replay pacing: event time from the first record, steady small batches, long gaps shortened.

Measured with the real clock on small generated files, so each test takes about a second.
"""

from __future__ import annotations

import asyncio
import logging
import time

import pandas as pd
import pytest

from nexus_kernel.engine import sources


def arrivals(source):
    """(seconds since the first ``__anext__`` was asked, rows) for every batch the source yields."""

    async def collect():
        out = []
        t0 = time.monotonic()
        async for batch in source.batches():
            out.append((time.monotonic() - t0, batch))
        return out

    return asyncio.run(collect())


def csv(tmp_path, times, name="pumps.csv"):
    path = tmp_path / name
    pd.DataFrame({"ts": times, "value": range(len(times))}).to_csv(path, index=False)
    return path


def test_a_minute_of_data_per_second_from_the_first_record(tmp_path):
    # the case: one row a second, years in the past, a single file-sized chunk
    path = csv(tmp_path, pd.date_range("2019-03-01", periods=30, freq="1s"))
    got = arrivals(sources.replay(path, time="ts", speed=30))
    stamps = [t for t, _ in got]
    rows = [len(b) for _, b in got]
    assert sum(rows) == 30
    assert stamps[0] < 0.3, "the first record is due at once"
    assert 0.8 < stamps[-1] < 2.0, "29 s of data at 30x is ~1 s of wall time"
    assert len(got) >= 5 and max(rows) <= 10, f"rows spread over the second, not all at the end: {rows}"
    arrived_by_half = sum(n for t, n in zip(stamps, rows) if t <= 0.5)
    assert 5 <= arrived_by_half <= 25
    assert list(pd.concat([b for _, b in got])["value"]) == list(range(30))


def test_dense_rows_come_in_ticks_not_one_batch_per_row(tmp_path):
    path = csv(tmp_path, pd.date_range("2024-01-01", periods=400, freq="10ms"))  # 4 s of data
    got = arrivals(sources.replay(path, time="ts", speed=4))
    assert sum(len(b) for _, b in got) == 400
    assert 0.8 < got[-1][0] < 2.0
    assert 5 <= len(got) <= 25, f"about one batch per 0.1 s tick, got {len(got)}"
    gaps = [b - a for (a, _), (b, _) in zip(got, got[1:])]
    assert max(gaps) < 0.25, "nothing due waits longer than about a tick"


def test_a_replay_behind_schedule_catches_up(tmp_path):
    # one-row chunks faster than one per tick: rows already due must not each wait a tick
    path = csv(tmp_path, pd.date_range("2024-01-01", periods=40, freq="1s"))
    got = arrivals(sources.replay(path, time="ts", speed=50, batch_size=1))
    assert len(got) == 40
    assert 0.6 < got[-1][0] < 1.5


@pytest.mark.parametrize("max_gap, pause", [(0.3, (0.25, 0.8)), (None, (0.9, 2.0))])
def test_long_gaps_are_shortened_to_max_gap_and_said(tmp_path, caplog, max_gap, pause):
    times = list(pd.date_range("2024-01-01", periods=5, freq="1s"))
    after = pd.Timestamp("2024-01-01 00:00:05") + (pd.Timedelta(days=3) if max_gap else pd.Timedelta(seconds=10))
    times += list(pd.date_range(after, periods=5, freq="1s"))
    path = csv(tmp_path, times)
    with caplog.at_level(logging.WARNING, logger="nexus_kernel.engine.sources.replay"):
        got = arrivals(sources.replay(path, time="ts", speed=10, max_gap=max_gap))
    values = [(t, v) for t, b in got for v in b["value"]]
    assert len(values) == 10
    before_gap = max(t for t, v in values if v == 4)
    after_gap = min(t for t, v in values if v == 5)
    assert pause[0] < after_gap - before_gap < pause[1]
    if max_gap:
        assert "pumps.csv: a gap of 3 days" in caplog.text and "shortened to 0.3 s" in caplog.text
    else:
        assert "gap" not in caplog.text  # an honoured 1 s pause is no news


def test_max_gap_none_announces_a_long_wait_before_it_starts(tmp_path, caplog):
    path = csv(tmp_path, [pd.Timestamp("2024-01-01"), pd.Timestamp("2024-01-02")])

    async def first_then_stop():
        it = sources.replay(path, time="ts", speed=1, max_gap=None).batches()
        first = await it.__anext__()
        try:
            await asyncio.wait_for(it.__anext__(), 0.3)  # a day away: it must be waiting, and have said so
        except asyncio.TimeoutError:
            return first
        raise AssertionError("the second row came a day early")

    with caplog.at_level(logging.WARNING, logger="nexus_kernel.engine.sources.replay"):
        assert len(asyncio.run(first_then_stop())) == 1
    assert "next row is 86400 s of wall time away" in caplog.text


def test_out_of_order_and_unreadable_times_go_out_without_waiting(tmp_path):
    path = tmp_path / "messy.csv"
    path.write_text("ts,value\n2024-01-01T00:00:00,0\n2024-01-01T00:00:10,1\n2023-01-01T00:00:00,2\n"
                    "not a time,3\n2024-01-01T00:00:20,4\n")
    got = arrivals(sources.replay(path, time="ts", speed=20))
    by_value = {v: t for t, b in got for v in b["value"]}
    assert sorted(by_value) == [0, 1, 2, 3, 4], "bad rows are kept for the validator"
    assert by_value[2] - by_value[1] < 0.1 and by_value[3] - by_value[1] < 0.1
    assert 0.85 < by_value[4] < 1.6


def test_parquet_with_typed_times_is_paced_too(tmp_path):
    path = tmp_path / "pumps.parquet"
    pd.DataFrame({"ts": pd.date_range("2024-01-01", periods=20, freq="1s", tz="UTC"),
                  "value": range(20)}).to_parquet(path)
    got = arrivals(sources.replay(path, time="ts", speed=20))
    assert got[0][0] < 0.3 and 0.8 < got[-1][0] < 2.0 and len(got) >= 5


@pytest.mark.parametrize("params, message", [
    ({"speed": 0}, "speed must be a positive number"),
    ({"speed": float("nan")}, "speed must be a positive number"),
    ({"speed": 10, "max_gap": -1}, "max_gap must be a positive number"),
])
def test_bad_pacing_parameters_are_refused(tmp_path, params, message):
    path = csv(tmp_path, pd.date_range("2024-01-01", periods=2, freq="1s"))
    with pytest.raises(ValueError, match=message):
        sources.replay(path, time="ts", **params)


def test_max_gap_is_part_of_the_spec(tmp_path):
    path = csv(tmp_path, pd.date_range("2024-01-01", periods=2, freq="1s"))
    spec = sources.replay(path, time="ts", speed=5, max_gap=2.5).spec()
    assert spec["params"]["max_gap"] == 2.5
    assert sources.make("replay", **spec["params"]).max_gap == 2.5


def test_many_long_gaps_make_one_warning_per_chunk(tmp_path, caplog):
    path = csv(tmp_path, pd.date_range("2024-01-01", periods=6, freq="7D"))
    with caplog.at_level(logging.WARNING, logger="nexus_kernel.engine.sources.replay"):
        got = arrivals(sources.replay(path, time="ts", speed=1, max_gap=0.1))
    assert sum(len(b) for _, b in got) == 6 and got[-1][0] < 1.5
    assert len(caplog.records) == 1 and "with 4 more such gaps" in caplog.text
