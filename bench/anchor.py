"""Anchoring on a real chain: gas per anchor and seconds from submit to a verifiable final proof.

Runs anvil (``./node_modules``, see ``make node-tools``) on a free loopback port, deploys the Anchor
contract and anchors tree heads through the ``evm`` backend as the service does (submit, confirm until
final, verify every step). Peers, measured in the same run on the same chain:

- gas: a bare self-send carrying the same 40 bytes (root + tree size) as calldata, the least any
  on-chain record of a root can cost (~22.4k on Prague; the 21k base plus calldata);
- seconds to final: the same bare transaction sent and waited for (its receipt, 1 block), with the
  same polling interval - the chain's own latency, which our submit -> confirm -> verify adds to.

The tree heads cover 1 to 1,000,000 leaves: one transaction per tree head whatever the batch size,
and the gas does not depend on it. Latency is measured with automine (a block per transaction) and with
``--block-time 1`` (a block a second, as on a real chain with fast blocks), confirmations = 1.

Run: ``.venv/bin/python -m bench anchor`` (``--quick`` for fewer anchors).
"""

from __future__ import annotations

import hashlib
import statistics
import time
from typing import Any

from eth_account import Account

from nexus_kernel.anchoring import AnchorRequest
from nexus_kernel.anchoring.evm import DEV_KEYS, EvmAnchor, LocalAnvil, deploy_anchor

POLL = 0.05  # seconds between receipt polls, ours and the peer's alike


def _request(i: int, tree_size: int) -> AnchorRequest:
    payload = b"signed tree head %d" % i
    return AnchorRequest(hashlib.sha256(payload).hexdigest(), hashlib.sha256(b"root %d" % i).digest(), tree_size,
                         payload)


def _row(metric: str, unit: str, ours: float, peer: str, peer_value: float, params: dict[str, Any],
         higher_is_better: bool = False) -> dict[str, Any]:
    ratio = (ours / peer_value if higher_is_better else peer_value / ours) if peer_value and ours else None
    return {"metric": metric, "unit": unit, "ours": round(ours, 4), "peer": peer, "peer_value": round(peer_value, 4),
            "ratio": round(ratio, 3) if ratio else None, "params": params}


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]


def _anchor_to_final(backend: EvmAnchor, request: AnchorRequest) -> tuple[float, int]:
    started = time.perf_counter()
    receipt = backend.submit(request)
    while True:
        receipt = backend.confirm(receipt)
        if receipt.status == "final":
            break
        time.sleep(POLL)
    steps = backend.verify(request, receipt.reference)
    elapsed = time.perf_counter() - started
    assert all(s.ok for s in steps), steps
    return elapsed, int(receipt.reference["gas_used"])


def _bare_send(backend: EvmAnchor, i: int) -> tuple[float, int]:
    """A self-send with the root and tree size (40 bytes) as calldata; (seconds to receipt, gas used)."""
    w3 = backend._w3  # the same connection our backend uses: same client costs on both sides
    account = Account.from_key(DEV_KEYS[1])
    data = hashlib.sha256(b"root %d" % i).digest() + (1_000_000 + i).to_bytes(8, "big")
    started = time.perf_counter()
    tx = {"from": account.address, "to": account.address, "value": 0, "data": data, "chainId": backend.chain_id,
          "nonce": w3.eth.get_transaction_count(account.address, "pending")}
    tx["gas"] = int(w3.eth.estimate_gas(tx))  # type: ignore[arg-type]
    base = int(w3.eth.get_block("latest").get("baseFeePerGas") or 0)
    tip = int(w3.eth.max_priority_fee)
    tx.update(maxFeePerGas=2 * base + tip, maxPriorityFeePerGas=tip)
    tx_hash = w3.eth.send_raw_transaction(account.sign_transaction(tx).raw_transaction)
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=60, poll_latency=POLL)
    return time.perf_counter() - started, int(receipt["gasUsed"])


def _measure(block_time: float | None, count: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"ours_s": [], "peer_s": [], "ours_gas": [], "peer_gas": []}
    with LocalAnvil(block_time=block_time) as chain:
        contract = deploy_anchor(chain.url, DEV_KEYS[0])
        backend = EvmAnchor(chain.url, DEV_KEYS[0], contract, confirmations=1)
        sizes = [1, 10, 1_000, 1_000_000]
        for i in range(count):
            seconds, gas = _anchor_to_final(backend, _request(i + (block_time or 0) * 10_000, sizes[i % len(sizes)]))
            out["ours_s"].append(seconds)
            out["ours_gas"].append(gas)
            seconds, gas = _bare_send(backend, i)
            out["peer_s"].append(seconds)
            out["peer_gas"].append(gas)
        backend.close()
    return out


def run(quick: bool = False) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    auto = _measure(None, 20 if quick else 200)
    peer = "bare self-send, 40 B calldata"
    rows.append(_row("gas per anchor (one tx per tree head)", "gas", statistics.median(auto["ours_gas"]), peer,
                     statistics.median(auto["peer_gas"]),
                     {"tree_sizes": [1, 10, 1000, 1000000], "distinct_gas_values": sorted(set(auto["ours_gas"])),
                      "target": "<= 30000"}))
    rows.append(_row("submit -> verified final, automine, p50", "s", statistics.median(auto["ours_s"]),
                     "bare tx -> receipt", statistics.median(auto["peer_s"]), {"n": len(auto["ours_s"])}))
    rows.append(_row("submit -> verified final, automine, p99", "s", _p99(auto["ours_s"]), "bare tx -> receipt",
                     _p99(auto["peer_s"]), {"n": len(auto["ours_s"]), "target": "<= 2 s"}))
    timed = _measure(1.0, 10 if quick else 40)
    rows.append(_row("submit -> verified final, 1 s blocks, p50", "s", statistics.median(timed["ours_s"]),
                     "bare tx -> receipt", statistics.median(timed["peer_s"]), {"n": len(timed["ours_s"])}))
    rows.append(_row("submit -> verified final, 1 s blocks, p99", "s", _p99(timed["ours_s"]), "bare tx -> receipt",
                     _p99(timed["peer_s"]), {"n": len(timed["ours_s"]), "target": "<= 2 s", "confirmations": 1}))
    return rows
