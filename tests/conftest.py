"""Fixtures shared by every test folder."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from nexus_kernel.config import Settings, load_settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings with a fresh home and no lateness slack, so tests see late data at once."""
    return load_settings(home=tmp_path / "home", allowed_lateness=0, batch_interval=0.05)


def pytest_configure(config: pytest.Config) -> None:
    # Property tests must give the same verdict on every run (CI included): fixed example order.
    from hypothesis import settings as hypothesis_settings

    hypothesis_settings.register_profile("nexus", derandomize=True, database=None, deadline=None)
    hypothesis_settings.load_profile("nexus")


ADMIN_DSN = os.environ.get("NEXUS_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture(scope="session")
def pg_dsn():
    """A throwaway PostgreSQL database on the real server, created for this test session and dropped after."""
    import psycopg
    from psycopg import sql

    name = f"nexus_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield ADMIN_DSN.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def redis_key(request):
    """A Redis key unique to this test, deleted (with anything under it) afterwards."""
    import redis

    key = f"nexus-test:{uuid.uuid4().hex[:12]}"
    yield key
    client = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    for k in client.scan_iter(match=f"{key}*"):
        client.delete(k)
    client.close()
