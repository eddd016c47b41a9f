"""Fixtures of the anchoring tests.

The anchor conformance suite asks, for every backend name in ``ANCHORS``, for a fixture named
``anchor_env_<name>`` yielding an object with ``.backend`` (a started backend, stopped after the test).
A backend registered without such a fixture fails the suite. ``anchor_env_ledger`` is here; the chain
backends add theirs beside it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest

from nexus_kernel.anchoring import ANCHORS
from nexus_kernel.storage import DuckDBStore, PostgresStore


@dataclass
class AnchorEnv:
    backend: Any
    store: Any = None
    extra: dict[str, Any] = field(default_factory=dict)


def open_test_store(kind: str, request: pytest.FixtureRequest) -> Any:
    """A fresh store: DuckDB in memory, or PostgreSQL in a schema of its own (dropped by :func:`close_test_store`)."""
    if kind == "duckdb":
        return DuckDBStore(":memory:")
    pg_dsn = request.getfixturevalue("pg_dsn")
    return PostgresStore(pg_dsn, schema=f"anchor_{uuid.uuid4().hex[:10]}", timeout=5)


def close_test_store(store: Any) -> None:
    if isinstance(store, PostgresStore):
        store.drop_schema()
    store.close()


@pytest.fixture
def anchor_env_ledger(request, settings):
    """The ledger on a real store (DuckDB; tests/anchoring/test_ledger.py runs it on PostgreSQL too).

    Not parametrized: the conformance suite asks for it by name (``getfixturevalue``), which a
    parametrized fixture does not allow."""
    store = open_test_store("duckdb", request)
    backend = ANCHORS.get("ledger")(settings, store)
    yield AnchorEnv(backend, store)
    backend.close()
    close_test_store(store)


@pytest.fixture(params=["duckdb", "postgresql"])
def any_store(request):
    """A fresh store of each backend."""
    store = open_test_store(request.param, request)
    yield store
    close_test_store(store)
