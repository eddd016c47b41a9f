"""WebSocket live results (filter, snapshot, slow clients) and the OpenAPI document: schemathesis checks
that the server never fails and that the document is exactly as strict as the server."""

from __future__ import annotations

import asyncio
import re

import httpx
import pandas as pd
import pytest
import schemathesis
import websockets
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from nexus_kernel.client import AsyncClient
from nexus_kernel.gateway import openapi, routes
from nexus_kernel.gateway._base import ApiHandler
from nexus_kernel.storage import topic


def _batch(series, t0, n=1, stream="pumps"):
    ts = pd.date_range(t0, periods=n, freq="s", tz="UTC")
    return pd.DataFrame({"stream": stream, "series": [s for s in series for _ in range(n)],
                         "ts": list(ts) * len(series), "seq": list(range(n)) * len(series),
                         "value": 1.0}).astype({"stream": "string", "series": "string"})


def test_live_snapshot_then_filtered_data(gw):
    gw.services.store.write(_batch(["a", "b"], "2024-01-01"))

    async def scenario():
        async with AsyncClient(gw.url, gw.token("viewer")) as client:
            sub = client.subscribe("pumps", series=["a"])
            events = []
            async for event in sub:
                events.append(event)
                if event.type == "snapshot":
                    await asyncio.sleep(0.05)
                    gw.services.bus.publish_nowait(topic("pumps", "points"), _batch(["a", "b"], "2024-01-02"))
                    gw.services.bus.publish_nowait(topic("pumps", "anomalies"), _batch(["a"], "2024-01-02"))
                    gw.services.bus.publish_nowait(topic("pumps", "points"), _batch(["b"], "2024-01-03"))
                    gw.services.bus.publish_nowait(topic("pumps", "points"), _batch(["a"], "2024-01-04"))
                if event.type == "data" and event.frame["ts"].iloc[0].day == 4:
                    break
            await sub.close()
            return events

    events = gw.call(asyncio.wait_for(scenario(), 20)) if False else asyncio.run(asyncio.wait_for(scenario(), 20))
    kinds = [(e.type, e.kind) for e in events]
    assert kinds[0] == ("hello", None) and kinds[1] == ("snapshot", "points")
    assert events[1].frame["series"].tolist() == ["a"]
    data = [e for e in events if e.type == "data"]
    assert [e.frame["ts"].iloc[0].day for e in data] == [2, 4]  # b-only batch and anomalies filtered out
    assert all(set(e.frame["series"]) == {"a"} for e in data)


def test_live_refuses_bad_token(gw):
    async def scenario():
        async with AsyncClient(gw.url, "wrong") as client:
            async for _ in client.subscribe("pumps"):
                pass

    with pytest.raises(Exception) as exc:
        asyncio.run(scenario())
    assert getattr(exc.value, "status", None) == 401


def test_slow_client_loses_messages_counted_and_told_others_get_all(serve_with):
    with serve_with(ws_queue=5) as g:
        url = g.url.replace("http", "ws") + "/api/streams/pumps/live?snapshot=false"
        headers = {"Authorization": f"Bearer {g.token('viewer')}"}
        n = 100

        async def scenario():
            fast = await websockets.connect(url, additional_headers=headers)
            slow = await websockets.connect(url, additional_headers=headers, max_queue=1)
            await fast.recv(), await slow.recv()  # hello
            # the slow client stops reading: its socket buffers fill, its writer waits, its queue overflows
            frames = [_batch([f"s{i}"], "2024-01-01", n=2000) for i in range(n)]  # ~150 kB each

            async def publish():
                for i in range(n):
                    g.services.bus.publish_nowait(topic("pumps", "points"), frames[i])
                    await asyncio.sleep(0.005)

            async def read(ws, until_quiet: bool):
                import json
                seen = told = 0
                while seen + told < n:
                    try:
                        msg = json.loads(await asyncio.wait_for(ws.recv(), 1.0 if until_quiet else 10))
                    except asyncio.TimeoutError:
                        break
                    for m in msg["messages"] if msg["type"] == "batch" else [msg]:
                        seen += m["type"] == "data"
                        told += m.get("count", 0) if m["type"] == "dropped" else 0
                return seen, told

            fast_counts, _ = await asyncio.gather(read(fast, False), publish())
            slow_counts = await read(slow, True)  # the slow client reads only now
            await fast.close(), await slow.close()
            return fast_counts, slow_counts

        (fast_seen, fast_told), (seen, told) = asyncio.run(asyncio.wait_for(scenario(), 60))
        assert fast_seen + fast_told == n and seen + told == n  # every loss is counted and told
        assert told > 0 and seen < n  # the slow client lost messages...
        assert fast_seen > seen and fast_seen >= 0.9 * n  # ...while the reading client kept up
        assert "nexus_gateway_ws_dropped_total" in httpx.get(g.url + "/metrics").text


def test_every_route_is_documented_and_every_handler_registered():
    doc = openapi()
    assert doc["openapi"].startswith("3.1")
    for path, spec in routes.items():
        methods = {m for m in ("get", "post", "put", "patch", "delete") if hasattr(getattr(spec.handler, m, None), "_op")}
        assert methods and set(doc["paths"][path]) == methods, path
    # and no ApiHandler subclass escaped the route table
    def subclasses(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)
    registered = {r.handler for _, r in routes.items()}
    for cls in subclasses(ApiHandler):
        if cls.__name__ != "NotFoundHandler" and any(hasattr(getattr(cls, m, None), "_op") for m in ("get", "post")):
            assert cls in registered or cls.__module__.startswith("tests"), cls


def test_openapi_served_matches(gw):
    served = httpx.get(gw.url + "/openapi.json").json()
    assert set(served["paths"]) == {re.sub(r"\s", "", p) for p in openapi()["paths"]}


# the WebSocket route is not HTTP request/response: its own tests cover it
_schema = schemathesis.openapi.from_dict(openapi()).exclude(path_regex=r"/live$")


@pytest.fixture(scope="module")
def shared_gw(tmp_path_factory):
    from .conftest import serve

    yield from serve(tmp_path_factory.mktemp("schemathesis"), rate_limit=10**6, rate_limit_address=10**6)


# A stream spec's kind and params are judged by the engine against its registries, the data directories
# and the secrets — server state no document can carry — so a schema-valid spec may still be a 422 there.
# Likewise a model record's artifact must be a file inside the home's model directory (it is unpickled later).
_SPEC_OPERATIONS = {("POST", "/api/streams"), ("PATCH", "/api/streams/{name}"), ("POST", "/api/models")}


@_schema.parametrize()
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
def test_schemathesis_document_and_server_agree(case, shared_gw):
    """No 5xx; a schema-valid request is never refused as invalid (400/413/415/422) and a schema-invalid
    one never accepted: the document is exactly as strict as the server (positive and negative cases)."""
    checks = [not_a_server_error, negative_data_rejection]
    if (case.method, case.path) not in _SPEC_OPERATIONS:
        checks.append(positive_data_acceptance)
    case.call_and_validate(base_url=shared_gw.url, headers={"Authorization": f"Bearer {shared_gw.token('admin')}"},
                           checks=checks)
