"""``ledger``: the embedded anchor backend — tree heads hash-chained in the store's ``ledger`` table.

Each anchored head is one entry ``seq, head_id, root, tree_size, prev_hash, entry_hash`` where::

    entry_hash = SHA-256(canonical JSON of {"v": 1, "type": "nexus-ledger-entry", "seq": seq,
                                            "prev": prev_hash, "head": head_id, "root": root, "size": tree_size})

and ``prev_hash`` is the previous entry's ``entry_hash`` (64 zeros for entry 0). Rewriting an entry breaks
its own hash; deleting or reordering entries breaks the numbering or a ``prev`` link; either is reported by
:meth:`LedgerAnchor.verify` naming the first bad entry. Submitting a head already in the ledger returns its
entry again (anchored once). Entries are final as soon as they are written.

The receipt's ``reference`` carries the whole entry, so a verifier without the store (a proof bundle on
another machine, ``store=None``) still checks that the entry is self-consistent and names this head; only
a verifier that reaches the store can re-read the chain.

Caveat: the ledger lives in the home's own store, so it proves order and detects edits of individual
entries, not that the owner of the store did not rebuild the whole chain; publish heads to ``evm`` or
``irys`` for that (or copy the newest ``entry_hash`` somewhere public).

Example
-------
>>> from nexus_kernel.storage import open_store
>>> from nexus_kernel.anchoring import AnchorRequest
>>> ledger = LedgerAnchor(open_store("memory"))
>>> receipt = ledger.submit(AnchorRequest("ab" * 32, bytes(32), 1, b"{}"))
>>> receipt.status, [s.ok for s in ledger.verify(AnchorRequest("ab" * 32, bytes(32), 1, b"{}"), receipt.reference)]
('final', [True, True])
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import pandas as pd

from ._encoding import canonical_json
from ._protocol import ANCHORS, AnchorDropped, AnchorReceipt, AnchorRequest, AnchorUnavailable, VerifyStep

if TYPE_CHECKING:
    from ..config import Settings

__all__ = ["LedgerAnchor", "entry_hash"]

GENESIS = "0" * 64


def entry_hash(seq: int, prev: str, head_id: str, root: str, size: int) -> str:
    return hashlib.sha256(canonical_json({"v": 1, "type": "nexus-ledger-entry", "seq": int(seq), "prev": prev,
                                          "head": head_id, "root": root, "size": int(size)})).hexdigest()


def _unavailable(exc: Exception) -> AnchorUnavailable:
    return AnchorUnavailable(f"ledger: the store cannot be reached ({type(exc).__name__}: {exc})")


class LedgerAnchor:
    name: ClassVar[str] = "ledger"

    def __init__(self, store: Any | None) -> None:
        self.store = store
        self._lock = threading.Lock()

    def _entries(self, **equals: Any) -> pd.DataFrame:
        from ..storage import StoreError

        if self.store is None:
            raise AnchorUnavailable("ledger: no store to read (this verifier runs without the home)")
        try:
            return self.store.read("ledger", **equals).sort_values("seq", kind="stable").reset_index(drop=True)
        except (StoreError, OSError) as exc:
            raise _unavailable(exc) from exc

    @staticmethod
    def _reference(row: Mapping[Any, Any]) -> dict[str, Any]:
        return {"ledger": "nexus-ledger/1", "seq": int(row["seq"]), "prev_hash": str(row["prev_hash"]),
                "entry_hash": str(row["entry_hash"]), "head_id": str(row["head_id"]), "root": str(row["root"]),
                "tree_size": int(row["tree_size"])}

    def submit(self, request: AnchorRequest) -> AnchorReceipt:
        from ..storage import StoreError

        with self._lock:
            for _ in range(100):  # a concurrent writer that took our seq: read the tip again
                done = self._entries(head_id=request.head_id)
                if len(done):
                    return AnchorReceipt(self.name, request.head_id, "final", self._reference(done.iloc[0].to_dict()))
                entries = self._entries()
                seq = len(entries)
                prev = str(entries["entry_hash"].iloc[-1]) if seq else GENESIS
                row = {"seq": seq, "head_id": request.head_id, "root": request.root.hex(),
                       "tree_size": request.tree_size, "prev_hash": prev,
                       "entry_hash": entry_hash(seq, prev, request.head_id, request.root.hex(), request.tree_size),
                       "recorded_at": pd.Timestamp.now(tz="UTC")}
                try:
                    written = self.store.append("ledger", pd.DataFrame({k: [v] for k, v in row.items()}))  # type: ignore[union-attr]
                except (StoreError, OSError) as exc:
                    raise _unavailable(exc) from exc
                if written == 1:
                    return AnchorReceipt(self.name, request.head_id, "final", self._reference(row))
            raise AnchorUnavailable("ledger: could not take a sequence number (too many concurrent writers)")

    def confirm(self, receipt: AnchorReceipt) -> AnchorReceipt:
        seq = int(receipt.reference["seq"])
        rows = self._entries(seq=seq)
        if rows.empty or str(rows["entry_hash"].iloc[0]) != receipt.reference.get("entry_hash"):
            raise AnchorDropped(f"ledger: entry {seq} of head {receipt.head_id[:12]} is no longer in the ledger")
        return AnchorReceipt(self.name, receipt.head_id, "final", dict(receipt.reference))

    def verify(self, request: AnchorRequest, reference: Mapping[str, Any]) -> list[VerifyStep]:
        steps = [self._check_entry(request, reference)]
        if not steps[0].ok:
            return steps
        if self.store is None:
            steps.append(VerifyStep("ledger chain", True, "not re-read: the ledger is in the home's store, which "
                                    "this verifier cannot reach (offline check of the entry only)"))
            return steps
        try:
            entries = self._entries()
        except AnchorUnavailable as exc:
            return [*steps, VerifyStep("ledger chain", False, str(exc))]
        steps.append(self._check_chain(entries, reference))
        return steps

    def _check_entry(self, request: AnchorRequest, ref: Mapping[str, Any]) -> VerifyStep:
        try:
            seq, prev, ehash = int(ref["seq"]), str(ref["prev_hash"]), str(ref["entry_hash"])
            head, root, size = str(ref["head_id"]), str(ref["root"]), int(ref["tree_size"])
        except (KeyError, TypeError, ValueError) as exc:
            return VerifyStep("ledger entry", False, f"the reference is not a ledger entry ({exc!r})")
        if ref.get("ledger") != "nexus-ledger/1":
            return VerifyStep("ledger entry", False, f"the reference is not a nexus-ledger/1 entry ({ref.get('ledger')!r})")
        if (head, root, size) != (request.head_id, request.root.hex(), request.tree_size):
            return VerifyStep("ledger entry", False, f"entry {seq} anchors head {head[:12]}... (size {size}), "
                              f"not this head {request.head_id[:12]}... (size {request.tree_size})")
        if entry_hash(seq, prev, head, root, size) != ehash:
            return VerifyStep("ledger entry", False, f"entry {seq}'s hash does not match its fields")
        return VerifyStep("ledger entry", True, f"entry {seq} anchors this head; its hash {ehash[:12]}... matches")

    @staticmethod
    def _check_chain(entries: pd.DataFrame, ref: Mapping[str, Any]) -> VerifyStep:
        prev = GENESIS
        for position, row in enumerate(entries.to_dict("records")):
            seq = int(row["seq"])
            if seq != position:
                return VerifyStep("ledger chain", False, f"entry {position} is missing or out of order "
                                  f"(found {seq}): the ledger was cut or reordered")
            if str(row["prev_hash"]) != prev:
                return VerifyStep("ledger chain", False, f"entry {seq} does not link to entry {seq - 1}")
            if entry_hash(seq, prev, str(row["head_id"]), str(row["root"]), int(row["tree_size"])) != str(row["entry_hash"]):
                return VerifyStep("ledger chain", False, f"entry {seq} was rewritten (its hash does not match)")
            prev = str(row["entry_hash"])
        seq = int(ref["seq"])
        if seq >= len(entries):
            return VerifyStep("ledger chain", False, f"entry {seq} is not in the ledger ({len(entries)} entries)")
        if str(entries["entry_hash"].iloc[seq]) != ref["entry_hash"]:
            return VerifyStep("ledger chain", False, f"the ledger's entry {seq} is not the one in the reference")
        return VerifyStep("ledger chain", True, f"all {len(entries)} entries link; entry {seq} is in the chain, "
                          f"tip {prev[:12]}...")

    def close(self) -> None:
        pass


@ANCHORS.register("ledger")
def ledger_anchor(settings: Settings, store: Any | None) -> LedgerAnchor:
    """The ledger over ``store`` (the home's store); ``store=None`` verifies entries offline only."""
    return LedgerAnchor(store)
