"""The `nexus` command: one-line errors with non-zero exits, streams commands, replay, and `nexus up`."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pandas as pd

NEXUS = [sys.executable, "-m", "nexus_kernel.cli"]


def nexus(*args: str, home: Path, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "NEXUS_HOME": str(home), "NEXUS_PORT": "0", "NEXUS_MONITOR_PORT": "0", **(env or {})}
    return subprocess.run([*NEXUS, *args], capture_output=True, text=True, timeout=timeout, env=full_env)


def test_version(tmp_path):
    out = nexus("--version", home=tmp_path)
    assert out.returncode == 0 and re.match(r"nexus, version \d+\.\d+\.\d+", out.stdout)


def test_errors_are_one_line_with_nonzero_exit_and_traceback_only_with_debug(tmp_path):
    out = nexus("streams", "start", "nope", home=tmp_path)
    assert out.returncode == 1
    assert out.stderr.strip() == "error: no stream named 'nope'"
    debug = nexus("--debug", "streams", "start", "nope", home=tmp_path)
    assert debug.returncode == 1 and "Traceback" in debug.stderr


def test_a_wrong_setting_fails_at_start_naming_it(tmp_path):
    out = nexus("streams", "list", home=tmp_path, env={"NEXUS_BATCH_SIZE": "many"})
    assert out.returncode != 0
    assert "batch_size" in out.stderr and "NEXUS_BATCH_SIZE" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_usage_errors_exit_2(tmp_path):
    out = nexus("streams", "create", home=tmp_path)
    assert out.returncode == 2 and "Missing argument" in out.stderr


def test_streams_commands_walk_the_lifecycle(tmp_path):
    assert nexus("streams", "create", "plant", "-p", "series=3", "-p", "rate=100", home=tmp_path).returncode == 0
    listing = nexus("streams", "list", home=tmp_path)
    assert re.search(r"plant\s+created\s+simulator", listing.stdout)
    out = nexus("streams", "start", "plant", home=tmp_path)
    assert "plant' → running (takes effect when `nexus up` runs)" in out.stdout
    bad = nexus("streams", "start", "plant", home=tmp_path)
    assert bad.returncode == 1 and "it is running (allowed now: pause, stop)" in bad.stderr
    assert nexus("streams", "pause", "plant", home=tmp_path).returncode == 0
    assert nexus("streams", "resume", "plant", home=tmp_path).returncode == 0
    assert nexus("streams", "stop", "plant", home=tmp_path).returncode == 0
    status = nexus("streams", "status", "plant", home=tmp_path)
    assert '"state": "stopped"' in status.stdout
    assert nexus("streams", "delete", "plant", home=tmp_path).returncode == 0
    assert "no streams" in nexus("streams", "list", home=tmp_path).stdout
    bad_param = nexus("streams", "create", "x", "-p", "oops", home=tmp_path)
    assert bad_param.returncode == 2 and "KEY=VALUE" in bad_param.stderr


def test_replay_reports_valid_and_dead_records(tmp_path):
    path = tmp_path / "pumps.csv"
    pd.DataFrame({"timestamp": pd.date_range("2024-01-01", periods=100, freq="1s").astype(str).tolist()
                  + ["garbage"], "value": list(range(100)) + [1]}).to_csv(path, index=False)
    out = nexus("replay", str(path), "--no-progress", home=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "replayed 101 records from pumps.csv into stream 'pumps': 100 valid, 1 dead letters" in out.stdout
    missing = nexus("replay", str(tmp_path / "none.csv"), home=tmp_path)
    assert missing.returncode == 2 and "does not exist" in missing.stderr


def test_nexus_up_runs_headless_shows_live_figures_and_stops_cleanly_on_sigint(tmp_path):
    env = {**os.environ, "NEXUS_HOME": str(tmp_path / "home"), "NEXUS_SIM_RATE": "400", "NEXUS_SIM_SERIES": "8",
           "NEXUS_PORT": "0", "NEXUS_MONITOR_PORT": "0"}
    proc = subprocess.Popen([*NEXUS, "up", "--headless"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len([ln for ln in lines if "stream=sensors" in ln]) < 4:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
        # the registry file shows the stream running while `up` runs; the CLI talks to it
        status = nexus("streams", "list", home=tmp_path / "home")
        assert re.search(r"sensors\s+running\s+simulator", status.stdout)
        # the printed URL and admin token reach the gateway; a wrong token gets a clear 401
        text = "".join(lines)
        url = re.search(r"gateway: (http://\S+)", text).group(1)
        token = re.search(r"admin token: (\S+)", text).group(1)
        listed = httpx.get(f"{url}/api/streams", headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert listed.status_code == 200 and listed.json()["streams"][0]["name"] == "sensors"
        refused = httpx.get(f"{url}/api/streams", headers={"Authorization": "Bearer nope"}, timeout=10)
        assert refused.status_code == 401 and refused.json()["error"] == "unauthorized"
        # the other processes of the home find the gateway in runtime.json (withdrawn on the clean stop)
        advertised = json.loads((tmp_path / "home" / "runtime.json").read_text())
        assert advertised["gateway"] == url and advertised["pid"] == proc.pid
        monitor = re.search(r"monitor: (http://\S+)", text).group(1)
        page = httpx.get(monitor, timeout=20, follow_redirects=True)  # its login token → a session cookie
        assert page.status_code == 200 and "bokeh" in page.text.lower()
    finally:
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=20)
    lines += rest.splitlines()
    assert proc.returncode == 0, err
    ticks = [ln for ln in lines if "stream=sensors" in ln]
    assert len(ticks) >= 4
    counts = [int(re.search(r" records_in=(\d+)", ln).group(1)) for ln in ticks]  # named as the API names it
    assert counts[-1] > counts[0] > 0, "the live view must show records flowing"
    assert re.search(r"s0000=-?\d+\.\d+", ticks[-1]), "per-series last values are shown"
    assert "dead_letters=" in ticks[-1] and "anomalies_injected=" in ticks[-1]
    assert any("stopped cleanly" in ln for ln in lines)
    assert not (tmp_path / "home" / "up.pid").exists()
    assert not (tmp_path / "home" / "runtime.json").exists()


def test_a_second_up_on_the_same_home_is_refused(tmp_path):
    from nexus_kernel._home_lock import HomeLock

    home = tmp_path / "home"
    with HomeLock(home):  # a live process owns the home
        out = nexus("up", "--headless", "--duration", "1", home=home)
    assert out.returncode == 1 and "nexus up is already running" in out.stderr


def test_history_survives_a_restart_and_nexus_query_prints_it(tmp_path):
    home = tmp_path / "home"
    env = {"NEXUS_SIM_RATE": "400", "NEXUS_SIM_SERIES": "4"}
    first = nexus("up", "--headless", "--duration", "4", home=home, env=env)
    assert first.returncode == 0, first.stderr
    after_first = nexus("query", "sensors", "--last", "1h", "--limit", "0", "--format", "csv", home=home)
    assert after_first.returncode == 0, after_first.stderr
    rows_first = len(after_first.stdout.strip().splitlines()) - 1
    assert rows_first > 100
    second = nexus("up", "--headless", "--duration", "3", home=home, env=env)
    assert second.returncode == 0 and "streams running: sensors" in second.stdout
    after_second = nexus("query", "sensors", "--last", "1h", "--limit", "0", "--format", "csv", home=home)
    assert len(after_second.stdout.strip().splitlines()) - 1 > rows_first  # the old rows plus new ones
    resampled = nexus("query", "sensors", "--last", "1h", "--every", "1min", home=home)
    assert resampled.returncode == 0 and "s0000" in resampled.stdout


def test_the_same_commands_work_against_postgresql(tmp_path, pg_dsn):
    from nexus_kernel.storage import open_store

    home = tmp_path / "home"
    env = {"NEXUS_SIM_RATE": "400", "NEXUS_SIM_SERIES": "4", "NEXUS_STORE": pg_dsn}
    try:
        ran = nexus("up", "--headless", "--no-monitor", "--duration", "4", home=home, env=env)
        assert ran.returncode == 0, ran.stderr
        shown = nexus("query", "sensors", "--last", "1h", "--every", "1min", "--format", "csv", home=home, env=env)
        assert shown.returncode == 0, shown.stderr
        assert "s0003" in shown.stdout and len(shown.stdout.splitlines()) >= 5
    finally:
        store = open_store(pg_dsn, resilient=False)
        store.drop_schema()
        store.close()
