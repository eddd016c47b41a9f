"""What the evm verifier checks, one :class:`VerifyStep` per fact, from a reference and the node.

1. ``evm.reference`` - the reference names a chain id, a contract and a transaction hash.
2. ``evm.contract``  - its contract is the configured one (a reference cannot bring its own contract).
3. ``evm.chain``     - the node serves that chain id.
4. ``evm.receipt``   - the node has a receipt for the transaction, with status 1 (success).
5. ``evm.emitter``   - the receipt holds an ``Anchored`` log *emitted by the configured contract*; web3's
   ``process_receipt`` does not check a log's address, so logs of any other address are ignored here.
6. ``evm.root``, ``evm.tree_size``, ``evm.head`` - that log's root, tree size and head id equal the request.
7. ``evm.sender``   - when the reference names a sender (``from``), the transaction was sent by it; when it
   names the event (``event``), it is the ``Anchored`` event's signature; ``evm.block`` - when it names the
   block (``block_number``, ``block_hash``), the transaction is in that block.
8. ``evm.confirmations`` - the block of the transaction has at least N blocks on top (its own included).

The walk stops at the first step that fails when the later ones cannot be computed (no receipt, no log).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from eth_utils import is_address, to_checksum_address
from web3 import Web3
from web3.exceptions import TransactionNotFound

from .._protocol import AnchorError, AnchorRequest, VerifyStep
from ._contract import ANCHORED_SIGNATURE, ANCHORED_TOPIC

__all__ = ["check_request", "verify_anchor"]

_HEX32 = re.compile(r"^[0-9a-f]{64}$")
_TX = re.compile(r"^0x[0-9a-fA-F]{64}$")


def check_request(request: AnchorRequest) -> None:
    """Refuse a request the contract cannot carry (a clear error instead of a garbled anchor)."""
    if len(request.root) != 32:
        raise AnchorError(f"anchor root must be 32 bytes, got {len(request.root)}")
    if not _HEX32.match(request.head_id):
        raise AnchorError("anchor head_id must be 64 lower-case hex digits (SHA-256 of the tree head)")
    if not 0 <= request.tree_size < 2**64:
        raise AnchorError(f"anchor tree_size {request.tree_size} does not fit uint64")


def verify_anchor(w3: Web3, contract: str, confirmations: int, request: AnchorRequest,
                  reference: Mapping[str, Any]) -> list[VerifyStep]:
    steps: list[VerifyStep] = []

    def step(name: str, ok: bool, detail: str) -> bool:
        steps.append(VerifyStep(name, ok, detail))
        return ok

    tx_hash, ref_contract, chain_id = reference.get("tx_hash"), reference.get("contract"), reference.get("chain_id")
    if not step("evm.reference", isinstance(tx_hash, str) and bool(_TX.match(tx_hash))
                and isinstance(ref_contract, str) and is_address(ref_contract) and isinstance(chain_id, int),
                f"tx {tx_hash}, contract {ref_contract}, chain {chain_id}"):
        return steps
    assert isinstance(tx_hash, str) and isinstance(ref_contract, str) and isinstance(chain_id, int)
    step("evm.contract", to_checksum_address(ref_contract) == contract,
         f"reference names {ref_contract}; the configured Anchor contract is {contract}")
    node_chain = int(w3.eth.chain_id)
    if not step("evm.chain", node_chain == chain_id, f"node serves chain {node_chain}, reference says {chain_id}"):
        return steps
    try:
        receipt = w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
    except TransactionNotFound:
        receipt = None
    if receipt is None:
        step("evm.receipt", False, f"no receipt for {tx_hash} on this chain (never mined, or dropped by a reorg)")
        return steps
    if not step("evm.receipt", int(receipt["status"]) == 1,
                f"transaction {tx_hash} in block {receipt['blockNumber']}, status {receipt['status']}"):
        return steps
    ours = [entry for entry in receipt["logs"]
            if to_checksum_address(entry["address"]) == contract and entry["topics"] and
            bytes(entry["topics"][0]) == ANCHORED_TOPIC]
    others = sorted({to_checksum_address(e["address"]) for e in receipt["logs"]} - {contract})
    if not step("evm.emitter", len(ours) == 1,
                f"{len(ours)} Anchored log(s) emitted by {contract}"
                + (f"; logs of other addresses ignored: {', '.join(others)}" if others else "")):
        return steps
    log = ours[0]
    root, head_id = bytes(log["topics"][1]), bytes(log["topics"][2]).hex()
    tree_size = int.from_bytes(bytes(log["data"]), "big")
    step("evm.root", root == request.root, f"log root {root.hex()}, tree head root {request.root.hex()}")
    step("evm.tree_size", tree_size == request.tree_size,
         f"log tree size {tree_size}, tree head tree size {request.tree_size}")
    step("evm.head", head_id == request.head_id, f"log head id {head_id}, tree head id {request.head_id}")
    sender = reference.get("from")
    if sender is not None:  # every field of a reference is checked: a changed one must not pass unnoticed
        actual = to_checksum_address(receipt["from"])
        step("evm.sender", isinstance(sender, str) and is_address(sender) and to_checksum_address(sender) == actual,
             f"reference says sent by {sender}; the transaction was sent by {actual}")
    block = {"block_number": int(receipt["blockNumber"]), "block_hash": "0x" + bytes(receipt["blockHash"]).hex()}
    named = {key: reference[key] for key in block if key in reference}
    if named:
        step("evm.block", all(str(named[k]).lower() == str(block[k]) for k in named),
             f"reference names {named}; the transaction is in block {block['block_number']} ({block['block_hash']})")
    event = reference.get("event")
    if event is not None:
        step("evm.event", event == ANCHORED_SIGNATURE, f"reference names event {event!r}; anchors emit "
             f"{ANCHORED_SIGNATURE!r}")
    depth = int(w3.eth.block_number) - int(receipt["blockNumber"]) + 1
    step("evm.confirmations", depth >= confirmations,
         f"{depth} confirmation(s) of block {receipt['blockNumber']}, {confirmations} required")
    return steps
