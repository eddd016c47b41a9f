"""Sliding-window rate limits, per API key / token subject and per client address.

A *sliding log*: each admitted request leaves its time; a request is admitted when fewer than ``limit``
times lie in the last ``window`` seconds. Unlike fixed windows it never lets 2× the limit through around
a window boundary. A refused request is not logged, so hammering does not extend the ban; the caller is
told to retry when the oldest time in the window leaves it (``Retry-After``, whole seconds, at least 1).

Every backend offers the :class:`RateLimiter` protocol, ``await limiter.hit(key, limit) -> retry_after |
None``, and registers itself in :data:`limiters` (built once; built-ins at import, other packages through
the ``nexus_kernel.limiters`` entry-point group). :func:`open_limiter` builds the one the settings ask
for with the member's ``from_settings``:

* ``memory`` — :class:`MemoryLimiter`, a deque per key, in this process.
* ``redis`` — :class:`RedisLimiter`, a sorted set per key, trimmed, counted and added in one Lua script,
  so several gateway processes share one budget atomically. Keys expire after a window of silence.

Why not the ``limits`` package: its async Redis path needs another Redis client (coredis) beside the
``redis`` one the project uses; the algorithm itself is twenty lines.

Caveats: memory use is O(limit) per active key; keys idle for a window are dropped lazily. A
:class:`MemoryLimiter` is meant for one event loop (the gateway's): ``hit`` does not await, so hits from
tasks of that loop are atomic, but it takes no lock against other threads.

Example
-------
>>> import asyncio
>>> limiter = MemoryLimiter(window=60)
>>> async def three_hits():
...     return [await limiter.hit("key:alice", limit=2) for _ in range(3)]
>>> asyncio.run(three_hits())
[None, None, 60.0]
"""

from __future__ import annotations

import math
import time
import uuid
from collections import deque
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from .._registry import Registry

if TYPE_CHECKING:
    from ..config import Settings

__all__ = ["MemoryLimiter", "RateLimiter", "RedisLimiter", "limiters", "open_limiter"]


@runtime_checkable
class RateLimiter(Protocol):
    """What every rate-limiter backend offers (what :meth:`Authorizing._limit` of the gateway relies on)."""

    #: Whether two limiter objects built from the same settings (in two processes, say) share one budget.
    shared: ClassVar[bool]
    window: float

    async def hit(self, key: str, limit: int) -> float | None:
        """Count one request of ``key`` against ``limit`` per ``window`` seconds.

        Returns None when admitted (and logged), else the seconds until a slot frees: a whole number, at
        least 1 (it goes out as ``Retry-After``). A refused request is not logged. ``limit`` is at least 1.
        """
        ...

    async def close(self) -> None:
        """Release what the limiter holds (connections, logs)."""
        ...


limiters: Registry[Any] = Registry("limiters")


def open_limiter(settings: Settings, backend: str | None = None) -> RateLimiter:
    """The limiter the settings ask for: ``redis`` when ``redis_url`` is set, else ``memory``; or the
    registered ``backend`` named (its ``from_settings(settings)``)."""
    if backend is None:
        backend = "redis" if settings.redis_url is not None else "memory"
    return limiters.get(backend).from_settings(settings)


def _check_limit(limit: int) -> None:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"a rate limit is a whole number of requests, at least 1, not {limit!r}")


def _retry_after(seconds: float) -> float:
    return max(1.0, float(math.ceil(seconds)))


@limiters.register("memory")
class MemoryLimiter:
    """The in-process limiter: one budget per key in this process (``shared`` is False).

    Parameters
    ----------
    window
        Length of the sliding window (seconds).
    """

    shared: ClassVar[bool] = False

    def __init__(self, window: float) -> None:
        self.window = window
        self._log: dict[str, deque[float]] = {}
        self._sweep = time.monotonic()

    @classmethod
    def from_settings(cls, settings: Settings) -> MemoryLimiter:
        return cls(settings.rate_window)

    async def hit(self, key: str, limit: int) -> float | None:
        _check_limit(limit)
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
            return _retry_after(times[0] + self.window - now)
        times.append(now)
        return None

    async def close(self) -> None:
        self._log.clear()


# The clock is read inside the script: a time taken before the call (one round trip earlier) let a
# concurrent hit with a later time be stored first, so the oldest entry could be newer than ``now`` and the
# Retry-After came out a second longer than the window (61 on a 60 s window, seen under load in CI).
# Redis replicates a script's effects, not the script, so reading TIME in it is allowed (Redis >= 5).
_LUA = """
local key, window, limit, tag = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
local count = redis.call('ZCARD', key)
if count >= limit then
  local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  return tostring(tonumber(oldest[2]) + window - now)
end
redis.call('ZADD', key, now, t[1] .. '.' .. t[2] .. ':' .. tag)
redis.call('PEXPIRE', key, math.ceil(window * 1000))
return false
"""


@limiters.register("redis")
class RedisLimiter:
    """The shared limiter: every limiter on the same Redis and ``prefix`` shares one budget per key.

    Parameters
    ----------
    url
        ``redis://host:port/db``.
    window
        Length of the sliding window (seconds).
    prefix
        Namespaces its keys: ``<prefix>:ratelimit:<key>``.
    """

    shared: ClassVar[bool] = True

    def __init__(self, url: str, window: float, prefix: str) -> None:
        import redis.asyncio as aioredis  # the `server` extra

        self.window = window
        self.prefix = prefix
        self._redis = aioredis.from_url(url)
        self._script = self._redis.register_script(_LUA)

    @classmethod
    def from_settings(cls, settings: Settings) -> RedisLimiter:
        if settings.redis_url is None:
            raise ValueError("the redis rate limiter needs settings.redis_url (NEXUS_REDIS_URL)")
        return cls(settings.redis_url.get_secret_value(), settings.rate_window, settings.key_prefix)

    async def hit(self, key: str, limit: int) -> float | None:
        _check_limit(limit)
        # Redis server time (read in the script) keeps processes on different clocks in one window.
        answer: Any = await self._script(keys=[f"{self.prefix}:ratelimit:{key}"],
                                         args=[self.window, limit, uuid.uuid4().hex[:8]])
        if answer is None:
            return None
        # never past the window: a server clock stepped back leaves entries newer than its ``now``
        return _retry_after(min(float(answer), self.window))

    async def close(self) -> None:
        await self._redis.aclose()
