"""Live results over WebSocket: one bus subscription per stream, fanned out to many clients.

``GET /api/streams/{name}/live?series=a,b&kinds=points,anomalies`` upgrades to a WebSocket. The client
receives, as JSON text frames:

* ``{"type": "hello", ...}`` — the filter in force and the bounds (``queue`` messages, ``queue_bytes``);
* ``{"type": "snapshot", "kind": "points", "rows": n, "columns": {...}}`` — the newest record per
  series from the store, so a plot has something to show before the next batch;
* ``{"type": "data", "kind": ..., "id": ..., "rows": n, "columns": {...}}`` — each published batch
  (filtered to the client's series), ``kind`` being the topic's last part (``points``, ``anomalies``...);
* ``{"type": "batch", "messages": [...]}`` — several of the above that were waiting, in one frame;
* ``{"type": "dropped", "count": n, "total": t}`` — n messages were dropped because this client read
  too slowly (its queue of ``settings.ws_queue`` messages was full);
* ``{"type": "gap", "dropped": n}`` — the gateway itself fell behind the bus and missed n messages.

A client may send ``{"type": "filter", "series": [...], "kinds": [...]}`` to change its filter.

Refusals and close codes (clients read them in the OpenAPI description of the route too):

* before the upgrade, as HTTP ``{error, detail, field}``: 401/403 (credentials, role, stream scope),
  429 ``rate_limited`` (the rate limits), 429 ``too_many_connections`` — the credential (principal id)
  already holds ``settings.ws_per_principal`` live sockets on this gateway process;
* close **4008**, reason ``too slow: N bytes waiting (limit M)`` — more than ``settings.ws_queue_bytes``
  would be waiting for this client (see Backpressure); counted in ``nexus_gateway_ws_closed{reason="too_slow"}``;
* close **4401**, reason ``credentials expired`` — a JWT's ``exp`` passed (a timer set from the claims
  closes the socket on time), or ``credentials revoked`` — the API key was revoked or removed (re-checked
  every ``settings.ws_recheck`` seconds; the key store re-reads ``api_keys.json`` when it changes, so a
  revocation by ``nexus keys revoke`` counts); counted as ``reason="expired"`` / ``"revoked"``.

A reconnect after 4008 starts with a fresh snapshot; after 4401 it is refused (401) until the client has a
new credential. Under the Jupyter server extension the Jupyter server owns the session (its token or login
cookie): nothing is re-checked after the upgrade, and the per-principal cap counts per Jupyter user.

Backpressure: the publisher and the other clients never wait for a slow client. Each batch is encoded
once per distinct filter and appended to each matching client's bounded queue. Two bounds:

* messages (``ws_queue``): a full queue drops the *new* message and counts it (``dropped`` notice,
  ``nexus_gateway_ws_dropped``) — a burst costs a reading client some messages, not its connection;
* bytes (``ws_queue_bytes``): what waits for one client — its queue *plus* the frame its socket has not
  flushed yet (the writer awaits each ``write_message`` future, which resolves once Tornado has handed the
  frame to the kernel; until then Tornado holds the frame in the stream's buffer). A message that would
  take it past the bound cuts the client off (4008) and releases its queue at once. A message that finds
  nothing waiting is always taken, so one batch larger than the bound still reaches a reading client.

Each client has one writer task that awaits its socket's flush, so a slow socket only delays itself.
Waiting messages are coalesced into one frame. Caveats: a client that never reads also never sees the
close frame, which waits behind the unflushed data; Tornado tears the socket down 5 s after closing it,
freeing that frame. Queued messages shared by clients with the same filter are counted for each of them.
The per-principal cap counts sockets of this process (several gateways behind Redis each apply it).

Linger: after each frame a writer waits ``settings.ws_linger`` (25 ms) before the next, so a busy
stream goes out as at most ~40 frames/s per client whatever the message rate — WebSocket frames, not
messages, are what costs CPU on both ends. In ``bench/fanout.py`` (1,000 messages/s to 100 clients on
2 shared cores) 10 ms gave p99 ≈ 0.5 s because the loop could not keep up, 25 ms gave p99 ≈ 75 ms; a
frame per message (0) cannot keep up at all. It adds at most ``ws_linger`` of latency, and ends early once
the queue is half full in messages or in bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import tornado.websocket
from pydantic import BaseModel, Field

from ..storage import SubscriberLagged, split_topic, topic_pattern
from ._auth import Principal
from ._base import ApiHandler, check_name, operation, route
from ._errors import ApiError
from ._frames import columns, dumps

__all__ = ["LiveHub", "LiveClient", "LiveHandler", "CredentialWatch", "CLOSE_TOO_SLOW", "CLOSE_CREDENTIALS"]

log = logging.getLogger("nexus_kernel.gateway.live")

KINDS = ("points", "anomalies", "forecasts", "alerts", "windows")

CLOSE_TOO_SLOW = 4008  # more than ws_queue_bytes waiting for the client
CLOSE_CREDENTIALS = 4401  # the credential expired or was revoked while the socket was open


class LiveClient:
    """One subscriber's queue and writer task.

    Parameters
    ----------
    send:
        Sends one text frame; the awaitable it returns resolves once the socket has flushed the frame.
    series, kinds:
        The filter (``None`` series: every series).
    maxsize:
        Messages that may wait; past that new messages are dropped and counted.
    metrics:
        The gateway's :class:`~._metrics.Metrics` (``ws_dropped`` is counted here).
    linger:
        Seconds the writer waits after a frame so what arrives meanwhile joins the next one.
    max_bytes:
        Bytes that may wait (queued + sent but not flushed); ``None``: no byte bound.
    on_overflow:
        Called with the bytes that would be waiting when a message would pass ``max_bytes``; the client
        has closed itself (queue released) by then — the caller closes the socket.
    """

    def __init__(self, send: Callable[[bytes], Awaitable[None]], series: list[str] | None, kinds: list[str],
                 maxsize: int, metrics: Any, linger: float = 0.0, max_bytes: int | None = None,
                 on_overflow: Callable[[int], None] | None = None) -> None:
        self._send = send
        self.linger = linger
        self.series = tuple(sorted(series)) if series else None
        self.kinds = frozenset(kinds)
        self.maxsize = maxsize
        self.max_bytes = max_bytes
        self._byte_bound = max_bytes if max_bytes is not None else sys.maxsize
        self.metrics = metrics
        self.queue: deque[bytes] = deque()
        self.queued_bytes = 0  # sum of len() over self.queue
        self.inflight = 0  # bytes handed to the socket whose write has not completed (not flushed)
        self.peak = 0  # the most bytes that ever waited for this client
        self.dropped = 0
        self._unreported = 0
        self._on_overflow = on_overflow
        self._wake = asyncio.Event()
        self._closed = False
        self.task: asyncio.Task[None] | None = None
        self._pause: asyncio.Future[None] | None = None

    @property
    def waiting(self) -> int:
        """Bytes waiting for this client: its queue plus what its socket has not flushed."""
        return self.queued_bytes + self.inflight

    @property
    def closed(self) -> bool:
        return self._closed

    def offer(self, data: bytes) -> None:
        """Queue one encoded message (never waits): dropped if the queue is full in messages; the client
        is cut off if it would pass ``max_bytes`` while something already waits."""
        if self._closed:
            return
        queue = self.queue
        if len(queue) >= self.maxsize:
            self.dropped += 1
            self._unreported += 1
            self.metrics.ws_dropped.inc()
        else:
            size = len(data)
            after = self.queued_bytes + self.inflight + size
            if after > self._byte_bound and after != size:  # past the bound, and not alone
                self.close()
                if self._on_overflow is not None:
                    self._on_overflow(after)
                return
            queue.append(data)
            self.queued_bytes += size
            if after > self.peak:
                self.peak = after
            if self._pause is not None and (2 * len(queue) >= self.maxsize or 2 * after >= self._byte_bound):
                _release(self._pause)
        self._wake.set()

    def start(self) -> None:
        if not self._closed:
            self.task = asyncio.get_running_loop().create_task(self._writer())

    async def deliver(self, data: bytes) -> None:
        """Send one frame and wait until the socket has flushed it; until then its bytes count as waiting."""
        size = len(data)
        self.inflight += size
        self.peak = max(self.peak, self.queued_bytes + self.inflight)
        try:
            sent = self._send(data)
            del data  # tornado keeps its own copy of the frame until it is flushed: don't hold a second
            await sent
        finally:
            self.inflight -= size

    def _take(self) -> bytes:
        """What waits, as one frame (a ``batch`` when several messages wait)."""
        if len(self.queue) == 1:
            data = self.queue.popleft()
        else:
            items = list(self.queue)
            self.queue.clear()
            data = b'{"type":"batch","messages":[' + b",".join(items) + b"]}"
        self.queued_bytes = 0
        return data

    async def _writer(self) -> None:
        try:
            while not self._closed:
                await self._wake.wait()
                self._wake.clear()
                while not self._closed and (self.queue or self._unreported):
                    if self._unreported:
                        notice = dumps({"type": "dropped", "count": self._unreported, "total": self.dropped})
                        self._unreported = 0
                        await self.deliver(notice)
                    if self.queue:
                        await self.deliver(self._take())
                        if self.linger:
                            await self._linger()
        except (tornado.websocket.WebSocketClosedError, asyncio.CancelledError):
            pass
        except Exception:  # noqa: BLE001 - a client's failure must not reach the others
            log.exception("live client writer failed")

    async def _linger(self) -> None:
        """Wait ``linger`` so what arrives meanwhile joins the next frame — or less, once the queue is half
        full: lingering must never be what makes a reading client drop messages or get cut off."""
        loop = asyncio.get_running_loop()
        self._pause = loop.create_future()
        timer = loop.call_later(self.linger, _release, self._pause)
        try:
            await self._pause
        finally:
            timer.cancel()
            self._pause = None

    def close(self) -> None:
        """Stop taking messages and release the queue (idempotent)."""
        self._closed = True
        self.queue.clear()
        self.queued_bytes = 0
        self._wake.set()
        if self._pause is not None:  # a lingering writer ends now, not after the linger
            _release(self._pause)


def _release(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class CredentialWatch:
    """Ends an open socket when its credential ends.

    A principal whose claims carry ``exp`` (a JWT) ends at that time: one timer, set from the claims. An
    API key (principal kind ``key``) ends when it is revoked or removed: :meth:`KeyStore.active` is asked
    every ``recheck`` seconds (it re-reads ``api_keys.json`` when the file changed, so a revocation by
    another process counts). A re-check that fails is taken as an ended credential (fail closed). Other
    kinds (``jupyter``: the Jupyter server owns that session) are not watched.

    Parameters
    ----------
    principal:
        Who authenticated the upgrade.
    keys:
        The gateway's key store (``active(key_id) -> bool``).
    recheck:
        Seconds between re-checks of an API key.
    on_end:
        Called once, on the event loop, with ``"expired"`` or ``"revoked"``.
    """

    def __init__(self, principal: Principal, keys: Any, recheck: float, on_end: Callable[[str], None]) -> None:
        self.principal = principal
        self.keys = keys
        self.recheck = recheck
        self.on_end = on_end
        self._expiry: asyncio.TimerHandle | None = None
        self._next: asyncio.TimerHandle | None = None
        self._stopped = False

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        exp = self.principal.claims.get("exp")
        if isinstance(exp, (int, float)) and not isinstance(exp, bool):
            self._expiry = loop.call_later(max(0.0, exp - time.time()), self._end, "expired")
        if self.principal.kind == "key":
            self._next = loop.call_later(self.recheck, self._check)

    def _check(self) -> None:
        if self._stopped:
            return
        try:
            active = self.keys.active(self.principal.id.removeprefix("key:"))
        except Exception:  # noqa: BLE001 - cannot tell: treat as revoked; a reconnect gets a clear answer
            log.exception("re-check of %s failed; closing its live socket", self.principal.id)
            active = False
        if active:
            self._next = asyncio.get_running_loop().call_later(self.recheck, self._check)
        else:
            self._end("revoked")

    def _end(self, why: str) -> None:
        if not self._stopped:
            self.stop()
            self.on_end(why)

    def stop(self) -> None:
        """Cancel the timers (idempotent)."""
        self._stopped = True
        for handle in (self._expiry, self._next):
            if handle is not None:
                handle.cancel()
        self._expiry = self._next = None


class _Feed:
    """One stream's bus subscription and the clients it feeds."""

    def __init__(self, hub: LiveHub, stream: str) -> None:
        self.hub = hub
        self.stream = stream
        self.clients: set[LiveClient] = set()
        self.ready = asyncio.Event()
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        topic = topic_pattern(self.stream)
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
        kind = split_topic(message.topic)[1]
        encoded: dict[tuple[str, ...] | None, bytes | None] = {}
        frame = None
        for client in list(self.clients):  # a copy: a client cut off here leaves the set
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
    """The live feeds of one gateway: a bus subscription per watched stream, and who holds how many sockets."""

    def __init__(self, services: Any) -> None:
        self.services = services
        self.settings = services.settings
        self.bus = services.bus
        self._feeds: dict[str, _Feed] = {}
        self._held: dict[str, int] = {}  # principal id -> live sockets admitted
        services.metrics.ws_waiting_bytes.set_function(self.waiting_bytes)

    def admit(self, principal_id: str, limit: int) -> bool:
        """Take one of ``limit`` socket places of a principal; False when it holds them all already.
        Synchronous, so concurrent upgrades cannot both take the last place."""
        held = self._held.get(principal_id, 0)
        if held >= limit:
            return False
        self._held[principal_id] = held + 1
        return True

    def release(self, principal_id: str) -> None:
        held = self._held.get(principal_id, 0) - 1
        if held > 0:
            self._held[principal_id] = held
        else:
            self._held.pop(principal_id, None)

    def holding(self, principal_id: str) -> int:
        return self._held.get(principal_id, 0)

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

    def clients_of(self, stream: str) -> list[LiveClient]:
        feed = self._feeds.get(stream)
        return list(feed.clients) if feed is not None else []

    def waiting_bytes(self) -> int:
        """Bytes waiting for the connected clients (the ``nexus_gateway_ws_waiting_bytes`` gauge)."""
        return sum(c.waiting for f in self._feeds.values() for c in f.clients)

    async def close(self) -> None:
        writers = []
        for stream, feed in list(self._feeds.items()):
            for client in list(feed.clients):
                self.leave(stream, client)
                if client.task is not None:
                    client.task.cancel()  # a writer may wait on a socket that never flushes
                    writers.append(client.task)
            feed.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await feed.task
        await asyncio.gather(*writers, return_exceptions=True)
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
    watch: CredentialWatch | None = None
    stream = ""

    def check_origin(self, origin: str) -> bool:
        # Bearer credentials are not sent by browsers on their own, so another origin cannot ride on
        # them; under Jupyter (cookies) keep tornado's same-origin rule.
        return True if self.services.external_auth is None else super().check_origin(origin)

    @operation("read", "Live results of a stream (WebSocket upgrade)", query=LiveParams, status=101)
    async def get(self, name: str) -> None:
        """Upgrades to a WebSocket of JSON text frames: `hello`, `snapshot`, then `data` (or `batch` of
        several), `dropped` and `gap` notices. Send `{"type": "filter", "series": [...], "kinds": [...]}` to
        change the filter. Browsers may pass the credential as `?token=`.

        Refused before the upgrade: 401/403 as for any route; 429 `rate_limited`; 429
        `too_many_connections` when the credential already holds `ws_per_principal` live sockets.

        Close codes: **4008** `too slow: N bytes waiting (limit M)` — more than `ws_queue_bytes` waited for
        this client (reconnect: a fresh snapshot follows); **4401** `credentials expired` (the JWT's `exp`
        passed) or `credentials revoked` (the API key was revoked; noticed within `ws_recheck` seconds) —
        get a new credential before reconnecting."""
        check_name(name)
        hub = self.services.hub
        cap = self.services.settings.ws_per_principal
        if not hub.admit(self.principal.id, cap):
            self.services.metrics.ws_refused.inc()
            raise ApiError(429, f"too many live connections: this credential already holds {cap} open "
                           "(ws_per_principal); close one first", error="too_many_connections")
        try:
            # returns when the connection ends (tornado reads frames inside it)
            await tornado.websocket.WebSocketHandler.get(self, name)
        finally:
            self._end()
            hub.release(self.principal.id)

    async def open(self, name: str) -> None:
        q = self.query
        settings = self.services.settings
        self.stream = name
        self.watch = CredentialWatch(self.principal, self.services.keys, settings.ws_recheck, self._credential_ended)
        self.watch.start()
        self.client = LiveClient(self._write, q.series, q.kinds, settings.ws_queue, self.services.metrics,
                                 linger=settings.ws_linger, max_bytes=settings.ws_queue_bytes,
                                 on_overflow=self._too_slow)
        await self.services.hub.join(name, self.client)
        try:
            await self.client.deliver(dumps({"type": "hello", "stream": name, "series": q.series, "kinds": q.kinds,
                                             "queue": self.client.maxsize, "queue_bytes": self.client.max_bytes}))
            if q.snapshot and "points" in q.kinds:
                try:
                    latest = await self.blocking(self.services.store.latest, name, q.series)
                    await self.client.deliver(dumps({"type": "snapshot", "kind": "points", "rows": len(latest),
                                                     "columns": columns(latest)}))
                except tornado.websocket.WebSocketClosedError:
                    raise
                except Exception:  # noqa: BLE001 - a snapshot failure must not close the feed
                    log.exception("snapshot of %s failed", name)
        except tornado.websocket.WebSocketClosedError:
            return
        self.client.start()

    def _write(self, data: bytes) -> Awaitable[None]:
        # bytes with binary=False go out as a text frame as they are (our JSON is UTF-8 already); the
        # future resolves once tornado has flushed the frame to the socket
        return self.write_message(data)

    def _too_slow(self, waiting: int) -> None:
        limit = self.services.settings.ws_queue_bytes
        self._hang_up(CLOSE_TOO_SLOW, f"too slow: {waiting} bytes waiting (limit {limit})", "too_slow")

    def _credential_ended(self, why: str) -> None:
        self._hang_up(CLOSE_CREDENTIALS, f"credentials {why}", why)

    def _hang_up(self, code: int, reason: str, metric: str) -> None:
        """Close the socket with ``code`` and ``reason`` (a close frame carries at most 123 bytes of it)."""
        if self.ws_connection is None:  # already closed
            self._end()
            return
        self.services.metrics.ws_closed.labels(metric).inc()
        log.info("closing live socket of %s on %s: %d %s", self.principal.id, self.stream, code, reason)
        self._end()
        self.close(code, reason[:123])

    def _end(self) -> None:
        """Stop the credential watch and leave the feed (idempotent; the socket place is released by get)."""
        if self.watch is not None:
            self.watch.stop()
        if self.client is not None:
            self.services.hub.leave(self.stream, self.client)

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
        self._end()
