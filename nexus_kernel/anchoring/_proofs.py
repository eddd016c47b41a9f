"""Verifying inclusion and consistency proofs, as RFC 9162 §2.1.3.2 and §2.1.4.2 write the algorithms.

Both functions return ``None`` when the proof holds and otherwise the reason, in words, it does not;
they never raise on bad input (a hash of the wrong length, an index out of range, a proof too long or
too short are all reasons). They need nothing but ``hashlib``: a verifier outside the system can copy
this file alone.

Example
-------
>>> from nexus_kernel.anchoring._merkle import MerkleTree, leaf_hash
>>> tree = MerkleTree(); _ = tree.extend([b"a", b"b", b"c", b"d", b"e"])
>>> check_inclusion(leaf_hash(b"c"), 2, 5, tree.inclusion_proof(2, 5), tree.root(5)) is None
True
>>> check_inclusion(leaf_hash(b"x"), 2, 5, tree.inclusion_proof(2, 5), tree.root(5))
'the proof leads to root adb5...; the tree head says fe14...'
>>> check_consistency(3, 5, tree.consistency_proof(3, 5), tree.root(3), tree.root(5)) is None
True

References: RFC 9162 §2.1.3.2 (verifying an inclusion proof), §2.1.4.2 (verifying consistency).
"""

from __future__ import annotations

from collections.abc import Sequence
from hashlib import sha256

__all__ = ["check_inclusion", "check_consistency"]


def _node(left: bytes, right: bytes) -> bytes:
    return sha256(b"\x01" + left + right).digest()


def _bad_hashes(hashes: Sequence[bytes], what: str) -> str | None:
    for i, h in enumerate(hashes):
        if not isinstance(h, bytes) or len(h) != 32:
            return f"{what} {i} is {len(h) if isinstance(h, bytes) else type(h).__name__} bytes, not 32"
    return None


def _short(h: bytes) -> str:
    return h.hex()[:4] + "..."


def check_inclusion(leaf: bytes, index: int, tree_size: int, path: Sequence[bytes], root: bytes) -> str | None:
    """Does ``path`` prove leaf hash ``leaf`` is leaf ``index`` of the tree of ``tree_size`` with ``root``?"""
    bad = _bad_hashes([leaf, root], "the leaf/root hash") or _bad_hashes(path, "proof hash")
    if bad:
        return bad
    if not 0 <= index < tree_size:  # step 1
        return f"leaf index {index} is not below the tree size {tree_size}"
    fn, sn, r = index, tree_size - 1, leaf  # step 2
    for p in path:  # step 3
        if sn == 0:  # 3a
            return "the proof is longer than the tree is deep"
        if fn & 1 or fn == sn:  # 3b
            r = _node(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = _node(r, p)
        fn >>= 1  # 3c
        sn >>= 1
    if sn != 0:  # step 4
        return "the proof is shorter than the tree is deep"
    if r != root:
        return f"the proof leads to root {_short(r)}; the tree head says {_short(root)}"
    return None


def check_consistency(first: int, second: int, path: Sequence[bytes], first_root: bytes,
                      second_root: bytes) -> str | None:
    """Does ``path`` prove the tree of ``first`` leaves (``first_root``) is a prefix of ``second``'s?"""
    bad = _bad_hashes([first_root, second_root], "the root hash") or _bad_hashes(path, "proof hash")
    if bad:
        return bad
    if not 0 <= first <= second:
        return f"the sizes are not ordered ({first} > {second})"
    if first == second:  # RFC 9162 §2.1.4.1: the proof between equal trees is empty
        if path:
            return "a proof between trees of the same size must be empty"
        return None if first_root == second_root else "two tree heads of the same size have different roots"
    if first == 0:  # the empty tree is a prefix of every tree; its proof is empty
        return None if not path else "a proof from the empty tree must be empty"
    if not path:  # step 1
        return "the proof is empty"
    nodes = list(path)
    if first & (first - 1) == 0:  # step 2: first is a power of two
        nodes.insert(0, first_root)
    fn, sn = first - 1, second - 1  # step 3
    while fn & 1:  # step 4
        fn >>= 1
        sn >>= 1
    fr = sr = nodes[0]  # step 5
    for c in nodes[1:]:  # step 6
        if sn == 0:  # 6a
            return "the proof is longer than the trees allow"
        if fn & 1 or fn == sn:  # 6b
            fr = _node(c, fr)
            sr = _node(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = _node(sr, c)
        fn >>= 1  # 6c
        sn >>= 1
    if sn != 0:  # step 7
        return "the proof is shorter than the trees need"
    if fr != first_root:
        return f"the proof rebuilds the first root as {_short(fr)}; expected {_short(first_root)}"
    if sr != second_root:
        return f"the proof rebuilds the second root as {_short(sr)}; expected {_short(second_root)}"
    return None
