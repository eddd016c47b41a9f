"""``GET /api/verify/{item_id}`` and ``GET /api/anchors`` through the SDK, on a real gateway."""

from __future__ import annotations

import pandas as pd
import pytest

from nexus_kernel.anchoring import AnchorService, verify_bundle
from nexus_kernel.client import Client, NexusError

from ..gateway.conftest import serve


@pytest.fixture
def gw(tmp_path):
    yield from serve(tmp_path)


def _anchored(gw) -> list[str]:
    store = gw.services.store
    frame = pd.DataFrame({"stream": ["pumps"] * 3, "series": ["a", "b", "c"], "field": ["value"] * 3,
                          "ts": pd.to_datetime(["2024-01-01T00:00:00Z"] * 3), "detector": ["zscore"] * 3,
                          "score": [3.0, 4.0, 5.0], "is_anomaly": [True] * 3, "reason": ["spike"] * 3})
    store.append("anomalies", frame)
    service = AnchorService(gw.settings, store)
    service.ingest("anomalies", frame)
    assert service.close_batch() is not None
    return list(store.read("log_leaves").sort_values("idx")["item_id"])


def test_verify_and_anchors_for_a_viewer(gw):
    ids = _anchored(gw)
    with Client(gw.url, gw.token("viewer")) as client:
        result = client.verify(ids[1])
        assert result["verified"] and result["failed_step"] is None
        assert [s["step"] for s in result["steps"]][:2] == ["item", "leaf"]
        assert verify_bundle(result["bundle"], gw.settings).verified  # the bundle stands on its own
        unknown = client.verify("anomaly:" + "0" * 24)
        assert not unknown["verified"] and unknown["failed_step"] == "item" and unknown["bundle"] is None
        anchors = client.anchors(limit=5)
        assert anchors["receipts"]["rows"] == 1 and anchors["receipts"]["columns"]["status"] == ["final"]
        assert anchors["receipts"]["columns"]["reference"][0]["ledger"] == "nexus-ledger/1"
        with pytest.raises(NexusError) as bad:
            client.verify("not-an-id")
        assert bad.value.status == 404
    with Client(gw.url, gw.token("viewer", streams=["pumps"])) as scoped, pytest.raises(NexusError) as refused:
        scoped.verify(ids[0])
    assert refused.value.status == 403


def test_the_routes_are_in_the_openapi_document(gw):
    with Client(gw.url, gw.token("viewer")) as client:
        paths = client.openapi()["paths"]
    assert "get" in paths["/api/verify/{item_id}"] and "get" in paths["/api/anchors"]


def test_anomalies_and_dead_letters_carry_the_item_id_verify_takes(gw):
    """An analyst reading anomalies through the API gets each row's item id and verifies it as it is."""
    logged = _anchored(gw)
    with Client(gw.url, gw.token("viewer")) as client:
        anomalies = client.anomalies("pumps")
        assert sorted(anomalies["item_id"]) == sorted(logged)
        picked = anomalies.loc[anomalies["series"] == "b", "item_id"].iloc[0]
        assert client.verify(picked)["verified"]
        assert client.dead_letters("pumps").empty  # none yet; the column comes with rows (below)
    gw.services.store.append("dead_letters", pd.DataFrame({
        "stream": ["pumps"], "seq": [7], "reason": ["bad_value"], "detail": ["value is not a number"],
        "received_at": pd.to_datetime(["2024-01-01T00:00:01Z"]), "payload": ['{"value": "x"}']}))
    with Client(gw.url, gw.token("viewer")) as client:
        dead = client.dead_letters("pumps")
    assert dead["item_id"].str.startswith("dead_letter:").all() and len(dead) == 1
