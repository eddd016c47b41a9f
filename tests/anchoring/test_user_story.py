"""The user story, as a new user would try it: ``nexus up`` on a fresh home runs the simulator and anchors
through the ledger; ``nexus verify`` (through the running gateway) says an anomaly is verified, step by
step; after ``nexus up`` stops, one value of that anomaly changed in the store makes it name the failing
step; and the exported bundle verifies in another directory, without the home.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

NEXUS = [sys.executable, "-m", "nexus_kernel.cli"]
BOUND = 300.0  # seconds to wait for the simulator's first anchored anomaly (polled, not a timing check)


def _env(home: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEXUS_")}
    if home is not None:
        env.update(NEXUS_HOME=str(home), NEXUS_ANCHOR_INTERVAL="1", NEXUS_SIM_SERIES="10")
    return env


def _nexus(args: list[str], home: Path | None, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*NEXUS, *args], env=_env(home), cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.fixture
def running_up(tmp_path):
    home = tmp_path / "home"
    log = (tmp_path / "up.log").open("w")
    proc = subprocess.Popen([*NEXUS, "up", "--headless", "--no-monitor", "--port", "0"], env=_env(home),
                            cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    yield home, proc
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    log.close()


def _first_verified_anomaly(home: Path, cwd: Path, proc: subprocess.Popen) -> tuple[str, dict]:
    _wait_until_up(home, cwd, proc)
    deadline = time.monotonic() + BOUND
    while time.monotonic() < deadline:
        assert proc.poll() is None, (cwd / "up.log").read_text()[-2000:]
        listed = _nexus(["verify", "--list", "sensors", "--json"], home, cwd)
        if listed.returncode == 0 and json.loads(listed.stdout or "[]"):
            item = json.loads(listed.stdout)[-1]  # the oldest listed: its batch closed first
            done = _nexus(["verify", item["item_id"], "--json"], home, cwd)
            if done.returncode == 0:
                return item["item_id"], json.loads(done.stdout)
        time.sleep(1.0)
    pytest.fail(f"no anchored anomaly within {BOUND} s: {(cwd / 'up.log').read_text()[-2000:]}")


def test_verify_tamper_and_bundle_elsewhere(running_up, tmp_path):
    home, proc = running_up
    item_id, verdict = _first_verified_anomaly(home, tmp_path, proc)  # through nexus up's gateway
    assert verdict["verified"] and [s["step"] for s in verdict["steps"] if s["step"] != "consistency"] == [
        "item", "leaf", "tree head", "inclusion", "signature", "anchor", "ledger entry", "ledger chain"]
    bundle = tmp_path / "proof.json"
    exported = _nexus(["verify", item_id, "--export", str(bundle)], home, tmp_path)
    assert exported.returncode == 0 and "verified" in exported.stdout.splitlines()[-1], exported.stdout
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0

    text = _nexus(["verify", item_id], home, tmp_path)  # the home's own store now, nobody owns it
    assert text.returncode == 0, text.stdout + text.stderr
    assert text.stdout.splitlines()[-1] == f"{item_id}: verified"

    body = json.loads(bundle.read_text())["item"]["body"]
    with duckdb.connect(str(home / "nexus.duckdb")) as con:  # change one value of that anomaly
        changed = con.execute("UPDATE anomalies SET score = score + 1 WHERE stream = ? AND series = ? AND "
                              "detector = ? AND field = ?", [body["stream"], body["series"], body["detector"],
                                                             body["field"]]).fetchone()
    assert changed is not None and changed[0] >= 1
    broken = _nexus(["verify", item_id, "--json"], home, tmp_path)
    assert broken.returncode == 1
    result = json.loads(broken.stdout)
    assert result["failed_step"] == "leaf" and "changed after it was logged" in result["steps"][-1]["detail"]

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    copied = elsewhere / "proof.json"
    copied.write_bytes(bundle.read_bytes())
    outside = _nexus(["verify", "--bundle", "proof.json"], None, elsewhere)
    assert outside.returncode == 0, outside.stdout + outside.stderr
    assert outside.stdout.splitlines()[-1] == f"{item_id}: verified"
    assert list(elsewhere.iterdir()) == [copied]  # no home was made there


@pytest.fixture
def slow_batches_up(tmp_path):
    """nexus up whose anchor batches close only every 30 s: an anomaly flagged now waits for its head."""
    home = tmp_path / "home"
    env = {**_env(home), "NEXUS_ANCHOR_INTERVAL": "30", "NEXUS_ANCHOR_EVERY": "100000000"}
    log = (tmp_path / "up.log").open("w")
    proc = subprocess.Popen([*NEXUS, "up", "--headless", "--no-monitor", "--port", "0"], env=env,
                            cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    yield home, proc, env
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    log.close()


def _wait_until_up(home: Path, cwd: Path, proc: subprocess.Popen) -> None:
    """Until nexus up has advertised its runtime (as a user starts it, then opens a second terminal)."""
    from nexus_kernel.config import load_settings
    from nexus_kernel.runtime._discovery import live_runtime

    deadline = time.monotonic() + 120
    while live_runtime(load_settings(home=home)) is None:
        assert proc.poll() is None and time.monotonic() < deadline, (cwd / "up.log").read_text()[-2000:]
        time.sleep(0.2)


def _pending_anomaly(home: Path, env: dict[str, str], cwd: Path, proc: subprocess.Popen) -> str:
    """The id of a listed anomaly whose batch has not closed yet (asked of the running gateway)."""
    from nexus_kernel.config import load_settings
    from nexus_kernel.runtime._discovery import live_runtime

    _wait_until_up(home, cwd, proc)
    deadline = time.monotonic() + BOUND
    while time.monotonic() < deadline:
        assert proc.poll() is None, (cwd / "up.log").read_text()[-2000:]
        listed = subprocess.run([*NEXUS, "verify", "--list", "sensors", "--json"], env=env, cwd=cwd,
                                capture_output=True, text=True, timeout=120)
        live = live_runtime(load_settings(home=home))
        if listed.returncode == 0 and live is not None:
            client = live.client()
            try:
                for row in json.loads(listed.stdout or "[]"):  # newest first: the likeliest to be pending
                    answer = client.verify(row["item_id"])
                    if answer["failed_step"] == "tree head" and "has not closed" in answer["steps"][-1]["detail"]:
                        return str(row["item_id"])
            finally:
                client.close()
        time.sleep(0.5)
    pytest.fail(f"no pending anomaly within {BOUND} s: {(cwd / 'up.log').read_text()[-2000:]}")


def test_verify_waits_for_the_batch_of_an_item_flagged_a_moment_ago(slow_batches_up, tmp_path):
    """An anomaly listed before its batch closed: `nexus verify` says it waits, then says verified.

    Batches close every 30 s; the batch of an item found pending may still close in the second before the
    command asks (then it verifies at once, without waiting): the next pending item is tried, three at most.
    """
    home, proc, env = slow_batches_up
    outputs = []
    for _ in range(3):
        pending = _pending_anomaly(home, env, tmp_path, proc)
        done = subprocess.run([*NEXUS, "verify", pending, "--json"], env=env, cwd=tmp_path, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        assert json.loads(done.stdout)["verified"]
        outputs.append(done.stderr)
        if "waiting up to" in done.stderr:
            assert "for its batch to close" in done.stderr
            return
    pytest.fail(f"nexus verify never had to wait: {outputs}")
