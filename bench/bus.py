"""Live bus: publish → receive throughput and latency, in-process and over Redis, beside raw peers.

Peers, measured in the same run on the same frames:

- in-process bus vs a bare ``asyncio.Queue`` carrying the same DataFrame object;
- Redis bus vs raw redis-py ``PUBLISH`` / ``pubsub.get_message`` of the same Arrow IPC bytes (raw
  publishes pipelined 512 at a time, as our writer thread does; raw does no XADD for replay, no
  encode and no decode, so it is the ceiling);
- a publisher with a stuck subscriber (never reads; cut off when its queue fills) vs the same bus
  without one: the ratio should be ~1 — a slow subscriber does not slow the publisher.

Run: ``.venv/bin/python -m bench bus`` (or ``.venv/bin/python -c "import bench.bus as b; print(b.run())"``).
Needs Redis at ``NEXUS_BENCH_REDIS`` (default redis://127.0.0.1:6379/0); keys go under a random prefix,
deleted at the end.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
import uuid

import numpy as np
import pandas as pd
import redis
import redis.asyncio as aredis

from nexus_kernel.storage._bus import MemoryBus, encode_frame
from nexus_kernel.storage._bus_redis import RedisBus

REDIS_URL = os.environ.get("NEXUS_BENCH_REDIS", "redis://127.0.0.1:6379/0")


def _frame(rows: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "stream": pd.array(["sensors"] * rows, dtype="string"),
            "series": pd.array([f"s{i % 50}" for i in range(rows)], dtype="string"),
            "ts": pd.date_range("2026-01-01", periods=rows, freq="s", tz="UTC").astype("datetime64[ns, UTC]"),
            "seq": np.arange(rows, dtype=np.int64),
            "value": rng.normal(size=rows),
        }
    )


def _row(metric, unit, ours, peer, peer_value, params, higher_is_better=True):
    ratio = (ours / peer_value if higher_is_better else peer_value / ours) if peer_value else None
    return {"metric": metric, "unit": unit, "ours": round(ours, 3), "peer": peer,
            "peer_value": round(peer_value, 3), "ratio": round(ratio, 3) if ratio else None, "params": params}


async def _bus_throughput(bus, frame, n: int, stuck: bool = False, decode: bool = True) -> tuple[float, float]:
    """(messages/s publish→last receive, messages/s of the publish loop alone)."""
    async with bus.subscribe("bench", maxsize=n + 1) as sub:
        stuck_sub = bus.subscribe("bench", maxsize=16)
        if stuck:
            await stuck_sub.__aenter__()
        got = 0

        async def consume():
            nonlocal got
            async for message in sub:
                _ = message.frame if decode else message.payload
                got += 1
                if got == n:
                    return

        task = asyncio.create_task(consume())
        await asyncio.sleep(0)
        start = time.perf_counter()
        for _ in range(n):
            bus.publish_nowait("bench", frame)
        published = time.perf_counter() - start
        await task
        total = time.perf_counter() - start
        if stuck:
            await stuck_sub.__aexit__(None, None, None)
    return n / total, n / published


async def _bus_latency(bus, frame, n: int) -> list[float]:
    out = []
    async with bus.subscribe("lat", maxsize=4) as sub:
        for _ in range(n):
            start = time.perf_counter()
            await bus.publish("lat", frame)
            await sub.get(timeout=10)
            out.append((time.perf_counter() - start) * 1e6)
    return out


async def _queue_throughput(frame, n: int) -> float:
    queue: asyncio.Queue = asyncio.Queue(maxsize=n + 1)

    async def consume():
        for _ in range(n):
            await queue.get()

    task = asyncio.create_task(consume())
    await asyncio.sleep(0)
    start = time.perf_counter()
    for _ in range(n):
        queue.put_nowait(frame)
    await task
    return n / (time.perf_counter() - start)


async def _queue_latency(frame, n: int) -> list[float]:
    queue: asyncio.Queue = asyncio.Queue()
    out = []
    for _ in range(n):
        start = time.perf_counter()
        queue.put_nowait(frame)
        await queue.get()
        out.append((time.perf_counter() - start) * 1e6)
    return out


async def _raw_redis(payload: bytes, n: int, channel: str) -> tuple[float, list[float]]:
    pub, sub_client = aredis.Redis.from_url(REDIS_URL), aredis.Redis.from_url(REDIS_URL)
    pubsub = sub_client.pubsub()
    await pubsub.subscribe(channel)
    await pubsub.get_message(timeout=5)
    got = 0

    async def consume():
        nonlocal got
        while got < n:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=None)
            if message is not None:
                got += 1

    task = asyncio.create_task(consume())
    start = time.perf_counter()
    for first in range(0, n, 512):
        pipe = pub.pipeline(transaction=False)
        for _ in range(min(512, n - first)):
            pipe.publish(channel, payload)
        await pipe.execute()
    await task
    rate = n / (time.perf_counter() - start)
    latencies = []
    for _ in range(max(n // 4, 50)):
        start = time.perf_counter()
        await pub.publish(channel, payload)
        while (await pubsub.get_message(ignore_subscribe_messages=True, timeout=10)) is None:
            pass
        latencies.append((time.perf_counter() - start) * 1e6)
    await pubsub.aclose()
    await pub.aclose()
    await sub_client.aclose()
    return rate, latencies


def _p(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


async def _main(quick: bool) -> list[dict]:
    n = 300 if quick else 3000
    rows = 100
    frame = _frame(rows)
    payload = encode_frame(frame)
    params = {"messages": n, "rows_per_message": rows, "bytes_per_message": len(payload)}
    out: list[dict] = []

    memory = MemoryBus(maxsize=n + 1, replay_size=100)
    mem_rate, _ = await _bus_throughput(memory, frame, n)
    queue_rate = await _queue_throughput(frame, n)
    out.append(_row("bus.memory.throughput", "msg/s", mem_rate, "asyncio.Queue", queue_rate, params))
    mem_lat, queue_lat = await _bus_latency(memory, frame, n), await _queue_latency(frame, n)
    out.append(_row("bus.memory.latency_p50", "us", _p(mem_lat, 50), "asyncio.Queue", _p(queue_lat, 50), params, False))
    _, pub_clear = await _bus_throughput(memory, frame, n)
    _, pub_stuck = await _bus_throughput(memory, frame, n, stuck=True)
    out.append(_row("bus.memory.publish_with_stuck_subscriber", "msg/s", pub_stuck, "same bus, no stuck subscriber",
                    pub_clear, params))
    memory.close()

    prefix = f"nexus-bench-{uuid.uuid4().hex[:8]}"
    bus = RedisBus(REDIS_URL, prefix, maxsize=n + 1, replay_size=1000)
    try:
        raw_rate, raw_lat = await _raw_redis(payload, n, f"{prefix}:raw")
        ours_rate, _ = await _bus_throughput(bus, frame, n)
        out.append(_row("bus.redis.throughput", "msg/s", ours_rate, "redis-py raw PUBLISH (pipelined)", raw_rate, params))
        bytes_rate, _ = await _bus_throughput(bus, frame, n, decode=False)
        out.append(_row("bus.redis.throughput_forwarding_bytes", "msg/s", bytes_rate,
                        "redis-py raw PUBLISH (pipelined)", raw_rate, params))
        ours_lat = await _bus_latency(bus, frame, max(n // 4, 50))
        for q in (50, 99):
            out.append(_row(f"bus.redis.latency_p{q}", "us", _p(ours_lat, q), "redis-py raw PUBLISH",
                            _p(raw_lat, q), params, False))
        clear_rates, stuck_rates = [], []
        for _ in range(3):  # interleaved repeats: the network path is noisier than in-process
            clear_rates.append((await _bus_throughput(bus, frame, n))[0])
            stuck_rates.append((await _bus_throughput(bus, frame, n, stuck=True))[0])
        out.append(_row("bus.redis.throughput_with_stuck_subscriber", "msg/s", statistics.median(stuck_rates),
                        "same bus, no stuck subscriber", statistics.median(clear_rates), params))
    finally:
        bus.close()
        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(match=f"{prefix}*"))
        if keys:
            client.unlink(*keys)
        client.close()
    return out


def run(quick: bool = False) -> list[dict]:
    return asyncio.run(_main(quick))


if __name__ == "__main__":
    for row in run():
        print(row)
