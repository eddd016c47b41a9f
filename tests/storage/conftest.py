"""Fixtures of the storage tests: a throwaway PostgreSQL database for the session, a fresh store per test.

PostgreSQL is the real server on 127.0.0.1:5432 (trust auth); the database ``nexus_test_<random>`` comes
from the root conftest's ``pg_dsn`` (created for the session, dropped at its end). Each PostgreSQL store of a test gets its own
schema, dropped after the test, so tests never see each other's rows.
"""

from __future__ import annotations


import pytest

from nexus_kernel.storage import STORES, DuckDBStore, PostgresStore
from .storage_helpers import new_schema



class Factory:
    """Builds stores of one backend for a test and cleans them up."""

    def __init__(self, backend: str, pg_dsn: str, tmp_path) -> None:
        self.backend, self.pg_dsn, self.tmp_path = backend, pg_dsn, tmp_path
        self.opened: list = []

    def __call__(self, **options):
        if self.backend == "duckdb":
            path = options.pop("path", ":memory:")
            store = DuckDBStore(path, **options)
        elif self.backend == "postgresql":
            options.setdefault("schema", new_schema())
            store = PostgresStore(self.pg_dsn, timeout=5, **options)
        else:  # a newly registered backend must be taught to the suite
            raise AssertionError(f"conformance suite has no factory for store backend {self.backend!r}")
        self.opened.append(store)
        return store

    def cleanup(self) -> None:
        for store in self.opened:
            if isinstance(store, PostgresStore):
                try:
                    store.drop_schema()
                except Exception:
                    pass
            try:
                store.close()
            except Exception:
                pass


def _backends() -> list[str]:
    """One name per distinct backend (its dialect): the registry maps schemes, and DuckDB serves two
    (duckdb, memory) as PostgreSQL does (postgresql, postgres), but each is one backend to test."""
    return sorted({member.dialect for _, member in STORES.items()})


@pytest.fixture(params=_backends())
def make_store(request, pg_dsn, tmp_path):
    factory = Factory(request.param, pg_dsn, tmp_path)
    yield factory
    factory.cleanup()


@pytest.fixture
def store(make_store):
    return make_store()


@pytest.fixture
def both(pg_dsn, tmp_path):
    duck, pg = Factory("duckdb", pg_dsn, tmp_path), Factory("postgresql", pg_dsn, tmp_path)
    yield duck(), pg()
    duck.cleanup()
    pg.cleanup()
