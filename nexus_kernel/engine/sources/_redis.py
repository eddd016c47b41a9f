"""``redis``: a Redis Streams consumer group, acknowledged only after the pipeline handled a batch.

Each read (``XREADGROUP COUNT batch_size BLOCK block_ms``) becomes one raw micro-batch. An entry holds
either a field ``data`` with JSON (an object, or an array of objects: several records) or flat fields
(``series``, ``ts``, ``value``, any other field, optional ``attrs`` as JSON text). Entry ids of what was
yielded are acknowledged (``XACK``) in :meth:`RedisSource.commit`, which the pipeline calls after every
sink returned: delivery is *at least once*, never *at most once*.

Recovery, in this order, when the source starts:

1. its own pending entries (same consumer name, a restart after a crash) are read again from id ``0``;
2. entries pending at *other* consumers for longer than ``claim_idle_ms`` (a dead consumer) are taken
   over with ``XAUTOCLAIM``; this scan is repeated whenever the stream is idle and at least every
   ``claim_idle_ms`` while it is busy;
3. then new entries (``>``).

A malformed entry (undecodable JSON, not an object, an array item that is not an object) becomes a row
the Validator dead-letters, with the raw entry and its id in ``attrs``; it is acknowledged like any
other, because the dead-letter queue now holds it.

Caveats
-------
- At least once: a batch yielded but not committed (crash, failed sink) is delivered again, to this
  consumer after a restart or to another one after ``claim_idle_ms``. Records without their own ``seq``
  get one derived from the entry id — ``(ms << 21) + (entry seq << 8) + index in entry`` — so a
  redelivered record has the same ``(stream, series, ts, seq)`` key and an idempotent store keeps it
  once. Past 8,192 entries in one millisecond or 256 records in one entry the seq is left to the
  Validator's counter.
- A slow pipeline (a batch held longer than ``claim_idle_ms``) lets another consumer of the group claim
  entries this one is still handling: set ``claim_idle_ms`` well above the slowest batch.
- Backpressure: at most ``buffer`` batches are read ahead of the pipeline; unread entries stay in Redis.
- ``lag()`` is the group's undelivered entries plus its pending ones (``XINFO GROUPS``, Redis ≥ 7),
  refreshed at most once a second by the reading task.

Parameters
----------
url
    ``redis://host:port/db``. In a stream spec: ``redis://`` or ``rediss://`` only, query options from
    ``SPEC_URL_OPTIONS``; a URL with a password must be a secret reference ``{"secret": "NAME"}``.
key
    The key of the Redis stream.
group, consumer
    Consumer group (created with ``MKSTREAM`` if missing) and this consumer's name in it. Give each
    process its own stable name so a restart picks up its own pending entries.
batch_size
    Entries per read (``COUNT``); an entry with a JSON array gives several records.
block_ms
    How long one read waits for new entries.
claim_idle_ms
    Idle time after which another consumer's pending entries are claimed.
start_id
    Where a newly created group starts: ``"0"`` (the whole stream) or ``"$"`` (only new entries).
buffer
    Batches read ahead of the consumer.
stop_when_idle
    End the iteration when a read finds nothing new and nothing to claim (replaying a finished
    stream, tests); by default the source waits for more.

Example
-------
>>> import asyncio, redis
>>> r = redis.Redis(); key = "nexus:doctest:redis-source"; r.delete(key)
0
>>> _ = r.xadd(key, {"series": "a", "ts": "2024-01-01T00:00:00Z", "value": "1.5"})
>>> async def main():
...     src = RedisSource(key=key, group="g", consumer="c1", stop_when_idle=True, block_ms=50)
...     rows = 0
...     async for batch in src:
...         rows += len(batch)
...         await src.commit()          # the pipeline does this after every sink returned
...     await src.close()
...     return rows
>>> asyncio.run(main())
1
>>> r.delete(key)
1

References
----------
- Redis Streams: https://redis.io/docs/latest/develop/data-types/streams/
- XAUTOCLAIM: https://redis.io/docs/latest/commands/xautoclaim/
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import numpy as np
import pandas as pd

from ...config import Settings
from ...records import SEQ
from .._specs import SpecError
from ._base import BoundedBuffer, Source, sources
from ._jsonrecords import BufferedBatches, frame_from_records, malformed, records_from_text

__all__ = ["RedisSource"]

#: Query options a spec's Redis URL may carry: none of them names a file or a local socket.
SPEC_URL_OPTIONS = frozenset(("db", "socket_timeout", "socket_connect_timeout", "socket_keepalive",
                              "health_check_interval", "protocol", "ssl_check_hostname", "timeout"))


class _Stopped(Exception):
    """The source is closing: the reading task ends at its next command."""

_Entry = tuple[bytes, dict[bytes, bytes] | None]


def _seq_base(entry_id: str) -> int | None:
    ms, _, part = entry_id.partition("-")
    ms_i, part_i = int(ms), int(part or 0)
    if part_i >= 1 << 13 or ms_i >= 1 << 42:
        return None
    return (ms_i << 21) + (part_i << 8)


def _text(value: bytes) -> str:
    return value.decode("utf-8", "backslashreplace")


def entries_to_records(entries: list[_Entry]) -> list[dict[str, Any]]:
    """Records of a list of stream entries (``(id, fields)``); deleted entries give none."""
    rows: list[dict[str, Any]] = []
    for raw_id, fields in entries:
        entry_id = _text(raw_id)
        if not fields:
            continue
        if b"data" in fields:
            got = records_from_text(fields[b"data"], redis_id=entry_id)
        else:
            try:
                got = [{k.decode("utf-8"): v.decode("utf-8") for k, v in fields.items()}]
            except UnicodeDecodeError as exc:
                raw = {_text(k): _text(v) for k, v in fields.items()}
                got = [malformed(f"not UTF-8: {exc}", raw, redis_id=entry_id)]
        base = _seq_base(entry_id)
        for index, row in enumerate(got):
            if SEQ not in row:
                row[SEQ] = base + index if base is not None and index < 256 else None
        rows.extend(got)
    return rows


@sources.register("redis")
class RedisSource(Source):
    """Consumer of a Redis Stream in a consumer group; see the module docstring."""

    kind = "redis"
    self_buffered = True

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        key: str = "nexus:events",
        group: str = "nexus",
        consumer: str = "nexus-1",
        batch_size: int = 1000,
        block_ms: int = 1000,
        claim_idle_ms: int = 30_000,
        start_id: str = "0",
        buffer: int = 8,
        stop_when_idle: bool = False,
    ) -> None:
        if batch_size <= 0 or buffer <= 0 or block_ms < 0 or claim_idle_ms < 0:
            raise ValueError("batch_size and buffer must be > 0, block_ms and claim_idle_ms >= 0")
        super().__init__(
            url=url, key=key, group=group, consumer=consumer, batch_size=batch_size,
            block_ms=block_ms, claim_idle_ms=claim_idle_ms, start_id=start_id, buffer=buffer,
            stop_when_idle=stop_when_idle,
        )
        self._client: Any = None
        self._buffer: BoundedBuffer | None = None
        self._in_flight: set[bytes] = set()  # read, not acknowledged yet (buffered or yielded)
        self._yielded: list[bytes] = []  # handed to the pipeline, awaiting commit
        self._claim_cursor: bytes | str = "0-0"
        self._last_claim = float("-inf")
        self._lag: float | None = None
        self._lag_at = float("-inf")
        self._in_call = False  # the reading task is inside a Redis command
        self._stopping = False
        self.acknowledged = 0
        self.claimed = 0

    @classmethod
    def from_spec(cls, settings: Settings, **params: Any) -> "RedisSource":
        """A consumer whose ``url`` a spec gave: ``redis://`` or ``rediss://`` only, with a short list of
        query options. redis-py would otherwise connect to a local socket (``unix://``) or load files
        named in the query (``ssl_ca_certs``, ``ssl_certfile``, ``ssl_keyfile``...)."""
        url = params.get("url", "redis://127.0.0.1:6379/0")
        if not isinstance(url, str):
            raise SpecError("source.params.url must be a redis:// or rediss:// URL", field="source.params.url")
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss"):
            raise SpecError(f"source.params.url: scheme '{parts.scheme[:20]}' is not allowed in a stream spec "
                            "(use redis:// or rediss://)", field="source.params.url")
        refused = sorted({key for key, _ in parse_qsl(parts.query, keep_blank_values=True)} - SPEC_URL_OPTIONS)
        if refused:
            raise SpecError(f"source.params.url: query options {refused[:5]} are not allowed in a stream spec "
                            f"(allowed: {', '.join(sorted(SPEC_URL_OPTIONS))})", field="source.params.url")
        return cls(**params)

    # -- connection ----------------------------------------------------------------------------

    async def _connect(self) -> Any:
        if self._client is None:
            import redis.asyncio as aioredis  # the `server` extra

            self._client = aioredis.Redis.from_url(self.params["url"], decode_responses=False)
            try:
                await self._client.xgroup_create(
                    self.params["key"], self.params["group"], id=self.params["start_id"], mkstream=True
                )
            except Exception as exc:  # BUSYGROUP: the group exists, which is the normal case
                if "BUSYGROUP" not in str(exc):
                    raise
        return self._client

    # -- reading -------------------------------------------------------------------------------

    async def _call(self, command: str, *args: Any, **kwargs: Any) -> Any:
        # redis-py 8 can lose a cancellation that lands inside a blocking read (the task then waits
        # on the socket for good), so the reading task is stopped between commands, never inside one
        if self._stopping:
            raise _Stopped
        self._in_call = True
        try:
            return await getattr(self._client, command)(*args, **kwargs)
        finally:
            self._in_call = False

    async def _read(self, stream_id: str, block: int | None) -> list[_Entry]:
        p = self.params
        reply = await self._call(
            "xreadgroup", p["group"], p["consumer"], {p["key"]: stream_id}, count=p["batch_size"], block=block
        )
        return list(reply[0][1]) if reply else []

    async def _claim(self) -> list[_Entry]:
        """Entries idle at other (dead) consumers, taken over; scans the pending list like SCAN."""
        p = self.params
        self._last_claim = time.monotonic()
        while True:
            reply = await self._call(
                "xautoclaim", p["key"], p["group"], p["consumer"], p["claim_idle_ms"],
                start_id=self._claim_cursor, count=p["batch_size"],
            )
            self._claim_cursor, entries = reply[0], reply[1]
            # our own in-flight entries also match an idle scan; they are being handled already
            fresh = [e for e in entries if e[0] not in self._in_flight]
            if fresh or self._claim_cursor in (b"0-0", "0-0"):
                self.claimed += len(fresh)
                return fresh

    async def _refresh_lag(self) -> None:
        if time.monotonic() - self._lag_at < 1.0:
            return
        self._lag_at = time.monotonic()
        for info in await self._call("xinfo_groups", self.params["key"]):
            name = info.get("name")
            if (name.decode() if isinstance(name, bytes) else name) == self.params["group"]:
                pending, behind = info.get("pending") or 0, info.get("lag")
                self._lag = float(pending + (behind or 0))

    async def _produce(self) -> AsyncIterator[tuple[pd.DataFrame, list[bytes]]]:
        try:
            async for item in self._read_forever():
                yield item
        except _Stopped:
            return

    async def _read_forever(self) -> AsyncIterator[tuple[pd.DataFrame, list[bytes]]]:
        p = self.params
        client = await self._connect()
        own_cursor = "0"
        while True:  # 1. our own pending entries, left by an earlier run under this name
            entries = await self._read(own_cursor, None)
            if not entries:
                break
            own_cursor = _text(entries[-1][0])
            yield await self._batch(client, entries)
        while True:
            entries = []
            due = time.monotonic() - self._last_claim >= p["claim_idle_ms"] / 1000
            if due:  # 2. entries of dead consumers
                entries = await self._claim()
            if not entries:  # 3. new entries
                entries = await self._read(">", p["block_ms"])
            if not entries and not due:  # the stream is idle: a good moment to look for orphans
                entries = await self._claim()
            await self._refresh_lag()
            if entries:
                yield await self._batch(client, entries)
            elif p["stop_when_idle"]:
                return

    async def _batch(self, client: Any, entries: list[_Entry]) -> tuple[pd.DataFrame, list[bytes]]:
        ids = [e[0] for e in entries]
        self._in_flight.update(ids)
        frame = frame_from_records(entries_to_records(entries))
        if frame.empty:  # only deleted or empty entries: nothing to hand on, nothing to lose
            await self._call("xack", self.params["key"], self.params["group"], *ids)
            self._in_flight.difference_update(ids)
        elif SEQ in frame.columns:
            column = frame[SEQ]
            if column.map(lambda v: isinstance(v, (int, np.integer)) and not isinstance(v, bool)).all():
                frame[SEQ] = column.astype(np.int64)  # exact: packed ids do not fit a float64
        return frame, ids

    def batches(self) -> AsyncIterator[pd.DataFrame]:
        def make_buffer() -> BoundedBuffer:
            self._stopping = False
            self._buffer = BoundedBuffer(self._produce(), self.params["buffer"])  # type: ignore[arg-type]
            return self._buffer

        def accept(item: tuple[pd.DataFrame, list[bytes]]) -> pd.DataFrame | None:
            frame, ids = item
            if frame.empty:
                return None
            self._yielded.extend(ids)  # handed on: acknowledged by the next commit()
            self.emitted += len(frame)
            return frame

        return BufferedBatches(make_buffer, accept, self._ended)

    def _ended(self) -> None:
        self.exhausted = True

    # -- acknowledging -------------------------------------------------------------------------

    async def _ack(self, ids: list[bytes]) -> None:
        for start in range(0, len(ids), 10_000):
            chunk = ids[start : start + 10_000]
            self.acknowledged += await self._client.xack(self.params["key"], self.params["group"], *chunk)
        self._in_flight.difference_update(ids)

    async def commit(self) -> None:
        """Acknowledge every entry yielded so far: the pipeline has handled it durably."""
        ids, self._yielded = self._yielded, []
        if ids:
            await self._ack(ids)

    async def close(self) -> None:
        """Stop reading and disconnect. Unacknowledged entries stay pending, to be redelivered."""
        self._stopping = True
        if self._buffer is not None:
            deadline = time.monotonic() + self.params["block_ms"] / 1000 + 5.0
            while self._in_call and time.monotonic() < deadline:  # a read ends within block_ms
                await asyncio.sleep(0.005)
            await self._buffer.aclose()
            self._buffer = None
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    def lag(self) -> float | None:
        return self._lag
