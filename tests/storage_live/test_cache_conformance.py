"""One suite for every registered cache (memory, redis), against the real Redis."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from nexus_kernel.storage._cache import Cache, caches, open_cache

from .conftest import make_batch

T0 = pd.Timestamp("2026-01-01T00:00:00.123456789Z")


def at(*seconds: float) -> list[pd.Timestamp]:
    return [T0 + pd.Timedelta(seconds=s) for s in seconds]


@pytest.fixture(params=caches.names())
def cache(request, settings) -> Cache:
    member = caches.get(request.param).from_settings(settings)
    yield member
    member.clear()
    member.close()


def test_registry_has_both_and_open_cache_follows_settings(settings):
    assert {"memory", "redis"} <= set(caches.names())
    assert type(open_cache(settings)).__name__ == "RedisCache"
    assert type(open_cache(settings.model_copy(update={"redis_url": None}))).__name__ == "MemoryCache"


def test_latest_keeps_the_newest_row_per_series(cache):
    cache.put_latest(make_batch("pumps", ["p1", "p1", "p2"], at(1, 2, 1), [1, 2, 3], value=[1.0, 2.0, 5.0]))
    cache.put_latest(make_batch("pumps", ["p2", "p3"], at(3, 1), [4, 5], value=[6.0, 7.0]))
    # A late / replayed batch must not replace newer values.
    cache.put_latest(make_batch("pumps", ["p1", "p2"], at(0, 3), [9, 1], value=[-1.0, -2.0]))
    got = cache.latest("pumps")
    assert got["series"].tolist() == ["p1", "p2", "p3"]
    assert got["value"].tolist() == [2.0, 6.0, 7.0]
    assert got["ts"].tolist() == at(2, 3, 1)
    assert got["seq"].tolist() == [2, 4, 5]
    assert cache.latest("pumps", series="p3")["value"].tolist() == [7.0]
    assert cache.latest("pumps", series=["p3", "p1", "nope"])["series"].tolist() == ["p1", "p3"]
    empty = cache.latest("no-such-stream")
    assert empty.empty and list(empty.columns[:4]) == ["stream", "series", "ts", "seq"]


def test_ties_on_time_are_broken_by_seq(cache):
    cache.put_latest(make_batch("s", ["a", "a"], at(1, 1), [7, 3], value=[7.0, 3.0]))
    cache.put_latest(make_batch("s", ["a"], at(1), [5], value=[5.0]))
    assert cache.latest("s")["value"].tolist() == [7.0]


def test_values_and_dtypes_round_trip_exactly(cache):
    awkward = ['{"note": "quote \\" and \\\\ backslash"}', None, '{"line": "a\\nb", "ü": "ñ"}']
    ts = [T0 + pd.Timedelta(nanoseconds=1), pd.Timestamp("1969-12-31T23:59:59.999999999Z"), T0]
    batch = make_batch(
        "odd:stream/ü",
        ["x:y", "a b", "ü"],
        ts,
        [-5, 0, 2**62],
        value=[0.1, 1e-300, -1.7976931348623157e308],
        temp=[1 / 3, None, 2.5],
        attrs=awkward,
    )
    cache.put_latest(batch)
    got = cache.latest("odd:stream/ü")
    want = batch.sort_values("series").reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    assert got.dtypes["ts"] == "datetime64[ns, UTC]" and got.dtypes["seq"] == "int64"
    pd.testing.assert_frame_equal(cache.recent("odd:stream/ü", "x:y"), batch.iloc[[0]].reset_index(drop=True))


def test_fields_that_appear_later_are_missing_before(cache):
    cache.put_latest(make_batch("s", ["a"], at(1), [1], value=[1.0]))
    cache.put_latest(make_batch("s", ["b"], at(1), [1], value=[2.0], temp=[20.0]))
    got = cache.latest("s")
    assert got["value"].tolist() == [1.0, 2.0]
    assert np.isnan(got["temp"].iloc[0]) and got["temp"].iloc[1] == 20.0


def test_recent_window_is_bounded_ordered_and_deduplicated(cache):
    assert cache.recent_size == 5
    first = make_batch("s", ["a"] * 4 + ["b"], at(4, 2, 3, 1, 1), [4, 2, 3, 1, 1], value=[4.0, 2.0, 3.0, 1.0, 10.0])
    cache.put_latest(first)
    cache.put_latest(first)  # at-least-once delivery: the same rows again
    assert cache.recent("s", "a")["value"].tolist() == [1.0, 2.0, 3.0, 4.0]
    for k in range(5, 40):  # many batches: the window stays bounded
        cache.put_latest(make_batch("s", ["a"], at(k), [k], value=[float(k)]))
    assert cache.recent("s", "a")["value"].tolist() == [35.0, 36.0, 37.0, 38.0, 39.0]
    assert cache.recent("s", "a", n=2)["seq"].tolist() == [38, 39]
    assert cache.recent("s", "a", n=500)["seq"].tolist() == [35, 36, 37, 38, 39]
    # a row older than the whole window is dropped, not inserted
    cache.put_latest(make_batch("s", ["a"], at(0.5), [0], value=[-1.0]))
    assert cache.recent("s", "a")["value"].min() == 35.0
    assert cache.recent("s", "b")["value"].tolist() == [10.0]
    assert cache.recent("s", "zzz").empty and cache.recent("nothing", "a").empty


def test_large_batch_many_series(cache):
    n_series, per = 200, 12
    series = [f"s{i:03d}" for i in range(n_series)] * per
    steps = np.repeat(np.arange(per), n_series)
    batch = make_batch("big", series, list(T0 + pd.to_timedelta(steps, unit="s")), list(range(len(series))),
                       value=steps.astype(float).tolist())
    assert cache.put_latest(batch) == n_series * per
    latest = cache.latest("big")
    assert len(latest) == n_series and set(latest["value"]) == {float(per - 1)}
    assert cache.recent("big", "s042")["value"].tolist() == [7.0, 8.0, 9.0, 10.0, 11.0]


def test_query_results_hit_miss_and_invalidation(cache):
    calls = []

    def compute(value=1.5):
        calls.append(value)
        return value

    key = ("pumps", "mean", pd.Timestamp("2026-01-01", tz="UTC"), 60)
    assert cache.get_or_compute(key, compute) == 1.5
    assert cache.get_or_compute(key, lambda: compute(9.9)) == 1.5
    assert cache.get_or_compute(("pumps", "mean", pd.Timestamp("2026-01-02", tz="UTC"), 60), lambda: compute(2)) == 2
    assert cache.get_or_compute(("other", "x"), lambda: {"a": [1, 2]}) == {"a": [1, 2]}
    stats = cache.stats()
    assert (stats["hits"], stats["misses"]) == (1, 3) and stats["hit_ratio"] == 0.25

    cache.invalidate("pumps")
    assert cache.get_or_compute(key, lambda: compute(3.0)) == 3.0  # recomputed
    assert cache.get_or_compute(("other", "x"), lambda: "never") == {"a": [1, 2]}  # other stream kept

    cache.put_latest(make_batch("pumps", ["p"], at(1), [1], value=[1.0]))  # a write invalidates too
    assert cache.get_or_compute(key, lambda: compute(4.0)) == 4.0
    assert calls == [1.5, 2, 3.0, 4.0]
    assert cache.stats()["misses"] == 5 and cache.stats()["invalidations"] >= 2


def test_a_write_during_compute_is_not_hidden_by_the_stale_result(cache):
    def compute_while_data_arrives():
        cache.put_latest(make_batch("pumps", ["p"], at(1), [1], value=[1.0]))
        return "stale"

    assert cache.get_or_compute(("pumps", "q"), compute_while_data_arrives) == "stale"
    assert cache.get_or_compute(("pumps", "q"), lambda: "fresh") == "fresh"


def test_dataframe_results_round_trip_and_are_copies(cache):
    frame = pd.DataFrame({"ts": pd.date_range("2026-01-01", periods=3, freq="min", tz="UTC"), "mean": [1.0, 2.0, 3.0]})
    frame.index = pd.Index(["a", "b", "c"], name="series")
    first = cache.get_or_compute(("s", "rollup"), lambda: frame.copy())
    first.loc["a", "mean"] = 99.0
    again = cache.get_or_compute(("s", "rollup"), lambda: None)
    again.loc["b", "mean"] = -1.0  # a hit is a copy too
    again = cache.get_or_compute(("s", "rollup"), lambda: None)
    pd.testing.assert_frame_equal(again, frame)


def test_ttl_expires_results(cache):
    assert cache.get_or_compute(("s", "k"), lambda: 1, ttl=0.15) == 1
    assert cache.get_or_compute(("s", "k"), lambda: 2, ttl=0.15) == 1
    time.sleep(0.3)
    assert cache.get_or_compute(("s", "k"), lambda: 3, ttl=0.15) == 3


def test_refuses_bad_input_whole(cache):
    good = make_batch("s", ["a", "b"], at(1, 2), [1, 2], value=[1.0, 2.0])
    naive = good.assign(ts=good["ts"].dt.tz_localize(None))
    with pytest.raises(ValueError, match="timezone-aware"):
        cache.put_latest(naive)
    with pytest.raises(ValueError, match="lacks the column"):
        cache.put_latest(good.drop(columns="seq"))
    with pytest.raises(ValueError, match="not numeric"):
        cache.put_latest(good.assign(value=["x", "y"]))
    with pytest.raises(TypeError):
        cache.put_latest({"stream": "s"})
    assert cache.latest("s").empty and cache.recent("s", "a").empty
    with pytest.raises(TypeError, match="JSON-able"):
        cache.get_or_compute(("s", "obj"), lambda: object())
    with pytest.raises(ValueError, match="first item is the stream"):
        cache.get_or_compute("s", lambda: 1)
    assert cache.put_latest(good.iloc[:0]) == 0


def test_state_ttl_forgets_idle_streams(settings):
    for name in caches.names():
        member = caches.get(name).from_settings(settings.model_copy(update={"cache_state_ttl": 0.2}))
        member.put_latest(make_batch("idle", ["a"], at(1), [1], value=[1.0]))
        assert len(member.latest("idle")) == 1, name
        time.sleep(0.35)
        assert member.latest("idle").empty, name
        assert member.recent("idle", "a").empty, name
        member.clear()
        member.close()


def test_redis_cache_is_shared_between_processes_objects_and_isolated_by_prefix(settings):
    writer = open_cache(settings)
    reader = open_cache(settings)
    stranger = open_cache(settings.model_copy(update={"key_prefix": settings.key_prefix + "-other"}))
    writer.put_latest(make_batch("s", ["a"], at(1), [1], value=[1.0]))
    assert reader.latest("s")["value"].tolist() == [1.0]
    assert stranger.latest("s").empty
    reader.get_or_compute(("s", "k"), lambda: 1)
    writer.invalidate("s")
    assert reader.get_or_compute(("s", "k"), lambda: 2) == 2
    writer.clear()
    assert reader.latest("s").empty
    for c in (writer, reader, stranger):
        c.close()
