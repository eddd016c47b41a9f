"""The Jupyter integration for real: the enabled server extension in a `jupyter server` process, the
IPython magics in an InteractiveShell, and the SDK's streamz source fed by a live gateway."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pandas as pd
import pytest

from nexus_kernel.client import connect
from nexus_kernel.storage import DuckDBStore

BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_server_extension_is_listed_enabled():
    done = subprocess.run([str(BIN / "jupyter"), "server", "extension", "list"], capture_output=True, text=True, check=False,
                          timeout=120, env={**os.environ, "NO_COLOR": "1"})
    text = re.sub(r"\x1b\[[0-9;]*m", "", done.stdout + done.stderr)
    assert re.search(r"nexus_kernel\s+enabled", text), text
    assert re.search(r"nexus_kernel\s+\S+\s+OK", text), text


@pytest.fixture
def jupyter(tmp_path):
    """A real `jupyter server` on a free loopback port with a token; stopped by its PID."""
    port, token = _free_port(), "jt-" + uuid.uuid4().hex
    root = tmp_path / "root"
    root.mkdir()
    env = {**os.environ, "NEXUS_HOME": str(tmp_path / "home"), "NEXUS_STORE": "memory",
           "NEXUS_JWT_SECRET": uuid.uuid4().hex, "JUPYTER_CONFIG_DIR": str(tmp_path / "jcfg"),
           "JUPYTER_RUNTIME_DIR": str(tmp_path / "jrt")}
    env.pop("NEXUS_REDIS_URL", None)
    log = open(tmp_path / "jupyter.log", "w")
    proc = subprocess.Popen([str(BIN / "jupyter"), "server", "--no-browser", "--allow-root",
                             "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
                             f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}"],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"{url}/api/status", headers={"Authorization": f"token {token}"}).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("jupyter server did not start:\n" + (tmp_path / "jupyter.log").read_text())
            time.sleep(0.3)
        yield url, token
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()


def test_jupyter_server_mounts_the_gateway_behind_its_auth(jupyter):
    url, token = jupyter
    auth = {"Authorization": f"token {token}"}
    listed = httpx.get(f"{url}/nexus/api/streams", headers=auth)
    assert listed.status_code == 200, listed.text
    assert listed.json() == {"streams": []}
    refused = httpx.get(f"{url}/nexus/api/streams")
    assert refused.status_code == 401 and refused.json()["error"]
    wrong = httpx.get(f"{url}/nexus/api/streams", headers={"Authorization": "token nope"})
    assert wrong.status_code == 401
    lines = "\n".join(json.dumps({"series": "a", "ts": f"2024-01-01T00:00:0{i}Z", "value": float(i)}) for i in range(5))
    ingested = httpx.post(f"{url}/nexus/api/streams/pumps/records", content=lines,
                          headers={**auth, "Content-Type": "application/x-ndjson"})
    assert ingested.status_code == 200, ingested.text
    assert ingested.json()["accepted"] == 5 and ingested.json()["written"] == 5
    query = httpx.get(f"{url}/nexus/api/streams/pumps/query", headers=auth)
    assert query.status_code == 200, query.text
    streams = httpx.get(f"{url}/nexus/api/streams", headers=auth).json()["streams"]
    assert [s["name"] for s in streams] == ["pumps"]


@pytest.fixture
def shell(tmp_path, monkeypatch):
    from IPython.core.interactiveshell import InteractiveShell

    from nexus_kernel import _magics

    monkeypatch.setenv("NEXUS_HOME", str(tmp_path / "home"))
    _magics._state.clear()
    ip = InteractiveShell.instance()
    yield ip
    store = _magics._state.pop("store", None)
    if store is not None:
        store.close()
    _magics._state.clear()
    InteractiveShell.clear_instance()


def test_magics_in_a_real_ipython_shell(shell, tmp_path):
    path = tmp_path / "nb.duckdb"
    store = DuckDBStore(path)
    store.write(pd.DataFrame({"stream": ["pumps"] * 3, "series": ["a", "a", "b"],
                              "ts": pd.to_datetime(["2024-01-01T00:00:00Z"] * 3), "seq": [1, 2, 3],
                              "value": [1.0, 2.0, 4.0]}))
    store.close()
    loaded = shell.run_cell("%load_ext nexus_kernel")
    assert loaded.success, loaded.error_in_exec
    status = shell.run_cell("%nexus status")
    assert status.success and isinstance(status.result, pd.DataFrame)
    result = shell.run_cell(f"%%nexus_sql duckdb:///{path}\nSELECT series, sum(value) AS total FROM points "
                            "GROUP BY series ORDER BY series")
    assert result.success, result.error_in_exec
    frame = result.result
    assert isinstance(frame, pd.DataFrame)
    assert frame.to_dict("list") == {"series": ["a", "b"], "total": [3.0, 4.0]}


def test_nexus_status_through_a_gateway_hides_the_token(shell, gw):
    token = gw.token("viewer")
    assert shell.run_cell("%load_ext nexus_kernel").success
    connected = shell.run_cell(f"%nexus connect {gw.url} {token}")
    assert connected.success and token not in str(connected.result)
    gw.services.store.write(pd.DataFrame({"stream": ["pumps"], "series": ["a"],
                                          "ts": pd.to_datetime(["2024-01-01T00:00:00Z"]), "seq": [1], "value": [1.0]}))
    status = shell.run_cell("%nexus status")
    assert status.success, status.error_in_exec
    assert "pumps" in status.result["name"].tolist()
    assert token not in repr(status.result)


def test_sdk_streamz_source_delivers_frames(gw):
    client = connect(gw.url, token=gw.token("analyst"))
    source = client.subscribe("pumps", snapshot=False)
    got = source.sink_to_list()
    try:
        # the source connects on its own loop; ingest until a frame arrives (the first may predate it)
        deadline = time.monotonic() + 30
        i = 0
        while not got and time.monotonic() < deadline:
            client.ingest("pumps", [{"series": "a", "ts": f"2024-01-01T00:00:{i % 60:02d}Z", "seq": i,
                                     "value": float(i)}])
            i += 1
            time.sleep(0.2)
        assert got, "no frame from the live source"
        frame = got[0]
        assert isinstance(frame, pd.DataFrame)
        assert list(frame["series"].astype(str)) == ["a"] and str(frame["ts"].dtype) == "datetime64[ns, UTC]"
    finally:
        source.stop()
        client.close()
