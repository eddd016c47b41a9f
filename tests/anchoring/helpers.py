"""Helpers of the anchoring tests: raw SQL on a store (to tamper with it as an attacker would)."""

from __future__ import annotations

from typing import Any

from nexus_kernel.storage import DuckDBStore, PostgresStore


def tamper(store: Any, statement: str) -> None:
    """Run ``statement`` on the store's own database, bypassing the Store API (tables unqualified)."""
    if isinstance(store, DuckDBStore):
        store._con.execute(statement)
        return
    assert isinstance(store, PostgresStore)
    with store._conn() as conn:
        conn.execute(f'SET LOCAL search_path TO "{store.schema}"')
        conn.execute(statement)
