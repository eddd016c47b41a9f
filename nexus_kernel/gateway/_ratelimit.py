"""Sliding-window rate limits, per API key / token subject and per client address.

A *sliding log*: each admitted request leaves its time; a request is admitted when fewer than ``limit``
times lie in the last ``window`` seconds. Unlike fixed windows it never lets 2× the limit through around
a window boundary. A refused request is not logged, so hammering does not extend the ban; the caller is
told to retry when the oldest time in the window leaves it (``Retry-After``, whole seconds, at least 1).

Two backends with one interface, ``await limiter.hit(key, limit) -> retry_after | None``:

* :class:`MemoryLimiter` — a deque per key, in this process.
* :class:`RedisLimiter` — a sorted set per key, trimmed, counted and added in one Lua script, so several
  gateway processes share one budget atomically. Keys expire after a window of silence.

Why not the ``limits`` package: its async Redis path needs another Redis client (coredis) beside the
``redis`` one the project uses; the algorithm itself is twenty lines.

Caveat: memory use is O(limit) per active key; keys idle for a window are dropped lazily.
"""

from __future__ import annotations

import math
import time
import uuid
from collections import deque
from typing import Any

__all__ = ["MemoryLimiter", "RedisLimiter", "open_limiter"]


class MemoryLimiter:
    def __init__(self, window: float) -> None:
        self.window = window
        self._log: dict[str, deque[float]] = {}
        self._sweep = time.monotonic()

    async def hit(self, key: str, limit: int) -> float | None:
        now = time.monotonic()
        if now - self._sweep > self.window:
            self._sweep = now
            for k in [k for k, d in self._log.items() if not d or d[-1] <= now - self.window]:
                del self._log[k]
        times = self._log.setdefault(key, deque())
        edge = now - self.window
        while times and times[0] <= edge:
            times.popleft()
        if len(times) >= limit:
            return max(1.0, math.ceil(times[0] + self.window - now))
        times.append(now)
        return None

    async def close(self) -> None:
        self._log.clear()


_LUA = """
local key, now, window, limit, member = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
local count = redis.call('ZCARD', key)
if count >= limit then
  local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  return tostring(tonumber(oldest[2]) + window - now)
end
redis.call('ZADD', key, now, member)
redis.call('PEXPIRE', key, math.ceil(window * 1000))
return false
"""


class RedisLimiter:
    """The shared limiter; ``prefix`` namespaces its keys (``<prefix>:ratelimit:<key>``)."""

    def __init__(self, url: str, window: float, prefix: str) -> None:
        import redis.asyncio as aioredis

        self.window = window
        self.prefix = prefix
        self._redis = aioredis.from_url(url)
        self._script = self._redis.register_script(_LUA)

    async def hit(self, key: str, limit: int) -> float | None:
        # Redis server time keeps processes on different clocks in one window.
        seconds, micros = await self._redis.time()
        now = seconds + micros / 1e6
        answer: Any = await self._script(keys=[f"{self.prefix}:ratelimit:{key}"],
                                         args=[now, self.window, limit, f"{now}:{uuid.uuid4().hex[:8]}"])
        if answer is None:
            return None
        return max(1.0, math.ceil(float(answer)))

    async def close(self) -> None:
        await self._redis.aclose()


def open_limiter(settings: Any) -> MemoryLimiter | RedisLimiter:
    if settings.redis_url is not None:
        return RedisLimiter(settings.redis_url.get_secret_value(), settings.rate_window, settings.key_prefix)
    return MemoryLimiter(settings.rate_window)
