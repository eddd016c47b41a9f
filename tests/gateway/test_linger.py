"""The WebSocket writer's linger: messages that arrive while it waits go out as one frame, and a filling
queue (in messages or in bytes) cuts the wait short (lingering never makes a reading client drop messages
or get cut off); past the byte bound a client is cut off."""

from __future__ import annotations

import asyncio
import json

from nexus_kernel.gateway._live import LiveClient
from nexus_kernel.gateway._metrics import Metrics


def _client(linger: float, maxsize: int, frames: list[bytes]) -> LiveClient:
    async def send(data: bytes) -> None:
        frames.append(data)

    return LiveClient(send, None, ["points"], maxsize, Metrics(), linger=linger)


def test_messages_during_linger_share_a_frame():
    async def scenario():
        frames: list[bytes] = []
        client = _client(0.2, 100, frames)
        client.start()
        client.offer(b'{"n":0}')
        await asyncio.sleep(0.05)  # the first went out at once; the writer now lingers
        for i in range(1, 4):
            client.offer(f'{{"n":{i}}}'.encode())
        await asyncio.sleep(0.05)
        during = len(frames)
        await asyncio.sleep(0.3)
        client.close()
        return during, frames

    during, frames = asyncio.run(scenario())
    assert during == 1
    assert [json.loads(f) for f in frames] == [{"n": 0}, {"type": "batch", "messages": [{"n": 1}, {"n": 2}, {"n": 3}]}]


def test_a_half_full_queue_ends_the_linger():
    async def scenario():
        frames: list[bytes] = []
        client = _client(30.0, 4, frames)  # a linger far longer than the test
        client.start()
        client.offer(b'{"n":0}')
        await asyncio.sleep(0.05)
        client.offer(b'{"n":1}')
        client.offer(b'{"n":2}')  # 2 of 4: half full
        await asyncio.sleep(0.1)
        client.close()
        return frames, client.dropped

    frames, dropped = asyncio.run(scenario())
    assert len(frames) == 2 and dropped == 0
    assert json.loads(frames[1])["messages"] == [{"n": 1}, {"n": 2}]


def test_half_the_byte_bound_ends_the_linger_and_the_bound_cuts_off():
    async def scenario():
        frames: list[bytes] = []
        overflows: list[int] = []

        async def send(data: bytes) -> None:
            frames.append(data)

        client = LiveClient(send, None, ["points"], 100, Metrics(), linger=30.0, max_bytes=1000,
                            on_overflow=overflows.append)
        client.start()
        client.offer(b'{"n":0}')
        await asyncio.sleep(0.05)  # the first went out; the writer lingers (30 s)
        client.offer(b'{"p":"' + b"x" * 494 + b'"}')  # 502 bytes: past half of 1,000
        await asyncio.sleep(0.1)
        sent_early = len(frames)
        # nothing is flushing now (send returns at once): a message alone may be larger than the bound...
        client.offer(b'{"p":"' + b"y" * 1200 + b'"}')
        alone = client.queued_bytes
        # ...but one that finds bytes waiting and would pass the bound cuts the client off
        client.offer(b'{"p":"' + b"z" * 10 + b'"}')
        return sent_early, alone, overflows, client.closed, client.queued_bytes

    sent_early, alone, overflows, closed, queued = asyncio.run(scenario())
    assert sent_early == 2  # the linger ended early: 502 of 1,000 bytes waited
    assert alone == 1208 and overflows == [1208 + 18] and closed and queued == 0
