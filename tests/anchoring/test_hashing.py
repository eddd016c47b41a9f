"""Bulk SHA-256 (DataFusion) gives hashlib's digests, in order, on both sides of the bulk threshold."""

from __future__ import annotations

from hashlib import sha256

import numpy as np
import pytest

from nexus_kernel.anchoring import _hashing
from nexus_kernel.anchoring._hashing import BULK, leaf_hashes, node_hashes
from nexus_kernel.anchoring._merkle import MerkleTree, leaf_hash, node_hash


def _messages(n: int, seed: int) -> list[bytes]:
    rng = np.random.default_rng(seed)
    sizes = rng.integers(0, 300, n)
    sizes[::97] = 0  # empty messages too: a leaf may encode to nothing but its prefix
    return [rng.bytes(int(s)) for s in sizes]


@pytest.mark.parametrize("n", [0, 1, BULK - 1, BULK, BULK + 7, 3 * BULK + 1])
def test_leaf_hashes_are_hashlibs_in_order(n):
    data = _messages(n, seed=n)
    assert leaf_hashes(data) == b"".join(sha256(b"\x00" + d).digest() for d in data)


@pytest.mark.parametrize("n", [0, 1, BULK - 1, BULK, 2 * BULK + 3])
def test_node_hashes_are_hashlibs_in_order(n):
    inputs = np.random.default_rng(n).bytes(65 * n)
    assert node_hashes(inputs) == b"".join(sha256(inputs[i:i + 65]).digest() for i in range(0, 65 * n, 65))


def test_bulk_calls_split_into_chunks_keep_the_order(monkeypatch):
    monkeypatch.setattr(_hashing, "_CHUNK", 1000)  # several bulk calls per batch
    data = _messages(BULK + 2500, seed=7)
    assert leaf_hashes(data) == b"".join(sha256(b"\x00" + d).digest() for d in data)
    inputs = b"".join(data)[: 65 * (BULK + 2500)]
    assert node_hashes(inputs) == b"".join(sha256(inputs[i:i + 65]).digest() for i in range(0, len(inputs), 65))


def test_node_inputs_that_are_not_whole_messages_are_refused():
    with pytest.raises(ValueError, match="not a whole number of 65-byte messages"):
        node_hashes(bytes(65 * 3 + 1))


def _mth(hashes: list[bytes]) -> bytes:
    """RFC 6962's recursive definition over leaf hashes (the reference, hashed one call at a time)."""
    if len(hashes) == 1:
        return hashes[0]
    k = 1
    while k * 2 < len(hashes):
        k *= 2
    return node_hash(_mth(hashes[:k]), _mth(hashes[k:]))


def test_a_tree_built_in_bulk_has_the_rfc_root_and_the_levels_of_one_built_leaf_by_leaf():
    data = _messages(3 * BULK + 5, seed=11)
    bulk = MerkleTree()
    bulk.extend(data)  # the leaves and the two lowest levels of nodes go through the bulk hasher
    assert bulk.root() == _mth([leaf_hash(d) for d in data])
    one_by_one = MerkleTree()
    for d in data[:300]:
        one_by_one.extend([d])
    one_by_one.extend(data[300:BULK - 1])  # below the threshold: hashlib
    one_by_one.extend(data[BULK - 1:])
    assert one_by_one.levels == bulk.levels
