"""Live results over WebSocket: one bus subscription per stream, fanned out to many clients.

``GET /api/streams/{name}/live?series=a,b&kinds=points,anomalies`` upgrades to a WebSocket. The client
receives, as JSON text frames:

* ``{"type": "hello", ...}`` — the filter in force and the queue bound;
* ``{"type": "snapshot", "kind": "points", "rows": n, "columns": {...}}`` — the newest record per
  series from the store, so a plot has something to show before the next batch;
* ``{"type": "data", "kind": ..., "id": ..., "rows": n, "columns": {...}}`` — each published batch
  (filtered to the client's series), ``kind`` being the topic's last part (``points``, ``anomalies``...);
* ``{"type": "batch", "messages": [...]}`` — several of the above that were waiting, in one frame;
* ``{"type": "dropped", "count": n, "total": t}`` — n messages were dropped because this client read
  too slowly (its queue of ``settings.ws_queue`` messages was full);
* ``{"type": "gap", "dropped": n}`` — the gateway itself fell behind the bus and missed n messages.

A client may send ``{"type": "filter", "series": [...], "kinds": [...]}`` to change its filter.

Backpressure: the publisher and the other clients never wait for a slow client. Each batch is encoded
once per distinct filter and appended to each matching client's bounded queue; a full queue drops the
*new* message and counts it. Each client has one writer task that awaits its socket's flush, so a slow
socket only delays itself. Waiting messages are coalesced into one frame.

Linger: after each frame a writer waits ``settings.ws_linger`` (25 ms) before the next, so a busy
stream goes out as at most ~40 frames/s per client whatever the message rate — WebSocket frames, not
messages, are what costs CPU on both ends. In ``bench/fanout.py`` (1,000 messages/s to 100 clients on
2 shared cores) 10 ms gave p99 ≈ 0.5 s because the loop could not keep up, 25 ms gave p99 ≈ 75 ms; a
frame per message (0) cannot keep up at all. It adds at most ``ws_linger`` of latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import Any

import orjson
import tornado.websocket
from pydantic import BaseModel, Field

from ..storage import SubscriberLagged
from ._base import ApiHandler, check_name, operation, route
from ._frames import columns, dumps

__all__ = ["LiveHub", "LiveClient", "LiveHandler"]

log = logging.getLogger("nexus_kernel.gateway.live")

KINDS = ("points", "anomalies", "forecasts", "alerts", "windows")


class LiveClient:
    def __init__(self, send: Any, series: list[str] | None, kinds: list[str], maxsize: int, metrics: Any,
                 linger: float = 0.0) -> None:
        self._send = send
        self.linger = linger
        self.series = tuple(sorted(series)) if series else None
        self.kinds = frozenset(kinds)
        self.maxsize = maxsize
        self.metrics = metrics
        self.queue: deque[bytes] = deque()
        self.dropped = 0
        self._unreported = 0
        self._wake = asyncio.Event()
        self._closed = False
        self.task: asyncio.Task[None] | None = None
        self._pause: asyncio.Future[None] | None = None

    def offer(self, data: bytes) -> None:
        if self._closed:
            return
        if len(self.queue) >= self.maxsize:
            self.dropped += 1
            self._unreported += 1
            self.metrics.ws_dropped.inc()
        else:
            self.queue.append(data)
            if self._pause is not None and 2 * len(self.queue) >= self.maxsize:
                _release(self._pause)
        self._wake.set()

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._writer())

    async def _writer(self) -> None:
        try:
            while not self._closed:
                await self._wake.wait()
                self._wake.clear()
                while self.queue or self._unreported:
                    if self._unreported:
                        notice = dumps({"type": "dropped", "count": self._unreported, "total": self.dropped})
                        self._unreported = 0
                        await self._send(notice)
                    if not self.queue:
                        continue
                    if len(self.queue) == 1:
                        data = self.queue.popleft()
                    else:
                        items = list(self.queue)
                        self.queue.clear()
                        data = b'{"type":"batch","messages":[' + b",".join(items) + b"]}"
                    await self._send(data)
                    if self.linger:
                        await self._linger()
        except (tornado.websocket.WebSocketClosedError, asyncio.CancelledError):
            pass
        except Exception:  # noqa: BLE001 - a client's failure must not reach the others
            log.exception("live client writer failed")

    async def _linger(self) -> None:
        """Wait ``linger`` so what arrives meanwhile joins the next frame — or less, once the queue is half
        full: lingering must never be what makes a reading client drop messages."""
        loop = asyncio.get_running_loop()
        self._pause = loop.create_future()
        timer = loop.call_later(self.linger, _release, self._pause)
        try:
            await self._pause
        finally:
            timer.cancel()
            self._pause = None

    def close(self) -> None:
        self._closed = True
        self.queue.clear()
        self._wake.set()


def _release(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class _Feed:
    """One stream's bus subscription and the clients it feeds."""

    def __init__(self, hub: LiveHub, stream: str) -> None:
        self.hub = hub
        self.stream = stream
        self.clients: set[LiveClient] = set()
        self.ready = asyncio.Event()
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        topic = f"stream:{self.stream}:*"
        while True:
            try:
                async with self.hub.bus.subscribe(topic, maxsize=self.hub.settings.bus_queue) as sub:
                    self.ready.set()
                    async for message in sub:
                        self._dispatch(message)
            except SubscriberLagged as exc:
                note = dumps({"type": "gap", "dropped": exc.dropped})
                for client in list(self.clients):
                    client.offer(note)
            except asyncio.CancelledError:
                return
            except Exception:  # noqa: BLE001 - keep serving; the bus may come back
                log.exception("live feed of %s failed; resubscribing", self.stream)
                await asyncio.sleep(0.5)

    def _dispatch(self, message: Any) -> None:
        kind = message.topic.rsplit(":", 1)[-1]
        encoded: dict[tuple[str, ...] | None, bytes | None] = {}
        frame = None
        for client in list(self.clients):
            if kind not in client.kinds:
                continue
            key = client.series
            if key not in encoded:
                if frame is None:
                    frame = message.frame
                part = frame if key is None or "series" not in frame.columns else \
                    frame[frame["series"].astype(str).isin(key)]
                encoded[key] = None if part.empty else dumps(
                    {"type": "data", "kind": kind, "id": message.id, "rows": len(part), "columns": columns(part)})
            data = encoded[key]
            if data is not None:
                client.offer(data)


class LiveHub:
    def __init__(self, services: Any) -> None:
        self.services = services
        self.settings = services.settings
        self.bus = services.bus
        self._feeds: dict[str, _Feed] = {}

    async def join(self, stream: str, client: LiveClient) -> None:
        """Add a client; returns once the stream's bus subscription is attached (nothing published after
        this returns is missed)."""
        feed = self._feeds.get(stream)
        if feed is None or feed.task.done():
            feed = self._feeds[stream] = _Feed(self, stream)
        feed.clients.add(client)
        self.services.metrics.ws_clients.inc()
        await asyncio.wait_for(feed.ready.wait(), 10)

    def leave(self, stream: str, client: LiveClient) -> None:
        client.close()
        feed = self._feeds.get(stream)
        if feed is not None and client in feed.clients:
            feed.clients.discard(client)
            self.services.metrics.ws_clients.dec()
            if not feed.clients:
                feed.task.cancel()
                del self._feeds[stream]

    def clients(self) -> int:
        return sum(len(f.clients) for f in self._feeds.values())

    async def close(self) -> None:
        for stream, feed in list(self._feeds.items()):
            for client in list(feed.clients):
                self.leave(stream, client)
            feed.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await feed.task
        self._feeds.clear()


class LiveParams(BaseModel):
    series: list[str] | None = Field(None, max_length=1000, description="Comma-separated series to receive.")
    kinds: list[str] = Field(default_factory=lambda: ["points"], max_length=16,
                             description=f"Comma-separated topics: {', '.join(KINDS)} (or any published kind).")
    snapshot: bool = Field(True, description="Send the newest record per series first.")

    model_config = {"extra": "forbid"}


@route("/api/streams/{name}/live", tag="live")
class LiveHandler(ApiHandler, tornado.websocket.WebSocketHandler):
    client: LiveClient | None = None

    def check_origin(self, origin: str) -> bool:
        # Bearer credentials are not sent by browsers on their own, so another origin cannot ride on
        # them; under Jupyter (cookies) keep tornado's same-origin rule.
        return True if self.services.external_auth is None else super().check_origin(origin)

    @operation("read", "Live results of a stream (WebSocket upgrade)", query=LiveParams, status=101)
    async def get(self, name: str) -> None:
        check_name(name)
        await tornado.websocket.WebSocketHandler.get(self, name)

    async def open(self, name: str) -> None:  # type: ignore[override]
        q = self.query
        self.stream = name
        self.client = LiveClient(self._write, q.series, q.kinds, self.services.settings.ws_queue,
                                 self.services.metrics, linger=self.services.settings.ws_linger)
        hub = self.services.hub
        await hub.join(name, self.client)
        await self._write(dumps({"type": "hello", "stream": name, "series": q.series, "kinds": q.kinds,
                                 "queue": self.client.maxsize}))
        if q.snapshot and "points" in q.kinds:
            try:
                latest = await self.blocking(self.services.store.latest, name, q.series)
                await self._write(dumps({"type": "snapshot", "kind": "points", "rows": len(latest),
                                         "columns": columns(latest)}))
            except tornado.websocket.WebSocketClosedError:
                return
            except Exception:  # noqa: BLE001 - a snapshot failure must not close the feed
                log.exception("snapshot of %s failed", name)
        self.client.start()

    async def _write(self, data: bytes) -> None:
        # bytes with binary=False go out as a text frame as they are (our JSON is UTF-8 already)
        await self.write_message(data)

    def on_message(self, message: str | bytes) -> None:
        try:
            request = orjson.loads(message)
        except orjson.JSONDecodeError:
            return
        if isinstance(request, dict) and request.get("type") == "filter" and self.client is not None:
            series = request.get("series")
            kinds = request.get("kinds")
            if series is None or (isinstance(series, list) and all(isinstance(s, str) for s in series)):
                self.client.series = tuple(sorted(series)) if series else None
            if isinstance(kinds, list) and all(isinstance(k, str) for k in kinds):
                self.client.kinds = frozenset(kinds)

    def on_close(self) -> None:
        if self.client is not None:
            self.services.hub.leave(self.stream, self.client)
