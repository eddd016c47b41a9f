"""The Redis live bus: pub/sub fan-out across processes, a capped Redis Stream per topic for replay.

Publishing. One Lua script per message does ``XADD {topic-stream} MAXLEN ~ N * f <arrow>`` and
``PUBLISH {channel} <id>\\n<arrow>`` atomically, so a live message and its replay copy share one id.
The frame is encoded (Arrow IPC) in the caller's thread — a frame that cannot be encoded fails there,
nothing sent — and handed to one writer thread that drains everything pending into a single pipeline:
one round trip for many messages, and the caller never waits on the network (``publish_nowait``) or
waits only for its own acknowledgement (``await publish``). Pending messages are bounded
(``max_pending``); beyond it ``publish_nowait`` drops the message and counts it (``stats()["dropped"]``)
rather than stall the engine, and ``publish`` raises :class:`BusError`.

Subscribing. Each subscription holds its own pub/sub connection and a reader task on the subscriber's
event loop that moves raw payloads into the bounded queue; frames are decoded only when the subscriber
takes them. A subscriber that does not keep up is cut off exactly as in-process (its connection is
closed). Redis itself protects the publisher from a subscriber whose whole process stalls: the
``client-output-buffer-limit pubsub`` setting disconnects it, which its iterator reports as a
:class:`BusError`.

Keys: channel ``{key_prefix}:bus:{topic}``, replay stream ``{key_prefix}:bus:log:{topic}``.

Caveats: pub/sub is at-most-once — a subscriber that is disconnected misses messages until it
re-subscribes (then :meth:`RedisBus.replay` fills the gap from the capped stream). ``MAXLEN ~`` keeps
*at least* ``replay_size`` entries (Redis trims whole nodes). The Lua script is not cluster-safe.

Example
-------
>>> import asyncio, pandas as pd
>>> from nexus_kernel.config import Settings
>>> async def main(bus):
...     async with bus.subscribe("stream:pumps:points") as sub:
...         await bus.publish("stream:pumps:points", pd.DataFrame({"value": [1.0]}))
...         return (await sub.get(timeout=5)).frame
>>> bus = RedisBus.from_settings(Settings(redis_url="redis://127.0.0.1:6379/0"))  # doctest: +SKIP
>>> asyncio.run(main(bus))  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
from collections import deque
from typing import TYPE_CHECKING, Any, cast

import pandas as pd
import redis
import redis.asyncio as aredis

from ._bus import (
    BusError,
    Message,
    Subscription,
    buses,
    encode_frame,
    id_key,
    is_pattern,
)

if TYPE_CHECKING:
    from ..config import Settings

__all__ = ["RedisBus"]

log = logging.getLogger(__name__)

_PUBLISH = """
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'f', ARGV[2])
redis.call('PUBLISH', KEYS[2], id .. '\\n' .. ARGV[2])
return id
"""

_GLOB = str.maketrans({c: "\\" + c for c in "*?[]\\"})


class _RedisSubscription(Subscription):
    _pubsub: Any = None
    _reader: asyncio.Task[None] | None = None

    async def _start(self) -> None:
        bus: RedisBus = self._bus
        self._client = aredis.Redis.from_url(bus.url)
        self._pubsub = self._client.pubsub()
        channel = bus.channel(self.topic)
        if is_pattern(self.topic):
            await self._pubsub.psubscribe(bus.channel_pattern(self.topic))
        else:
            await self._pubsub.subscribe(channel)
        # Wait for the server's confirmation: a publish after this point reaches us.
        confirm = await self._pubsub.get_message(timeout=5.0)
        if confirm is None or confirm["type"] not in ("subscribe", "psubscribe"):
            await self._close_connection()
            raise BusError(f"Redis did not confirm the subscription to {self.topic!r}")
        self._reader = asyncio.get_running_loop().create_task(self._read(), name=f"bus-reader:{self.topic}")

    async def _read(self) -> None:
        cut = len(self._bus.channel(""))
        try:
            while not self._closed and self._error is None:
                raw = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=None)
                if raw is None or raw["type"] not in ("message", "pmessage"):
                    continue
                data: bytes = raw["data"]
                head = data.index(b"\n")
                message_id = data[:head].decode()
                item = (raw["channel"][cut:].decode(), message_id, memoryview(data)[head + 1 :])
                self._offer(item, id_key(message_id))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the connection dropped: say so through the iterator
            self._fail(BusError(f"live-bus connection for {self.topic!r} lost: {exc}"))
        finally:
            if self._error is not None:
                await self._close_connection()

    def _materialize(self, item: Any) -> Message:
        if isinstance(item, Message):  # from replay
            return item
        topic, message_id, payload = item
        return Message(topic, message_id, payload=payload)

    def _on_lagged(self) -> None:
        self._bus._lagged += 1  # the reader loop sees the error and closes the connection

    async def _stop(self) -> None:
        if self._reader is not None and not self._reader.done():
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        await self._close_connection()

    async def _close_connection(self) -> None:
        if self._pubsub is not None:
            pubsub, self._pubsub = self._pubsub, None
            with contextlib.suppress(Exception):
                await pubsub.aclose()
            with contextlib.suppress(Exception):
                await self._client.aclose()


@buses.register("redis")
class RedisBus:
    """Live bus over Redis.

    Parameters
    ----------
    url
        ``redis://`` URL.
    prefix
        Key prefix (``settings.key_prefix``).
    maxsize
        Default queue bound of a subscription.
    replay_size
        ``MAXLEN ~`` of each topic's replay stream.
    max_pending
        Messages the writer thread may have waiting before ``publish_nowait`` drops new ones.
    """

    def __init__(
        self,
        url: str,
        prefix: str = "nexus",
        maxsize: int = 1000,
        replay_size: int = 100,
        max_pending: int = 10_000,
    ) -> None:
        self.url, self.prefix = url, prefix
        self.maxsize, self.replay_size, self.max_pending = maxsize, replay_size, max_pending
        self._sync = redis.Redis.from_url(url)
        self._script = self._sync.register_script(_PUBLISH)
        self._pending: deque[tuple[str, bytes, concurrent.futures.Future[str] | None]] = deque()
        self._ready = threading.Condition()
        self._writer: threading.Thread | None = None
        self._closed = False
        self._published = self._dropped = self._failed = self._lagged = self._inflight = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> RedisBus:
        if settings.redis_url is None:
            raise ValueError("the redis bus needs settings.redis_url (NEXUS_REDIS_URL)")
        return cls(
            settings.redis_url.get_secret_value(), settings.key_prefix, settings.bus_queue, settings.bus_replay
        )

    def channel(self, topic: str) -> str:
        return f"{self.prefix}:bus:{topic}"

    def channel_pattern(self, pattern: str) -> str:
        return self.channel("").translate(_GLOB) + pattern

    def _log_key(self, topic: str) -> str:
        return f"{self.prefix}:bus:log:{topic}"

    # --- publishing ------------------------------------------------------------------------------

    def publish_nowait(self, topic: str, frame: pd.DataFrame) -> None:
        self._enqueue(topic, encode_frame(frame), None)

    async def publish(self, topic: str, frame: pd.DataFrame) -> str:
        done: concurrent.futures.Future[str] = concurrent.futures.Future()
        if not self._enqueue(topic, encode_frame(frame), done):
            raise BusError(f"live bus overloaded: {self.max_pending} messages already waiting for Redis")
        return await asyncio.wrap_future(done)

    def _enqueue(self, topic: str, payload: bytes, done: concurrent.futures.Future[str] | None) -> bool:
        if self._closed:
            raise BusError("the bus is closed")
        with self._ready:
            if len(self._pending) >= self.max_pending:
                self._dropped += 1
                return False
            self._pending.append((topic, payload, done))
            if self._writer is None or not self._writer.is_alive():
                self._writer = threading.Thread(target=self._write_loop, name="nexus-bus-writer", daemon=True)
                self._writer.start()
            self._ready.notify_all()
        return True

    def _write_loop(self) -> None:
        while True:
            with self._ready:
                while not self._pending and not self._closed:
                    self._ready.wait()
                if not self._pending:
                    return
                batch = [self._pending.popleft() for _ in range(min(len(self._pending), 512))]
                self._inflight = len(batch)
            pipe = self._sync.pipeline(transaction=False)
            for topic, payload, _ in batch:
                self._script(keys=[self._log_key(topic), self.channel(topic)], args=[self.replay_size, payload], client=pipe)
            try:
                results = pipe.execute(raise_on_error=False)
            except Exception as exc:  # Redis unreachable: the live bus is best effort, the store is not
                results = [exc] * len(batch)
            for (topic, _, done), result in zip(batch, results):
                if isinstance(result, Exception):
                    self._failed += 1
                    if done is not None:
                        done.set_exception(BusError(f"publish to {topic!r} failed: {result}"))
                    elif self._failed == 1 or self._failed % 1000 == 0:
                        log.warning("live bus: publish to %r failed (%d so far): %s", topic, self._failed, result)
                else:
                    self._published += 1
                    if done is not None:
                        done.set_result(result.decode())
            with self._ready:
                self._inflight = 0
                self._ready.notify_all()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every message published so far reached Redis (or failed); False on timeout."""
        with self._ready:
            return self._ready.wait_for(lambda: not self._pending and not self._inflight, timeout)

    # --- subscribing and replay -------------------------------------------------------------------

    def subscribe(self, topic: str, maxsize: int | None = None, replay: int = 0) -> Subscription:
        return _RedisSubscription(self, topic, self.maxsize if maxsize is None else maxsize, replay)

    def replay(self, topic: str, last: int | None = None, after: str | None = None) -> list[Message]:
        key = self._log_key(topic)
        if after is not None:
            entries = _entries(self._sync.xrange(key, min=f"({after}", max="+"))
            if last is not None:
                entries = entries[-last:] if last > 0 else []
        else:
            count = self.replay_size if last is None else last
            entries = list(reversed(_entries(self._sync.xrevrange(key, count=count)))) if count > 0 else []
        return [Message(topic, eid.decode(), payload=fields[b"f"]) for eid, fields in entries]

    def stats(self) -> dict[str, int]:
        return {
            "published": self._published,
            "pending": len(self._pending),
            "dropped": self._dropped,
            "failed": self._failed,
            "lagged": self._lagged,
        }

    def close(self) -> None:
        """Send what is pending, stop the writer thread, close connections."""
        if self._closed:
            return
        with self._ready:
            self._closed = True
            self._ready.notify_all()
        if self._writer is not None:
            self._writer.join(timeout=10)
        self._sync.close()


def _entries(reply: object) -> list[tuple[bytes, dict[bytes, bytes]]]:
    """A stream range reply as it is here: bytes, since the client never sets ``decode_responses`` (its
    types allow text and None for every client)."""
    return cast("list[tuple[bytes, dict[bytes, bytes]]]", reply or [])
