"""Fixtures of the chain anchor backends: a real anvil chain and a stand-in Irys node, both on loopback.

``anchor_env_<name>`` is what ``test_anchor_conformance.py`` asks for, for each backend ``name`` in
ANCHORS: an object whose ``.backend`` is that backend, ready to submit, confirm and verify.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from nexus_kernel.anchoring import ANCHORS, AnchorBackend
from nexus_kernel.config import Settings, load_settings


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
