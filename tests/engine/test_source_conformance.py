"""One conformance suite for every registered source (River's ``checks`` are the model).

Each member is built by a factory below from a feed of the same 60 records (3 series × 20 seconds) and
must: deliver exactly those records as raw batches that validate cleanly; be rebuildable from its
``spec()`` (or refuse to be saved, with a clear error, when it holds data in memory); close twice
without error; report ``lag()`` as None or a non-negative number. A newly registered source fails the
suite until it is taught here — that is the point.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time

import pandas as pd
import pytest
import redis
from websockets.sync.server import serve as serve_sync

from nexus_kernel.engine import Pipeline, sources

RECORDS = [{"series": f"s{i % 3}", "ts": f"2024-01-01T00:00:{i // 3:02d}Z", "value": float(i)} for i in range(60)]


@contextlib.contextmanager
def websocket_feed():
    def handler(ws):
        for r in RECORDS:
            ws.send(json.dumps(r))

    with serve_sync(handler, "127.0.0.1", 0) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"ws://127.0.0.1:{server.socket.getsockname()[1]}"
        finally:
            server.shutdown()


@contextlib.contextmanager
def build(kind: str, tmp_path, redis_key):
    if kind == "simulator":
        yield sources.make("simulator", series=3, rate=None, limit=60, seed=1, start="2024-01-01"), 60
    elif kind == "replay":
        path = tmp_path / "feed.csv"
        pd.DataFrame(RECORDS).to_csv(path, index=False)
        yield sources.make("replay", path=str(path), time="ts", series="series", batch_size=25), 60
    elif kind == "iterable":
        yield sources.make("iterable", data=pd.DataFrame(RECORDS), batch_size=25), 60
    elif kind == "redis":
        client = redis.Redis.from_url("redis://127.0.0.1:6379/0")
        for r in RECORDS:
            client.xadd(redis_key, {k: str(v) for k, v in r.items()})
        client.close()
        yield sources.make("redis", key=redis_key, group="conformance", consumer="c1", batch_size=25,
                           stop_when_idle=True, block_ms=100), 60
    elif kind == "websocket":
        with websocket_feed() as url:
            yield sources.make("websocket", url=url, batch_size=25, batch_interval=0.05, stop_on_close=True), 60
    elif kind == "ingest":
        source = sources.make("ingest")
        with ingest_feed(source):
            yield source, 60
    else:
        raise AssertionError(f"the source conformance suite has no factory for '{kind}': add one")


@contextlib.contextmanager
def ingest_feed(source):
    """Submit the records through the inlet of the pipeline the source feeds, from a thread and loop of
    its own (as the gateway does), then end the source."""
    failures: list[BaseException] = []

    def feed():
        try:
            deadline = time.monotonic() + 20
            while source.inlet is None or not source.inlet.accepting:  # the pipeline has started
                if time.monotonic() > deadline:
                    raise TimeoutError("the ingest source's pipeline never started")
                time.sleep(0.01)
            frame = pd.DataFrame(RECORDS)
            for part in (frame.iloc[:25], frame.iloc[25:]):
                answer = asyncio.run(source.inlet.submit(part))
                assert answer["accepted"] == len(part), answer
            source.end()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            failures.append(exc)

    thread = threading.Thread(target=feed, daemon=True)
    thread.start()
    yield
    thread.join(20)
    if failures:
        raise failures[0]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", sources.sources.names())
def test_source_conformance(kind, tmp_path, redis_key, settings):
    with build(kind, tmp_path, redis_key) as (source, expected):
        pipe = Pipeline.from_source(source, settings=settings).validate().collect()
        pipe.run(timeout=30)
        assert pipe.state == "stopped", pipe.last_error
        got = pipe.results()
        assert len(got) == expected and pipe.dead_letters.total == 0
        assert got["seq"].is_unique
        assert set(got["series"].astype(str)) == {"s0", "s1", "s2"} or kind == "simulator"
        if kind != "simulator":
            assert sorted(got["value"]) == [float(i) for i in range(60)]
        lag = source.lag()
        assert lag is None or lag >= 0
        asyncio.run(source.close())
        asyncio.run(source.close())  # idempotent
        if kind == "iterable":
            with pytest.raises(TypeError, match="cannot be persisted"):
                source.spec()
        else:
            spec = source.spec()
            again = sources.make(spec["kind"], **spec["params"])
            assert type(again) is type(source) and again.spec() == spec
