"""Group commit of ingest: concurrent requests share one validation and one store write, yet each gets
the answer it would have got alone (same accepted/rejected/errors/written), on DuckDB and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import uuid

import httpx
import pandas as pd
import pytest

from nexus_kernel.config import load_settings
from nexus_kernel.gateway._coalesce import IngestCoalescer
from nexus_kernel.gateway._ingest import StreamIngest, parse_records
from nexus_kernel.storage import DuckDBStore, PostgresStore


def _lines(start: int, n: int, series: str = "a") -> list[str]:
    t0 = pd.Timestamp("2024-01-01", tz="UTC")
    return [json.dumps({"series": series, "ts": (t0 + pd.Timedelta(seconds=i)).isoformat(), "seq": i,
                        "value": float(i)}) for i in range(start, start + n)]


def _bodies() -> list[bytes]:
    bad = _lines(200, 5)
    bad[1] = "{broken"
    bad[3] = json.dumps({"series": "a", "ts": "never", "value": 1.0})
    return [
        "\n".join(_lines(0, 100)).encode(),
        "\n".join(_lines(50, 100)).encode(),   # half repeats the first request
        "\n".join(_lines(0, 100)).encode(),    # wholly a repeat
        "\n".join(bad).encode(),               # two bad records among good ones
        "\n".join(_lines(300, 10, series="b")).encode(),
    ]


def _alone(store, settings, bodies):
    """The reference: each body validated and written on its own, one after another."""
    ingest = StreamIngest(settings)
    out = []
    for body in bodies:
        raw, index, errors = parse_records(body, True)
        good, _, errors = ingest.validate("pumps", raw, index, errors)
        written = store.write(good) if len(good) else 0
        out.append({"accepted": len(good), "rejected": len(errors), "written": written,
                    "errors": [(e["index"], e["error"]) for e in errors]})
    return out


async def _together(coalescer, bodies):
    parsed = [parse_records(b, True) for b in bodies]
    results = await asyncio.gather(*(coalescer.submit("pumps", *p) for p in parsed))
    return [{"accepted": r["accepted"], "rejected": r["rejected"], "written": r["written"],
             "errors": [(e["index"], e["error"]) for e in r["errors"]]} for r in results]


@pytest.fixture(params=["duckdb", "postgresql"])
def stores(request, pg_dsn):
    if request.param == "duckdb":
        made = [DuckDBStore(":memory:"), DuckDBStore(":memory:")]
    else:
        made = [PostgresStore(pg_dsn, schema=f"gw_{uuid.uuid4().hex[:10]}", timeout=5) for _ in range(2)]
    yield made
    for store in made:
        if isinstance(store, PostgresStore):
            store.drop_schema()
        store.close()


def test_coalesced_round_answers_each_request_as_if_alone(stores, tmp_path):
    ours, reference = stores
    settings = load_settings(home=tmp_path / "home", allowed_lateness=3600)
    bodies = _bodies()
    coalescer = IngestCoalescer(StreamIngest(settings), ours)
    together = asyncio.run(_together(coalescer, bodies))
    assert coalescer.rounds == 1 and coalescer.requests == len(bodies)  # all five in one transaction
    assert together == _alone(reference, settings, bodies)
    assert [r["written"] for r in together] == [100, 50, 0, 3, 10]
    pd.testing.assert_frame_equal(ours.query("pumps"), reference.query("pumps"))
    assert len(ours.read("dead_letters", stream="pumps")) == 2


def test_write_groups_keeps_first_writer_and_counts_per_batch():
    store = DuckDBStore(":memory:")
    t = pd.to_datetime(["2024-01-01T00:00:00Z", "2024-01-01T00:00:01Z"])
    a = pd.DataFrame({"stream": ["s", "s"], "series": ["x", "x"], "ts": t, "seq": [1, 2], "value": [1.0, 2.0]})
    b = a.assign(value=[9.0, 9.0], temp=[5.0, float("nan")])  # same keys; one new field value
    # b's rows come first in the frame, but the lower label (a) is the earlier writer and wins the keys
    assert store.write_groups(pd.concat([b, a], ignore_index=True), [1, 1, 0, 0], 3) == [2, 1, 0]
    stored = store.query("s")
    assert stored["value"].tolist() == [1.0, 2.0] and stored["temp"].isna().tolist() == [False, True]
    assert store.write_groups(pd.concat([a, b], ignore_index=True), [0, 0, 1, 1]) == [0, 0]
    later = a.assign(seq=[3, 4])
    assert store.write_groups(later, [2, 2], 3) == [0, 0, 2]  # one group: counted where its label says


def test_write_groups_refuses_labels_that_do_not_fit_and_writes_nothing():
    store = DuckDBStore(":memory:")
    a = pd.DataFrame({"stream": ["s"], "series": ["x"], "ts": pd.to_datetime(["2024-01-01T00:00:00Z"]),
                      "seq": [1], "value": [1.0]})
    with pytest.raises(ValueError, match="2 labels for 1 rows"):
        store.write_groups(a, [0, 1])
    with pytest.raises(ValueError, match="0..0"):
        store.write_groups(a, [1], 1)
    assert store.query("s").empty


def test_concurrent_http_requests_each_get_their_own_answer(serve_with):
    with serve_with(allowed_lateness=3600) as gw:
        _concurrent(gw)


def _concurrent(gw):
    headers = {"Authorization": f"Bearer {gw.token('analyst')}", "Content-Type": "application/x-ndjson"}
    bodies = _bodies()

    async def send():
        async with httpx.AsyncClient(base_url=gw.url, headers=headers, timeout=30) as client:
            return await asyncio.gather(*(client.post("/api/streams/pumps/records", content=b) for b in bodies))

    answers = [r.json() for r in asyncio.run(send())]
    assert [a["accepted"] for a in answers] == [100, 100, 100, 3, 10]
    assert [(e["index"], e["error"]) for e in answers[3]["errors"]] == [(1, "bad_json"), (3, "bad_time")]
    assert sum(a["written"] for a in answers) == 163  # 0..149, three of 200..204, ten of series b
    assert len(gw.services.store.query("pumps")) == 163


def test_a_round_on_a_runtime_thread_answers_each_request_as_if_alone(tmp_path):
    """The pipelines run on the runtime's own thread: the requests cross to it, share one round there,
    and each still gets the answer it would have got alone."""
    from nexus_kernel.runtime import Runtime

    settings = load_settings(home=tmp_path / "home", store="memory", allowed_lateness=3600)
    runtime = Runtime.open(settings)
    try:
        coalescer = IngestCoalescer(StreamIngest(settings, runtime.manager), runtime.store, manager=runtime.manager)
        bodies = _bodies()
        together = asyncio.run(_together(coalescer, bodies))
        assert coalescer.rounds == 1 and coalescer.requests == len(bodies)
        reference = DuckDBStore(":memory:")
        assert together == _alone(reference, settings, bodies)
        reference.close()
        assert runtime.manager.pipelines["pumps"].source.kind == "ingest"
        assert runtime.manager.streams()["pumps"]["state"] == "running"
        assert len(runtime.store.query("pumps")) == 163
    finally:
        runtime.close()
