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
    assert "Daily report: pumps" in page and "2024-03-01 00:00:00+00:00 to 2024-03-01 12:00:00+00:00" in page
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
    bad = subprocess.run(args + [str(tmp_path / "bad.ipynb"), "-p", "start", "2023-01-01", "-p", "simulate_if_empty",
                                 "False", *common], env=_env(home), capture_output=True, text=True, timeout=180)
    assert bad.returncode != 0
    assert "no stored points" in bad.stderr + (tmp_path / "bad.ipynb").read_text()
