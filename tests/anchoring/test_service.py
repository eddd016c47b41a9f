"""The anchor service: batches by count, a queue that survives restarts, and retries with backoff while the
backend is unreachable — then every pending head anchored exactly once.

The unreachable backend is the ledger on a real PostgreSQL reached through a TCP forwarder this test stops
(the port refuses, open connections are cut) and starts again.
"""

from __future__ import annotations

import time
import uuid

import pandas as pd
import pytest

from nexus_kernel.anchoring import AnchorService, LedgerAnchor, build_bundle, verify_item
from nexus_kernel.anchoring._cli import _pending
from nexus_kernel.anchoring._protocol import VerifyStep
from nexus_kernel.anchoring._verify import NOT_ANCHORED, Verdict
from nexus_kernel.anchoring._verify import walk
from nexus_kernel.config import load_settings
from nexus_kernel.storage import DuckDBStore, PostgresStore

from .helpers import Forwarder


def _records(start: int, n: int) -> pd.DataFrame:
    return pd.DataFrame({"stream": ["pumps"] * n, "series": ["p1"] * n,
                         "ts": pd.date_range("2024-01-01", periods=start + n, freq="s", tz="UTC")[start:],
                         "seq": range(start, start + n), "value": [float(i) for i in range(start, start + n)]})


def _stored(store, start: int, n: int) -> pd.DataFrame:
    frame = _records(start, n)
    store.write(frame)
    return frame


@pytest.fixture
def settings(tmp_path):
    return load_settings(home=tmp_path / "home", anchor_every=5, anchor_interval=3600)


def test_a_batch_closes_every_n_items_and_each_item_is_logged_once(settings):
    store = DuckDBStore(":memory:")
    service = AnchorService(settings, store)
    frame = _records(0, 12)
    store.write(frame)
    assert service.ingest("points", frame) == 12
    assert service.due()  # 12 >= anchor_every
    assert service.ingest("points", frame) == 0  # the same records again: not logged twice
    head = service.close_batch()
    assert head is not None and head.tree_size == 12 and not service.due()
    assert service.queue.pending("ledger") == [] and len(store.read("ledger")) == 1
    assert service.close_batch() == head and len(store.read("ledger")) == 1  # nothing new: no new anchor
    iid = store.read("log_leaves").sort_values("idx")["item_id"].iloc[7]
    assert verify_item(iid, store, settings).verified


def test_unreachable_backend_retries_and_anchors_every_head_exactly_once(settings, pg_dsn, tmp_path):
    pg_host, pg_rest = pg_dsn.split("@", 1)[1].split("/", 1)
    host, port = pg_host.split(":")
    forwarder = Forwarder((host, int(port))).start()
    schema = f"ledger_{uuid.uuid4().hex[:10]}"
    remote = PostgresStore(f"{pg_dsn.split('@')[0]}@127.0.0.1:{forwarder.port}/{pg_rest}", schema=schema, timeout=2)
    log_store = DuckDBStore(str(tmp_path / "log.duckdb"))
    try:
        service = AnchorService(settings, log_store, backend=LedgerAnchor(remote), first_retry=0.05)
        service.ingest("points", _stored(log_store, 0, 5))
        assert service.close_batch().tree_size == 5 and service.queue.pending("ledger") == []

        forwarder.stop()  # the ledger's database is unreachable now
        service.ingest("points", _stored(log_store, 5, 5))
        service.close_batch()
        assert service.stats["unavailable"] == 1 and "cannot be reached" in service.last_error, service.status()
        assert service.backoff == pytest.approx(0.05)
        time.sleep(0.1)  # past the first backoff (0.05 s), so the next round tries again
        service.ingest("points", _stored(log_store, 10, 5))
        service.close_batch()
        assert service.stats["unavailable"] == 2 and service.backoff == pytest.approx(0.1)  # doubled
        assert len(service.queue.pending("ledger")) == 2
        # an item of a queued head is only pending: `nexus verify` waits for it instead of failing
        queued = log_store.read("log_leaves").sort_values("idx")["item_id"].iloc[7]
        verdict = verify_item(queued, log_store, settings)
        assert not verdict.verified and verdict.steps[-1].detail == NOT_ANCHORED and _pending(verdict)

        # a restart: a new service over the same store finds the queue as it was left
        log_store.close()
        log_store = DuckDBStore(str(tmp_path / "log.duckdb"))
        restarted = AnchorService(settings, log_store, backend=LedgerAnchor(remote), first_retry=0.05)
        assert len(restarted.queue.pending("ledger")) == 2 and restarted.log.size == 15
        restarted.recover()
        assert restarted.stats["unavailable"] == 1

        forwarder.start()  # back
        deadline = time.monotonic() + 60
        while restarted.queue.pending("ledger"):
            assert time.monotonic() < deadline, restarted.status()
            time.sleep(0.1)
            restarted.anchor_pending()
        restarted.recover()
        restarted.anchor_pending()  # again: nothing is anchored twice
        bundle, failure = build_bundle(queued, log_store)
        assert failure is None and bundle["anchor"] is not None  # anchored now: nothing left to wait for
        entries = remote.read("ledger")
        heads = log_store.read("log_heads")
        assert sorted(entries["head_id"]) == sorted(heads["head_id"]) and len(entries) == 3
        assert sorted(entries["tree_size"]) == [5, 10, 15]
        iid = log_store.read("log_leaves").sort_values("idx")["item_id"].iloc[12]
        bundle, failure = build_bundle(iid, log_store)
        assert failure is None and bundle["anchor"]["reference"]["tree_size"] == 15
        steps = walk(bundle, remote, settings)  # the anchor checked in the ledger's own database
        assert [s.step for s in steps if not s.ok] == [] and steps[-1].step == "ledger chain"
    finally:
        forwarder.stop()
        log_store.close()
        remote.close()
        direct = PostgresStore(pg_dsn, schema=schema, timeout=5)  # not through the forwarder
        direct.drop_schema()
        direct.close()


def test_a_dropped_anchor_goes_back_into_the_queue_and_is_anchored_once(settings):
    from nexus_kernel.anchoring import AnchorReceipt

    store = DuckDBStore(":memory:")
    service = AnchorService(settings, store)
    service.ingest("points", _stored(store, 0, 5))
    service.close_batch()
    service.ingest("points", _stored(store, 5, 5))
    head = service.log.sign_head()
    service.queue.enqueue(head.head_id, head.tree_size)
    # what a submitted anchor that later vanished leaves behind: a pending receipt whose entry is not there
    gone = {"ledger": "nexus-ledger/1", "seq": 1, "prev_hash": "0" * 64, "entry_hash": "ab" * 32,
            "head_id": head.head_id, "root": head.root.hex(), "tree_size": head.tree_size}
    service.queue.record(AnchorReceipt("ledger", head.head_id, "pending", gone))
    assert service.anchor_pending() == 0 and service.stats["dropped"] == 1
    assert service.queue.pending("ledger") == [head.head_id]  # back in the queue
    assert service.anchor_pending() == 1 and service.queue.pending("ledger") == []
    entries = store.read("ledger")
    assert sorted(entries["tree_size"]) == [5, 10] and entries["head_id"].is_unique
    assert service.queue.states("ledger")[head.head_id][0] == "final"


def test_items_the_bus_dropped_while_the_service_lagged_are_logged_from_the_store(tmp_path):
    """A subscription cut off for lagging is renewed and what it missed is read from the store (the source of
    truth; the bus only triggers): every stored record ends logged once, and anchored."""
    from nexus_kernel.storage import MemoryBus, topic

    settings = load_settings(home=tmp_path / "home", anchor_every=100_000, anchor_interval=3600, bus_queue=10)
    store = DuckDBStore(":memory:")
    bus = MemoryBus()
    service = AnchorService(settings, store, bus=bus).start()
    try:
        n = 1_500  # more frames than the subscription's queue holds (max(bus_queue, 1000))
        frame = _stored(store, 0, n)
        deadline = time.monotonic() + 30
        while not bus.stats()["subscribers"]:
            assert time.monotonic() < deadline, "the service never subscribed"
            time.sleep(0.01)
        with service._lock:  # the service busy elsewhere: its loop stalls in its next ingest
            bus.publish_nowait(topic("pumps", "points"), frame.iloc[:1])
            time.sleep(0.2)  # let the loop take the first frame and block on the lock
            for i in range(1, n):
                bus.publish_nowait(topic("pumps", "points"), frame.iloc[i:i + 1])
        deadline = time.monotonic() + 60
        while service.log.size < n:
            assert time.monotonic() < deadline, service.status()
            time.sleep(0.05)
        assert service.stats["lagged"] > 0 and service.stats["backfilled"] > 0, service.status()
        assert bus.stats()["lagged"] >= 1
        leaves = store.read("log_leaves")
        assert len(leaves) == n and leaves["item_id"].is_unique
        head = service.close_batch()
        assert head is not None and head.tree_size == n and service.queue.pending("ledger") == []
        assert verify_item(leaves.sort_values("idx")["item_id"].iloc[-1], store, settings).verified
    finally:
        service.close()
        bus.close()
        store.close()


def test_items_replayed_after_a_restart_are_not_logged_again(settings, tmp_path):
    """A restarted process reads the newest item ids back with the log: the records a bus replays after a
    restart (the same ids) get no second leaf, and new ones are logged after the old."""
    path = str(tmp_path / "log.duckdb")
    store = DuckDBStore(path)
    frame = _stored(store, 0, 8)
    assert AnchorService(settings, store).ingest("points", frame) == 8
    store.close()

    store = DuckDBStore(path)
    try:
        restarted = AnchorService(settings, store)
        assert restarted.log.size == 8
        assert restarted.ingest("points", frame) == 0  # replayed: already logged
        assert restarted.ingest("points", pd.concat([frame, _stored(store, 8, 3)])) == 3
        leaves = store.read("log_leaves")
        assert len(leaves) == 11 and not leaves["item_id"].duplicated().any()
    finally:
        store.close()


def test_only_a_closing_batch_or_a_queued_anchor_is_waited_for():
    """``nexus verify`` waits on what is only pending, never on a proof that fails."""
    def last(step: str, detail: str) -> Verdict:
        return Verdict("point:x", [VerifyStep("item", True, ""), VerifyStep(step, False, detail)], None)

    assert _pending(last("tree head", "no signed tree head covers leaf 3 yet (its batch has not closed)"))
    assert _pending(last("anchor", NOT_ANCHORED))
    assert not _pending(last("anchor", "the ledger holds no entry for this head"))
    assert not _pending(last("leaf", "the stored item does not hash to the logged leaf"))
    assert not _pending(Verdict("point:x", [], None))


def test_frames_from_the_bus_share_one_log_append_per_kind(tmp_path):
    """The follower queues what the bus brings and logs it at most ``DRAIN_EVERY`` s later, one append
    (one store transaction) per kind for every frame queued meanwhile: 40 frames of records and 4 of
    anomalies, published in a burst, are all logged, in far fewer appends than frames (each append
    stamps its leaves with one ``appended_at``), and within a second of the last frame."""
    from nexus_kernel.anchoring._service import DRAIN_EVERY
    from nexus_kernel.storage import MemoryBus, topic

    settings = load_settings(home=tmp_path / "home", anchor_every=100_000, anchor_interval=3600)
    store = DuckDBStore(":memory:")
    bus = MemoryBus()
    service = AnchorService(settings, store, bus=bus).start()
    try:
        frame = _stored(store, 0, 400)
        anomalies = pd.DataFrame({"stream": ["pumps"] * 4, "series": ["p1"] * 4, "field": ["value"] * 4,
                                  "detector": ["robust_z"] * 4,
                                  "ts": frame["ts"].iloc[[10, 110, 210, 310]].to_numpy(), "score": [0.9] * 4,
                                  "is_anomaly": [True] * 4, "reason": ["{}"] * 4})
        store.append("anomalies", anomalies)
        deadline = time.monotonic() + 30
        while not bus.stats()["subscribers"]:
            assert time.monotonic() < deadline, "the service never subscribed"
            time.sleep(0.01)
        for i in range(40):
            bus.publish_nowait(topic("pumps", "points"), frame.iloc[10 * i:10 * i + 10])
            if i % 10 == 0:
                bus.publish_nowait(topic("pumps", "anomalies"), anomalies.iloc[[i // 10]])
        published = time.monotonic()
        while service.log.size < 404:
            assert time.monotonic() - published < 2 * DRAIN_EVERY + 1.0, service.status()
            time.sleep(0.02)
        leaves = store.read("log_leaves")
        assert len(leaves) == 404 and leaves["item_id"].is_unique
        assert sorted(leaves["kind"].value_counts().to_dict().items()) == [("anomaly", 4), ("record", 400)]
        appends = leaves.groupby("kind")["appended_at"].nunique()
        assert appends["record"] <= 6 and appends["anomaly"] <= 4, appends  # 40 frames, 4 frames
        head = service.close_batch()
        assert head is not None and head.tree_size == 404
        for kind in ("record", "anomaly"):
            assert verify_item(leaves[leaves["kind"] == kind]["item_id"].iloc[-1], store, settings).verified
    finally:
        service.close()
        bus.close()
        store.close()
