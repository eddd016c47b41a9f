"""The live WebSocket feed under attack: a client that never reads, one credential opening many sockets, and
sockets that outlive their credentials — each against a real gateway, over real sockets.

Findings reproduced: slow clients held ~240 MB each until they closed (queues bounded in messages, not
bytes); no per-principal cap; a revoked API key or an expired JWT kept receiving frames.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import socket
import struct
import time
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt
import pandas as pd
import pytest
import websockets
from prometheus_client.parser import text_string_to_metric_families

from nexus_kernel.gateway import mint_token
from nexus_kernel.gateway._keys import KeyStore
from nexus_kernel.gateway._live import CLOSE_CREDENTIALS, CLOSE_TOO_SLOW
from nexus_kernel.storage import topic
from tests.gateway.test_jupyter import jupyter  # noqa: F401 - a real `jupyter server` with the extension

LIVE = "/api/streams/pumps/live?snapshot=false"


def _batch(series: str, n: int) -> pd.DataFrame:
    ts = pd.date_range("2024-01-01", periods=n, freq="s", tz="UTC")
    return pd.DataFrame({"stream": "pumps", "series": series, "ts": ts, "seq": range(n), "value": 1.0}).astype(
        {"stream": "string", "series": "string"})


def _metric(url: str, name: str, **labels: str) -> float:
    """One sample of the gateway's /metrics (0 when the series does not exist yet)."""
    for family in text_string_to_metric_families(httpx.get(url + "/metrics").text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


def _ws_url(g: Any, path: str = LIVE) -> str:
    return g.url.replace("http://", "ws://") + path


class RawWebSocket:
    """A WebSocket client written by hand on a plain TCP socket with a small receive buffer, so that *not
    reading* really leaves the bytes in the gateway: no client library reads ahead into its own memory."""

    def __init__(self, url: str, path: str, token: str, rcvbuf: int = 4096) -> None:
        parts = urlsplit(url)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)  # before connect: sets the window
        self.sock.settimeout(10)
        self.sock.connect((parts.hostname, parts.port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                           f"Authorization: Bearer {token}\r\n\r\n").encode())
        self._buffer = b""
        while b"\r\n\r\n" not in self._buffer:
            self._buffer += self._recv()
        head, self._buffer = self._buffer.split(b"\r\n\r\n", 1)
        self.status = int(head.split(b" ", 2)[1])

    def _recv(self) -> bytes:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("the gateway closed the TCP connection")
        return chunk

    def _exactly(self, n: int) -> bytes:
        while len(self._buffer) < n:
            self._buffer += self._recv()
        data, self._buffer = self._buffer[:n], self._buffer[n:]
        return data

    def frame(self) -> tuple[int, bytes]:
        """The next frame from the server (unmasked, unfragmented): (opcode, payload)."""
        first, second = self._exactly(2)
        length = second & 0x7F
        if length == 126:
            length = struct.unpack("!H", self._exactly(2))[0]
        elif length == 127:
            length = struct.unpack("!Q", self._exactly(8))[0]
        return first & 0x0F, self._exactly(length)

    def until_close(self) -> tuple[int, str, int]:
        """Read (now, at last) up to the close frame: (code, reason, data frames read before it)."""
        frames = 0
        while True:
            opcode, payload = self.frame()
            if opcode == 0x8:
                return struct.unpack("!H", payload[:2])[0], payload[2:].decode(), frames
            frames += 1

    def close(self) -> None:
        self.sock.close()


def test_client_that_never_reads_is_cut_off_and_its_memory_stays_bounded(serve_with):
    limit = 2 << 20
    with serve_with(ws_queue_bytes=limit) as g:
        token = g.token("viewer")
        slow = RawWebSocket(g.url, LIVE, token)
        assert slow.status == 101
        hello = json.loads(slow.frame()[1])
        assert hello["type"] == "hello" and hello["queue_bytes"] == limit
        # from now on the raw client reads nothing: its 4 kB window fills and the gateway holds the rest

        async def hub_clients() -> list[Any]:
            return g.services.hub.clients_of("pumps")

        [slow_client] = g.call(hub_clients())
        n = 80
        frames = [_batch(f"s{i}", 1300) for i in range(n)]  # ~66 kB each once encoded: 5 MB in all

        async def scenario() -> tuple[int, int, bool, list[Any]]:
            async with websockets.connect(_ws_url(g), additional_headers={"Authorization": f"Bearer {token}"},
                                          max_size=1 << 24) as reader:
                assert json.loads(await reader.recv())["type"] == "hello"

                async def publish() -> None:
                    for frame in frames:
                        g.services.bus.publish_nowait(topic("pumps", "points"), frame)
                        await asyncio.sleep(0.02)

                async def read() -> tuple[int, int]:
                    seen = dropped = 0
                    while seen + dropped < n:
                        message = json.loads(await asyncio.wait_for(reader.recv(), 15))
                        for m in message["messages"] if message["type"] == "batch" else [message]:
                            seen += m["type"] == "data"
                            dropped += m.get("count", 0) if m["type"] == "dropped" else 0
                    return seen, dropped

                (seen, dropped), _ = await asyncio.gather(read(), publish())
                with pytest.raises(asyncio.TimeoutError):  # still open: nothing more comes, no close frame
                    await asyncio.wait_for(reader.recv(), 0.3)
                return seen, dropped, reader.close_code is None, g.call(hub_clients())

        seen, dropped, reader_open, fed = asyncio.run(asyncio.wait_for(scenario(), 60))
        assert (seen, dropped) == (n, 0) and reader_open  # the reading client got everything, stays connected
        assert _metric(g.url, "nexus_gateway_ws_closed_total", reason="too_slow") == 1  # only the slow one
        assert slow_client.closed and slow_client.queued_bytes == 0  # its queue was released at once
        assert 0 < slow_client.peak <= limit  # never more than the bound waited for it
        assert len(fed) == 1 and fed[0] is not slow_client  # the feed let go of the slow one, kept the reader

        # reading at last: what was already on its way, then the close frame with the code and the reason
        code, reason, _ = slow.until_close()
        slow.close()
        assert code == CLOSE_TOO_SLOW == 4008
        waiting, said_limit = map(int, re.fullmatch(r"too slow: (\d+) bytes waiting \(limit (\d+)\)", reason).groups())
        assert said_limit == limit and limit < waiting <= limit + 70_000  # the bound plus the one refused message
        deadline = time.monotonic() + 10
        while slow_client.inflight and time.monotonic() < deadline:  # tornado lets go of the unflushed frame
            time.sleep(0.05)
        assert slow_client.waiting == 0


def test_one_credential_may_hold_only_ws_per_principal_sockets(serve_with):
    with serve_with(ws_per_principal=2) as g:
        alice, bob = g.token("viewer"), mint_token(g.settings, "bob", "viewer")

        def headers(token: str) -> dict[str, str]:
            return {"Authorization": f"Bearer {token}"}

        # plain GETs on the route (no upgrade) take a place and must give it back
        for _ in range(3):
            assert httpx.get(g.url + LIVE, headers=headers(alice)).status_code == 400

        async def scenario() -> tuple[Any, ...]:
            first = await websockets.connect(_ws_url(g), additional_headers=headers(alice))
            second = await websockets.connect(_ws_url(g), additional_headers=headers(alice))
            with pytest.raises(websockets.InvalidStatus) as refused:
                await websockets.connect(_ws_url(g), additional_headers=headers(alice))
            other = await websockets.connect(_ws_url(g), additional_headers=headers(bob))  # someone else: fine
            await first.close()
            deadline = time.monotonic() + 5  # the closed socket's place comes back once the server saw the close
            while True:
                try:
                    again = await websockets.connect(_ws_url(g), additional_headers=headers(alice))
                    break
                except websockets.InvalidStatus:
                    assert time.monotonic() < deadline, "the place of a closed socket was not released"
                    await asyncio.sleep(0.05)
            hello = json.loads(await again.recv())
            for ws in (second, other, again):
                await ws.close()
            return refused.value.response, hello

        response, hello = asyncio.run(asyncio.wait_for(scenario(), 30))
        body = json.loads(response.body)
        assert response.status_code == 429 and body["error"] == "too_many_connections"
        assert "already holds 2" in body["detail"] and "ws_per_principal" in body["detail"]
        assert hello["type"] == "hello"
        assert _metric(g.url, "nexus_gateway_ws_refused_total") == 1

        async def held() -> int:
            return g.services.hub.holding("jwt:test-viewer") + g.services.hub.holding("jwt:bob")

        deadline = time.monotonic() + 5
        while g.call(held()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert g.call(held()) == 0  # every place released


def test_jwt_socket_closes_when_the_token_expires(serve_with):
    with serve_with() as g:
        short = g.token("viewer", ttl=2)
        long = g.token("viewer")
        exp = jwt.decode(short, options={"verify_signature": False})["exp"]

        async def scenario() -> tuple[Any, ...]:
            doomed = await websockets.connect(_ws_url(g), additional_headers={"Authorization": f"Bearer {short}"})
            lasting = await websockets.connect(_ws_url(g), additional_headers={"Authorization": f"Bearer {long}"})
            assert json.loads(await doomed.recv())["type"] == "hello"
            assert json.loads(await lasting.recv())["type"] == "hello"
            with pytest.raises(websockets.ConnectionClosed):
                while True:
                    await asyncio.wait_for(doomed.recv(), 10)
            closed_at = time.time()
            with pytest.raises(asyncio.TimeoutError):  # the other token's socket is untouched
                await asyncio.wait_for(lasting.recv(), 0.5)
            with pytest.raises(websockets.InvalidStatus) as again:
                await websockets.connect(_ws_url(g), additional_headers={"Authorization": f"Bearer {short}"})
            state = (doomed.close_code, doomed.close_reason, lasting.close_code)
            await lasting.close()
            return closed_at, state, again.value.response.status_code

        closed_at, (code, reason, lasting_code), status = asyncio.run(asyncio.wait_for(scenario(), 30))
        assert code == CLOSE_CREDENTIALS == 4401 and reason == "credentials expired"
        assert exp - 0.05 <= closed_at <= exp + 1.0  # on time, from the claims
        assert lasting_code is None and status == 401
        assert _metric(g.url, "nexus_gateway_ws_closed_total", reason="expired") == 1


def test_revoked_key_socket_closes_within_ws_recheck(serve_with):
    recheck = 0.3
    with serve_with(ws_recheck=recheck) as g:
        revoked_key, entry = g.services.keys.create("probe", "viewer")
        kept_key, _ = g.services.keys.create("kept", "viewer")

        async def scenario() -> tuple[Any, ...]:
            doomed = await websockets.connect(_ws_url(g), additional_headers={"Authorization": f"Bearer {revoked_key}"})
            kept = await websockets.connect(_ws_url(g), additional_headers={"Authorization": f"Bearer {kept_key}"})
            assert json.loads(await doomed.recv())["type"] == "hello"
            assert json.loads(await kept.recv())["type"] == "hello"
            await asyncio.sleep(2 * recheck)  # a few re-checks pass while the key is valid
            assert doomed.close_code is None
            # revoked by another KeyStore on the same home, as `nexus keys revoke` in another process does
            assert KeyStore.for_home(g.settings.home).revoke(entry["id"])
            revoked_at = time.monotonic()
            with pytest.raises(websockets.ConnectionClosed):
                while True:
                    await asyncio.wait_for(doomed.recv(), 10)
            took = time.monotonic() - revoked_at
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(kept.recv(), 2 * recheck)
            state = (doomed.close_code, doomed.close_reason, kept.close_code)
            await kept.close()
            return took, state

        took, (code, reason, kept_code) = asyncio.run(asyncio.wait_for(scenario(), 30))
        assert code == CLOSE_CREDENTIALS and reason == "credentials revoked"
        assert took <= recheck + 0.5  # within ws_recheck (plus the close handshake)
        assert kept_code is None
        assert _metric(g.url, "nexus_gateway_ws_closed_total", reason="revoked") == 1


def test_live_route_documents_its_close_codes(gw):
    doc = httpx.get(gw.url + "/openapi.json").json()
    text = doc["paths"]["/api/streams/{name}/live"]["get"]["description"]
    for word in ("4008", "too slow", "4401", "credentials expired", "credentials revoked", "too_many_connections"):
        assert word in text


def test_live_socket_still_opens_under_the_jupyter_extension(jupyter):
    """Jupyter's identity provider authenticates the upgrade (external_auth); no key or JWT to watch."""
    url, token = jupyter

    async def scenario() -> tuple[dict[str, Any], Any]:
        live = url.replace("http://", "ws://") + "/nexus" + LIVE
        async with websockets.connect(live, additional_headers={"Authorization": f"token {token}"}) as ws:
            hello = json.loads(await ws.recv())
            with pytest.raises(asyncio.TimeoutError):  # open, quiet: nothing closes it
                await asyncio.wait_for(ws.recv(), 0.5)
            return hello, ws.close_code

    hello, code = asyncio.run(asyncio.wait_for(scenario(), 30))
    assert hello["type"] == "hello" and hello["stream"] == "pumps" and code is None

    async def anonymous() -> None:
        await websockets.connect(url.replace("http://", "ws://") + "/nexus" + LIVE)

    with pytest.raises(websockets.InvalidStatus) as refused:
        asyncio.run(anonymous())
    assert refused.value.response.status_code == 401
