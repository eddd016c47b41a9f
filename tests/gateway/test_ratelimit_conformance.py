"""One suite for every registered rate limiter (memory, redis), the Redis one against the real Redis.

Each test gets its own key prefix (the ``redis_key`` fixture: deleted afterwards). Limiters are built
through the registry from settings, inside the event loop that uses them (a Redis connection belongs to
its loop), and closed there.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from nexus_kernel._registry import UnknownPluginError
from nexus_kernel.config import Settings
from nexus_kernel.gateway._ratelimit import MemoryLimiter, RateLimiter, RedisLimiter, limiters, open_limiter

REDIS_URL = "redis://127.0.0.1:6379/0"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(params=limiters.names())
def backend(request) -> str:
    return request.param


@pytest.fixture
def make_settings(tmp_path, redis_key) -> Callable[..., Settings]:
    def make(window: float = 60.0) -> Settings:
        return Settings(home=tmp_path, redis_url=REDIS_URL, key_prefix=redis_key, rate_window=window)

    return make


def run(backend: str, settings: Settings, scenario: Callable[..., Awaitable[Any]], instances: int = 1) -> Any:
    """``scenario(*limiters)`` with ``instances`` limiters of ``backend`` built from ``settings``."""

    async def main() -> Any:
        members = [limiters.get(backend).from_settings(settings) for _ in range(instances)]
        try:
            return await asyncio.wait_for(scenario(*members), 30)
        finally:
            for member in members:
                await member.close()

    return asyncio.run(main())


async def sleep_until(start: float, offset: float) -> None:
    await asyncio.sleep(max(0.0, start + offset - time.monotonic()))


def is_retry(value: Any, window: float) -> bool:
    """A Retry-After the gateway can send: whole seconds, at least 1, no more than the window rounds up to."""
    return isinstance(value, float) and value == int(value) and 1 <= value <= max(1, -(-window // 1))


# -- the registry and construction from settings ------------------------------------------------------


def test_registry_has_both_and_open_limiter_follows_settings(make_settings):
    assert {"memory", "redis"} <= set(limiters.names())
    settings = make_settings()

    async def kinds() -> list[str]:
        built = [open_limiter(settings), open_limiter(settings.model_copy(update={"redis_url": None})),
                 open_limiter(settings, "memory")]
        for member in built:
            assert isinstance(member, RateLimiter)
            await member.close()
        return [type(m).__name__ for m in built]

    assert asyncio.run(kinds()) == ["RedisLimiter", "MemoryLimiter", "MemoryLimiter"]
    with pytest.raises(UnknownPluginError, match=r"unknown limiters 'nope' \(known: memory, redis"):
        open_limiter(settings, "nope")
    with pytest.raises(ValueError, match="needs settings.redis_url"):
        RedisLimiter.from_settings(settings.model_copy(update={"redis_url": None}))
    assert MemoryLimiter.from_settings(make_settings(window=7.5)).window == 7.5


# -- the conformance suite ------------------------------------------------------------------------------


def test_under_the_limit_passes_over_it_refuses_with_a_positive_retry(backend, make_settings):
    async def scenario(limiter: RateLimiter) -> list[float | None]:
        return [await limiter.hit("key:alice", 3) for _ in range(5)]

    answers = run(backend, make_settings(window=60.0), scenario)
    assert answers[:3] == [None, None, None]
    assert all(is_retry(a, 60.0) for a in answers[3:]), answers
    assert answers[3] >= 59  # the oldest hit was a moment ago: its slot frees in about a window


def test_a_limit_below_one_is_refused(backend, make_settings):
    async def scenario(limiter: RateLimiter) -> list[str]:
        refused = []
        for bad in (0, -1, 1.5, True):
            with pytest.raises(ValueError, match="at least 1") as raised:
                await limiter.hit("key:alice", bad)
            refused.append(str(raised.value))
        return refused

    assert len(run(backend, make_settings(), scenario)) == 4


def test_the_window_slides(backend, make_settings):
    window = 1.2

    async def scenario(limiter: RateLimiter) -> dict[str, float | None]:
        start = time.monotonic()
        seen = {"a": await limiter.hit("k", 2)}
        await sleep_until(start, 0.6)
        seen["b"] = await limiter.hit("k", 2)
        seen["c: both in the window"] = await limiter.hit("k", 2)
        await sleep_until(start, 1.35)  # a has left the window, b has not
        seen["d: a's slot"] = await limiter.hit("k", 2)
        seen["e: b and d in the window"] = await limiter.hit("k", 2)
        await sleep_until(start, 1.95)  # b has left too
        seen["f: b's slot"] = await limiter.hit("k", 2)
        return seen

    seen = run(backend, make_settings(window=window), scenario)
    admitted = {k for k, v in seen.items() if v is None}
    assert admitted == {"a", "b", "d: a's slot", "f: b's slot"}, seen
    assert is_retry(seen["c: both in the window"], window) and is_retry(seen["e: b and d in the window"], window)


def test_refusals_do_not_extend_the_ban_and_the_retry_counts_down(backend, make_settings):
    window = 2.0

    async def scenario(limiter: RateLimiter) -> tuple[float | None, list[float | None], float | None]:
        start = time.monotonic()
        first = await limiter.hit("k", 1)
        early = [await limiter.hit("k", 1) for _ in range(20)]
        await sleep_until(start, 1.1)
        later = await limiter.hit("k", 1)
        await sleep_until(start, window + 0.15)  # only the first hit was logged: it has left
        return first, [*early, later], await limiter.hit("k", 1)

    first, refused, after = run(backend, make_settings(window=window), scenario)
    assert first is None and after is None
    assert all(is_retry(r, window) for r in refused)
    assert refused[0] == 2.0 and refused[-1] == 1.0  # ceil(2 - ε), then ceil(2 - 1.1)


def test_keys_are_independent(backend, make_settings):
    keys = ["key:alice", "key:bob", "addr:127.0.0.1", "addr:::1", "sub:ünïcode é/≠"]

    async def scenario(limiter: RateLimiter) -> list[tuple[float | None, float | None]]:
        return [(await limiter.hit(k, 1), await limiter.hit(k, 1)) for k in keys]

    answers = run(backend, make_settings(), scenario)
    assert [first for first, _ in answers] == [None] * len(keys)
    assert all(is_retry(second, 60.0) for _, second in answers)


def test_concurrent_hits_never_let_more_than_the_limit_through(backend, make_settings):
    limit, tasks, each = 7, 12, 5

    async def scenario(one: RateLimiter, two: RateLimiter) -> list[float | None]:
        # Tasks on two limiter objects at once: for a shared backend both draw on one budget.
        async def burst(limiter: RateLimiter) -> list[float | None]:
            answers = []
            for _ in range(each):
                answers.append(await limiter.hit("key:burst", limit))
                await asyncio.sleep(0)
            return answers

        bursts = await asyncio.gather(*(burst(one if i % 2 else two) for i in range(tasks)))
        return [a for b in bursts for a in b]

    answers = run(backend, make_settings(), scenario, instances=2)
    admitted = sum(a is None for a in answers)
    shared = limiters.get(backend).shared
    # One budget when shared; one per limiter object otherwise. Never more, and all of it is used.
    assert admitted == (limit if shared else 2 * limit), answers
    assert all(is_retry(a, 60.0) for a in answers if a is not None)


def test_two_limiter_objects_share_state_exactly_when_the_backend_says_so(backend, make_settings):
    async def scenario(one: RateLimiter, two: RateLimiter) -> tuple[list[float | None], float | None, float | None]:
        mine = [await one.hit("k", 2), await two.hit("k", 2)]
        return mine, await two.hit("k", 2), await one.hit("k", 2)

    (mine, two_again, one_again) = run(backend, make_settings(), scenario, instances=2)
    assert mine == [None, None]
    if limiters.get(backend).shared:  # one budget of 2: spent
        assert is_retry(two_again, 60) and is_retry(one_again, 60), (two_again, one_again)
    else:  # a budget per object (per process): each has one hit left
        assert two_again is None and one_again is None, (two_again, one_again)


def test_the_redis_budget_is_shared_with_another_process(make_settings):
    settings = make_settings()
    child = child_program(settings)

    async def before(limiter: RateLimiter) -> list[float | None]:
        return [await limiter.hit("key:alice", 4), await limiter.hit("key:alice", 4)]

    assert run("redis", settings, before) == [None, None]
    done = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=120, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    theirs = json.loads(done.stdout.strip().splitlines()[-1])
    assert theirs[:2] == [None, None] and is_retry(theirs[2], 60), theirs

    async def after(limiter: RateLimiter) -> float | None:
        return await limiter.hit("key:alice", 4)

    assert is_retry(run("redis", settings, after), 60)


def child_program(settings: Settings) -> str:
    """The other process: a RedisLimiter built from the same settings, three hits of the same key."""
    return (
        "import asyncio, json\n"
        "from nexus_kernel.config import Settings\n"
        "from nexus_kernel.gateway._ratelimit import open_limiter\n"
        f"settings = Settings(home={str(settings.home)!r}, redis_url={REDIS_URL!r}, "
        f"key_prefix={settings.key_prefix!r}, rate_window={settings.rate_window!r})\n"
        "async def main():\n"
        "    limiter = open_limiter(settings)\n"
        "    try:\n"
        "        return [await limiter.hit('key:alice', 4) for _ in range(3)]\n"
        "    finally:\n"
        "        await limiter.close()\n"
        "print(json.dumps(asyncio.run(main())))\n"
    )


def test_redis_retry_after_never_exceeds_the_window_even_with_entries_newer_than_now(make_settings):
    """Entries dated after the server's ``now`` (a server clock stepped back; before the clock was read
    inside the script, also a concurrent hit stored ahead of an older reading: a Retry-After of 61 on a
    60 s window failed this suite once under load) still get a Retry-After within the window."""
    import redis.asyncio as aioredis

    settings = make_settings(window=60.0)

    async def scenario(limiter: RateLimiter) -> float | None:
        client = aioredis.from_url(REDIS_URL)
        try:
            seconds, micros = await client.time()
            ahead = seconds + micros / 1e6 + 5.0
            await client.zadd(f"{settings.key_prefix}:ratelimit:k", {f"ahead-{i}": ahead for i in range(3)})
        finally:
            await client.aclose()
        return await limiter.hit("k", 3)

    answer = run("redis", settings, scenario)
    assert is_retry(answer, 60.0) and answer == 60.0, answer
