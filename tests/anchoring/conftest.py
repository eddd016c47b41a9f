"""Fixtures of the anchoring tests.

The anchor conformance suite asks, for every backend name in ``ANCHORS``, for a fixture named
``anchor_env_<name>`` yielding an object with ``.backend`` (a started backend, stopped after the test).
A backend registered without such a fixture fails the suite. Here: ``anchor_env_ledger`` on a real store,
``anchor_env_evm`` on a real anvil chain and ``anchor_env_irys`` against a stand-in Irys node, all on
loopback.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from nexus_kernel.anchoring import ANCHORS, AnchorBackend
from nexus_kernel.config import Settings, load_settings
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


@dataclass
class ChainEnv:
    """A backend and what it runs against (``chain`` is the LocalAnvil or the stand-in Irys node)."""

    backend: AnchorBackend
    settings: Settings
    chain: Any
    extra: dict[str, Any] = field(default_factory=dict)


def evm_settings(home: Path, url: str, contract: str, **overrides: Any) -> Settings:
    from nexus_kernel.anchoring.evm import DEV_KEYS

    values: dict[str, Any] = {"evm_private_key": DEV_KEYS[0], "evm_timeout": 5.0, **overrides}
    return load_settings(home=home, evm_rpc_url=url, evm_contract=contract, **values)


@pytest.fixture
def anvil_chain() -> Iterator[Any]:
    """anvil from ./node_modules on a free 127.0.0.1 port (automine), stopped by PID afterwards."""
    from nexus_kernel.anchoring.evm import LocalAnvil

    chain = LocalAnvil().start()
    try:
        yield chain
    finally:
        chain.stop()


@pytest.fixture
def anchor_env_evm(anvil_chain: Any, tmp_path: Path) -> Iterator[ChainEnv]:
    """The evm backend, built through ANCHORS from Settings, on a fresh anvil with the contract deployed."""
    from nexus_kernel.anchoring.evm import DEV_KEYS, deploy_anchor

    contract = deploy_anchor(anvil_chain.url, DEV_KEYS[0])
    settings = evm_settings(tmp_path / "home", anvil_chain.url, contract)
    backend = ANCHORS.get("evm")(settings, None)
    try:
        yield ChainEnv(backend, settings, anvil_chain, {"contract": contract})
    finally:
        backend.close()


@pytest.fixture
def irys_node() -> Iterator[Any]:
    """The stand-in Irys node (tests/anchoring/irys_node.py) on a free 127.0.0.1 port."""
    from .irys_node import StandInIrysNode

    node = StandInIrysNode().start()
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture
def anchor_env_irys(irys_node: Any, tmp_path: Path) -> Iterator[ChainEnv]:
    """The irys backend, built through ANCHORS from Settings, uploading to the stand-in node."""
    settings = load_settings(home=tmp_path / "home", irys_url=irys_node.url, irys_bundler_key=irys_node.public_key,
                             irys_timeout=5.0)
    backend = ANCHORS.get("irys")(settings, None)
    try:
        yield ChainEnv(backend, settings, irys_node)
    finally:
        backend.close()
