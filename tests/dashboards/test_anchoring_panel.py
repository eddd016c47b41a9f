"""The monitor's Anchoring panel, against a real gateway: recent anchors, and verify an anomaly of the feed."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd

from dashboards._anchoring_panel import AnchoringPanel, anchoring_api
from nexus_kernel.anchoring import AnchorService
from nexus_kernel.client import Client

from ..gateway.conftest import serve


def _feed() -> pd.DataFrame:
    return pd.DataFrame({"stream": ["pumps"] * 2, "series": ["a", "b"], "field": ["value"] * 2,
                         "ts": pd.to_datetime(["2024-01-01T00:00:00Z", "2024-01-01T00:01:00Z"]),
                         "detector": ["zscore"] * 2, "score": [3.0, 4.0], "is_anomaly": [True] * 2,
                         "reason": ["spike"] * 2})


def _anchor(settings, store, feed=None) -> list[str]:
    feed = _feed() if feed is None else feed
    store.append("anomalies", feed)
    service = AnchorService(settings, store)
    service.ingest("anomalies", feed)
    service.close_batch()
    return list(store.read("log_leaves").sort_values("idx")["item_id"])


def test_recent_anchors_and_verify_on_click(tmp_path):
    for gw in serve(tmp_path):
        store = gw.services.store
        feed = _feed()
        _anchor(gw.settings, store, feed)
        with Client(gw.url, gw.token("viewer")) as client:
            panel = AnchoringPanel(anchoring_api(SimpleNamespace(client=client)))
            panel.tick(store.read("anomalies", stream="pumps"))
            assert "final" in panel.recent.object and "ledger" in panel.recent.object
            labels = list(panel.choice.options)
            assert len(labels) == 2 and labels[0].startswith("2024-01-01 00:01:00 b")  # newest first
            panel.choice.value = panel.choice.options[labels[0]]
            panel.button.clicks += 1  # a click, as the browser sends it
            assert "verified" in panel.result.object and "NOT" not in panel.result.object
            assert panel.verify()["verified"]


def test_an_embedded_source_gets_the_same_answers_in_process(tmp_path):
    for gw in serve(tmp_path):
        runtime = gw.services.runtime
        ids = _anchor(gw.settings, runtime.store)
        local = anchoring_api(SimpleNamespace(runtime=runtime))
        with Client(gw.url, gw.token("viewer")) as client:
            assert local.verify(ids[0]) == client.verify(ids[0])
            assert local.anchors(limit=3) == client.anchors(limit=3)
    assert "no gateway" in AnchoringPanel(anchoring_api(SimpleNamespace())).recent.object


def test_the_pages_of_one_source_share_one_read_of_the_anchors(tmp_path):
    """Every page on a source gets the same anchoring calls (``anchoring_api`` once per source): the
    recent anchors are read once per ``ttl`` for all of them, and a newer anchor shows after it; verify
    always asks."""
    import time

    from dashboards._anchoring_panel import SharedAnswers

    class Source:  # what the panel reads of a monitor source: its runtime (weakly referenced, as sources are)
        def __init__(self, runtime):
            self.runtime = runtime

    for gw in serve(tmp_path):
        runtime = gw.services.runtime
        source = Source(runtime)
        first, second = anchoring_api(source), anchoring_api(source)
        assert isinstance(first, SharedAnswers) and first is second
        ids = _anchor(gw.settings, runtime.store)
        first.ttl = 0.5
        answer = first.anchors(limit=8)
        assert second.anchors(limit=8) is answer  # the second page: no second read
        assert first.verify(ids[0])["verified"]
        later = _feed().assign(series=["c", "d"])
        _anchor(gw.settings, runtime.store, later)  # a second anchor, made after the read
        heads = answer["receipts"]["columns"]["head_id"]
        assert second.anchors(limit=8)["receipts"]["columns"]["head_id"] == heads  # within the ttl: as read
        time.sleep(0.6)
        newer = second.anchors(limit=8)["receipts"]["columns"]["head_id"]
        assert len(newer) > len(heads) and set(heads) <= set(newer)
        assert anchoring_api(Source(runtime)) is not first  # another source, its own
