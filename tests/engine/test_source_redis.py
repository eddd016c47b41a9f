"""The ``redis`` source against the real Redis server: consumer groups, acks after commit, reclaim."""

from __future__ import annotations

import asyncio
import json
import uuid

import pandas as pd
import pytest

redis = pytest.importorskip("redis")
pytestmark = pytest.mark.timeout(30)

from nexus_kernel.engine.sources._base import sources  # noqa: E402
from nexus_kernel.engine.sources._redis import RedisSource  # noqa: E402
from nexus_kernel.records import Schema, Validator  # noqa: E402

URL = "redis://127.0.0.1:6379/0"
T0 = pd.Timestamp("2024-01-01T00:00:00Z")


@pytest.fixture
def r():
    client = redis.Redis.from_url(URL)
    try:
        client.ping()
    except redis.ConnectionError as exc:  # pragma: no cover - the machines run Redis
        pytest.skip(f"no Redis at {URL}: {exc}")
    yield client
    client.close()


@pytest.fixture
def key(r):
    name = f"nexus-test:{uuid.uuid4().hex}"
    yield name
    r.delete(name)


def push(r, key, n, start=0, series="a"):
    pipe = r.pipeline()
    for i in range(start, start + n):
        ts = (T0 + pd.Timedelta(seconds=i)).isoformat()
        pipe.xadd(key, {"series": series, "ts": ts, "value": str(float(i))})
    pipe.execute()


def pending(r, key, group="g"):
    return r.xpending(key, group)["pending"]


def source(key, **kw):
    base = dict(url=URL, key=key, group="g", consumer="c1", batch_size=10, block_ms=50)
    base.update(kw)
    return RedisSource(**base)


async def drain(src, commit=True):
    """Every batch until the source is idle, committing after each like the pipeline does."""
    out = []
    async for batch in src:
        out.append(batch)
        if commit:
            await src.commit()
    return out


def test_registered_and_spec_rebuilds():
    assert sources.get("redis") is RedisSource
    src = RedisSource(key="k", group="g", consumer="c9", batch_size=7)
    spec = src.spec()
    assert spec["kind"] == "redis"
    again = sources.get(spec["kind"])(**spec["params"])
    assert again.params == src.params
    with pytest.raises(ValueError):
        RedisSource(batch_size=0)


def test_records_arrive_as_batches(r, key):
    push(r, key, 25)
    for j in range(5):  # JSON entries: an array of two records each
        records = [{"series": "b", "ts": 1_700_000_000 + 2 * j + k, "value": j, "attrs": {"k": k}} for k in (0, 1)]
        r.xadd(key, {"data": json.dumps(records)})
    r.xadd(key, {"data": json.dumps({"series": "c", "ts": "2024-01-02T00:00:00Z", "value": 3.5})})

    async def main():
        src = source(key, stop_when_idle=True)
        try:
            return await drain(src), src
        finally:
            await src.close()

    batches, src = asyncio.run(main())
    assert [len(b) for b in batches] == [10, 10, 5 + 2 * 5, 1]  # 10 entries per read
    # seq derived from the entry id: unique int64, and the same again on redelivery
    raw_seq = pd.concat([b["seq"] for b in batches], ignore_index=True)
    assert raw_seq.dtype == "int64" and raw_seq.is_unique
    good, dead = Validator(Schema("s"))(pd.concat(batches, ignore_index=True))
    assert dead.empty
    assert len(good) == 25 + 10 + 1 == src.emitted
    assert good.loc[good.series == "a", "value"].tolist() == [float(i) for i in range(25)]
    assert good.loc[good.series == "b", "ts"].iloc[0] == pd.Timestamp(1_700_000_000, unit="s", tz="UTC")
    assert pending(r, key) == 0


def test_acknowledged_only_after_commit(r, key):
    push(r, key, 10)

    async def main():
        src = source(key)
        it = src.batches().__aiter__()
        try:
            batch = await it.__anext__()
            before = pending(r, key)
            lag = src.lag()
            await src.commit()
            return len(batch), before, lag, pending(r, key)
        finally:
            await src.close()

    rows, before, lag, after = asyncio.run(main())
    assert rows == 10
    assert before == 10  # read, handed on, not acknowledged
    assert lag == 10  # nothing undelivered, ten pending
    assert after == 0


def test_killed_consumer_is_reclaimed_and_nothing_is_lost(r, key):
    n = 300
    push(r, key, n)
    handled: list[pd.DataFrame] = []  # batches handled AND committed

    async def doomed(src, took_fourth):
        async for batch in src:
            if len(handled) == 3:
                took_fourth.set()  # read a batch, then "dies" while handling it
                await asyncio.Event().wait()
            handled.append(batch)
            await src.commit()

    async def main():
        a = source(key, consumer="a", batch_size=20, buffer=2)
        took_fourth = asyncio.Event()
        task = asyncio.create_task(doomed(a, took_fourth))
        await asyncio.wait_for(took_fourth.wait(), 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await a.close()  # the process is gone: no commit
        orphaned = r.xpending(key, "g")
        await asyncio.sleep(0.15)  # let them go idle past claim_idle_ms
        b = source(key, consumer="b", batch_size=20, claim_idle_ms=100, stop_when_idle=True)
        try:
            handled.extend(await drain(b))
        finally:
            await b.close()
        return orphaned, b

    orphaned, b = asyncio.run(main())
    # a held the batch it was handling plus what its buffer had read ahead
    assert orphaned["pending"] >= 20 and orphaned["consumers"] == [{"name": b"a", "pending": orphaned["pending"]}]
    assert b.claimed == orphaned["pending"]
    values = pd.concat(handled, ignore_index=True)["value"].astype(float).sort_values().tolist()
    assert values == [float(i) for i in range(n)]  # every record exactly once
    assert pending(r, key) == 0


def test_restarted_consumer_rereads_its_own_pending_entries(r, key):
    push(r, key, 15)

    async def main():
        first = source(key, consumer="same", buffer=1)
        it = first.batches().__aiter__()
        lost = await it.__anext__()
        await first.close()
        again = source(key, consumer="same", stop_when_idle=True)  # claim_idle_ms: 30 s, so no claim
        try:
            return lost, await drain(again)
        finally:
            await again.close()

    lost, batches = asyncio.run(main())
    assert len(lost) == 10
    seen = pd.concat(batches, ignore_index=True)
    assert sorted(seen["value"].astype(float)) == [float(i) for i in range(15)]
    assert set(lost["seq"]) <= set(seen["seq"])  # redelivered with the same seq
    assert pending(r, key) == 0


def test_malformed_entries_become_dead_letters(r, key):
    r.xadd(key, {"data": "not json"})
    r.xadd(key, {"data": json.dumps([{"series": "a", "ts": "2024-01-01T00:00:00Z", "value": 1}, 3])})
    r.xadd(key, {"data": json.dumps("a string")})
    r.xadd(key, {"data": b"\xff\xfe"})
    r.xadd(key, {"series": "a", "value": "2"})  # no time
    r.xadd(key, {"series": "a", "ts": "2024-01-01T00:00:01Z", "value": "abc"})
    r.xadd(key, {"series": "a", "ts": "2024-01-01T00:00:02Z", "value": b"\xff"})
    r.xadd(key, {"series": "a", "ts": "1704067203", "value": "4"})  # epoch seconds as text: fine

    async def main():
        src = source(key, stop_when_idle=True)
        try:
            return await drain(src)
        finally:
            await src.close()

    batches = asyncio.run(main())
    good, dead = Validator(Schema("s"))(pd.concat(batches, ignore_index=True))
    assert good["value"].tolist() == [1.0, 4.0]
    assert len(dead) == 7
    assert sorted(dead["reason"]) == ["missing_time"] * 6 + ["non_numeric"]
    payloads = " ".join(dead["payload"])
    for needle in ("not json", "a string", "\\\\xff", "abc", "redis_id"):
        assert needle in payloads
    assert pending(r, key) == 0  # dead-lettered entries are acknowledged too


def test_backpressure_bounds_what_is_read(r, key):
    push(r, key, 2000)

    async def main():
        src = source(key, batch_size=10, buffer=1)
        it = src.batches().__aiter__()
        try:
            await it.__anext__()
            await asyncio.sleep(0.3)  # a consumer that does not read on
            return r.xinfo_groups(key)[0]
        finally:
            await src.close()

    info = asyncio.run(main())
    # one batch yielded, one waiting in the buffer, one read and blocked on the full buffer
    assert info["pending"] <= 3 * 10
    assert info["lag"] >= 2000 - 30


def test_a_timed_out_wait_does_not_end_the_source(r, key):
    async def main():
        src = source(key, block_ms=20)
        it = src.batches().__aiter__()
        try:
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(it.__anext__(), 0.1)  # nothing there yet
            push(r, key, 3)
            batch = await asyncio.wait_for(it.__anext__(), 5)
            await src.commit()
            return batch
        finally:
            await src.close()

    assert asyncio.run(main())["value"].astype(float).tolist() == [0.0, 1.0, 2.0]
    assert pending(r, key) == 0
