"""The live bus: DataFrames published by topic to whoever subscribes, and a short replay.

Topics name what flows: ``stream:<stream>:<kind>``, e.g. ``stream:sensors:points`` or
``stream:sensors:anomalies``. Spell them with :func:`topic`, read them back with :func:`split_topic`, and
subscribe to many with :func:`topic_pattern`; nothing else builds them by hand. A subscription takes an
exact topic or a glob pattern (``stream:*:anomalies``; ``*``, ``?``, ``[abc]``, ``[^a]`` and ``\\``
escapes, as Redis ``PSUBSCRIBE``).

**A slow subscriber never slows the publisher.** Each subscription has a bounded queue (``maxsize``).
When a message finds it full, the subscription is cut off on the spot: its queue is discarded (the memory
is freed at once), it is detached from the topic, and its iterator raises :class:`SubscriberLagged`
carrying the number of messages dropped and the id of the last message it did get — enough to
re-subscribe and catch up with :meth:`Bus.replay`. The publisher's cost per subscriber is one append.

Messages carry a DataFrame (across processes as Arrow IPC, never pickle) and an id ``"<ms>-<n>"``
that orders messages of one bus (Redis stream ids for the Redis bus).

Backends register in :data:`buses`; :func:`open_bus` picks Redis when ``settings.redis_url`` is set,
the in-process :class:`MemoryBus` otherwise.

Caveats: the in-process bus hands every subscriber the *same* frame object — treat it as read-only.
Publishing from another thread than the subscriber's event loop is safe (delivery hops through
``call_soon_threadsafe``) but slower.

Example
-------
>>> import asyncio, pandas as pd
>>> async def main():
...     bus = MemoryBus()
...     async with bus.subscribe(topic_pattern("*", "points"), maxsize=10) as sub:
...         await bus.publish(topic("pumps", "points"), pd.DataFrame({"value": [1.0]}))
...         message = await sub.get(timeout=1)
...     return message.topic, message.frame["value"].tolist()
>>> asyncio.run(main())
('stream:pumps:points', [1.0])

References
----------
The lag-and-cut-off policy follows tokio's ``broadcast`` channel (``RecvError::Lagged(n)``).
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import pandas as pd
import pyarrow as pa

from .._registry import Registry

if TYPE_CHECKING:
    from ..config import Settings

__all__ = [
    "Bus",
    "MemoryBus",
    "Message",
    "Subscription",
    "SubscriberLagged",
    "BusError",
    "buses",
    "open_bus",
    "encode_frame",
    "decode_frame",
    "topic",
    "split_topic",
    "topic_pattern",
    "check_kind",
]

#: The first part of every stream topic.
TOPIC_PREFIX = "stream:"
_GLOB_CHARS = frozenset("*?[")


def check_kind(kind: str) -> str:
    """``kind`` if it can be the last part of a topic, else ``ValueError`` naming the reason.

    A kind (``points``, ``anomalies``, ``forecasts``, ...) is a non-empty string with no ``:`` (the last
    ``:`` of a topic is what separates the stream from its kind, so stream names may hold ``:`` but kinds
    may not) and no glob character ``*``, ``?``, ``[`` (a topic holding one would be taken for a pattern
    when subscribed to). Steps call it when built, so a bad kind in a spec is refused before any data flows.
    """
    if not isinstance(kind, str) or not kind:
        raise ValueError(f"a topic kind must be a non-empty string, got {kind!r}")
    if ":" in kind:
        raise ValueError(f"a topic kind cannot contain ':' (it separates stream and kind), got {kind!r}")
    if not _GLOB_CHARS.isdisjoint(kind):
        raise ValueError(f"a topic kind cannot contain a glob character (* ? [), got {kind!r}")
    return kind


def topic(stream: str, kind: str) -> str:
    """The bus topic of ``kind`` data of ``stream``: ``topic("pumps", "points") == "stream:pumps:points"``.

    Parameters
    ----------
    stream
        The stream's name; non-empty, without a glob character (``*``, ``?``, ``[``). Stream names the
        engine and gateway accept never hold one.
    kind
        What flows, e.g. ``points`` or ``anomalies``; see :func:`check_kind`.

    Raises ``ValueError`` naming the reason. Use :func:`topic_pattern` to subscribe to many topics.
    """
    if not isinstance(stream, str) or not stream:
        raise ValueError(f"a topic's stream must be a non-empty string, got {stream!r}")
    if not _GLOB_CHARS.isdisjoint(stream):
        raise ValueError(f"a topic's stream cannot contain a glob character (* ? [), got {stream!r}; "
                         f"use topic_pattern() to subscribe to many streams")
    return f"{TOPIC_PREFIX}{stream}:{check_kind(kind)}"


def split_topic(name: str) -> tuple[str, str]:
    """The ``(stream, kind)`` of a topic made by :func:`topic` (the inverse): ``("pumps", "points")``.

    The kind is what follows the last ``:``, so a stream name holding ``:`` comes back whole. A name that is
    not a stream topic (no ``stream:`` prefix, empty stream or kind) raises ``ValueError``.
    """
    stream, sep, kind = name.removeprefix(TOPIC_PREFIX).rpartition(":")
    if not name.startswith(TOPIC_PREFIX) or not sep or not stream or not kind:
        raise ValueError(f"not a stream topic (stream:<stream>:<kind>): {name!r}")
    return stream, kind


def topic_pattern(stream: str = "*", kind: str = "*") -> str:
    """A glob pattern for :meth:`Bus.subscribe` over stream topics, e.g. every kind of one stream
    (``topic_pattern("pumps") == "stream:pumps:*"``) or one kind of every stream
    (``topic_pattern(kind="anomalies") == "stream:*:anomalies"``).

    Both parts are glob patterns themselves (``*``, ``?``, ``[abc]``, ``[^a]``, ``\\`` escapes). ``kind``
    cannot contain ``:``; note that ``*`` in the stream part also matches ``:``, as in Redis.
    """
    if not isinstance(stream, str) or not stream:
        raise ValueError(f"a pattern's stream must be a non-empty string, got {stream!r}")
    if not isinstance(kind, str) or not kind or ":" in kind:
        raise ValueError(f"a pattern's kind must be a non-empty string without ':', got {kind!r}")
    return f"{TOPIC_PREFIX}{stream}:{kind}"


class BusError(RuntimeError):
    """The bus could not deliver or accept a message (closed, connection lost, publisher overloaded)."""


class SubscriberLagged(BusError):
    """Raised from a subscription's iterator when it fell behind and was cut off."""

    def __init__(self, topic: str, dropped: int, maxsize: int, last_id: str | None) -> None:
        self.topic, self.dropped, self.maxsize, self.last_id = topic, dropped, maxsize, last_id
        super().__init__(
            f"subscriber to {topic!r} fell behind: its queue of {maxsize} was full, {dropped} message(s) "
            f"dropped and the subscription closed (last delivered id: {last_id}). Subscribe again and "
            f"catch up with bus.replay(topic, after=last_id)."
        )


class Message:
    """One published frame.

    ``frame`` and ``payload`` (its Arrow IPC bytes) are each made on first use and kept: a subscriber
    that only forwards bytes (a WebSocket relay) never pays for decoding, and the in-process bus never
    encodes unless asked.
    """

    __slots__ = ("topic", "id", "_frame", "_payload")

    def __init__(
        self, topic: str, id: str, frame: pd.DataFrame | None = None, payload: bytes | memoryview | None = None
    ) -> None:
        if frame is None and payload is None:
            raise ValueError("a message needs a frame or its payload")
        self.topic, self.id, self._frame, self._payload = topic, id, frame, payload

    @property
    def frame(self) -> pd.DataFrame:
        if self._frame is None:
            self._frame = decode_frame(self._payload)  # type: ignore[arg-type]
        return self._frame

    @property
    def payload(self) -> bytes | memoryview:
        if self._payload is None:
            self._payload = encode_frame(self._frame)  # type: ignore[arg-type]
        return self._payload

    @property
    def time(self) -> pd.Timestamp:
        """When the bus accepted it (the millisecond part of the id)."""
        return pd.Timestamp(int(self.id.split("-", 1)[0]), unit="ms", tz="UTC")

    def __repr__(self) -> str:
        return f"Message(topic={self.topic!r}, id={self.id!r})"


def id_key(message_id: str) -> tuple[int, int]:
    ms, _, n = message_id.partition("-")
    return int(ms), int(n or 0)


def encode_frame(frame: pd.DataFrame) -> bytes:
    """A DataFrame as Arrow IPC stream bytes; a frame Arrow cannot type raises a clear error."""
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"the bus carries pandas DataFrames, got {type(frame).__name__}")
    try:
        table = pa.Table.from_pandas(frame, preserve_index=False, nthreads=1)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise TypeError(f"frame cannot be sent on the bus (Arrow IPC): {exc}") from exc
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def decode_frame(data: bytes | memoryview) -> pd.DataFrame:
    table = pa.ipc.open_stream(data).read_all()
    # Threads cost more than they save on live-sized frames.
    return table.to_pandas(use_threads=table.num_rows >= 100_000)


def is_pattern(topic: str) -> bool:
    return any(c in topic for c in "*?[")


@lru_cache(maxsize=1024)
def glob_matcher(pattern: str) -> Callable[[str], Any]:
    """Redis glob semantics as a compiled regex match function."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        if c == "*":
            out.append(".*")
        elif c == "?":
            out.append(".")
        elif c == "[" and "]" in pattern[i + 1 :]:
            end = pattern.index("]", i + 2 if pattern[i + 1 : i + 2] in ("^", "") else i + 1)
            body = pattern[i + 1 : end]
            negate = body.startswith("^")
            body = body[1:] if negate else body
            out.append("[" + ("^" if negate else "") + body.replace("\\", "\\\\") + "]")
            i = end
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out), re.DOTALL).fullmatch


class Subscription:
    """An async iterator of :class:`Message` with a bounded queue; use it as an async context manager.

    Parameters
    ----------
    topic
        Exact topic or glob pattern.
    maxsize
        Messages that may wait before the subscription is cut off with :class:`SubscriberLagged`.
    replay
        Deliver the last ``replay`` messages of ``topic`` (exact topics only) before live ones, with no
        gap and no duplicate between the two.
    """

    def __init__(self, bus: Any, topic: str, maxsize: int, replay: int = 0) -> None:
        if maxsize <= 0:
            raise ValueError("maxsize must be positive")
        if replay and is_pattern(topic):
            raise ValueError("replay needs an exact topic, not a pattern")
        if replay > maxsize:
            raise ValueError(f"replay ({replay}) cannot exceed maxsize ({maxsize})")
        self.topic, self.maxsize, self._replay = topic, maxsize, replay
        self._bus = bus
        self._items: deque[Any] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._error: BaseException | None = None
        self._closed = False
        self._skip_to: tuple[int, int] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = 0
        self.last_id: str | None = None
        self.delivered = 0

    # The backend's half: attach/detach to the topic.
    async def _start(self) -> None:
        raise NotImplementedError

    async def _stop(self) -> None:
        raise NotImplementedError

    def _materialize(self, item: Any) -> Message:
        return item

    async def __aenter__(self) -> Subscription:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        await self._start()
        if self._replay:
            backlog = await asyncio.to_thread(self._bus.replay, self.topic, last=self._replay)
            if backlog:
                self._skip_to = id_key(backlog[-1].id)
                live = [m for m in self._items if id_key(self._materialize(m).id) > self._skip_to]
                self._items = deque([*backlog, *live])
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._closed = True
        self._items.clear()
        await self._stop()
        self._wake()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Message:
        while True:
            if self._items:
                message = self._materialize(self._items.popleft())
                self.last_id = message.id
                self.delivered += 1
                return message
            if self._error is not None:
                raise self._error
            if self._closed:
                raise StopAsyncIteration
            assert self._loop is not None
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    async def get(self, timeout: float | None = None) -> Message:
        """The next message; ``asyncio.TimeoutError`` after ``timeout`` seconds without one."""
        if self._items or timeout is None:  # no timer needed: skip wait_for's extra task
            return await self.__anext__()
        return await asyncio.wait_for(self.__anext__(), timeout)

    @property
    def pending(self) -> int:
        return len(self._items)

    def offer(self, item: Any, key: tuple[int, int] | None = None) -> None:
        """Called by the bus for each matching message, from any thread."""
        if threading.get_ident() == self._thread:
            self._offer(item, key)
        elif self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._offer, item, key)

    def _offer(self, item: Any, key: tuple[int, int] | None) -> None:
        if self._closed or self._error is not None:
            return
        if self._skip_to is not None and key is not None and key <= self._skip_to:
            return  # already delivered by the replay
        if len(self._items) >= self.maxsize:
            dropped = len(self._items) + 1
            self._items.clear()
            self._error = SubscriberLagged(self.topic, dropped, self.maxsize, self.last_id)
            self._on_lagged()
            self._wake()
            return
        self._items.append(item)
        self._wake()

    def _on_lagged(self) -> None:
        """Detach at once so the publisher stops paying for this subscriber."""

    def _fail(self, error: BaseException) -> None:
        if self._error is None and not self._closed:
            self._error = error
            self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


@runtime_checkable
class Bus(Protocol):
    """What every live-bus backend offers."""

    async def publish(self, topic: str, frame: pd.DataFrame) -> str:
        """Publish and return the message id once the bus accepted it."""

    def publish_nowait(self, topic: str, frame: pd.DataFrame) -> None:
        """Publish without waiting, from sync code or any thread; never blocks on subscribers."""

    def subscribe(self, topic: str, maxsize: int | None = None, replay: int = 0) -> Subscription:
        """A subscription to use as ``async with bus.subscribe(...) as sub: async for msg in sub``."""

    def replay(self, topic: str, last: int | None = None, after: str | None = None) -> list[Message]:
        """Kept messages of ``topic``, oldest first: the last ``last``, or those after id ``after``."""

    def stats(self) -> dict[str, int]: ...

    def close(self) -> None: ...


class BusBackend(Protocol):
    """What a member of :data:`buses` is: a class (or any object) that opens a bus from settings."""

    def from_settings(self, settings: Settings) -> Bus: ...


buses: Registry[BusBackend] = Registry("buses")


def open_bus(settings: Settings | None = None, backend: str | None = None) -> Bus:
    """The bus the settings ask for: ``redis`` when ``redis_url`` is set, else ``memory``."""
    if settings is None:
        from ..config import load_settings

        settings = load_settings()
    if backend is None:
        backend = "redis" if settings.redis_url is not None else "memory"
    if backend == "redis":
        from . import _bus_redis  # noqa: F401  (registers itself; needs the `server` extra)
    return buses.get(backend).from_settings(settings)


class _MemorySubscription(Subscription):
    async def _start(self) -> None:
        self._bus._attach(self)

    async def _stop(self) -> None:
        self._bus._detach(self)

    def _on_lagged(self) -> None:
        self._bus._detach(self)
        self._bus._lagged += 1


@buses.register("memory")
class MemoryBus:
    """The in-process bus: subscribers on any event loop of this process, a replay deque per topic.

    Parameters
    ----------
    maxsize
        Default queue bound of a subscription.
    replay_size
        Messages kept per topic for :meth:`replay` (they pin their frames in memory).
    """

    def __init__(self, maxsize: int = 1000, replay_size: int = 100) -> None:
        self.maxsize, self.replay_size = maxsize, replay_size
        self._lock = threading.Lock()
        # Copy-on-write tuples: publishers read them without the lock.
        self._exact: dict[str, tuple[Subscription, ...]] = {}
        self._patterns: tuple[tuple[Callable[[str], Any], Subscription], ...] = ()
        self._kept: dict[str, deque[Message]] = {}
        self._last = (0, -1)
        self._published = 0
        self._lagged = 0
        self._closed = False

    @classmethod
    def from_settings(cls, settings: Settings) -> MemoryBus:
        return cls(settings.bus_queue, settings.bus_replay)

    def publish_nowait(self, topic: str, frame: pd.DataFrame) -> None:
        self._publish(topic, frame)

    async def publish(self, topic: str, frame: pd.DataFrame) -> str:
        return self._publish(topic, frame)

    def _publish(self, topic: str, frame: pd.DataFrame) -> str:
        if self._closed:
            raise BusError("the bus is closed")
        if not isinstance(frame, pd.DataFrame):
            raise TypeError(f"the bus carries pandas DataFrames, got {type(frame).__name__}")
        with self._lock:
            now = int(time.time() * 1000)
            key = (now, 0) if now > self._last[0] else (self._last[0], self._last[1] + 1)
            self._last = key
            message = Message(topic, f"{key[0]}-{key[1]}", frame)
            kept = self._kept.get(topic)
            if kept is None:
                kept = self._kept[topic] = deque(maxlen=self.replay_size)
            kept.append(message)
            self._published += 1
        for sub in self._exact.get(topic, ()):
            sub.offer(message, key)
        for match, sub in self._patterns:
            if match(topic):
                sub.offer(message, key)
        return message.id

    def subscribe(self, topic: str, maxsize: int | None = None, replay: int = 0) -> Subscription:
        return _MemorySubscription(self, topic, self.maxsize if maxsize is None else maxsize, replay)

    def replay(self, topic: str, last: int | None = None, after: str | None = None) -> list[Message]:
        with self._lock:
            kept = list(self._kept.get(topic, ()))
        if after is not None:
            kept = [m for m in kept if id_key(m.id) > id_key(after)]
        if last is not None:
            kept = kept[-last:] if last > 0 else []
        return kept

    def stats(self) -> dict[str, int]:
        return {
            "published": self._published,
            "subscribers": sum(map(len, self._exact.values())) + len(self._patterns),
            "lagged": self._lagged,
        }

    def close(self) -> None:
        self._closed = True
        with self._lock:
            subs = [s for group in self._exact.values() for s in group] + [s for _, s in self._patterns]
            self._exact, self._patterns = {}, ()
            self._kept.clear()
        for sub in subs:
            if sub._loop is not None and not sub._loop.is_closed():
                sub._loop.call_soon_threadsafe(sub._fail, BusError("the bus was closed"))

    def _attach(self, sub: Subscription) -> None:
        if self._closed:
            raise BusError("the bus is closed")
        with self._lock:
            if is_pattern(sub.topic):
                self._patterns = (*self._patterns, (glob_matcher(sub.topic), sub))
            else:
                self._exact[sub.topic] = (*self._exact.get(sub.topic, ()), sub)

    def _detach(self, sub: Subscription) -> None:
        with self._lock:
            if is_pattern(sub.topic):
                self._patterns = tuple(p for p in self._patterns if p[1] is not sub)
            else:
                rest = tuple(s for s in self._exact.get(sub.topic, ()) if s is not sub)
                if rest:
                    self._exact[sub.topic] = rest
                else:
                    self._exact.pop(sub.topic, None)
