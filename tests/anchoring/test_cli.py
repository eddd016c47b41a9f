"""``nexus verify`` on a home no ``nexus up`` owns: by id, by anomaly key, the list, JSON, exit codes."""

from __future__ import annotations

import json

import pandas as pd
from click.testing import CliRunner

from nexus_kernel.anchoring import AnchorService, item_id
from nexus_kernel.cli import cli
from nexus_kernel.config import load_settings
from nexus_kernel.storage import open_store


def _home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("NEXUS_HOME", str(home))
    monkeypatch.setenv("NEXUS_STORE", "duckdb")
    settings = load_settings()
    store = open_store(settings)
    frame = pd.DataFrame({"stream": ["pumps"] * 2, "series": ["a", "b"], "field": ["value"] * 2,
                          "ts": pd.to_datetime(["2024-01-01T00:00:00Z", "2024-01-01T00:00:30Z"]),
                          "detector": ["zscore"] * 2, "score": [3.0, 4.0], "is_anomaly": [True] * 2,
                          "reason": ["spike"] * 2})
    store.append("anomalies", frame)
    service = AnchorService(settings, store)
    service.ingest("anomalies", frame)
    service.close_batch()
    store.close()
    key = {"stream": "pumps", "series": "b", "field": "value", "ts": pd.Timestamp("2024-01-01T00:00:30Z"),
           "detector": "zscore"}
    return item_id("anomaly", key)


def test_verify_by_id_by_anomaly_and_list(tmp_path, monkeypatch):
    iid = _home(tmp_path, monkeypatch)
    runner = CliRunner()
    listed = runner.invoke(cli, ["verify", "--list", "pumps"])
    assert listed.exit_code == 0 and listed.output.splitlines()[0].startswith(iid), listed.output
    by_key = runner.invoke(cli, ["verify", "--anomaly", "pumps", "b", "2024-01-01T00:00:30Z", "--json"])
    assert by_key.exit_code == 0, by_key.output
    assert json.loads(by_key.output) == {**json.loads(by_key.output), "item_id": iid, "verified": True}
    text = runner.invoke(cli, ["verify", iid])
    assert text.exit_code == 0 and text.output.splitlines()[-1] == f"{iid}: verified"
    unknown = runner.invoke(cli, ["verify", "anomaly:" + "0" * 24])
    assert unknown.exit_code == 1 and "step 'item' fails" in unknown.output
    assert runner.invoke(cli, ["verify"]).exit_code == 2  # nothing to verify: a usage error
    missing = runner.invoke(cli, ["verify", "--anomaly", "pumps", "b", "2030-01-01"])
    assert missing.exit_code == 1 and "no anomaly" in missing.output
