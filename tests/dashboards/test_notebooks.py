"""Every notebook under nbval, and the daily report through papermill with parameters."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat

from .dash_helpers import ROOT


def _env(home: Path) -> dict[str, str]:
    return {**os.environ, "NEXUS_HOME": str(home), "NEXUS_STORE": "duckdb", "PYTHONPATH": str(ROOT)}


def test_nbval_runs_every_notebook(home: Path) -> None:
    """`pytest --nbval-lax notebooks/`: every cell of every notebook runs (asserts inside them count)."""
    proc = subprocess.run([sys.executable, "-m", "pytest", "--nbval-lax", "-q", "-p", "no:cacheprovider",
                           "--nbval-kernel-name", "nexus", str(ROOT / "notebooks")],
                          cwd=home, env=_env(home), capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and "failed" not in proc.stdout, proc.stdout[-2000:]


def test_daily_report_with_papermill_parameters(home: Path, tmp_path: Path) -> None:
    out_nb, report = tmp_path / "out.ipynb", tmp_path / "report.html"
    proc = subprocess.run([sys.executable, "-m", "papermill", "-k", "nexus", str(ROOT / "notebooks/daily_report.ipynb"),
                           str(out_nb), "-p", "stream", "pumps", "-p", "start", "2024-03-01", "-p", "end", "2024-03-01T12:00",
                           "-p", "output", str(report)], cwd=home, env=_env(home), capture_output=True, text=True,
                          timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    book = nbformat.read(out_nb, as_version=4)
    injected = [c for c in book.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected and 'stream = "pumps"' in injected[0].source
    page = report.read_text()
    assert "Daily report: pumps" in page and "2024-03-01 00:00:00 to 2024-03-01 12:00:00 UTC" in page
    assert "SIMULATED" in "".join(str(o) for c in book.cells for o in c.get("outputs", []))  # empty store said so
    assert "data:image/png;base64," in page


def test_daily_report_reads_stored_points_and_fails_visibly_when_told(home: Path, tmp_path: Path) -> None:
    """With points in the store it reports on them (no simulation); with none and simulate_if_empty=False it fails."""
    import pandas as pd

    from nexus_kernel.storage import open_store

    store = open_store(f"duckdb://{home / 'nexus.duckdb'}")
    ts = pd.date_range("2024-05-01", periods=600, freq="1min", tz="UTC")
    store.write(pd.DataFrame({"stream": pd.array(["plant"] * 600, dtype="string"),
                              "series": pd.array(["p1"] * 600, dtype="string"), "ts": ts,
                              "seq": range(600), "value": [float(i % 60) for i in range(600)]}))
    store.close()
    args = [sys.executable, "-m", "papermill", "-k", "nexus", str(ROOT / "notebooks/daily_report.ipynb")]
    common = ["-p", "stream", "plant", "-p", "store", f"duckdb://{home / 'nexus.duckdb'}",
              "-p", "output", str(tmp_path / "r.html")]
    ok = subprocess.run(args + [str(tmp_path / "ok.ipynb"), "-p", "start", "2024-05-01", *common],
                        env=_env(home), capture_output=True, text=True, timeout=180)
    assert ok.returncode == 0, ok.stderr[-3000:]
    html = (tmp_path / "r.html").read_text()
    assert "SIMULATED" not in html and ">600<" in html  # p1: 600 stored points counted
    bad = subprocess.run(args + [str(tmp_path / "bad.ipynb"), "-p", "start", "2023-01-01", "-p", "end", "2023-01-02",
                                 "-p", "simulate_if_empty",
                                 "False", *common], env=_env(home), capture_output=True, text=True, timeout=180)
    assert bad.returncode != 0
    assert "no stored points" in bad.stderr + (tmp_path / "bad.ipynb").read_text()


def test_explore_reads_recent_data_of_a_live_stream_through_a_gateway(home: Path, tmp_path: Path) -> None:
    """`-p gateway_url ... -p token ...`: the notebook reads the live stream's last hour (not a fixed date)."""
    import time

    from nexus_kernel.client import NexusError, connect

    from .dash_helpers import GatewayThread

    gateway = GatewayThread(home)
    try:
        client, deadline = connect(gateway.url, token=gateway.token), time.monotonic() + 60
        while time.monotonic() < deadline:  # the simulated stream has stored its first points
            try:
                if len(client.query("sensors", last="1h")) > 200:
                    break
            except NexusError:  # 404 until the stream stored something
                pass
            time.sleep(0.5)
        out_nb = tmp_path / "explore.ipynb"
        proc = subprocess.run([sys.executable, "-m", "papermill", "-k", "nexus", str(ROOT / "notebooks/explore.ipynb"),
                               str(out_nb), "-p", "gateway_url", gateway.url, "-p", "token", gateway.token],
                              cwd=home, env=_env(home), capture_output=True, text=True, timeout=240)
        assert proc.returncode == 0, proc.stderr[-3000:]
        text = "".join(o.get("text", "") for c in nbformat.read(out_nb, as_version=4).cells for o in c.get("outputs", []))
        assert f"connected to {gateway.url}" in text
        import re

        import pandas as pd

        read = re.search(r"points of \d+ series, (\S+ \S+) to (\S+ \S+)", text)
        assert read, text[-2000:]
        assert pd.Timestamp(read[2]) > pd.Timestamp.now(tz="UTC") - pd.Timedelta("10min")  # today's data, live
    finally:
        gateway.stop()


def test_daily_report_defaults_to_the_last_day_stored_and_plots_the_top_k(home: Path, tmp_path: Path) -> None:
    """No start/end: the 24 hours up to the newest stored point; 12 series, top_k=3: the 3 with the most
    anomalies are plotted, the other 9 summarised; reasons as sentences; a styled page."""
    import json

    import pandas as pd

    from nexus_kernel.storage import open_store

    db = f"duckdb://{home / 'nexus.duckdb'}"
    store = open_store(db)
    ts = pd.date_range("2024-05-01 20:00", periods=240, freq="1min", tz="UTC")  # 4 h, ending 23:59, long ago
    names = [f"m{i:02d}" for i in range(12)]
    store.write(pd.DataFrame({"stream": pd.array(["plant"] * 240 * 12, dtype="string"),
                              "series": pd.array([n for n in names for _ in ts], dtype="string"),
                              "ts": list(ts) * 12, "seq": range(240 * 12),
                              "value": [float(i % 30) for i in range(240 * 12)]}))
    reason = json.dumps({"detector": "robust_z", "feature": "value", "statistic": "z", "value": 6.5,
                         "threshold": 4.0, "expected": 12.0})
    flagged = [("m07", 5), ("m03", 3), ("m11", 2), ("m00", 1)]  # anomalies per series: m07, m03, m11 lead
    rows = [{"stream": "plant", "series": k, "ts": ts[10 + 7 * j], "detector": "robust_z", "score": 0.99,
             "is_anomaly": True, "reason": reason, "field": "value"} for k, n in flagged for j in range(n)]
    store.append("anomalies", pd.DataFrame(rows))
    store.close()
    report = tmp_path / "r.html"
    proc = subprocess.run([sys.executable, "-m", "papermill", "-k", "nexus", str(ROOT / "notebooks/daily_report.ipynb"),
                           str(tmp_path / "out.ipynb"), "-p", "stream", "plant", "-p", "store", db, "-p", "top_k", "3",
                           "-p", "output", str(report)], env=_env(home), capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    page = report.read_text()
    assert "2024-04-30 23:59:01 to 2024-05-01 23:59:01 UTC" in page  # the day up to the newest stored point (23:59)
    assert "Simulated data" not in page
    assert "Plotted: the 3 series with the most anomalies of 12 (m07, m03, m11)" in page
    assert "Not plotted (9 series, fewer anomalies)" in page
    not_plotted = page.split("Not plotted")[1].split("<h2>")[0]
    assert all(f">{k}<" not in not_plotted for k in ("m07", "m03", "m11")) and ">m00<" in not_plotted
    assert "robust z flagged it: value z was 6.5, above the threshold 4; expected about 12." in page
    assert "<style>" in page and "font-family" in page and "2880" in page.replace(",", "")  # styled; 12 x 240 points
