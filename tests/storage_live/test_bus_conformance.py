"""One suite for every registered live bus (memory, redis), against the real Redis."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
import threading

import pandas as pd
import pytest

from nexus_kernel.storage._bus import (
    Bus,
    BusError,
    SubscriberLagged,
    buses,
    decode_frame,
    open_bus,
    topic,
    topic_pattern,
)

from .conftest import make_batch

T0 = pd.Timestamp("2026-01-01T00:00:00.000000001Z")


def frame(k: int) -> pd.DataFrame:
    return make_batch("sensors", ["a", "b"], [T0, T0 + pd.Timedelta(seconds=k)], [k, k + 1], value=[float(k), 0.5])


def flush(bus: Bus) -> None:
    if hasattr(bus, "flush"):
        assert bus.flush(10)


@pytest.fixture(params=buses.names())
def bus(request, settings) -> Bus:
    member = buses.get(request.param).from_settings(settings)
    yield member
    member.close()


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


def test_registry_has_both_and_open_bus_follows_settings(settings):
    assert {"memory", "redis"} <= set(buses.names())
    redis_bus, memory_bus = open_bus(settings), open_bus(settings.model_copy(update={"redis_url": None}))
    assert (type(redis_bus).__name__, type(memory_bus).__name__) == ("RedisBus", "MemoryBus")
    redis_bus.close(), memory_bus.close()


def test_publish_and_receive_a_batch_unchanged(bus):
    batch = frame(1).assign(attrs=pd.array(['{"unit": "°C"}', None], dtype="string"))

    async def main():
        async with bus.subscribe(topic("sensors", "points"), maxsize=10) as sub:
            sent = await bus.publish(topic("sensors", "points"), batch)
            got = await sub.get(timeout=5)
        return sent, got

    sent, got = run(main())
    assert got.id == sent and got.topic == topic("sensors", "points")
    pd.testing.assert_frame_equal(got.frame, batch, check_exact=True)
    pd.testing.assert_frame_equal(decode_frame(got.payload), batch, check_exact=True)  # bytes to forward
    assert abs(got.time - pd.Timestamp.now(tz="UTC")) < pd.Timedelta(minutes=1)


def test_patterns_route_by_glob(bus):
    async def main():
        async with (
            bus.subscribe(topic_pattern(kind="anomalies"), maxsize=10) as anomalies,
            bus.subscribe(topic_pattern("pump?", "points"), maxsize=10) as pumps,
            bus.subscribe(topic_pattern("[^p]*", "points"), maxsize=10) as not_p,
        ):
            # "other:x:anomalies" is deliberately no stream topic: no stream pattern may match it
            for name in [topic("pump1", "points"), topic("sensors", "anomalies"), topic("boiler", "points"),
                         topic("pump12", "points"), "other:x:anomalies"]:
                await bus.publish(name, frame(0))
            await bus.publish("done", frame(0))
            flush(bus)
            await asyncio.sleep(0.2)
            return [[m.topic for m in _drain(s)] for s in (anomalies, pumps, not_p)]

    assert run(main()) == [[topic("sensors", "anomalies")], [topic("pump1", "points")], [topic("boiler", "points")]]


def _drain(sub):
    out = []
    while sub.pending:
        out.append(sub._materialize(sub._items.popleft()))
    return out


def test_order_and_fan_out_to_every_subscriber(bus):
    n = 300

    async def consume(sub, out):
        async for message in sub:
            out.append(int(message.frame["seq"].iloc[0]))
            if len(out) == n:
                return

    async def main():
        outs = [[], [], []]
        async with bus.subscribe("t", maxsize=n) as s1, bus.subscribe("t", maxsize=n) as s2, \
                bus.subscribe("*", maxsize=n) as s3:
            tasks = [asyncio.create_task(consume(s, o)) for s, o in zip((s1, s2, s3), outs)]
            for k in range(n):
                bus.publish_nowait("t", frame(k))
            await asyncio.gather(*tasks)
        return outs

    for out in run(main()):
        assert out == list(range(n))


def test_a_stuck_subscriber_is_cut_off_and_slows_no_one(bus):
    n, small = 400, 10

    async def main():
        fast_got = []
        async with bus.subscribe("t", maxsize=n) as fast, bus.subscribe("t", maxsize=small) as stuck:
            subscribers_before = bus.stats().get("subscribers")

            async def consume():
                async for message in fast:
                    fast_got.append(message.id)
                    if len(fast_got) == n:
                        return

            task = asyncio.create_task(consume())
            sent = [await bus.publish("t", frame(k)) for k in range(n)]  # acknowledged one by one
            await task
            with pytest.raises(SubscriberLagged) as lagged:
                async for _ in stuck:
                    pass
            assert stuck.pending == 0  # its queue was released when it was cut off
            return sent, fast_got, lagged.value, subscribers_before

    sent, fast_got, lagged, subscribers_before = run(main())
    assert fast_got == sent
    assert lagged.dropped == small + 1 and lagged.maxsize == small and lagged.last_id is None
    assert "fell behind" in str(lagged) and "replay" in str(lagged)
    assert bus.stats()["lagged"] == 1
    if subscribers_before is not None:  # in-process: the lagging subscriber was detached at once
        assert subscribers_before == 2


def test_lagged_subscriber_catches_up_with_replay(bus):
    async def main():
        async with bus.subscribe("t", maxsize=3) as sub:
            first = await bus.publish("t", frame(0))
            assert (await sub.get(timeout=5)).id == first
            ids = [await bus.publish("t", frame(k)) for k in range(1, 8)]
            await asyncio.sleep(0.1)
            with pytest.raises(SubscriberLagged) as lagged:
                await sub.get(timeout=5)
        missed = bus.replay("t", after=lagged.value.last_id)
        return first, ids, lagged.value, missed

    first, ids, lagged, missed = run(main())
    assert lagged.last_id == first
    assert [m.id for m in missed] == ids
    assert [int(m.frame["seq"].iloc[0]) for m in missed] == list(range(1, 8))


def test_replay_keeps_the_last_messages(bus, settings):
    async def main():
        return [await bus.publish(topic("s", "points"), frame(k)) for k in range(60)]

    ids = run(main())
    kept = bus.replay(topic("s", "points"))
    assert len(kept) >= settings.bus_replay and [m.id for m in kept] == ids[-len(kept):]
    last = bus.replay(topic("s", "points"), last=5)
    assert [m.id for m in last] == ids[-5:]
    pd.testing.assert_frame_equal(last[-1].frame, frame(59))
    assert [m.id for m in bus.replay(topic("s", "points"), after=ids[-3])] == ids[-2:]
    assert bus.replay(topic("s", "points"), last=0) == [] and bus.replay("never") == []


def test_subscribe_with_replay_has_no_gap_and_no_duplicate(bus):
    async def main():
        for k in range(5):
            await bus.publish("t", frame(k))
        async with bus.subscribe("t", maxsize=20, replay=3) as sub:
            for k in range(5, 8):
                bus.publish_nowait("t", frame(k))
            return [int((await sub.get(timeout=5)).frame["seq"].iloc[0]) for _ in range(6)]

    assert run(main()) == [2, 3, 4, 5, 6, 7]


def test_publish_from_another_thread(bus):
    async def main():
        async with bus.subscribe("t", maxsize=100) as sub:
            worker = threading.Thread(target=lambda: [bus.publish_nowait("t", frame(k)) for k in range(20)])
            worker.start()
            got = [int((await sub.get(timeout=5)).frame["seq"].iloc[0]) for _ in range(20)]
            worker.join()
            return got

    assert run(main()) == list(range(20))


def test_bad_input_is_refused(bus):
    with pytest.raises(TypeError, match="DataFrame"):
        bus.publish_nowait("t", {"value": 1})
    with pytest.raises(ValueError, match="pattern"):
        bus.subscribe("t:*", replay=2)
    with pytest.raises(ValueError, match="maxsize"):
        bus.subscribe("t", maxsize=0)
    bus.close()
    with pytest.raises(BusError, match="closed"):
        bus.publish_nowait("t", frame(0))


_CHILD = textwrap.dedent(
    """
    import asyncio, json, sys
    from nexus_kernel.config import Settings
    from nexus_kernel.storage._bus import open_bus, topic_pattern

    async def main():
        bus = open_bus(Settings(redis_url=sys.argv[1], key_prefix=sys.argv[2]))
        async with bus.subscribe(topic_pattern(kind="points"), maxsize=100) as sub:
            print("ready", flush=True)
            for _ in range(3):
                m = await sub.get(timeout=20)
                print(json.dumps([m.topic, m.id, m.frame["value"].tolist()]), flush=True)
        bus.close()

    asyncio.run(main())
    """
)


def test_redis_fans_out_to_another_process(settings):
    bus = open_bus(settings)
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, settings.redis_url.get_secret_value(), settings.key_prefix],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert child.stdout.readline().strip() == "ready", child.stderr.read()

        async def main():
            return [await bus.publish(topic(f"s{k}", "points"), frame(k)) for k in range(3)]

        ids = run(main())
        out, err = child.communicate(timeout=30)
        got = [json.loads(line) for line in out.splitlines()]
        assert child.returncode == 0, err
        assert got == [[topic(f"s{k}", "points"), ids[k], [float(k), 0.5]] for k in range(3)]
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        bus.close()


def test_redis_lagging_subscriber_leaves_the_channel(settings, redis_client):
    bus = open_bus(settings)
    channel = bus.channel("t")

    async def main():
        async with bus.subscribe("t", maxsize=2) as stuck:
            assert redis_client.pubsub_numsub(channel)[0][1] == 1
            for k in range(5):
                await bus.publish("t", frame(k))
            for _ in range(50):
                await asyncio.sleep(0.02)
                if redis_client.pubsub_numsub(channel)[0][1] == 0:
                    break
            with pytest.raises(SubscriberLagged):
                await stuck.get(timeout=5)
        return redis_client.pubsub_numsub(channel)[0][1]

    assert run(main()) == 0
    bus.close()
