"""The engine wired to real services: store, cache, bus, analysis — and Redis acknowledgements that wait
for the store's commit."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import redis

from nexus_kernel.engine import Pipeline, sources
from nexus_kernel.storage import open_bus, open_cache, open_store, topic


def services(store):
    return {"store": store, "cache": open_cache(backend="memory"), "bus": open_bus(backend="memory")}


@pytest.fixture(params=["memory", "postgresql"])
def store(request, pg_dsn):
    opened = open_store("memory") if request.param == "memory" else open_store(pg_dsn, resilient=False)
    yield opened
    if request.param == "postgresql":
        opened.drop_schema()
    opened.close()


def test_points_anomalies_and_dead_letters_reach_the_store(settings, store):
    sim = sources.simulator(series=4, freq="1s", rate=None, seed=9, limit=8_000, anomaly_rate=30, bad_rate=0.005,
                            start="2024-01-01")
    pipe = (Pipeline.from_source(sim, settings=settings).validate().store().cache().publish().analyze()
            .window("1min"))
    pipe.services.update(services(store))
    pipe.run(timeout=60)
    status = pipe.status()
    assert status["state"] == "stopped" and status["errors"] == 0, status
    stored = store.query("sensors")
    assert len(stored) == 8_000 - status["dead_letters"]
    dead = store.read("dead_letters", stream="sensors")
    assert len(dead) == status["dead_letters"] > 0
    assert set(dead["reason"]) <= {"bad_time", "non_numeric", "not_finite", "late"}
    anomalies = store.read("anomalies", stream="sensors")
    assert len(anomalies) > 0 and anomalies["is_anomaly"].all()
    assert {"detector", "statistic"} <= set(json.loads(anomalies["reason"].iat[0]))
    latest = pipe.services["cache"].latest("sensors")
    assert len(latest) == 4


def test_the_same_batches_twice_are_stored_once(settings):
    store = open_store("memory")
    frame = pd.DataFrame({"series": "a", "ts": pd.date_range("2024-01-01", periods=50, freq="1s", tz="UTC"),
                          "value": range(50), "seq": range(50)})
    for _ in range(2):
        pipe = Pipeline.from_source(sources.iterable(frame, batch_size=7), settings=settings).validate().store()
        pipe.services["store"] = store
        pipe.run(timeout=30)
    assert len(store.query("iterable")) == 50


def test_redis_entries_are_acknowledged_only_after_the_store_committed(settings, pg_dsn, redis_key):
    client = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    for i in range(300):
        client.xadd(redis_key, {"series": f"s{i % 3}", "ts": f"2024-01-01T00:{i // 60:02d}:{i % 60:02d}Z",
                                "value": str(float(i))})
    store = open_store(pg_dsn, resilient=False)
    seen: list[tuple[int, int]] = []  # (rows the store holds, entries still pending) right after each write

    def check(batch):
        pending = client.xpending(redis_key, "nexus")["pending"]
        seen.append((len(store.query("orders")), pending))
        return batch

    source = sources.make("redis", key=redis_key, group="nexus", consumer="c1", batch_size=50,
                          stop_when_idle=True, block_ms=200)
    pipe = (Pipeline.from_source(source, name="orders", settings=settings).batch(size=50)
            .validate().store().apply(check))
    pipe.services["store"] = store
    try:
        pipe.run(timeout=60)
        assert pipe.state == "stopped", pipe.last_error
        assert len(store.query("orders")) == 300
        # after each store write: the rows are committed, and this batch's entries are still unacknowledged
        assert all(pending > 0 for _, pending in seen)
        assert seen[0][0] >= 50
        assert client.xpending(redis_key, "nexus")["pending"] == 0  # all acknowledged in the end
    finally:
        store.drop_schema()
        store.close()
        client.close()


def test_a_store_that_fails_mid_stream_dead_letters_the_batch_and_the_stream_goes_on(settings):
    class Flaky:
        def __init__(self):
            self.inner = open_store("memory")
            self.calls = 0

        def write(self, batch):
            self.calls += 1
            if self.calls == 2:
                raise ConnectionError("store went away")
            return self.inner.write(batch)

        def append(self, table, frame):
            return self.inner.append(table, frame)

    flaky = Flaky()
    frame = pd.DataFrame({"series": "a", "ts": pd.date_range("2024-01-01", periods=30, freq="1s", tz="UTC"),
                          "value": range(30)})
    pipe = Pipeline.from_source(sources.iterable(frame, batch_size=10), settings=settings).batch(size=10)
    pipe.validate().store().services["store"] = flaky
    pipe.run(timeout=30)
    assert len(flaky.inner.query("iterable")) == 20
    dead = flaky.inner.read("dead_letters")
    assert len(dead) == 10 and set(dead["reason"]) == {"processing_error"}
    assert "store went away" in dead["detail"].iat[0]


def test_the_one_import_surface_reads_what_a_pipeline_stored(settings, tmp_path):
    import nexus_kernel as nk

    target = f"duckdb://{tmp_path / 'n.duckdb'}"
    store = nk.store(target)
    sim = nk.sources.simulator(series=2, rate=None, limit=600, seed=4, start="2024-01-01")
    pipe = nk.Pipeline.from_source(sim, settings=settings).validate().sink(store)
    pipe.run(timeout=30)
    store.close()
    raw = nk.query("sensors", store_target=target)
    assert len(raw) == 600
    per_minute = nk.query("sensors", store_target=target, every="1min", agg=["count"])
    assert per_minute["value"].sum() == 600 and len(per_minute) == 2 * 5


def test_analyze_with_forecasts_sends_them_to_the_store_and_the_bus(settings):
    import asyncio

    store, bus = open_store("memory"), open_bus(backend="memory")
    sim = sources.simulator(series=3, freq="1s", rate=None, seed=9, limit=3_000, start="2024-01-01", batch_size=500)
    pipe = (Pipeline.from_source(sim, settings=settings).batch(size=500).validate().store()
            .analyze(forecast=True, horizon=10, level=0.8))
    pipe.services.update({"store": store, "bus": bus})
    pipe.run(timeout=60)
    assert pipe.status()["errors"] == 0, pipe.status()["last_error"]
    forecasts = store.read("forecasts", stream="sensors")
    assert set(forecasts["series"]) == {"s0000", "s0001", "s0002"}
    assert (forecasts["lo"] <= forecasts["yhat"]).all() and (forecasts["yhat"] <= forecasts["hi"]).all()
    assert (forecasts["ts"] > forecasts["made_at"]).all() and set(forecasts["level"]) == {0.8}
    published = asyncio.run(_replayed(bus, topic("sensors", "forecasts")))
    assert published > 0


async def _replayed(bus, topic):
    return len(bus.replay(topic))
