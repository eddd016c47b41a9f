"""A real ``nexus up --headless`` per backend, shared by the tests of a module, and how to call its home.

One subprocess per backend (DuckDB file, PostgreSQL) serves the gateway on a free port and advertises it
in ``home/runtime.json``; the tests run other processes of that home (``nexus`` commands, a Python, an
IPython shell) and this test process itself as its clients.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

NEXUS = str(Path(sys.executable).with_name("nexus"))
PYTHON = sys.executable
READY = "nexus up: home"
NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


@dataclass
class Home:
    """A Nexus home and the environment its processes share (``NEXUS_HOME``, ``NEXUS_STORE``...)."""

    path: Path
    store: str
    cwd: Path
    proc: subprocess.Popen | None = None
    gateway: str | None = None

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "NEXUS_HOME": str(self.path), "NEXUS_STORE": self.store, "NEXUS_PORT": "0",
                "NEXUS_MONITOR_PORT": "0", "NEXUS_SIM_RATE": "100", "NEXUS_SIM_SERIES": "2"}

    def settings(self):
        from nexus_kernel.config import load_settings

        return load_settings(home=self.path, store=self.store)

    def nexus(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([NEXUS, *args], capture_output=True, text=True, timeout=timeout, env=self.env,
                              cwd=self.cwd)

    def python(self, code: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, timeout=timeout, env=self.env,
                              cwd=self.cwd)


def _backend_store(request: pytest.FixtureRequest, backend: str) -> str:
    return "duckdb" if backend == "duckdb" else request.getfixturevalue("pg_dsn")


def _start(home: Home) -> None:
    home.proc = subprocess.Popen([NEXUS, "up", "--headless", "--no-monitor"], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, env=home.env, cwd=home.cwd)
    seen: list[str] = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        line = home.proc.stdout.readline()
        if not line:
            home.proc.wait(10)
            pytest.fail(f"nexus up exited ({home.proc.returncode}) before it was ready: {home.proc.stderr.read()}")
        seen.append(line)
        if line.startswith(READY):
            break
    else:
        pytest.fail(f"nexus up not ready after 90 s: {''.join(seen)}")
    advertised = json.loads((home.path / "runtime.json").read_text())
    assert advertised["pid"] == home.proc.pid, advertised
    home.gateway = advertised["gateway"]
    # the terminal view's lines would fill the pipe: read them away while the tests run
    import threading

    threading.Thread(target=lambda: [None for _ in home.proc.stdout], daemon=True).start()


def _stop(home: Home) -> None:
    proc = home.proc
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def wait_for_points(home: Home, timeout: float = 30) -> None:
    """Until the live stream has stored points (read through the runtime, as any client would)."""
    from nexus_kernel.client import home_store

    store = home_store(home.settings())
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(store.query("sensors", last="10min")):
                return
            time.sleep(0.3)
    finally:
        store.close()
    pytest.fail("the live stream stored no points")


@pytest.fixture(scope="module", params=["duckdb", "postgresql"])
def live(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """A running ``nexus up --headless`` (gateway, no monitor) on a fresh home, per backend."""
    backend = request.param
    root = tmp_path_factory.mktemp(f"live-{backend}")
    home = Home(root / "home", _backend_store(request, backend), root)
    _start(home)
    try:
        wait_for_points(home)
        yield home
    finally:
        _stop(home)


@pytest.fixture(params=["duckdb", "postgresql"])
def idle(request: pytest.FixtureRequest, tmp_path: Path) -> Home:
    """A home no process owns (no ``nexus up``), per backend."""
    return Home(tmp_path / "home", _backend_store(request, request.param), tmp_path)
