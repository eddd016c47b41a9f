"""An RFC 6962 Merkle tree kept as its complete subtrees, so appends and proofs stay cheap.

Hashing (RFC 6962 §2.1, RFC 9162 §2.1.1): a leaf is ``SHA-256(0x00 || data)``, an inner node
``SHA-256(0x01 || left || right)``, the empty tree ``SHA-256()``. The tree over ``n`` leaves splits at the
largest power of two ``k < n``: ``MTH(D[n]) = node(MTH(D[0:k]), MTH(D[k:n]))``.

How it is kept: ``levels[h]`` holds, as 32-byte slices of one ``bytearray``, the hash of every *complete*
aligned subtree of ``2**h`` leaves made so far. Appending a leaf adds it to level 0 and, while a level
completes a pair, the hash of that pair to the level above (done in bulk, level by level) — one
inner hash per leaf amortised, so appending ``n`` leaves costs ``n`` leaf hashes and fewer than ``n`` node hashes. The right
edge of these levels is the frontier; every left part of the RFC's recursive split is an aligned
complete subtree, so any ``MTH(D[a:b])`` a proof needs is read from the levels and at most ``log2 n``
hashes, and a proof costs ``O(log² n)`` hashes at worst, no leaf re-hashing.

The leaves of an append, and the nodes of each level they complete, are hashed in one call each
(:mod:`._hashing`: bulk SHA-256 for large batches, ``hashlib`` for small ones — the same digests).

Caveat: the levels stay in memory: 64 bytes per leaf (leaf hashes plus every complete subtree above).
A home logging 10 million items holds about 640 MB; tiles on disk (as Go's ``tlog`` does) are the next step.

Example
-------
>>> tree = MerkleTree()
>>> tree.extend([b"a", b"b", b"c"])
3
>>> tree.root() == node_hash(node_hash(leaf_hash(b"a"), leaf_hash(b"b")), leaf_hash(b"c"))
True
>>> len(tree.inclusion_proof(0, 3)), len(tree.consistency_proof(2, 3))
(2, 1)

References: RFC 6962 §2.1 (hashing, PATH and PROOF), RFC 9162 §2.1.3.1 and §2.1.4.1 (generating
inclusion and consistency proofs); Russ Cox, "Transparent Logs for Skeptical Clients" (tiles).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from hashlib import sha256

import numpy as np

from ._hashing import leaf_hashes, node_hashes

__all__ = ["MerkleTree", "leaf_hash", "node_hash", "EMPTY_ROOT"]

EMPTY_ROOT = sha256(b"").digest()
_LEAF = b"\x00"
_NODE = b"\x01"


def leaf_hash(data: bytes) -> bytes:
    """``SHA-256(0x00 || data)``."""
    return sha256(_LEAF + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 || left || right)``."""
    return sha256(_NODE + left + right).digest()


def _prefixed_pairs(row: bytearray, first: int, end: int) -> bytes:
    """Pairs ``first..end-1`` of a level, each as the 65 bytes a node hashes (0x01, left, right), laid out
    in one buffer by numpy: slicing that is cheaper than joining a prefix to a view per pair."""
    k = end - first
    prefixed = np.empty((k, 65), dtype=np.uint8)
    prefixed[:, 0] = _NODE[0]
    prefixed[:, 1:] = np.frombuffer(row, dtype=np.uint8, count=k * 64, offset=first * 64).reshape(k, 64)
    return prefixed.tobytes()


def _split(n: int) -> int:
    """The largest power of two strictly below ``n`` (``n >= 2``)."""
    return 1 << ((n - 1).bit_length() - 1)


class MerkleTree:
    """An append-only Merkle tree over leaf hashes; see the module docstring."""

    def __init__(self) -> None:
        self.levels: list[bytearray] = [bytearray()]

    @property
    def size(self) -> int:
        return len(self.levels[0]) // 32

    def extend(self, data: Iterable[bytes]) -> int:
        """Append the leaves with these data (hashed here); returns the new size."""
        return self.extend_leaf_digests(leaf_hashes(data if isinstance(data, Sequence) else list(data)))

    def extend_hashes(self, hashes: Iterable[bytes]) -> int:
        """Append leaves given by their leaf hashes (32 bytes each); returns the new size.

        Level by level and in bulk (one hash call per level, not one per leaf): the inner hashes
        are those of the pairs completed by the new leaves, the same as appending them one at a time.
        """
        new = list(hashes)
        if new and set(map(len, new)) != {32}:  # map/set: checked at C speed
            raise ValueError("a leaf hash is 32 bytes")
        return self.extend_leaf_digests(b"".join(new))

    def extend_leaf_digests(self, leaves: bytes) -> int:
        """Append leaf hashes laid end to end (32 bytes each); returns the new size.

        The pairs they complete are hashed a level at a time, in bulk (see :mod:`._hashing`).
        """
        if len(leaves) % 32:
            raise ValueError("leaf hashes are 32 bytes each")
        levels = self.levels
        levels[0] += leaves
        level = 0
        while True:
            row = levels[level]
            if level + 1 == len(levels):
                levels.append(bytearray())
            parent = levels[level + 1]
            have, want = len(parent) >> 5, len(row) >> 6
            if want == have:  # no new pair here, so none above either
                break
            parent += node_hashes(_prefixed_pairs(row, have, want))
            level += 1
        while len(levels) > 1 and not levels[-1]:
            levels.pop()
        return self.size

    def leaf(self, index: int) -> bytes:
        if not 0 <= index < self.size:
            raise IndexError(f"leaf {index} is not in a tree of {self.size}")
        return bytes(self.levels[0][index * 32:index * 32 + 32])

    def subtree(self, start: int, size: int) -> bytes:
        """``MTH(D[start:start+size])`` (``size >= 1``, within the tree)."""
        if size == 1:
            return bytes(self.levels[0][start * 32:start * 32 + 32])
        if size & (size - 1) == 0 and start % size == 0:
            level = size.bit_length() - 1
            i = start >> level
            return bytes(self.levels[level][i * 32:i * 32 + 32])
        k = _split(size)
        return node_hash(self.subtree(start, k), self.subtree(start + k, size - k))

    def root(self, size: int | None = None) -> bytes:
        """The root of the tree of the first ``size`` leaves (default: all)."""
        size = self.size if size is None else size
        self._check(size)
        return self.subtree(0, size) if size else EMPTY_ROOT

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """``PATH(index, D[size])``: the audit path of leaf ``index`` in the tree of ``size`` leaves."""
        size = self.size if size is None else size
        self._check(size)
        if not 0 <= index < size:
            raise IndexError(f"leaf {index} is not in a tree of {size}")
        path: list[bytes] = []
        start = 0
        while size > 1:  # iterative RFC 6962 PATH, collected top-down then reversed (leaf side first)
            k = _split(size)
            if index < k:
                path.append(self.subtree(start + k, size - k))
                size = k
            else:
                path.append(self.subtree(start, k))
                start, index, size = start + k, index - k, size - k
        return path[::-1]

    def consistency_proof(self, first: int, second: int | None = None) -> list[bytes]:
        """``PROOF(first, D[second])``: proves the tree of ``first`` leaves is a prefix of ``second``'s."""
        second = self.size if second is None else second
        self._check(second)
        if not 0 <= first <= second:
            raise ValueError(f"a consistency proof needs 0 <= first <= second (got {first}, {second})")
        if first in (0, second):
            return []
        proof: list[bytes] = []
        start, m, n, whole = 0, first, second, True
        while m != n:  # iterative SUBPROOF(m, D[start:start+n], whole)
            k = _split(n)
            if m <= k:
                proof.append(self.subtree(start + k, n - k))
                n = k
            else:
                proof.append(self.subtree(start, k))
                start, m, n, whole = start + k, m - k, n - k, False
        if not whole:
            proof.append(self.subtree(start, m))
        return proof[::-1]

    def _check(self, size: int) -> None:
        if not 0 <= size <= self.size:
            raise ValueError(f"tree size {size} is outside 0..{self.size}")
