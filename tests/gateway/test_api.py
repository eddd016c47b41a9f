"""Endpoints end to end over HTTP against a real gateway (memory store, in-process bus)."""

from __future__ import annotations

import gzip
import json

import httpx
import pandas as pd
import pytest

from nexus_kernel.client import NexusError, connect


def _records(n: int, series: str = "a", start: str = "2024-01-01") -> list[dict]:
    ts = pd.date_range(start, periods=n, freq="s", tz="UTC")
    return [{"series": series, "ts": t.isoformat(), "seq": i, "value": float(i)} for i, t in enumerate(ts)]


def test_ingest_ndjson_reports_bad_records_by_index_and_keeps_the_good(gw):
    lines = [json.dumps(r) for r in _records(3)]
    lines.insert(1, "{not json")
    lines.append(json.dumps({"series": "a", "ts": "never", "value": 1}))
    lines.append(json.dumps({"series": "a", "ts": "2024-01-02T00:00:00Z", "value": "high"}))
    lines.append("[1, 2]")
    r = httpx.post(f"{gw.url}/api/streams/pumps/records", content="\n".join(lines),
                   headers={"Authorization": f"Bearer {gw.token('analyst')}", "Content-Type": "application/x-ndjson"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["accepted"] == 3 and body["written"] == 3
    assert [(e["index"], e["error"]) for e in body["errors"]] == [
        (1, "bad_json"), (4, "bad_time"), (5, "non_numeric"), (6, "not_an_object")]
    stored = gw.services.store.query("pumps")
    assert stored["value"].tolist() == [0.0, 1.0, 2.0]
    dead = gw.services.store.read("dead_letters", stream="pumps")
    assert len(dead) == 4 and {"bad_time", "non_numeric"} <= set(dead["reason"])


def test_ingest_json_array_gzip_and_idempotent_repeat(gw):
    client = connect(gw.url, token=gw.token("analyst"))
    body = gzip.compress(json.dumps(_records(50)).encode())
    headers = {"Authorization": f"Bearer {gw.token('analyst')}", "Content-Encoding": "gzip",
               "Content-Type": "application/json"}
    first = httpx.post(f"{gw.url}/api/streams/pumps/records", content=body, headers=headers).json()
    again = httpx.post(f"{gw.url}/api/streams/pumps/records", content=body, headers=headers).json()
    assert (first["accepted"], first["written"]) == (50, 50)
    assert (again["accepted"], again["written"]) == (50, 0)  # keyed writes: a resend stores nothing twice
    frame = client.query("pumps", every="10s", agg=["mean", "count"])
    assert frame["value_count"].sum() == 50
    assert str(frame["ts"].dtype) == "datetime64[ns, UTC]"


def test_record_naming_another_stream_is_refused(gw):
    rows = _records(2)
    rows[1]["stream"] = "elsewhere"
    result = connect(gw.url, token=gw.token("analyst")).ingest("pumps", rows)
    assert result["accepted"] == 1 and result["errors"][0]["error"] == "stream_mismatch"
    assert "elsewhere" not in gw.services.store.streams()


def test_body_size_checked_before_reading(serve_with):
    with serve_with(max_body_bytes=2000) as g:
        headers = {"Authorization": f"Bearer {g.token('analyst')}"}
        big = json.dumps(_records(100)).encode()
        r = httpx.post(f"{g.url}/api/streams/pumps/records", content=big, headers=headers)
        assert r.status_code == 413 and r.json() == {"error": "too_large", "detail": r.json()["detail"], "field": "body"}

        def chunks():  # no Content-Length: counted while streaming
            for i in range(0, len(big), 500):
                yield big[i:i + 500]

        r = httpx.post(f"{g.url}/api/streams/pumps/records", content=chunks(), headers=headers)
        assert r.status_code == 413
        bomb = gzip.compress(b" " * 1_000_000)  # ~1 kB compressed, 1 MB inflated
        assert len(bomb) < 2000
        r = httpx.post(f"{g.url}/api/streams/pumps/records", content=bomb,
                       headers={**headers, "Content-Encoding": "gzip"})
        assert r.status_code == 413 and "decompressed" in r.json()["detail"]
        assert g.services.store.streams() == []


def test_stream_lifecycle_and_conflicts(gw):
    c = connect(gw.url, token=gw.token("admin"))
    info = c.create_stream("sim", {"kind": "simulator", "params": {"series": 2, "rate": 50, "limit": 100}})
    assert info["state"] == "created"
    with pytest.raises(NexusError) as exc:
        c.create_stream("sim", {"kind": "simulator"})
    assert exc.value.status == 409
    with pytest.raises(NexusError) as exc:
        c.create_stream("bad", {"kind": "no_such_source"})
    assert exc.value.status == 422 and exc.value.field == "source"
    assert c.start("sim")["state"] == "running"
    assert c.pause("sim")["state"] == "paused"
    with pytest.raises(NexusError) as exc:
        c.delete_stream("sim")
    assert exc.value.status == 409 and "stop" in exc.value.detail
    assert c.resume("sim")["state"] == "running"
    assert c.stop("sim")["state"] == "stopped"
    assert c.update_stream("sim", batch={"size": 10})["state"] == "created"
    assert c.status("sim")["name"] == "sim"
    assert "sim" in c.streams()["name"].tolist()
    assert c.delete_stream("sim")["deleted"] is True
    with pytest.raises(NexusError) as exc:
        c.stream("sim")
    assert exc.value.status == 404


@pytest.mark.parametrize("path", ["/api/streams/1bad/query", "/api/streams/a%20b/status", "/api/streams/x*/latest"])
def test_unsafe_names_refused(gw, path):
    r = httpx.get(gw.url + path, headers={"Authorization": f"Bearer {gw.token()}"})
    assert r.status_code == 422 and r.json()["field"] == "name"


def test_validation_errors_are_json_with_field(gw):
    h = {"Authorization": f"Bearer {gw.token()}"}
    r = httpx.get(f"{gw.url}/api/streams/pumps/query", params={"every": "soon"}, headers=h)
    assert r.status_code == 422 and r.json()["field"] == "every"
    r = httpx.get(f"{gw.url}/api/streams/pumps/query", params={"bogus": "1"}, headers=h)
    assert r.status_code == 422 and r.json()["field"] == "bogus"
    r = httpx.post(f"{gw.url}/api/streams", content=b"{", headers=h)
    assert r.status_code == 400 and r.json()["error"] == "invalid"
    r = httpx.post(f"{gw.url}/api/streams", json={"name": "ok", "source": {"kind": "simulator"}, "x": 1}, headers=h)
    assert r.status_code == 422 and r.json()["field"] == "x"
    r = httpx.get(f"{gw.url}/no/such/thing", headers=h)
    assert r.status_code == 404 and r.json()["error"] == "not_found"


def test_tables_and_formats(gw):
    c = connect(gw.url, token=gw.token("analyst"))
    c.ingest("pumps", _records(30) + [{"series": "a", "ts": "bad", "value": 1}])
    assert len(c.dead_letters("pumps")) == 1
    assert c.anomalies("pumps").empty and c.forecasts("pumps").empty
    assert len(c.query("pumps", format="csv")) == 30
    arrow = c.query("pumps", format="arrow")
    assert len(arrow) == 30 and "value" in arrow.columns
    assert len(c.query("pumps", limit=5)) == 5
    assert c.latest("pumps")["value"].tolist() == [29.0]
    result = c.detect("pumps", detector="robust_z", last="100000d")
    assert result["rows"] == 30
    assert c.models().empty


def test_health_ready_metrics(gw):
    assert httpx.get(gw.url + "/healthz").json()["status"] == "ok"
    assert httpx.get(gw.url + "/readyz").json()["checks"]["store"] == "ok"
    httpx.get(gw.url + "/api/streams")  # a refusal, counted
    text = httpx.get(gw.url + "/metrics").text
    assert 'nexus_gateway_requests_total{method="GET",route="/api/streams",status="401"}' in text


def test_query_of_an_unknown_stream_is_a_404_naming_the_streams(gw):
    """A misspelt stream is an error that lists the streams; a known one with nothing in range is empty."""
    client = connect(gw.url, token=gw.token("analyst"))
    client.ingest("pumps", _records(3))
    r = httpx.get(f"{gw.url}/api/streams/pumsp/query", headers={"Authorization": f"Bearer {gw.token('viewer')}"})
    assert r.status_code == 404, r.text
    assert r.json()["detail"] == "no stream named 'pumsp' (streams: pumps)"
    with pytest.raises(NexusError, match="no stream named 'pumsp'"):
        client.query("pumsp")
    assert client.query("pumps", start="2030-01-01").empty  # known stream, empty range: no error
