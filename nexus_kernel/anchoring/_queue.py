"""The persistent anchor queue: signed tree heads waiting to be anchored, and what became of them.

Two append-only tables of the store: ``anchor_queue`` (one row per head to anchor) and
``anchor_receipts`` (one row per state a head reached with a backend: ``pending``, ``final``, ``dropped``).
A head is *pending* for a backend while its newest receipt there is not ``final`` (a ``dropped`` after a
``final`` puts it back). Nothing is ever updated in place, so the queue survives a crash at any point: at
worst a head is submitted again, which every backend answers with the anchor it already made.

Example
-------
>>> from nexus_kernel.storage import open_store
>>> queue = AnchorQueue(open_store("memory"))
>>> queue.enqueue("ab" * 32, 5); queue.pending("ledger")
['abababababababababababababababababababababababababababababababab']
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from ._protocol import AnchorReceipt

__all__ = ["AnchorQueue"]


class AnchorQueue:
    def __init__(self, store: Any) -> None:
        self.store = store
        self._last = pd.Timestamp(0, tz="UTC")

    def _now(self) -> pd.Timestamp:
        """Now, strictly after the previous stamp this queue wrote (a receipt's key includes its time)."""
        now = pd.Timestamp.now(tz="UTC").floor("us")
        self._last = max(now, self._last + pd.Timedelta(microseconds=1))
        return self._last

    def enqueue(self, head_id: str, tree_size: int) -> None:
        self.store.append("anchor_queue", pd.DataFrame({"head_id": [head_id], "tree_size": [int(tree_size)],
                                                        "queued_at": [self._now()]}))

    def record(self, receipt: AnchorReceipt) -> None:
        self._receipt(receipt.head_id, receipt.backend, receipt.status, dict(receipt.reference))

    def dropped(self, head_id: str, backend: str, why: str) -> None:
        self._receipt(head_id, backend, "dropped", {"why": why})

    def _receipt(self, head_id: str, backend: str, status: str, reference: dict[str, Any]) -> None:
        self.store.append("anchor_receipts", pd.DataFrame({
            "head_id": [head_id], "backend": [backend], "status": [status],
            "reference": [json.dumps(reference, sort_keys=True)], "recorded_at": [self._now()]}))

    def states(self, backend: str) -> dict[str, tuple[str, dict[str, Any]]]:
        """head id → (newest status, its reference) for ``backend``."""
        rows = self.store.read("anchor_receipts", backend=backend)
        out: dict[str, tuple[str, dict[str, Any]]] = {}
        for r in rows.sort_values("recorded_at", kind="stable").itertuples():
            out[str(r.head_id)] = (str(r.status), json.loads(str(r.reference)))
        return out

    def pending(self, backend: str) -> list[str]:
        """Queued heads not final with ``backend``, smallest tree first."""
        queued = self.store.read("anchor_queue").sort_values("tree_size", kind="stable")
        states = self.states(backend)
        return [h for h in queued["head_id"].astype(str) if states.get(h, ("", {}))[0] != "final"]

    def recent(self, limit: int = 20) -> pd.DataFrame:
        """The newest receipts, newest first (what the monitor's Anchoring panel shows)."""
        rows = self.store.read("anchor_receipts", limit=limit)
        return rows.sort_values("recorded_at", ascending=False).reset_index(drop=True)
