"""Records POSTed to a stream enter that stream's pipeline: validated, stored, analysed and published there.

Against a real runtime (pipelines on its ``nexus-pipelines`` thread) and a real gateway on a loop of its
own, as ``nexus up`` runs them: the issue's user test (a burst with a spike POSTed to the default
simulator stream shows up as an anomaly on the bus and in the store), dead letters that keep their reason,
and what a stream that does not run answers.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from nexus_kernel.gateway import mint_token
from nexus_kernel.runtime import Runtime, topic

from .conftest import Running, serve


def _started(settings: Any) -> Runtime:
    runtime = Runtime.open(settings)
    assert runtime.start() == ["sensors"]
    return runtime


@pytest.fixture
def live(tmp_path) -> Iterator[Running]:
    """``nexus up`` in miniature: a started runtime (the default simulator stream) and a gateway over it."""
    yield from serve(tmp_path, runtime=_started, jwt_secret=uuid.uuid4().hex, sim_series=4, sim_rate=40)


def _post(gw: Running, stream: str, records: list[dict], timeout: float = 60) -> httpx.Response:
    return httpx.post(f"{gw.url}/api/streams/{stream}/records", json=records, timeout=timeout,
                      headers={"Authorization": f"Bearer {mint_token(gw.settings, 'tester', 'analyst')}"})


def _burst(series: str, n: int = 600, spike_at: int = 500) -> list[dict]:
    """``n`` calm readings of one series, 50 ms apart and ending now, with one obvious spike (late enough
    for the ensemble detector, which scores after its warm-up of a few hundred points)."""
    end = pd.Timestamp.now(tz="UTC")
    times = pd.date_range(end=end, periods=n, freq="50ms")
    rng = np.random.default_rng(7)
    values = 20.0 + rng.normal(0, 0.1, n)
    values[spike_at] = 500.0
    return [{"series": series, "ts": t.isoformat(), "seq": 10_000 + i, "value": float(v)}
            for i, (t, v) in enumerate(zip(times, values))]


def test_a_posted_spike_to_the_running_simulator_stream_is_an_anomaly_on_the_bus_and_in_the_store(live):
    pipe = live.services.manager.pipelines["sensors"]
    assert pipe.source.kind == "simulator" and pipe.state == "running"
    burst = _burst("posted")
    seen: list[pd.DataFrame] = []

    async def watch(ready: asyncio.Event) -> None:
        async with live.services.bus.subscribe(topic("sensors", "anomalies"), maxsize=1000) as sub:
            ready.set()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    message = await sub.get(timeout=1)
                except TimeoutError:
                    continue
                frame = message.frame
                mine = frame[(frame["series"].astype(str) == "posted") & frame["is_anomaly"]]
                if len(mine):
                    seen.append(mine)
                    return

    async def watched() -> None:
        ready = asyncio.Event()
        task = asyncio.get_running_loop().create_task(watch(ready))
        await ready.wait()
        answer = await asyncio.to_thread(_post, live, "sensors", burst)
        assert answer.status_code == 200, answer.text
        assert answer.json() | {"errors": []} == {"accepted": 600, "rejected": 0, "written": 600, "errors": []}
        await task

    live.call(watched(), timeout=60)
    assert seen, "no anomaly of the posted series on stream:sensors:anomalies"
    spike_ts = pd.Timestamp(burst[500]["ts"])
    assert spike_ts in set(pd.to_datetime(seen[0]["ts"], utc=True))
    stored = live.services.store.read("anomalies", stream="sensors", limit=100_000)
    flagged = stored[(stored["series"].astype(str) == "posted") & stored["is_anomaly"].astype(bool)]
    assert spike_ts in set(pd.to_datetime(flagged["ts"], utc=True))
    points = live.services.store.query("sensors", series="posted")
    assert len(points) == 600 and points["value"].max() == 500.0
    assert pipe.records_in >= 600  # counted by the pipeline, beside its simulator's records


def test_a_dead_letter_of_a_posted_record_keeps_its_reason_and_payload(live):
    now = pd.Timestamp.now(tz="UTC").isoformat()
    records = [{"series": "d", "ts": now, "value": 1.0}, {"series": "d", "ts": "not a time", "value": 2.0},
               {"series": "d", "ts": now, "value": "many"}]
    r = _post(live, "sensors", records)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert (answer["accepted"], answer["rejected"]) == (1, 2)
    assert [(e["index"], e["error"]) for e in answer["errors"]] == [(1, "bad_time"), (2, "non_numeric")]
    dead = live.services.store.read("dead_letters", stream="sensors", limit=100_000)
    mine = dead[dead["payload"].str.contains('"d"')]
    assert sorted(mine["reason"].tolist()) == ["bad_time", "non_numeric"]
    payloads = [json.loads(p) for p in mine.sort_values("reason")["payload"]]
    assert payloads[0]["ts"] == "not a time" and payloads[1]["value"] == "many"
    reasons = live.services.manager.pipelines["sensors"].status()["dead_letter_reasons"]
    assert reasons.get("bad_time", 0) >= 1 and reasons.get("non_numeric", 0) >= 1


def test_a_new_name_becomes_a_managed_ingest_stream_and_a_stopped_one_answers_409(live):
    now = pd.Timestamp.now(tz="UTC").isoformat()
    r = _post(live, "pumps", [{"series": "a", "ts": now, "value": 1.0}])
    assert r.status_code == 200 and r.json()["written"] == 1, r.text
    admin = {"Authorization": f"Bearer {live.token('admin')}"}
    info = httpx.get(f"{live.url}/api/streams/pumps", headers=admin).json()
    assert (info["source"], info["state"]) == ("ingest", "running")
    spec = live.services.manager.streams()["pumps"]["spec"]
    assert [s["kind"] for s in spec["steps"]][:2] == ["validate", "store"] and "analyze" in str(spec["steps"])

    assert httpx.post(f"{live.url}/api/streams/pumps/stop", headers=admin).status_code == 200
    refused = _post(live, "pumps", [{"series": "a", "ts": now, "value": 2.0}])
    assert refused.status_code == 409 and "stopped" in refused.json()["detail"], refused.text
    assert "/api/streams/pumps/start" in refused.json()["detail"]
    assert len(live.services.store.query("pumps")) == 1  # the refused record is nowhere

    assert httpx.post(f"{live.url}/api/streams/pumps/start", headers=admin).status_code == 200
    again = _post(live, "pumps", [{"series": "a", "ts": now, "value": 2.0, "seq": 5}])
    assert again.status_code == 200 and again.json()["accepted"] == 1, again.text


def test_the_ingest_summary_in_the_openapi_document_says_what_a_missing_or_stopped_stream_does(live):
    doc = httpx.get(f"{live.url}/openapi.json").json()
    summary = doc["paths"]["/api/streams/{name}/records"]["post"]["summary"]
    assert "becomes one" in summary and "409" in summary
