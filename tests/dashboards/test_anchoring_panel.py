"""The monitor's Anchoring panel, against a real gateway: recent anchors, and verify an anomaly of the feed."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pandas as pd

from dashboards._anchoring_panel import AnchoringPanel, anchoring_api
from nexus_kernel.anchoring import AnchorService
from nexus_kernel.client import Client

from ..gateway.conftest import serve


def test_recent_anchors_and_verify_on_click(tmp_path):
    for gw in serve(tmp_path):
        store = gw.services.store
        feed = pd.DataFrame({"stream": ["pumps"] * 2, "series": ["a", "b"], "field": ["value"] * 2,
                             "ts": pd.to_datetime(["2024-01-01T00:00:00Z", "2024-01-01T00:01:00Z"]),
                             "detector": ["zscore"] * 2, "score": [3.0, 4.0], "is_anomaly": [True] * 2,
                             "reason": ["spike"] * 2})
        store.append("anomalies", feed)
        service = AnchorService(gw.settings, store)
        service.ingest("anomalies", feed)
        service.close_batch()
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


def test_embedded_source_reaches_the_advertised_gateway(tmp_path):
    for gw in serve(tmp_path):
        (gw.settings.home / "runtime.json").write_text(json.dumps({"gateway": gw.url}))
        api = anchoring_api(SimpleNamespace(runtime=SimpleNamespace(settings=gw.settings)))
        assert api is not None and api.anchors()["receipts"]["rows"] == 0
        api.close()
    assert "no gateway" in AnchoringPanel(anchoring_api(SimpleNamespace())).recent.object
