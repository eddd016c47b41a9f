"""The append-only Merkle log of one Nexus home, kept in the store.

Every anchorable item becomes one leaf (its canonical encoding, :mod:`._encoding`); the leaves are rows of
``log_leaves`` (index, item id, kind, key, leaf hash), the signed tree heads rows of ``log_heads``. The tree
itself (:class:`~._merkle.MerkleTree`) is rebuilt in memory from the stored leaf hashes when the log opens,
and grows as items are appended, so proofs cost no store reads beyond the leaf lookup.

One writer per home: the process that owns the home (``nexus up``) appends. A store append is idempotent on
the leaf index, so a second writer is detected (its rows are refused) rather than silently interleaved.

Parameters
----------
store
    A :class:`~nexus_kernel.storage.Store` (schema version 4 or later).
key
    The Ed25519 signing key (see :func:`~._heads.signing_key`); a log opened only to prove needs none.

Caveats
-------
* Items are deduplicated by id among the newest ``recent`` leaves of the log (read back from the store
  when the log opens, so a bus message replayed after a restart is not logged again). An item older than
  that and logged again anyway has two leaves proving the same content — the verifier uses the first.
* The whole tree lives in memory (64 bytes per leaf; see :mod:`._merkle`).

Example
-------
>>> from nexus_kernel.storage import open_store
>>> from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
>>> log = MerkleLog(open_store("memory"), Ed25519PrivateKey.generate())
>>> [i for i, _ in log.append("model", [({"name": "m", "version": 1}, {"name": "m", "version": 1})])]
[0]
>>> log.sign_head().tree_size
1
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import pandas as pd
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ._encoding import canonical_json, encode_item, id_of_key_json
from ._heads import SignedTreeHead, sign_head
from ._hashing import leaf_hashes
from ._merkle import MerkleTree

__all__ = ["MerkleLog", "LogError", "LeafRecord"]


class LogError(RuntimeError):
    """The log cannot be used as it is (a gap in its leaves, a second writer, no signing key)."""


class LeafRecord(dict[str, Any]):
    """A row of ``log_leaves`` as a dict: ``idx, item_id, kind, item_key (dict), leaf_hash (hex)``."""


class MerkleLog:
    def __init__(self, store: Any, key: Ed25519PrivateKey | None = None, recent: int = 1_000_000) -> None:
        self.store = store
        self.key = key
        self.tree = MerkleTree()
        self._recent: OrderedDict[str, None] = OrderedDict()  # the newest ids logged, oldest first: a bounded set
        self._recent_max = recent
        self._lock = threading.RLock()
        self.reload()

    def reload(self) -> None:
        """Rebuild the tree from the stored leaves (at open, and to see another writer's appends)."""
        rows = self.store.read("log_leaves")
        tree = MerkleTree()
        if len(rows):
            rows = rows.sort_values("idx", kind="stable")
            idx = rows["idx"].to_numpy()
            if idx[0] != 0 or (len(idx) > 1 and (idx[1:] - idx[:-1] != 1).any()) or idx[-1] != len(idx) - 1:
                raise LogError("the log's leaves are not numbered 0..n-1 without gaps: leaves were deleted")
            hexes = rows["leaf_hash"].astype(str).tolist()
            if any(len(h) != 64 for h in hexes):
                raise LogError("a stored leaf hash is not 32 bytes of hex: the log's leaves were altered")
            tree.extend_leaf_digests(bytes.fromhex("".join(hexes)))
        # the newest ids stored, so a restarted process does not log again what a replay brings back
        tail = rows.iloc[-self._recent_max:] if len(rows) else rows
        recent = OrderedDict.fromkeys(tail["item_id"].tolist()) if len(tail) else OrderedDict()
        with self._lock:
            self.tree = tree
            self._recent = recent

    @property
    def size(self) -> int:
        return self.tree.size

    def append(self, kind: str, items: Sequence[tuple[dict[str, Any], dict[str, Any]]],
               when: Any = None) -> list[tuple[int, str]]:
        """Log ``(key, body)`` items of ``kind``; returns ``(leaf index, item id)`` of those newly logged."""
        with self._lock:
            start = self.tree.size
            ids: list[str] = []
            keys: list[str] = []
            encoded: list[bytes] = []
            batch: set[str] = set()
            for key, body in items:
                key_json = canonical_json(key)
                iid = id_of_key_json(kind, key_json)
                if iid in self._recent or iid in batch:
                    continue
                batch.add(iid)
                ids.append(iid)
                keys.append(key_json.decode("utf-8"))
                encoded.append(encode_item(kind, body))
            if not ids:
                return []
            digests = leaf_hashes(encoded)  # in bulk: one call for the batch, not one per leaf
            text = digests.hex()
            indexes = list(range(start, start + len(ids)))
            stamp = pd.Timestamp.now(tz="UTC") if when is None else pd.Timestamp(when)
            frame = pd.DataFrame({"idx": indexes, "item_id": ids, "kind": [kind] * len(ids), "item_key": keys,
                                  "leaf_hash": [text[i:i + 64] for i in range(0, len(text), 64)]})
            # the store first: a failed write leaves the tree as it was
            written = self.store.append("log_leaves", frame.assign(appended_at=stamp))
            if written != len(ids):
                raise LogError(f"{len(ids) - written} leaf indexes from {start} were already taken: "
                               "another process writes this log")
            self.tree.extend_leaf_digests(digests)
            self._recent.update(dict.fromkeys(ids))
            for _ in range(len(self._recent) - self._recent_max):
                self._recent.popitem(last=False)
            return list(zip(indexes, ids, strict=True))

    def sign_head(self, when: Any = None) -> SignedTreeHead:
        """Sign (and store) the head of the log as it is now; the newest stored head if nothing was added."""
        if self.key is None:
            raise LogError("this log was opened without a signing key")
        with self._lock:
            size = self.tree.size
            last = self.latest_head()
            if last is not None and last.tree_size == size:
                return last
            head = sign_head(self.key, size, self.tree.root(size), when or pd.Timestamp.now(tz="UTC"))
            self.store.append("log_heads", pd.DataFrame({
                "tree_size": [size], "root": [head.root.hex()], "signed_at": [pd.Timestamp.now(tz="UTC")],
                "head_id": [head.head_id], "payload": [head.payload], "signature": [head.signature],
                "public_key": [head.public_key]}))
            return head

    def heads(self) -> list[SignedTreeHead]:
        """Every stored head, smallest tree first."""
        rows = self.store.read("log_heads").sort_values("tree_size")
        return [SignedTreeHead(str(r.payload), str(r.signature), str(r.public_key)) for r in rows.itertuples()]

    def head(self, head_id: str) -> SignedTreeHead | None:
        rows = self.store.read("log_heads", head_id=head_id)
        if rows.empty:
            return None
        r = rows.iloc[0]
        return SignedTreeHead(str(r["payload"]), str(r["signature"]), str(r["public_key"]))

    def latest_head(self) -> SignedTreeHead | None:
        heads = self.heads()
        return heads[-1] if heads else None

    def locate(self, iid: str) -> LeafRecord | None:
        """The first leaf that logged item ``iid``, or None."""
        rows = self.store.read("log_leaves", item_id=iid)
        if rows.empty:
            return None
        r = rows.sort_values("idx").iloc[0]
        return LeafRecord(idx=int(r["idx"]), item_id=str(r["item_id"]), kind=str(r["kind"]),
                          item_key=json.loads(str(r["item_key"])), leaf_hash=str(r["leaf_hash"]))

    def inclusion_proof(self, index: int, tree_size: int) -> list[bytes]:
        return self.tree.inclusion_proof(index, tree_size)

    def consistency_proof(self, first: int, second: int) -> list[bytes]:
        return self.tree.consistency_proof(first, second)
