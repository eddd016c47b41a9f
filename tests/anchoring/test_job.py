"""``notebooks/anchor.ipynb`` through papermill: a stored span is logged and anchored, once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pandas as pd

from nexus_kernel.anchoring import item_id, verify_item
from nexus_kernel.config import load_settings
from nexus_kernel.storage import open_store

ROOT = Path(__file__).resolve().parents[2]


def _run(home: Path, out: Path) -> dict:
    env = {**os.environ, "NEXUS_HOME": str(home), "NEXUS_STORE": "duckdb", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "papermill", "-k", "nexus", str(ROOT / "notebooks/anchor.ipynb"),
                           str(out), "-p", "stream", "plant", "-p", "start", "2024-05-01", "-p", "end", "2024-05-02",
                           "-p", "backend", "ledger"], cwd=home, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    book = nbformat.read(out, as_version=4)
    printed = "".join(o.get("text", "") for c in book.cells for o in c.get("outputs", []))
    return json.loads(printed[printed.index("{"):printed.index("\n}") + 2])


def test_anchor_notebook_anchors_a_stored_span_once(tmp_path):
    home = tmp_path / "home"
    settings = load_settings(home=home, store="duckdb")
    store = open_store(settings)
    ts = pd.date_range("2024-05-01", periods=50, freq="1min", tz="UTC")
    store.write(pd.DataFrame({"stream": ["plant"] * 50, "series": ["p1"] * 50, "ts": ts, "seq": range(50),
                              "value": [float(i) for i in range(50)]}))
    store.write(pd.DataFrame({"stream": ["plant"], "series": ["p1"], "ts": [pd.Timestamp("2024-05-03", tz="UTC")],
                              "seq": [99], "value": [1.0]}))  # outside the span
    store.close()

    first = _run(home, tmp_path / "first.ipynb")
    assert first["logged"] == {"record": 50, "anomaly": 0, "dead_letter": 0} and first["pending"] == 0
    second = _run(home, tmp_path / "second.ipynb")
    assert second["logged"]["record"] == 0 and second["already_logged"] == 50 and second["head"] == 50

    store = open_store(settings)
    try:
        iid = item_id("record", {"stream": "plant", "series": "p1", "ts": ts[7], "seq": 7})
        verdict = verify_item(iid, store, settings)
        assert verdict.verified, verdict.text()
        assert len(store.read("ledger")) == 1  # one head, anchored once across both runs
    finally:
        store.close()
