"""Fixtures for the cache and live-bus suites: the real Redis on 127.0.0.1:6379.

Every test session gets its own key prefix (``nexus-test-<random>``), every test a sub-prefix under it;
all keys under the session prefix are deleted when the session ends.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator

import pandas as pd
import pytest
import redis

from nexus_kernel.config import Settings
from nexus_kernel.storage import _bus_redis, _cache_redis  # noqa: F401  (register the Redis members)

REDIS_URL = "redis://127.0.0.1:6379/0"
_counter = itertools.count()


@pytest.fixture(scope="session")
def redis_prefix() -> Iterator[str]:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError as exc:  # the project's machines run Redis; say so plainly
        pytest.fail(f"Redis is not reachable at {REDIS_URL}: {exc}")
    prefix = f"nexus-test-{uuid.uuid4().hex[:12]}"
    yield prefix
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    for start in range(0, len(keys), 1000):
        client.unlink(*keys[start : start + 1000])
    client.close()


@pytest.fixture
def settings(redis_prefix: str, tmp_path) -> Settings:
    return Settings(
        home=tmp_path,
        redis_url=REDIS_URL,
        key_prefix=f"{redis_prefix}:{next(_counter)}",
        cache_recent=5,
        cache_ttl=30.0,
        bus_queue=50,
        bus_replay=20,
    )


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL)
    yield client
    client.close()


def make_batch(stream: str, series: list[str], ts: list, seq: list[int], **fields: list) -> pd.DataFrame:
    """A batch in the contract: string keys, ts as ns UTC, seq int64, float fields."""
    frame = pd.DataFrame(
        {
            "stream": pd.array([stream] * len(series), dtype="string"),
            "series": pd.array(series, dtype="string"),
            "ts": pd.to_datetime(ts, utc=True).astype("datetime64[ns, UTC]"),
            "seq": pd.array(seq, dtype="int64"),
        }
    )
    for name, values in fields.items():
        frame[name] = pd.array(values, dtype="string") if name == "attrs" else pd.array(values, dtype="float64")
    return frame
