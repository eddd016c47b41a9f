"""The anchoring service on a real anvil chain when the chain goes away, and when the service itself dies.

1. anvil stopped mid-run (by PID): the heads stay queued in the store, the service backs off (doubling);
   anvil restarted on the same port with its ``--state``: every pending head is anchored exactly once (one
   ``Anchored`` log per head id on chain) and an item of each batch verifies through the evm backend.
2. The anchoring process SIGKILLed after it sent a head's transaction and before it recorded the receipt:
   the window is held open by a real condition, not a hook — the receipts table of its PostgreSQL store is
   locked by another session, so the service's INSERT waits. The test kills it once the node has the
   transaction and the service's session waits on the lock. A new process on the same store anchors every
   head exactly once, whether the lost transaction was already mined or still in the node's pool.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from nexus_kernel.anchoring import AnchorService, verify_item
from nexus_kernel.storage import DuckDBStore, PostgresStore

from .conftest import evm_settings


def _records(start: int, n: int) -> pd.DataFrame:
    return pd.DataFrame({"stream": ["pumps"] * n, "series": ["p1"] * n,
                         "ts": pd.date_range("2024-01-01", periods=start + n, freq="s", tz="UTC")[start:],
                         "seq": range(start, start + n), "value": [float(i) for i in range(start, start + n)]})


def _stored(store: Any, start: int, n: int) -> pd.DataFrame:
    """Records as the pipeline leaves them: written to the store, then seen on the bus."""
    frame = _records(start, n)
    store.write(frame)
    return frame


def _anchored_logs(url: str, contract: str) -> dict[str, int]:
    """head id (hex) → how many ``Anchored`` logs of the contract name it, over the whole chain."""
    from web3 import Web3

    from nexus_kernel.anchoring.evm import ANCHORED_TOPIC

    w3 = Web3(Web3.HTTPProvider(url))
    counts: dict[str, int] = {}
    for entry in w3.eth.get_logs({"address": contract, "fromBlock": 0, "toBlock": "latest",
                                  "topics": [ANCHORED_TOPIC]}):
        head_id = bytes(entry["topics"][2]).hex()
        counts[head_id] = counts.get(head_id, 0) + 1
    return counts


def _one_item_per_head(store: Any) -> list[str]:
    """An item id of each batch: the last leaf each signed head covers."""
    leaves = store.read("log_leaves").sort_values("idx")
    sizes = sorted(int(s) for s in store.read("log_heads")["tree_size"])
    return [str(leaves["item_id"].iloc[size - 1]) for size in sizes]


def _wait_until(check: Any, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_the_running_service_confirms_a_head_the_chain_made_final_later(anvil_chain: Any, tmp_path: Path) -> None:
    """A chain answers a submit with a pending receipt: the service's own ticker confirms it, with no new batch."""
    from nexus_kernel.anchoring.evm import DEV_KEYS, deploy_anchor

    contract = deploy_anchor(anvil_chain.url, DEV_KEYS[0])
    settings = evm_settings(tmp_path / "home", anvil_chain.url, contract, anchor_backend="evm", anchor_every=5,
                            anchor_interval=0.2)
    store = DuckDBStore(":memory:")
    service = AnchorService(settings, store).start()
    try:
        service.ingest("points", _stored(store, 0, 3))  # fewer than anchor_every: the interval closes the batch
        _wait_until(lambda: service.stats["heads"] == 1, f"no head signed: {service.status()}")
        _wait_until(lambda: not service.queue.pending("evm"), f"head not confirmed: {service.status()}")
        assert service.queue.states("evm")[store.read("log_heads")["head_id"].iloc[0]][0] == "final"
    finally:
        service.close()
        store.close()


def test_anvil_stopped_mid_run_then_every_head_anchored_exactly_once(tmp_path: Path) -> None:
    from nexus_kernel.anchoring.evm import DEV_KEYS, LocalAnvil, deploy_anchor

    chain = LocalAnvil(state=tmp_path / "chain.json").start()
    store = DuckDBStore(str(tmp_path / "home.duckdb"))
    service = None
    try:
        contract = deploy_anchor(chain.url, DEV_KEYS[0])
        settings = evm_settings(tmp_path / "home", chain.url, contract, anchor_backend="evm", anchor_every=5,
                                anchor_interval=3600, evm_timeout=2.0)
        service = AnchorService(settings, store, first_retry=0.01)
        assert service.backend.name == "evm"
        service.ingest("points", _stored(store, 0, 5))
        assert service.close_batch() is not None and service.unconfirmed == 1  # sent; final once confirmed
        assert service.anchor_pending() == 1 and service.queue.pending("evm") == []  # the chain is up

        chain.stop()  # by PID (SIGTERM: anvil writes its --state and exits)
        for batch in range(1, 4):
            service.ingest("points", _stored(store, 5 * batch, 5))
            service.close_batch()
            assert service.stats["unavailable"] == batch, service.status()
            assert service.backoff == pytest.approx(0.01 * 2 ** (batch - 1))  # 0.01, 0.02, 0.04: doubling
            assert "unreachable" in (service.last_error or "")
            time.sleep(service.backoff + 0.01)  # past the backoff, so the next close tries the chain again
        assert service.stats["anchored"] == 1 and len(service.queue.pending("evm")) == 3  # kept in the store

        chain.start()  # the same port, the same state file
        deadline = time.monotonic() + 60
        while service.queue.pending("evm"):
            assert time.monotonic() < deadline, service.status()
            service.anchor_pending()
            time.sleep(0.05)
        service.recover()
        service.anchor_pending()  # again: nothing is anchored twice

        heads = store.read("log_heads")
        assert sorted(heads["tree_size"]) == [5, 10, 15, 20] and service.stats["anchored"] == 4
        counts = _anchored_logs(chain.url, contract)
        assert counts == {h: 1 for h in heads["head_id"]}, counts
        for iid in _one_item_per_head(store):
            verdict = verify_item(iid, store, settings)
            assert verdict.verified, verdict.text()
            assert verdict.bundle is not None and verdict.bundle["anchor"]["backend"] == "evm"
            assert any(s.step.startswith("evm.") for s in verdict.steps), verdict.text()
    finally:
        if service is not None:
            service.backend.close()
        store.close()
        chain.stop()


# -- the anchoring process killed between sending a transaction and recording its receipt ---------------

WORKER = textwrap.dedent("""
    import json, sys, time
    import pandas as pd
    from nexus_kernel.anchoring import AnchorService
    from nexus_kernel.config import load_settings
    from nexus_kernel.storage import PostgresStore

    args = json.loads(sys.argv[1])
    settings = load_settings(home=args["home"], anchor_backend="evm", anchor_every=5, anchor_interval=3600,
                             evm_rpc_url=args["url"], evm_contract=args["contract"], evm_private_key=args["key"])
    store = PostgresStore(args["dsn"], schema=args["schema"], timeout=600)
    service = AnchorService(settings, store)
    service.recover()  # what a restarted service does first
    for start in args["batches"]:
        n = 5
        frame = pd.DataFrame({"stream": ["pumps"] * n, "series": ["p1"] * n,
                              "ts": pd.date_range("2024-01-01", periods=start + n, freq="s", tz="UTC")[start:],
                              "seq": range(start, start + n), "value": [float(i) for i in range(start, start + n)]})
        store.write(frame)
        service.ingest("points", frame)
        service.close_batch()
    while args["settle"] and service.queue.pending("evm"):
        time.sleep(0.05)
        service.anchor_pending()
    print(json.dumps(service.status()))
    service.backend.close()
    store.close()
""")


def _worker(args: dict[str, Any]) -> subprocess.Popen[str]:
    import json

    return subprocess.Popen([sys.executable, "-c", WORKER, json.dumps(args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _finish(worker: subprocess.Popen[str]) -> str:
    out, err = worker.communicate(timeout=180)
    assert worker.returncode == 0, err
    return out


def _waiting_on_receipts(admin: Any, schema: str) -> bool:
    """Does some session wait for a lock on the schema's ``anchor_receipts`` (the worker's INSERT)?"""
    row = admin.execute("SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                        "JOIN pg_namespace n ON n.oid = c.relnamespace "
                        "WHERE NOT l.granted AND c.relname = 'anchor_receipts' AND n.nspname = %s",
                        (schema,)).fetchone()
    return bool(row and row[0])


@pytest.mark.parametrize("mining", ["automine", "paused"])
def test_killed_between_send_and_receipt_then_each_head_anchored_once(anvil_chain: Any, pg_dsn: str,
                                                                      tmp_path: Path, mining: str) -> None:
    """automine: the lost transaction is mined (found by its Anchored log); paused: it waits in the
    node's pool when the process dies and when the new one starts (found in the pool by nonce)."""
    import psycopg
    from eth_account import Account
    from web3 import Web3

    from nexus_kernel.anchoring.evm import DEV_KEYS, deploy_anchor

    contract = deploy_anchor(anvil_chain.url, DEV_KEYS[0])
    schema = f"anchor_{uuid.uuid4().hex[:10]}"
    store = PostgresStore(pg_dsn, schema=schema, timeout=5)  # creates the tables the worker uses
    args = {"home": str(tmp_path / "home"), "url": anvil_chain.url, "contract": contract, "key": DEV_KEYS[0],
            "dsn": pg_dsn, "schema": schema}
    w3 = Web3(Web3.HTTPProvider(anvil_chain.url))
    sender = Account.from_key(DEV_KEYS[0]).address
    admin = psycopg.connect(pg_dsn, autocommit=True)
    locker = psycopg.connect(pg_dsn)
    worker = None
    try:
        _finish(_worker({**args, "batches": [0], "settle": True}))  # a first head, anchored normally
        assert store.read("anchor_receipts")["status"].tolist().count("final") == 1
        if mining == "paused":
            anvil_chain.rpc("evm_setAutomine", False)
        sent_before = w3.eth.get_transaction_count(sender, "pending")

        locker.execute(f'LOCK TABLE "{schema}".anchor_receipts IN EXCLUSIVE MODE')  # reads pass, writes wait
        worker = _worker({**args, "batches": [5], "settle": False})
        deadline = time.monotonic() + 120
        while not (w3.eth.get_transaction_count(sender, "pending") > sent_before
                   and _waiting_on_receipts(admin, schema)):
            assert worker.poll() is None, worker.communicate()
            assert time.monotonic() < deadline, "the worker neither sent nor blocked on its receipt"
            time.sleep(0.02)
        os.kill(worker.pid, signal.SIGKILL)  # sent, receipt not recorded
        worker.wait(30)
        locker.rollback()

        heads = store.read("log_heads")
        lost = heads.loc[heads["tree_size"] == 10, "head_id"].iloc[0]
        assert lost in set(store.read("anchor_queue")["head_id"])  # queued...
        assert lost not in set(store.read("anchor_receipts")["head_id"])  # ...with no receipt recorded
        mined = w3.eth.get_transaction_count(sender, "latest")
        assert (mined == sent_before + 1) if mining == "automine" else (mined == sent_before), mined

        _finish(_worker({**args, "batches": [10], "settle": False}))  # restarted on the same store
        assert w3.eth.get_transaction_count(sender, "pending") == sent_before + 2  # the lost head not sent again
        anvil_chain.rpc("evm_setAutomine", True)
        anvil_chain.rpc("anvil_mine", "0x1")
        _finish(_worker({**args, "batches": [], "settle": True}))

        heads = store.read("log_heads")
        assert sorted(heads["tree_size"]) == [5, 10, 15]
        counts = _anchored_logs(anvil_chain.url, contract)
        assert counts == {h: 1 for h in heads["head_id"]}, counts
        settings = evm_settings(tmp_path / "home", anvil_chain.url, contract, anchor_backend="evm")
        for iid in _one_item_per_head(store):
            verdict = verify_item(iid, store, settings)
            assert verdict.verified, verdict.text()
    finally:
        if worker is not None and worker.poll() is None:
            os.kill(worker.pid, signal.SIGKILL)
            worker.wait()
        locker.close()
        admin.close()
        store.drop_schema()
        store.close()
