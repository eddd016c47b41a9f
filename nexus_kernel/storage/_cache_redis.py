"""The Redis cache: the :class:`~nexus_kernel.storage._cache.Cache` protocol shared across processes.

One :meth:`RedisCache.put_latest` is one round trip whatever the batch size: a single ``MULTI`` pipeline
holding one Lua call per stream for the latest values, one ``ZADD`` + ``ZREMRANGEBYRANK`` per series for
the recent windows, and one ``INCR`` of the stream's generation. Rows are encoded vectorized with Arrow
compute (no per-row Python on the write path); reads decode with ``json`` (reads are the edge).

Keys, under ``{key_prefix}:cache:`` with stream and series percent-encoded (so ``a:b``/``c`` and
``a``/``b:c`` cannot collide):

=============================  ==================================================================
``latest:{stream}``            hash series → ``sortkey`` + row JSON
``recent:{stream}:{series}``   sorted set, all scores 0, members ``sortkey`` + row JSON (lex order
                               = ``(ts, seq)`` order; an identical row delivered twice is one member)
``gen:{stream}``               integer generation of the stream's query results
``q:{stream}:{gen}:{digest}``  a query result (Arrow IPC or JSON), with a ``PX`` expiry
=============================  ==================================================================

``sortkey`` is 40 digits: ``ts`` (ns) and ``seq``, each shifted to unsigned and zero-padded, so string
order is numeric order — Lua numbers are doubles and cannot compare nanosecond times exactly.

Caveats: the Lua scripts build key names from a prefix (not cluster-safe; a single Redis or a
primary/replica pair is the intended deployment). Two rows with the same ``(ts, seq)`` but different
values both stay in a recent window. ``state_ttl`` applies per key and is refreshed by each write.

Example
-------
>>> from nexus_kernel.config import Settings
>>> cache = RedisCache.from_settings(Settings(redis_url="redis://127.0.0.1:6379/0", key_prefix="demo"))
>>> cache.get_or_compute(("pumps", "avg"), lambda: 1.5)  # doctest: +SKIP
1.5
"""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable, Sequence
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import quote

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import redis

from ..records import ATTRS, SEQ, SERIES, STREAM, TIME, field_columns
from ._cache import (
    CacheStats,
    _empty,
    _Stats,
    caches,
    check_batch,
    decode_value,
    encode_value,
    newest_per_series,
    normalize,
    result_key,
)

if TYPE_CHECKING:
    from ..config import Settings

__all__ = ["RedisCache"]

_KEYLEN = 40
_SIGN = np.uint64(1 << 63)

# ARGV: ttl_ms (0 = none), then series, member pairs. A member replaces the stored one only when its
# sortkey is greater: late and replayed rows never overwrite newer values.
_PUT_LATEST = """
local cur
for i = 2, #ARGV, 2 do
  cur = redis.call('HGET', KEYS[1], ARGV[i])
  if (not cur) or string.sub(cur, 1, 40) < string.sub(ARGV[i + 1], 1, 40) then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
if tonumber(ARGV[1]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return 1
"""

# KEYS[1] generation key; ARGV[1] result-key prefix, ARGV[2] digest. Generation and value in one trip.
_GET_RESULT = """
local gen = redis.call('GET', KEYS[1]) or '0'
return {gen, redis.call('GET', ARGV[1] .. gen .. ':' .. ARGV[2])}
"""


def _q(name: str) -> str:
    return quote(str(name), safe="")


def _sortable(values: np.ndarray) -> pa.Array:
    """int64 → 20-digit strings whose byte order is the numeric order."""
    unsigned = values.astype(np.int64).view(np.uint64) ^ _SIGN
    return pc.utf8_lpad(pc.cast(pa.array(unsigned), pa.string()), 20, "0")


def encode_rows(frame: pd.DataFrame) -> np.ndarray:
    """``sortkey + JSON`` for each row of a normalized batch, built with Arrow kernels."""
    ts = frame[TIME].array.asi8
    seq = frame[SEQ].to_numpy(np.int64)
    parts: list[Any] = [
        _sortable(ts),
        _sortable(seq),
        '{"ts":',
        pc.cast(pa.array(ts), pa.string()),
        ',"seq":',
        pc.cast(pa.array(seq), pa.string()),
    ]
    for name in field_columns(frame):
        values = pa.array(frame[name].to_numpy(np.float64))
        text = pc.cast(values, pa.string())
        # JSON has no NaN/inf: a missing field is null (the contract keeps fields finite anyway).
        text = pc.if_else(pc.is_finite(values), text, "null")
        parts += [f",{json.dumps(name)}:", text]
    if ATTRS in frame.columns:
        attrs = pa.array(frame[ATTRS].astype(object).where(frame[ATTRS].notna(), None), pa.string())
        parts += [',"attrs":', pc.fill_null(json_strings(attrs), "null")]
    parts.append("}")
    return pc.binary_join_element_wise(*parts, "").to_numpy(zero_copy_only=False)


def json_strings(text: pa.Array) -> pa.Array:
    """Quote strings as JSON string literals, vectorized; rows with control characters go through
    ``json.dumps`` one by one (rare: attrs are JSON text, whose newlines are already escaped)."""
    escaped = pc.replace_substring(pc.replace_substring(text, "\\", "\\\\"), '"', '\\"')
    quoted = pc.binary_join_element_wise('"', escaped, '"', "")
    odd = pc.fill_null(pc.match_substring_regex(text, "[\\x00-\\x1f]"), False)
    if pc.any(odd).as_py():
        fixed = [json.dumps(t) if o else q for t, o, q in zip(text.to_pylist(), odd.to_pylist(), quoted.to_pylist())]
        quoted = pa.array(fixed, pa.string())
    return quoted


def decode_rows(stream: str, series: Sequence[str], members: Sequence[bytes]) -> pd.DataFrame:
    if not members:
        return _empty()
    records = [json.loads(m[_KEYLEN:]) for m in members]
    frame = pd.DataFrame.from_records(records)
    frame.insert(0, SERIES, list(series))
    frame.insert(0, STREAM, stream)
    frame[TIME] = pd.to_datetime(frame[TIME], unit="ns", utc=True)
    return normalize(frame)


@caches.register("redis")
class RedisCache:
    """The cache in Redis, shared by every process that uses the same ``key_prefix``.

    Parameters
    ----------
    client
        A ``redis.Redis`` (bytes responses: do not set ``decode_responses``).
    prefix
        Key prefix; ``:cache:`` is appended.
    recent_size, ttl, state_ttl
        As for :class:`~nexus_kernel.storage._cache.MemoryCache`. The size of the query-result cache is
        bounded by TTLs and Redis's ``maxmemory`` policy rather than an entry count.
    """

    def __init__(
        self,
        client: redis.Redis,
        prefix: str = "nexus",
        recent_size: int = 1000,
        ttl: float = 60.0,
        state_ttl: float | None = None,
    ) -> None:
        if recent_size <= 0 or ttl <= 0:
            raise ValueError("recent_size and ttl must be positive")
        self._r = client
        self._p = f"{prefix}:cache:"
        self.recent_size, self.ttl, self.state_ttl = recent_size, ttl, state_ttl
        self._put_latest = client.register_script(_PUT_LATEST)
        self._get_result = client.register_script(_GET_RESULT)
        self._stats = _Stats()

    @classmethod
    def from_settings(cls, settings: Settings) -> RedisCache:
        if settings.redis_url is None:
            raise ValueError("the redis cache needs settings.redis_url (NEXUS_REDIS_URL)")
        client = redis.Redis.from_url(settings.redis_url.get_secret_value())
        return cls(client, settings.key_prefix, settings.cache_recent, settings.cache_ttl, settings.cache_state_ttl)

    def put_latest(self, batch: pd.DataFrame) -> int:
        batch = check_batch(batch)
        if batch.empty:
            return 0
        members = encode_rows(batch)
        ttl_ms = int(self.state_ttl * 1000) if self.state_ttl else 0
        newest_at = newest_per_series(batch).index.to_numpy()
        is_newest = np.zeros(len(batch), dtype=bool)
        is_newest[newest_at] = True
        pipe = self._r.pipeline(transaction=True)
        for stream, part in batch.groupby(STREAM, sort=False, observed=True):
            s = _q(str(stream))  # stream and series hold text; group keys are typed as any scalar
            rows = part.index.to_numpy()
            top = rows[is_newest[rows]]
            args: list[Any] = [ttl_ms]
            for name, member in zip(batch[SERIES].to_numpy()[top], members[top]):
                args += [name, member]
            self._put_latest(keys=[f"{self._p}latest:{s}"], args=args, client=pipe)
            for name, idx in part.groupby(SERIES, sort=False, observed=True).indices.items():
                key = f"{self._p}recent:{s}:{_q(str(name))}"
                pipe.zadd(key, dict.fromkeys(members[rows[idx]], 0))
                pipe.zremrangebyrank(key, 0, -self.recent_size - 1)
                if ttl_ms:
                    pipe.pexpire(key, ttl_ms)
            pipe.incr(f"{self._p}gen:{s}")
        pipe.execute()
        self._stats.writes += len(batch)
        self._stats.invalidations += batch[STREAM].nunique()
        return len(batch)

    def latest(self, stream: str, series: str | Sequence[str] | None = None) -> pd.DataFrame:
        key = f"{self._p}latest:{_q(stream)}"
        if series is None:
            found = cast("dict[bytes, bytes]", self._r.hgetall(key))  # bytes: no decode_responses (see __init__)
            names, members = [k.decode() for k in found], list(found.values())
        else:
            wanted = [series] if isinstance(series, str) else list(series)
            values = cast("list[bytes | None]", self._r.hmget(key, wanted)) if wanted else []
            names = [n for n, v in zip(wanted, values) if v is not None]
            members = [v for v in values if v is not None]
        frame = decode_rows(stream, names, members)
        return normalize(frame.sort_values(SERIES, kind="stable")) if len(frame) else frame

    def recent(self, stream: str, series: str, n: int | None = None) -> pd.DataFrame:
        n = self.recent_size if n is None else min(int(n), self.recent_size)
        if n <= 0:
            return _empty()
        members = cast("list[bytes]", self._r.zrange(f"{self._p}recent:{_q(stream)}:{_q(series)}", -n, -1))
        return decode_rows(stream, [series] * len(members), members)

    def get_or_compute(
        self, key_parts: Sequence[Hashable], compute: Callable[[], Any], ttl: float | None = None
    ) -> Any:
        stream, digest = result_key(key_parts)
        s = _q(stream)
        prefix = f"{self._p}q:{s}:"
        gen, blob = self._get_result(keys=[f"{self._p}gen:{s}"], args=[prefix, digest])
        if blob is not None:
            self._stats.hits += 1
            return decode_value(blob)
        self._stats.misses += 1
        value = compute()
        # Stored under the generation read before computing: a write meanwhile makes it unreachable.
        self._r.set(f"{prefix}{gen.decode()}:{digest}", encode_value(value), px=int((ttl or self.ttl) * 1000))
        return value

    def invalidate(self, stream: str) -> None:
        self._r.incr(f"{self._p}gen:{_q(stream)}")
        self._stats.invalidations += 1

    def stats(self) -> CacheStats:
        return self._stats.snapshot()

    def clear(self) -> None:
        # Generations are kept (bumped) rather than deleted, so an old result cannot come back to life.
        pattern = self._p.replace("*", r"\*").replace("?", r"\?").replace("[", r"\[") + "*"
        batch: list[bytes] = []
        for key in self._r.scan_iter(match=pattern, count=1000):
            if key.startswith(f"{self._p}gen:".encode()):
                self._r.incr(key)
            else:
                batch.append(key)
            if len(batch) >= 1000:
                self._r.unlink(*batch)
                batch = []
        if batch:
            self._r.unlink(*batch)

    def close(self) -> None:
        self._r.close()
