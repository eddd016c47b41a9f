"""DuckDB file ownership, persistence across restarts, and the CLI against a file store."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
from click.testing import CliRunner

from nexus_kernel.storage import DuckDBStore, StoreLockedError, open_store
from nexus_kernel.storage._cli import storage_commands
from .storage_helpers import make_batch


def test_second_process_gets_a_clear_one_line_error(tmp_path):
    path = tmp_path / "nexus.duckdb"
    store = DuckDBStore(path)
    try:
        code = ("import sys\nfrom nexus_kernel.storage import DuckDBStore, StoreLockedError\n"
                f"try:\n    DuckDBStore({str(path)!r})\nexcept StoreLockedError as e:\n    print(e); sys.exit(3)\n")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        assert out.returncode == 3, out.stderr
        message = out.stdout.strip()
        assert "\n" not in message
        assert "owned by process" in message and "gateway" in message and str(path) in message
    finally:
        store.close()
    assert issubclass(StoreLockedError, Exception)


def test_history_survives_a_restart_and_cli_prints_it(tmp_path, monkeypatch):
    monkeypatch.setenv("NEXUS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("NEXUS_STORE", raising=False)
    now = pd.Timestamp.now(tz="UTC").floor("s")
    batch = make_batch(stream="sensors", n=30, n_series=2, step="1min", start=str(now - pd.Timedelta("29min")))
    from nexus_kernel.config import load_settings

    store = open_store(load_settings())
    assert isinstance(store, DuckDBStore) and store.path.endswith("nexus.duckdb")
    store.write(batch)
    store.close()
    again = open_store(load_settings())  # "stop it, start it again"
    assert len(again.query("sensors")) == 60
    again.close()
    commands = {c.name: c for c in storage_commands}
    runner = CliRunner()
    out = runner.invoke(commands["query"], ["sensors", "--last", "1h", "--format", "json", "--limit", "0"])
    assert out.exit_code == 0, out.output
    assert len(json.loads(out.output)) == 60
    out = runner.invoke(commands["query"], ["sensors", "--last", "1h", "--every", "10min", "--agg", "count"])
    assert out.exit_code == 0 and "sensors" in out.output
    out = runner.invoke(commands["query"], ["sensors", "--every", "nonsense"])
    assert out.exit_code != 0 and "not a duration" in out.output
    out = runner.invoke(commands["query"], ["sensor"])  # misspelt: an error naming the streams, not "no points"
    assert out.exit_code == 1 and "no stream named 'sensor' (streams: sensors)" in out.output
    out = runner.invoke(commands["query"], ["sensors", "--start", "2030-01-01"])
    assert out.exit_code == 0 and "no points for 'sensors' in that range" in out.output
    import nexus_kernel as nk

    with pytest.raises(LookupError, match="no stream named 'nosuch' \\(streams: sensors\\)"):
        nk.query("nosuch")
    assert nk.query("sensors", start="2030-01-01").empty
    folder = tmp_path / "bk"
    out = runner.invoke(commands["backup"], [str(folder)])
    assert out.exit_code == 0 and json.loads(out.output)["points"] == 60
    target = f"duckdb://{tmp_path / 'other.duckdb'}"
    out = runner.invoke(commands["restore"], [str(folder), "--store", target])
    assert out.exit_code == 0 and json.loads(out.output)["points"] == 60
