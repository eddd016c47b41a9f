"""The committed ``Anchor`` contract artifact (ABI + bytecode) and the one event the verifier reads.

``Anchor.json`` is built from ``contracts/Anchor.sol`` by ``node scripts/build-contract.js`` (solcjs,
evm target paris, optimizer on); ``tests/anchoring/test_anchor_contract.py`` rebuilds it and compares.

Example::

    >>> from nexus_kernel.anchoring.evm import anchor_artifact
    >>> sorted(e["name"] for e in anchor_artifact()["abi"])
    ['Anchored', 'anchor']
"""

from __future__ import annotations

import json
from functools import cache
from importlib.resources import files
from typing import Any

from eth_utils import keccak

__all__ = ["ANCHORED_SIGNATURE", "ANCHORED_TOPIC", "anchor_artifact"]

#: The event the contract emits; topic 0 of every anchor log.
ANCHORED_SIGNATURE = "Anchored(bytes32,bytes32,uint64)"
ANCHORED_TOPIC = keccak(text=ANCHORED_SIGNATURE)


@cache
def anchor_artifact() -> dict[str, Any]:
    """The compiled contract: ``abi``, ``bytecode``, ``deployedBytecode`` (0x hex), compiler and settings."""
    artifact: dict[str, Any] = json.loads(files(__package__).joinpath("Anchor.json").read_text())
    return artifact
