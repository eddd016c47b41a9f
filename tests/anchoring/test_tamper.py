"""Tampering with the store behind the log's back, on both stores: each change names the step it breaks."""

from __future__ import annotations

import pandas as pd
import pytest

from nexus_kernel.anchoring import AnchorService, verify_item
from nexus_kernel.config import load_settings

from .helpers import tamper


@pytest.fixture
def logged(any_store, tmp_path):
    settings = load_settings(home=tmp_path / "home")
    frame = pd.DataFrame({"stream": ["pumps"] * 6, "series": ["p1"] * 6, "seq": range(6),
                          "ts": pd.date_range("2024-01-01", periods=6, freq="s", tz="UTC"),
                          "value": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]})
    any_store.write(frame)
    service = AnchorService(settings, any_store)
    service.ingest("points", frame)
    service.close_batch()
    leaves = any_store.read("log_leaves").sort_values("idx")
    ids = list(leaves["item_id"])
    assert verify_item(ids[3], any_store, settings).verified
    return settings, any_store, ids, list(leaves["leaf_hash"])


@pytest.mark.parametrize("statement, step", [
    ("UPDATE points SET value = 40.5 WHERE seq = 3", "leaf"),
    ("DELETE FROM points WHERE seq = 3", "item"),
    ("UPDATE log_leaves SET leaf_hash = '{other}' WHERE idx = 3", "leaf"),
    ("UPDATE log_leaves SET leaf_hash = '{other}' WHERE idx = 4", "inclusion"),
    ("DELETE FROM log_leaves WHERE idx = 5", "log"),
    ("DELETE FROM log_leaves WHERE idx = 1", "log"),
    ("UPDATE log_heads SET signature = '{sig}'", "signature"),
    ("UPDATE ledger SET root = '{other}'", "ledger chain"),  # the receipt keeps the entry as it was written
    ("DELETE FROM anchor_receipts", "anchor"),
], ids=["record value", "record deleted", "its leaf hash", "another leaf hash", "the last leaf deleted", "a leaf deleted",
        "head signature", "ledger entry", "receipts deleted"])
def test_each_tampering_names_its_step(logged, statement, step):
    settings, store, ids, hashes = logged
    tamper(store, statement.format(other=hashes[0], sig="00" * 64))
    verdict = verify_item(ids[3], store, settings)
    assert not verdict.verified and verdict.failed_step == step, verdict.text()
