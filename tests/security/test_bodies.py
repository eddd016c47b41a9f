"""Request bodies of the ingest endpoint: every gzip member is read, within one decompressed bound;
garbage and truncation are refused with a reason; a record is judged on its own keys, never on its
neighbours'; a body too wide for one frame is refused before it is built."""

from __future__ import annotations

import asyncio
import gzip
import json

import httpx
import pandas as pd

from nexus_kernel.gateway._ingest import parse_records

T0 = pd.Timestamp("2024-01-01", tz="UTC")


def _records(n: int, start: int = 0, series: str = "a") -> list[dict]:
    return [{"series": series, "ts": (T0 + pd.Timedelta(seconds=i)).isoformat(), "seq": i, "value": float(i)}
            for i in range(start, start + n)]


def _ndjson(records: list[dict]) -> bytes:
    return ("\n".join(json.dumps(r) for r in records) + "\n").encode()


def _post(gw, body: bytes, stream: str = "pumps", gzip_body: bool = True, ndjson: bool = True) -> httpx.Response:
    headers = {"Authorization": f"Bearer {gw.token('analyst')}",
               "Content-Type": "application/x-ndjson" if ndjson else "application/json"}
    if gzip_body:
        headers["Content-Encoding"] = "gzip"
    return httpx.post(f"{gw.url}/api/streams/{stream}/records", content=body, headers=headers, timeout=30)


def _stored_seqs(gw, stream: str = "pumps") -> list[int]:
    frame = gw.services.store.query(stream)
    return sorted(frame["seq"].tolist()) if len(frame) else []


# -- gzip members --------------------------------------------------------------------------------------

def test_every_gzip_member_is_read(gw):
    """The probe's attack: gzip(A) + gzip(B) was answered 200 with A's records only; B was lost."""
    first, second = _records(3), _records(4, start=3)
    body = gzip.compress(_ndjson(first)) + gzip.compress(_ndjson(second))
    r = _post(gw, body)
    assert r.status_code == 200, r.text
    assert (r.json()["accepted"], r.json()["rejected"]) == (7, 0)
    assert _stored_seqs(gw) == list(range(7))


def test_a_record_split_across_members_is_read_whole(gw):
    text = json.dumps(_records(2)).encode()
    cut = len(text) // 2  # the members' data concatenate: a cut inside a record is no boundary
    r = _post(gw, gzip.compress(text[:cut]) + gzip.compress(text[cut:]), ndjson=False)
    assert r.status_code == 200 and r.json()["accepted"] == 2, r.text
    assert _stored_seqs(gw) == [0, 1]


def test_bytes_after_the_last_member_are_refused(gw):
    body = gzip.compress(_ndjson(_records(3))) + b"trailing garbage"
    r = _post(gw, body)
    assert r.status_code == 400, r.text
    assert r.json()["field"] == "body" and "after gzip member 1" in r.json()["detail"]
    assert _stored_seqs(gw) == []  # refused whole: nothing half-read was written


def test_a_truncated_member_is_refused(gw):
    second = gzip.compress(_ndjson(_records(3, start=3)))
    r = _post(gw, gzip.compress(_ndjson(_records(3))) + second[:-5])
    assert r.status_code == 400 and "truncated" in r.json()["detail"], r.text
    assert _stored_seqs(gw) == []


def test_a_bomb_split_over_many_members_stops_at_the_limit(serve_with):
    limit = 20_000
    member = gzip.compress(b" " * 5_000)  # each member alone inflates well under the limit
    body = member * 50  # together: 250 kB inflated from about 2 kB sent
    assert len(body) < limit < 50 * 5_000
    with serve_with(max_body_bytes=limit) as g:
        r = _post(g, body)
        assert r.status_code == 413, r.text
        assert "decompressed" in r.json()["detail"] and r.json()["field"] == "body"
        # and the same members under the limit are all read (blank lines: an empty body)
        r = _post(g, member * 3)
        assert r.status_code == 200 and r.json()["accepted"] == 0, r.text


# -- a record judged on its own keys -------------------------------------------------------------------

def test_a_lone_record_without_value_is_dead_lettered_not_a_500(gw):
    """The probe's attack: one record without a value field, alone in a request, was a 500 (KeyError)."""
    record = {"series": "a", "ts": T0.isoformat()}
    for ndjson in (True, False):
        body = _ndjson([record]) if ndjson else json.dumps([record]).encode()
        r = _post(gw, body, gzip_body=False, ndjson=ndjson)
        assert r.status_code == 200, r.text
        assert r.json()["accepted"] == 0 and r.json()["errors"] == [
            {"index": 0, "error": "not_finite", "detail": "field 'value' is missing"}]
    dead = gw.services.store.read("dead_letters", stream="pumps")
    assert dead["reason"].tolist() == ["not_finite", "not_finite"]
    assert all(json.loads(p)["series"] == "a" for p in dead["payload"])


def test_a_lone_record_without_value_coalesced_with_good_requests(gw):
    """In a coalesced round the bad request must not fail the others (one validation for all)."""
    coalescer = gw.services.coalescer
    bodies = [_ndjson(_records(5)), _ndjson([{"series": "a", "ts": T0.isoformat()}]), _ndjson(_records(5, 5))]
    parsed = [parse_records(b, True) for b in bodies]

    async def together():
        return await asyncio.gather(*(coalescer.submit("pumps", *p) for p in parsed))

    rounds = coalescer.rounds
    results = gw.call(together())
    assert coalescer.rounds == rounds + 1  # one round for the three requests
    assert [r["accepted"] for r in results] == [5, 0, 5]
    assert [e["error"] for e in results[1]["errors"]] == ["not_finite"]
    assert _stored_seqs(gw) == list(range(10))


def test_a_record_with_keys_of_its_own_does_not_sink_its_neighbours(gw):
    """A junk key on one record was a NaN hole in every other record: all were dead-lettered."""
    good = _records(3)
    odd = [{"series": "a", "ts": T0.isoformat(), "seq": 100, "value": 1.0, "junk": "x"},   # non-numeric field
           {"series": "a", "ts": T0.isoformat(), "seq": 101, "temp": 2.5},                # another field only
           {"ts": T0.isoformat(), "seq": 102, "value": 3.0},                              # no series: "default"
           {"series": None, "ts": T0.isoformat(), "seq": 103, "value": 3.0},              # null series: refused
           {"series": ["a"], "ts": T0.isoformat(), "seq": 104, "value": 3.0},             # nested series: refused
           {"series": "a", "ts": T0.isoformat(), "seq": 105, "value": None, "temp": 4.0}]  # null = not sent
    for ndjson in (True, False):
        records = good + odd
        body = _ndjson(records) if ndjson else json.dumps(records).encode()
        r = _post(gw, body, stream=f"mixed{int(ndjson)}", gzip_body=False, ndjson=ndjson)
        assert r.status_code == 200, r.text
        assert r.json()["accepted"] == 6, r.text
        assert [(e["index"], e["error"]) for e in r.json()["errors"]] == [
            (3, "non_numeric"), (6, "missing_series"), (7, "missing_series")]
        stored = gw.services.store.query(f"mixed{int(ndjson)}").sort_values("seq")
        assert stored["seq"].tolist() == [0, 1, 2, 101, 102, 105]
        assert stored["series"].tolist() == ["a", "a", "a", "a", "default", "a"]
        assert stored["value"].tolist()[:3] == [0.0, 1.0, 2.0] and stored["temp"].tolist()[3] == 2.5
        dead = gw.services.store.read("dead_letters", stream=f"mixed{int(ndjson)}")
        assert sorted(dead["reason"]) == ["missing_series", "missing_series", "non_numeric"]
        junk = json.loads(dead[dead["reason"] == "non_numeric"]["payload"].iloc[0])
        assert junk["junk"] == "x" and junk["value"] == 1.0  # the record as sent, not as filled in


def test_requests_with_different_keys_coalesce_without_harm(gw):
    coalescer = gw.services.coalescer
    bodies = [_ndjson(_records(4)), _ndjson([{"series": "b", "ts": T0.isoformat(), "seq": 9, "junk": "x"}]),
              _ndjson([{"series": "c", "ts": T0.isoformat(), "seq": 7, "temp": 1.5}])]
    parsed = [parse_records(b, True) for b in bodies]

    async def together():
        return await asyncio.gather(*(coalescer.submit("pumps", *p) for p in parsed))

    rounds = coalescer.rounds
    results = gw.call(together())
    assert coalescer.rounds == rounds + 1
    assert [(r["accepted"], r["rejected"]) for r in results] == [(4, 0), (0, 1), (1, 0)]
    assert results[0]["written"] == 4 and results[2]["written"] == 1
    stored = gw.services.store.query("pumps")
    assert sorted(stored["series"].tolist()) == ["a", "a", "a", "a", "c"]
    assert "junk" not in stored.columns


# -- bodies too wide for one frame ---------------------------------------------------------------------

def test_a_body_of_records_with_keys_of_their_own_is_refused_before_it_is_built(gw):
    """5,000 records of 8 bytes, each with a key of its own, made a 5,000 × 5,000 frame (seconds, ~1 GB)."""
    body = b"\n".join(b'{"k%d":1}' % i for i in range(5_000))
    r = _post(gw, body, gzip_body=False)
    assert r.status_code == 422 and r.json()["field"] == "body", r.text
    assert "distinct keys" in r.json()["detail"]
    array = json.dumps([{f"k{i}": 1} for i in range(5_000)]).encode()
    r = _post(gw, array, gzip_body=False, ndjson=False)
    assert r.status_code == 422 and "distinct keys" in r.json()["detail"], r.text


def test_a_wide_first_line_over_many_short_lines_is_refused(gw):
    """The fast path reads every line with the first line's keys: 1,000 keys × 300,000 lines."""
    first = json.dumps({f"k{i}": 1 for i in range(1_000)}).encode()
    body = first + b"\n" + b"{}\n" * 300_000
    r = _post(gw, body, gzip_body=False)
    assert r.status_code == 422 and "cells" in r.json()["detail"], r.text


def test_requests_naming_keys_of_their_own_go_in_rounds_of_their_own(tmp_path):
    """One round's frame is the union of its requests' keys: bounded, or each request widens the others."""
    from nexus_kernel.config import load_settings
    from nexus_kernel.gateway._coalesce import IngestCoalescer
    from nexus_kernel.gateway._ingest import StreamIngest
    from nexus_kernel.storage import DuckDBStore

    store = DuckDBStore(":memory:")
    coalescer = IngestCoalescer(StreamIngest(load_settings(home=tmp_path / "home")), store, max_cells=300)
    wide = [_ndjson([{"series": "a", "ts": T0.isoformat(), "seq": 1000 + k,
                      **{f"k{k}_{j}": 1.0 for j in range(100)}}]) for k in range(4)]  # 100 keys each
    bodies = [_ndjson(_records(5)), *wide, _ndjson(_records(5, 5)), _ndjson(_records(5, 10))]
    parsed = [parse_records(b, True) for b in bodies]

    async def together():
        return await asyncio.gather(*(coalescer.submit("pumps", *p) for p in parsed))

    results = asyncio.run(together())
    assert [r["accepted"] for r in results] == [5, 1, 1, 1, 1, 5, 5]
    # a round for each wide request (100 keys × 2 records > 300 cells); the last two narrow ones share one
    assert (coalescer.requests, coalescer.rounds) == (7, 6)
    assert sorted(store.query("pumps")["seq"].tolist()) == [*range(15), 1000, 1001, 1002, 1003]
    store.close()
