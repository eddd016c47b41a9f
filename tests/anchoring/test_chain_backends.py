"""The evm and irys anchor backends against a real anvil chain and the stand-in Irys node.

The conformance checks (submit gives a JSON reference, confirm reaches final, verify passes, a tampered
reference fails at a named step) run for both; the rest are each backend's own failure cases.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from nexus_kernel.anchoring import (
    ANCHORS,
    AnchorDropped,
    AnchorError,
    AnchorReceipt,
    AnchorRequest,
    AnchorUnavailable,
    VerifyStep,
)

from .conftest import ChainEnv, evm_settings

BACKENDS = ["evm", "irys"]


def make_request(n: int, tree_size: int | None = None) -> AnchorRequest:
    payload = json.dumps({"kind": "tree-head", "n": n, "tree_size": tree_size or n + 1}).encode()
    return AnchorRequest(head_id=hashlib.sha256(payload).hexdigest(), root=hashlib.sha256(b"root%d" % n).digest(),
                         tree_size=tree_size or n + 1, payload=payload)


def settle(backend: Any, receipt: AnchorReceipt, tries: int = 20) -> AnchorReceipt:
    for _ in range(tries):
        receipt = backend.confirm(receipt)
        if receipt.status == "final":
            return receipt
    raise AssertionError(f"not final after {tries} confirms: {receipt}")


def failed(steps: list[VerifyStep]) -> list[str]:
    return [s.step for s in steps if not s.ok]


def _resigned(receipt: dict[str, Any]) -> dict[str, Any]:
    from .irys_node import StandInIrysNode

    return StandInIrysNode().sign_receipt(receipt["id"])


def _patch(item_b64: str, offset: int, xor: int) -> str:
    from nexus_kernel.anchoring.irys import b64url, b64url_decode

    raw = bytearray(b64url_decode(item_b64))
    raw[offset] ^= xor
    return b64url(bytes(raw))


@pytest.fixture(params=BACKENDS)
def env(request: pytest.FixtureRequest) -> ChainEnv:
    return request.getfixturevalue(f"anchor_env_{request.param}")


# -- both backends ------------------------------------------------------------------------------------

def test_backends_are_registered() -> None:
    assert {"evm", "irys"} <= set(ANCHORS.names())


def test_submit_confirm_verify(env: ChainEnv) -> None:
    request = make_request(1)
    receipt = env.backend.submit(request)
    assert receipt.backend == env.backend.name and receipt.head_id == request.head_id
    assert json.loads(json.dumps(receipt.reference)) == dict(receipt.reference)  # plain JSON
    final = settle(env.backend, receipt)
    steps = env.backend.verify(request, json.loads(json.dumps(final.reference)))
    assert steps and all(s.ok for s in steps), steps


def test_verify_refuses_another_tree_head(env: ChainEnv) -> None:
    request = make_request(2)
    final = settle(env.backend, env.backend.submit(request))
    for other in (replace(request, root=bytes(32)), replace(request, tree_size=request.tree_size * 2),
                  replace(request, payload=request.payload + b" ", head_id=hashlib.sha256(b"x").hexdigest())):
        steps = env.backend.verify(other, final.reference)
        assert failed(steps), (other, steps)


def test_verify_names_the_tampered_reference_field(env: ChainEnv) -> None:
    first, second = make_request(3), make_request(4)
    ref1 = settle(env.backend, env.backend.submit(first)).reference
    ref2 = settle(env.backend, env.backend.submit(second)).reference
    # the reference of another anchor, passed off as this one's
    swapped = env.backend.verify(first, ref2)
    assert failed(swapped), swapped
    if env.backend.name == "evm":
        assert set(failed(swapped)) == {"evm.root", "evm.tree_size", "evm.head"}
        cases = {"evm.chain": {**ref1, "chain_id": 1},
                 "evm.receipt": {**ref1, "tx_hash": "0x" + "11" * 32},
                 "evm.reference": {**ref1, "tx_hash": "not a hash"},
                 "evm.contract": {**ref1, "contract": "0x" + "22" * 20}}
    else:
        assert "irys.data" in failed(swapped) or "irys.item" in failed(swapped)
        cases = {"irys.receipt": {**ref1, "receipt": ref2["receipt"]},  # another item's (genuine) receipt
                 "irys.receipt_signature": {**ref1, "receipt": {**ref1["receipt"],
                                                                "timestamp": ref1["receipt"]["timestamp"] + 1}},
                 "irys.bundler": {**ref1, "receipt": _resigned(ref1["receipt"])},  # a receipt by another key
                 "irys.item": {**ref1, "item": _patch(ref1["item"], 132, 7)},  # target presence byte 7
                 "irys.data": {**ref1, "item": _patch(ref1["item"], -1, 0x20)},
                 "irys.signature": {**ref1, "item": _patch(ref1["item"], 10, 0x01)},  # inside the signature's r
                 "irys.id": {**ref1, "id": ref2["id"]}}
    for step, reference in cases.items():
        steps = env.backend.verify(first, reference)
        assert step in failed(steps), (step, steps)


def test_unreachable_node_is_unavailable(env: ChainEnv, tmp_path: Path) -> None:
    request = make_request(5)
    receipt = settle(env.backend, env.backend.submit(request))
    env.chain.stop()
    with pytest.raises(AnchorUnavailable):
        env.backend.submit(make_request(6))
    with pytest.raises(AnchorUnavailable):
        env.backend.confirm(receipt)
    if env.backend.name == "evm":  # evm asks the node; irys checks the item and receipt offline
        with pytest.raises(AnchorUnavailable):
            env.backend.verify(request, receipt.reference)
    else:
        assert not failed(env.backend.verify(request, receipt.reference))


def test_bad_request_is_refused_with_a_reason(env: ChainEnv) -> None:
    with pytest.raises(AnchorError, match="32 bytes"):
        env.backend.submit(replace(make_request(7), root=b"short"))
    with pytest.raises(AnchorError, match="head_id"):
        env.backend.submit(replace(make_request(7), head_id="XYZ"))


# -- evm ----------------------------------------------------------------------------------------------

def _anchor_logs(env: ChainEnv, request: AnchorRequest) -> list[Any]:
    from web3 import Web3

    from nexus_kernel.anchoring.evm import ANCHORED_TOPIC

    w3 = Web3(Web3.HTTPProvider(env.chain.url))
    return list(w3.eth.get_logs({"address": env.extra["contract"], "fromBlock": 0, "toBlock": "latest",
                                 "topics": [ANCHORED_TOPIC, request.root, bytes.fromhex(request.head_id)]}))


def test_evm_refuses_an_anchor_from_another_contract(anchor_env_evm: ChainEnv, tmp_path: Path) -> None:
    from nexus_kernel.anchoring.evm import DEV_KEYS, deploy_anchor

    env = anchor_env_evm
    impostor = deploy_anchor(env.chain.url, DEV_KEYS[1])  # a second copy of the same contract
    other = ANCHORS.get("evm")(evm_settings(tmp_path / "other", env.chain.url, impostor), None)
    request = make_request(10)
    reference = settle(other, other.submit(request)).reference
    assert all(s.ok for s in other.verify(request, reference))  # a genuine anchor... of the other contract
    assert "evm.contract" in failed(env.backend.verify(request, reference))
    # the reference rewritten to name our contract: the log was still emitted by the impostor
    steps = env.backend.verify(request, {**reference, "contract": env.extra["contract"]})
    assert failed(steps) == ["evm.emitter"], steps
    other.close()


def test_evm_final_only_after_n_confirmations(anchor_env_evm: ChainEnv, tmp_path: Path) -> None:
    env = anchor_env_evm
    backend = ANCHORS.get("evm")(evm_settings(tmp_path / "n3", env.chain.url, env.extra["contract"],
                                              evm_confirmations=3), None)
    request = make_request(11)
    receipt = backend.confirm(backend.submit(request))
    assert receipt.status == "pending" and receipt.reference["confirmations"] == 1
    assert failed(backend.verify(request, receipt.reference)) == ["evm.confirmations"]
    env.chain.rpc("anvil_mine", "0x2")
    receipt = backend.confirm(receipt)
    assert receipt.status == "final" and receipt.reference["confirmations"] == 3
    assert not failed(backend.verify(request, receipt.reference))
    backend.close()


def test_evm_reorg_drops_the_anchor_and_it_is_anchored_again(anchor_env_evm: ChainEnv) -> None:
    env = anchor_env_evm
    request = make_request(12)
    snapshot = env.chain.rpc("evm_snapshot")
    final = settle(env.backend, env.backend.submit(request))
    assert env.chain.rpc("evm_revert", snapshot) is True  # the block holding the anchor is gone
    with pytest.raises(AnchorDropped):
        env.backend.confirm(final)
    assert "evm.receipt" in failed(env.backend.verify(request, final.reference))
    again = settle(env.backend, env.backend.submit(request))  # what the service does on AnchorDropped
    assert again.reference["nonce"] == final.reference["nonce"]  # the nonce was re-synced, not skipped
    assert not failed(env.backend.verify(request, again.reference))
    assert len(_anchor_logs(env, request)) == 1


def test_evm_anvil_reorg_replacing_the_block(anchor_env_evm: ChainEnv) -> None:
    env = anchor_env_evm
    request = make_request(13)
    final = settle(env.backend, env.backend.submit(request))
    env.chain.rpc("anvil_reorg", 1, [])  # the last block replaced by an empty one
    with pytest.raises(AnchorDropped):
        env.backend.confirm(final)
    again = settle(env.backend, env.backend.submit(request))
    assert not failed(env.backend.verify(request, again.reference))


def test_evm_recovers_when_the_node_returns(tmp_path: Path) -> None:
    """anvil stopped mid-run and restarted with its state: every head anchored, each exactly once."""
    from nexus_kernel.anchoring.evm import DEV_KEYS, LocalAnvil, deploy_anchor

    chain = LocalAnvil(state=tmp_path / "chain.json").start()
    try:
        contract = deploy_anchor(chain.url, DEV_KEYS[0])
        backend = ANCHORS.get("evm")(evm_settings(tmp_path / "home", chain.url, contract), None)
        env = ChainEnv(backend, evm_settings(tmp_path / "home", chain.url, contract), chain, {"contract": contract})
        requests = [make_request(20 + i) for i in range(6)]
        receipts: dict[str, AnchorReceipt] = {}
        pending = list(requests)
        for request in requests[:3]:
            receipts[request.head_id] = backend.submit(request)
            pending.remove(request)
        for request in requests[:3]:  # mined before the stop: anvil's state dump keeps no pool, and a loaded
            settle(backend, receipts[request.head_id])  # machine can stop it between a send and its block
        chain.stop()
        for request in list(pending):  # the service's queue: each try fails, nothing is lost
            with pytest.raises(AnchorUnavailable):
                backend.submit(request)
        chain.start()  # same port, same state file
        for request in requests:  # the service retries everything it has not seen final
            if request.head_id not in receipts:
                receipts[request.head_id] = backend.submit(request)
            else:  # a head whose receipt was lost with the process would be submitted again
                assert backend.submit(request).reference["tx_hash"] == receipts[request.head_id].reference["tx_hash"]
        for request in requests:
            final = settle(backend, receipts[request.head_id])
            assert not failed(backend.verify(request, final.reference))
            assert len(_anchor_logs(env, request)) == 1
        nonces = sorted(r.reference["nonce"] for r in receipts.values())
        assert nonces == list(range(nonces[0], nonces[0] + len(requests)))
        backend.close()
    finally:
        chain.stop()


def test_evm_concurrent_submits_get_distinct_nonces(anchor_env_evm: ChainEnv) -> None:
    env = anchor_env_evm
    requests = [make_request(30 + i) for i in range(8)]
    receipts: list[AnchorReceipt] = []
    errors: list[BaseException] = []

    def submit(request: AnchorRequest) -> None:
        try:
            receipts.append(env.backend.submit(request))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=submit, args=(r,)) for r in requests]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len({r.reference["nonce"] for r in receipts}) == len(requests)
    by_head = {r.head_id: r for r in receipts}
    for request in requests:
        assert not failed(env.backend.verify(request, settle(env.backend, by_head[request.head_id]).reference))


def test_evm_gas_and_fee_caps(anchor_env_evm: ChainEnv, tmp_path: Path) -> None:
    env = anchor_env_evm
    low_gas = ANCHORS.get("evm")(evm_settings(tmp_path / "g", env.chain.url, env.extra["contract"],
                                              evm_gas_cap=21_000), None)
    with pytest.raises(AnchorError, match="evm_gas_cap"):
        low_gas.submit(make_request(40))
    low_fee = ANCHORS.get("evm")(evm_settings(tmp_path / "f", env.chain.url, env.extra["contract"],
                                              evm_max_fee_gwei=1e-9), None)
    with pytest.raises(AnchorUnavailable, match="evm_max_fee_gwei"):
        low_fee.submit(make_request(41))
    low_gas.close()
    low_fee.close()


def test_evm_needs_a_contract_address(tmp_path: Path) -> None:
    from nexus_kernel.config import load_settings

    with pytest.raises(AnchorError, match="nexus anchor deploy"):
        ANCHORS.get("evm")(load_settings(home=tmp_path), None)


# -- irys ---------------------------------------------------------------------------------------------

def test_irys_item_carries_the_tree_head(anchor_env_irys: ChainEnv) -> None:
    import httpx

    from nexus_kernel.anchoring.irys import b64url_decode, parse_data_item

    env = anchor_env_irys
    request = make_request(50)
    receipt = env.backend.submit(request)
    item_id = receipt.reference["id"]
    assert receipt.reference["receipt"]["id"] == item_id and "not proof" in receipt.reference["attestation"]
    assert httpx.get(f"{env.chain.url}/{item_id}").content == request.payload  # the node serves the data
    header = httpx.get(f"{env.chain.url}/tx/{item_id}").json()
    assert header["id"] == item_id
    tags = dict(parse_data_item(b64url_decode(receipt.reference["item"])).tags)
    assert tags["App-Name"] == "Nexus-Stream" and tags["Nexus-Head-Id"] == request.head_id
    assert tags["Nexus-Root"] == request.root.hex() and tags["Nexus-Tree-Size"] == str(request.tree_size)


def test_irys_upload_twice_is_one_item(anchor_env_irys: ChainEnv) -> None:
    env = anchor_env_irys
    request = make_request(51)
    first, second = env.backend.submit(request), env.backend.submit(request)
    assert first.reference["id"] == second.reference["id"] and len(env.chain.items) == 1
    assert env.chain.uploads == 2  # the node saw both, kept one (201 the second time)
    assert not failed(env.backend.verify(request, second.reference))


def test_irys_node_trouble_is_retried_without_loss(anchor_env_irys: ChainEnv) -> None:
    env = anchor_env_irys
    request = make_request(52)
    for status in (503, 429, 402):  # down, rate limited, out of balance: all "later"
        env.chain.fail_with = status
        with pytest.raises(AnchorUnavailable, match=str(status)):
            env.backend.submit(request)
    env.chain.fail_with = None
    final = settle(env.backend, env.backend.submit(request))
    assert not failed(env.backend.verify(request, final.reference))


def test_irys_node_refusing_the_item_says_why(anchor_env_irys: ChainEnv) -> None:
    import httpx

    from nexus_kernel.anchoring.irys import build_data_item

    env = anchor_env_irys
    raw = bytearray(build_data_item(b"head", [("a", "b")], "0x" + "42" * 32))
    raw[-1] ^= 1
    answer = httpx.post(f"{env.chain.url}/tx/ethereum", content=bytes(raw),
                        headers={"Content-Type": "application/octet-stream"})
    assert answer.status_code == 400 and "invalid signature" in answer.text
    env.chain.fail_with = 400
    with pytest.raises(AnchorError, match="refused the upload"):
        env.backend.submit(make_request(53))


def test_irys_dropped_item_is_reported(anchor_env_irys: ChainEnv) -> None:
    env = anchor_env_irys
    request = make_request(54)
    receipt = env.backend.submit(request)
    env.chain.items.clear()  # the bundler lost it
    with pytest.raises(AnchorDropped):
        env.backend.confirm(receipt)
    again = settle(env.backend, env.backend.submit(request))
    assert again.reference["id"] == receipt.reference["id"]


def test_irys_key_is_made_once_per_home(irys_node: Any, tmp_path: Path) -> None:
    from nexus_kernel.config import load_settings

    settings = load_settings(home=tmp_path / "home", irys_url=irys_node.url)
    first, second = ANCHORS.get("irys")(settings, None), ANCHORS.get("irys")(settings, None)
    assert first.address == second.address  # type: ignore[attr-defined]
    assert (tmp_path / "home" / "irys_key").stat().st_mode & 0o777 == 0o600
    # without irys_bundler_key the receipt's own key is trusted, and the step says so
    request = make_request(55)
    steps = first.verify(request, first.submit(request).reference)
    assert not failed(steps) and "trusting" in [s for s in steps if s.step == "irys.bundler"][0].detail
    first.close()
    second.close()


def test_an_irys_anchor_verifies_away_from_its_home_and_writes_nothing_there(
        anchor_env_irys: ChainEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nexus_kernel.config import load_settings

    env = anchor_env_irys
    request = make_request(60)
    reference = settle(env.backend, env.backend.submit(request)).reference
    monkeypatch.delenv("NEXUS_IRYS_URL", raising=False)
    away = ANCHORS.get("irys")(load_settings(home=tmp_path / "elsewhere"), None)  # no irys_url, no key
    steps = away.verify(request, reference)
    assert not failed(steps), steps
    assert "not compared (irys_url is not set here)" in [s for s in steps if s.step == "irys.reference"][0].detail
    assert not (tmp_path / "elsewhere" / "irys_key").exists()  # checking made no key
    assert "irys.data" in failed(away.verify(make_request(61), reference))  # the item still must be this head's
    away.close()
    # where irys_url is set, a reference naming another node is refused
    assert failed(env.backend.verify(request, {**reference, "node": "http://127.0.0.1:9"})) == ["irys.reference"]


def test_nexus_anchor_deploy_prints_a_working_contract(anvil_chain: Any, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from nexus_kernel.anchoring.evm import DEV_KEYS

    env = {**os.environ, "NEXUS_EVM_PRIVATE_KEY": DEV_KEYS[0], "NEXUS_EVM_RPC_URL": anvil_chain.url}
    done = subprocess.run([sys.executable, "-m", "nexus_kernel.cli", "--home", str(tmp_path / "home"), "anchor",
                           "deploy"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    address = done.stdout.strip()
    backend = ANCHORS.get("evm")(evm_settings(tmp_path / "home", anvil_chain.url, address), None)
    request = make_request(60)
    assert not failed(backend.verify(request, settle(backend, backend.submit(request)).reference))
    backend.close()
    without_key = subprocess.run([sys.executable, "-m", "nexus_kernel.cli", "--home", str(tmp_path / "h2"), "anchor",
                                  "deploy"], env={k: v for k, v in env.items() if k != "NEXUS_EVM_PRIVATE_KEY"},
                                 capture_output=True, text=True, timeout=120)
    assert without_key.returncode == 1 and "NEXUS_EVM_PRIVATE_KEY" in without_key.stderr


def test_evm_a_restarted_process_does_not_anchor_a_head_twice(anchor_env_evm: ChainEnv) -> None:
    """The process died after sending, before the service recorded the receipt: a new one submits again."""
    env = anchor_env_evm
    request = make_request(61)
    lost = env.backend.submit(request)  # its receipt is never recorded
    reborn = ANCHORS.get("evm")(env.settings, None)
    found = reborn.submit(request)
    assert found.reference["tx_hash"] == lost.reference["tx_hash"]
    assert not failed(reborn.verify(request, settle(reborn, found).reference))
    assert len(_anchor_logs(env, request)) == 1
    reborn.close()


def test_evm_unfunded_key_waits_instead_of_failing(anchor_env_evm: ChainEnv, tmp_path: Path) -> None:
    from eth_account import Account

    env = anchor_env_evm
    broke = ANCHORS.get("evm")(evm_settings(tmp_path / "b", env.chain.url, env.extra["contract"],
                                            evm_private_key=Account.create().key.hex()), None)
    with pytest.raises(AnchorUnavailable, match="insufficient funds"):
        broke.submit(make_request(62))
    broke.close()


def test_evm_a_transaction_left_unmined_is_replaced_with_higher_fees_and_anchors_once(
        anchor_env_evm: ChainEnv, tmp_path: Path) -> None:
    """Through the service: a head's transaction waits in the pool (anvil mines nothing now) past
    evm_replace_after; the next round sends it again with the same nonce and fees raised by an eighth, the
    queue records the replacement, and once a block comes the replacement is the one anchor."""
    import time

    import pandas as pd
    from web3 import Web3

    from nexus_kernel.anchoring import AnchorService, verify_item
    from nexus_kernel.storage import DuckDBStore

    env = anchor_env_evm
    settings = evm_settings(tmp_path / "stuck", env.chain.url, env.extra["contract"], evm_replace_after=0.5,
                            anchor_every=3, anchor_interval=3600, anchor_backend="evm")
    store = DuckDBStore(":memory:")
    backend = ANCHORS.get("evm")(settings, None)
    service = AnchorService(settings, store, backend=backend)
    w3 = Web3(Web3.HTTPProvider(env.chain.url))
    env.chain.rpc("evm_setAutomine", False)
    try:
        frame = pd.DataFrame({"stream": ["pumps"] * 3, "series": ["p1"] * 3, "seq": range(3), "value": [1.0, 2.0, 3.0],
                              "ts": pd.date_range("2024-01-01", periods=3, freq="s", tz="UTC")})
        store.write(frame)
        service.ingest("points", frame)
        head = service.close_batch()  # submitted; nothing is mined
        assert head is not None
        (state, first), = service.queue.states("evm").values()
        assert state == "pending" and "replaced" not in first
        old = w3.eth.get_transaction(first["tx_hash"])  # waiting in the pool
        service.anchor_pending()  # too soon to replace
        assert service.queue.states("evm")[head.head_id][1]["tx_hash"] == first["tx_hash"]

        time.sleep(0.6)
        service.anchor_pending()
        state, second = service.queue.states("evm")[head.head_id]
        assert state == "pending" and second["replaced"] == [first["tx_hash"]]
        assert second["tx_hash"] != first["tx_hash"] and second["nonce"] == first["nonce"]
        new = w3.eth.get_transaction(second["tx_hash"])
        assert new["maxFeePerGas"] >= old["maxFeePerGas"] * 9 // 8 and new["nonce"] == old["nonce"]

        env.chain.rpc("evm_mine")
        service.anchor_pending()
        state, final = service.queue.states("evm")[head.head_id]
        assert state == "final" and final["tx_hash"] == second["tx_hash"]
        assert service.queue.pending("evm") == []
        request = service.log.head(head.head_id).request()
        assert len(_anchor_logs(env, request)) == 1  # one nonce: the replaced transaction was never mined
        iid = store.read("log_leaves")["item_id"].iloc[0]
        assert verify_item(iid, store, settings).verified
    finally:
        env.chain.rpc("evm_setAutomine", True)
        backend.close()
        store.close()
