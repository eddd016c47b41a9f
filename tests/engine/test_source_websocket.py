"""The ``websocket`` source against a real local ``websockets`` server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import socket
import time

import pandas as pd
import pytest
from websockets.asyncio.server import serve

from nexus_kernel.engine.sources._base import sources
from nexus_kernel.engine.sources._websocket import WebSocketSource
from nexus_kernel.records import Schema, Validator

pytestmark = pytest.mark.timeout(30)

T0 = 1_700_000_000


def record(i: int, series: str = "a") -> dict:
    return {"series": series, "ts": T0 + i, "value": float(i)}


@contextlib.asynccontextmanager
async def feed(handler):
    async with serve(handler, "127.0.0.1", 0) as server:
        yield f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}"


async def take(src, rows: int, timeout: float = 10.0) -> list[pd.DataFrame]:
    """Batches until at least ``rows`` records arrived."""
    out: list[pd.DataFrame] = []
    it = src.batches().__aiter__()
    async with asyncio.timeout(timeout):
        while sum(map(len, out)) < rows:
            out.append(await it.__anext__())
    return out


def test_registered_spec_and_bad_parameters():
    assert sources.get("websocket") is WebSocketSource
    src = WebSocketSource("ws://127.0.0.1:1/feed", batch_size=5, subscribe={"op": "sub"})
    spec = src.spec()
    assert sources.get(spec["kind"])(**spec["params"]).params == src.params
    for bad in (dict(url="http://x"), dict(url="ws://x", batch_size=0), dict(url="ws://x", max_retries=-1),
                dict(url="ws://x", initial_backoff=5, max_backoff=1)):
        with pytest.raises(ValueError):
            WebSocketSource(**bad)


def test_backoff_is_exponential_with_jitter_and_capped():
    random.seed(3)
    src = WebSocketSource("ws://x", initial_backoff=0.5, max_backoff=4.0)
    for failures, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (10, 4.0)]:
        waits = [src.backoff(failures) for _ in range(200)]
        assert ceiling / 2 <= min(waits) and max(waits) <= ceiling
        assert max(waits) - min(waits) > ceiling / 4  # jittered, not a constant


def test_batches_by_size():
    async def handler(ws):
        for i in range(25):
            await ws.send(json.dumps(record(i)))
        await ws.wait_closed()

    async def main():
        async with feed(handler) as url:
            src = WebSocketSource(url, batch_size=10, batch_interval=30)
            try:
                start = time.monotonic()
                batches = await take(src, 20)
                return batches, time.monotonic() - start
            finally:
                await src.close()

    batches, elapsed = asyncio.run(main())
    assert [len(b) for b in batches] == [10, 10]
    assert elapsed < 5  # cut by size, not by the 30 s interval
    assert pd.concat(batches)["value"].tolist() == [float(i) for i in range(20)]


def test_batches_by_time():
    async def handler(ws):
        await ws.send(json.dumps([record(0), record(1), record(2)]))  # one message, three records
        await asyncio.sleep(0.6)
        await ws.send(json.dumps(record(3)) + "\n" + json.dumps(record(4)))  # NDJSON
        await ws.wait_closed()

    async def main():
        async with feed(handler) as url:
            src = WebSocketSource(url, batch_size=1000, batch_interval=0.2)
            try:
                return await take(src, 5)
            finally:
                await src.close()

    batches = asyncio.run(main())
    assert [len(b) for b in batches] == [3, 2]
    good, dead = Validator(Schema("s"))(pd.concat(batches, ignore_index=True))
    assert dead.empty and good["value"].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_reconnects_after_the_server_drops_the_connection():
    subscribes: list[str] = []
    connection = 0

    async def handler(ws):
        nonlocal connection
        connection += 1
        subscribes.append(await ws.recv())
        if connection == 1:
            for i in range(10):
                await ws.send(json.dumps(record(i)))
            await asyncio.sleep(0.1)
            ws.transport.abort()  # a network drop: no closing handshake
            return
        for i in range(10, 20):
            await ws.send(json.dumps(record(i)))
        await ws.wait_closed()

    async def main():
        async with feed(handler) as url:
            src = WebSocketSource(url, batch_size=5, batch_interval=0.1, initial_backoff=0.05,
                                  subscribe={"op": "subscribe", "channel": "pumps"})
            try:
                return await take(src, 20), src
            finally:
                await src.close()

    batches, src = asyncio.run(main())
    values = pd.concat(batches)["value"].tolist()
    assert values == [float(i) for i in range(20)]  # continues where the feed went on
    assert src.connections == 2
    assert [json.loads(s) for s in subscribes] == [{"op": "subscribe", "channel": "pumps"}] * 2
    assert src.last_error is not None


def test_gives_up_after_max_retries():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    async def main():
        src = WebSocketSource(f"ws://127.0.0.1:{port}", initial_backoff=0.01, max_backoff=0.02, max_retries=2)
        try:
            await take(src, 1)
        finally:
            await src.close()

    with pytest.raises(ConnectionError, match="gave up after 3 failed attempts"):
        asyncio.run(main())


def test_undecodable_messages_become_dead_letters():
    async def handler(ws):
        await ws.send("not json")
        await ws.send(b"\xff\xfe")
        await ws.send("42")
        await ws.send(json.dumps([record(1), "x"]))
        await ws.send(json.dumps(record(2)) + "\nbad line\n" + json.dumps(record(3)))
        await ws.send(json.dumps({"series": "a", "ts": T0 + 4, "value": "abc"}))
        # returning closes with code 1000: a finite feed

    async def main():
        async with feed(handler) as url:
            src = WebSocketSource(url, batch_size=100, batch_interval=5, stop_on_close=True)
            try:
                return [b async for b in src], src
            finally:
                await src.close()

    batches, src = asyncio.run(main())
    assert src.exhausted
    good, dead = Validator(Schema("s"))(pd.concat(batches, ignore_index=True))
    assert good["value"].tolist() == [1.0, 2.0, 3.0]
    assert sorted(dead["reason"]) == ["missing_time"] * 5 + ["non_numeric"]
    payloads = " ".join(dead["payload"])
    for needle in ("not json", "\\\\xff", "42", "bad line", "abc", "not an object"):
        assert needle in payloads


def test_backpressure_stops_reading_the_socket():
    async def handler(ws):
        for i in range(5000):
            await ws.send(json.dumps(record(i)))
        await ws.wait_closed()

    async def main():
        async with feed(handler) as url:
            src = WebSocketSource(url, batch_size=10, batch_interval=30, buffer=1)
            try:
                await take(src, 1)
                await asyncio.sleep(0.3)  # the pipeline does not read on
                return src.messages
            finally:
                await src.close()

    # one batch handed on, one in the buffer, one being built and blocked on the full buffer
    assert asyncio.run(main()) <= 3 * 10


def test_closes_cleanly():
    closed = asyncio.Event()

    async def handler(ws):
        for i in range(3):
            await ws.send(json.dumps(record(i)))
        await ws.wait_closed()
        closed.set()

    async def main():
        async with feed(handler) as url:
            src = WebSocketSource(url, batch_size=3)
            await take(src, 3)
            await src.close()
            await asyncio.wait_for(closed.wait(), 3)  # the server saw the client go
            await src.close()  # idempotent
            return [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]

    assert asyncio.run(main()) == []


def test_a_timed_out_wait_does_not_end_the_source():
    """A consumer polling with a timeout (as a micro-batcher does) cancels __anext__: nothing is lost."""
    async def handler(ws):
        await asyncio.sleep(0.3)
        await ws.send(json.dumps(record(0)))
        await ws.wait_closed()

    async def main():
        async with feed(handler) as url:
            src = WebSocketSource(url, batch_size=1)
            it = src.batches().__aiter__()
            try:
                with pytest.raises(TimeoutError):
                    await asyncio.wait_for(it.__anext__(), 0.05)
                return await asyncio.wait_for(it.__anext__(), 5)
            finally:
                await src.close()

    assert asyncio.run(main())["value"].tolist() == [0.0]
