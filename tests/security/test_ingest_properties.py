"""Ingest under arbitrary bodies, on a real gateway: never a 5xx, never a valid record lost, every
refusal explained.

Each example posts one body to a stream of its own and then reads the store: every record built valid
must be stored with its values; every other record is either stored or refused with its index and a
reason (and, unless it names another stream, dead-lettered); a body refused whole says why. Bodies mix
valid records with arbitrary JSON (random keys and values, missing fields, wrong types, huge numbers,
unicode, non-objects, broken lines), as a JSON array or NDJSON, sent as is, gzip, multi-member gzip,
truncated gzip or gzip followed by garbage.
"""

from __future__ import annotations

import gzip
import itertools
import json
import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from nexus_kernel.gateway._ingest import MAX_ERRORS
from tests.gateway.conftest import Running, serve

T0 = pd.Timestamp("2024-01-01", tz="UTC")
VALID_SEQ = 10**12  # valid records' seq numbers start here; no other record of a body uses one
_streams = itertools.count()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    # lateness is not what this file tests: the valid records of a body may come in any time order
    yield from serve(tmp_path_factory.mktemp("ingest-properties"), allowed_lateness=9e9,
                     rate_limit=10**6, rate_limit_address=10**6)


# -- what a body is made of ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Valid:
    """A record that must be stored: its key and values, and how its time is written."""

    series: str
    offset_ms: int  # after T0
    fields: tuple[tuple[str, float], ...]
    time_as: str  # "z", "offset" or "epoch"
    attrs: dict[str, Any] | None

    def json(self, seq: int) -> dict[str, Any]:
        ts = self.ts
        when: Any = {"z": ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "offset": ts.tz_convert("Europe/Paris").isoformat(),
                     "epoch": ts.timestamp()}[self.time_as]
        record: dict[str, Any] = {"series": self.series, "ts": when, "seq": seq, **dict(self.fields)}
        if self.attrs is not None:
            record["attrs"] = self.attrs
        return record

    @property
    def ts(self) -> pd.Timestamp:
        return T0 + pd.Timedelta(milliseconds=self.offset_ms)


@dataclass(frozen=True)
class Raw:
    """An NDJSON line exactly as written (broken JSON, a number JSON cannot hold...)."""

    text: str


finite = st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers(-(2**53), 2**53))
valid = st.builds(
    Valid,
    series=st.one_of(st.sampled_from(["a", "b", "ü-é", "s 1", "🙂"]), st.text("abcxyz_-.", min_size=1, max_size=12)),
    offset_ms=st.integers(0, 10**10),
    fields=st.one_of(
        finite.map(lambda v: (("value", float(v)),)),
        st.dictionaries(st.sampled_from(["value", "temp", "rpm", "Δp"]), finite.map(float), min_size=1, max_size=3)
        .map(lambda d: tuple(sorted(d.items())))),
    time_as=st.sampled_from(["z", "offset", "epoch"]),
    attrs=st.none() | st.dictionaries(st.text(max_size=8), st.text(max_size=8) | st.integers(-9, 9), max_size=3),
)
# no NaN or infinity (json.dumps would write tokens JSON has not, refusing a whole array): Raw lines have them
scalars = st.one_of(st.none(), st.booleans(), st.integers(-(10**30), 10**30),
                    st.floats(allow_nan=False, allow_infinity=False),
                    st.text(max_size=20))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=8)
keys = st.one_of(st.sampled_from(["stream", "series", "ts", "seq", "value", "attrs", "temp"]), st.text(max_size=10))
junk = st.one_of(
    st.dictionaries(keys, json_values, max_size=6),  # random keys and values, missing fields, wrong types
    st.builds(lambda v, over: {**v.json(0), **over}, valid, st.dictionaries(keys, json_values, max_size=2)),
    json_values.filter(lambda v: not isinstance(v, dict)),  # not an object
    st.sampled_from([Raw("{not json"), Raw('{"series": "a", "ts": "2024-01-01T00:00:00Z", "value": 1e999}'),
                     Raw("[1, 2"), Raw('{"value": NaN}'), Raw('{"value": -Infinity}'), Raw("\u00ff\u0000")]),
)
items = st.lists(st.one_of(valid, junk), max_size=25)
encodings = st.sampled_from(["identity", "gzip", "members"])


def _seq_collides(record: dict[str, Any], seqs: set[int]) -> bool:
    value = record.get("seq")
    try:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and int(value) in seqs
    except (OverflowError, ValueError):
        return False


def _body(entries: list[Any], ndjson: bool) -> tuple[bytes, list[Any]]:
    """The body and what each record of it is (a Valid with its seq, or anything else), in body order."""
    records: list[Any] = []
    built: list[Any] = []
    seqs = {VALID_SEQ + i for i in range(len(entries))}
    for i, entry in enumerate(entries):
        if isinstance(entry, Valid):
            records.append((entry, VALID_SEQ + i))
            built.append(entry.json(VALID_SEQ + i))
        elif isinstance(entry, Raw):
            if ndjson:
                records.append(entry)
                built.append(entry)
        else:
            if isinstance(entry, dict) and _seq_collides(entry, seqs):
                entry = {k: v for k, v in entry.items() if k != "seq"}
            records.append(entry)
            built.append(entry)
    if not ndjson:
        return json.dumps(built).encode(), records
    lines = [e.text if isinstance(e, Raw) else json.dumps(e) for e in built]
    return ("\n".join(lines) + "\n").encode(), records


def _encode(body: bytes, how: str, cuts: list[float]) -> bytes:
    if how == "identity":
        return body
    if how == "gzip":
        return gzip.compress(body)
    points = sorted({int(c * len(body)) for c in cuts} | {0, len(body)})  # members: the body cut anywhere
    return b"".join(gzip.compress(body[a:b]) for a, b in zip(points, points[1:]))


def _post(gw: Running, stream: str, payload: bytes, ndjson: bool, gzipped: bool) -> httpx.Response:
    headers = {"Authorization": f"Bearer {gw.token('analyst')}",
               "Content-Type": "application/x-ndjson" if ndjson else "application/json"}
    if gzipped:
        headers["Content-Encoding"] = "gzip"
    return httpx.post(f"{gw.url}/api/streams/{stream}/records", content=payload, headers=headers, timeout=30)


def _refused_whole(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert 400 <= response.status_code < 500, response.text
    assert set(body) == {"error", "detail", "field"} and body["error"] and body["detail"], body
    return body


def _same(a: float, b: float) -> bool:
    return a == b or math.isclose(a, b, rel_tol=1e-15, abs_tol=0.0)


# -- the properties ------------------------------------------------------------------------------------

@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(entries=items, ndjson=st.booleans(), how=encodings, cuts=st.lists(st.floats(0, 1), max_size=4))
def test_ingest_never_fails_never_loses_a_valid_record_and_explains_each_refusal(live, entries, ndjson, how, cuts):
    stream = f"p{next(_streams)}"
    body, records = _body(entries, ndjson)
    note(f"body={body!r} how={how}")
    r = _post(live, stream, _encode(body, how, cuts), ndjson, gzipped=how != "identity")
    assert r.status_code < 500, r.text
    assert r.status_code == 200, r.text  # every body here is well formed: records are refused one by one
    answer = r.json()
    n = len(records)
    errors = answer["errors"]
    assert answer["accepted"] + answer["rejected"] == n, answer
    assert answer["rejected"] == len(errors) or len(errors) == MAX_ERRORS
    indexes = [e["index"] for e in errors]
    assert indexes == sorted(set(indexes)) and all(0 <= i < n for i in indexes)
    assert all(isinstance(e["error"], str) and e["error"] and isinstance(e["detail"], str) and e["detail"]
               for e in errors), errors
    valid_at = {i: rec for i, rec in enumerate(records) if isinstance(rec, tuple)}
    refused_valid = [(errors[k], records[i]) for k, i in enumerate(indexes) if i in valid_at]
    assert not refused_valid, refused_valid
    stored = live.services.store.query(stream) if answer["accepted"] else pd.DataFrame()
    for record, seq in valid_at.values():
        row = stored[stored["seq"] == seq] if len(stored) else stored
        assert len(row) == 1, (record, seq, stored)
        assert row["series"].iloc[0] == record.series
        lag = abs(row["ts"].iloc[0] - record.ts)
        assert lag <= pd.Timedelta(microseconds=1 if record.time_as == "epoch" else 0), (record, row)  # float seconds
        for name, value in record.fields:
            assert _same(float(row[name].iloc[0]), value), (name, value, row)
    # each refused record is dead-lettered under its reason (but one naming another stream); the table keys
    # dead letters by (stream, seq, reason, received_at), so refused records sharing a seq share a row
    dead = live.services.store.read("dead_letters", stream=stream, limit=10_000)
    refused = Counter(e["error"] for e in errors if e["error"] != "stream_mismatch")
    kept = Counter(dead["reason"].astype(str)) if len(dead) else Counter()
    parse_words = {"bad_json": "processing_error", "not_an_object": "processing_error"}
    expected = Counter()
    for word, count in refused.items():
        expected[parse_words.get(word, word)] += count
    assert set(kept) == set(expected) and all(1 <= kept[w] <= expected[w] for w in expected), (kept, expected)
    assert (dead["detail"].str.len() > 0).all() if len(dead) else True
    assert set(live.services.store.streams()) <= {f"p{i}" for i in range(next(_streams))}  # nothing elsewhere


@settings(max_examples=30, suppress_health_check=[HealthCheck.too_slow])
@given(entries=st.lists(valid, min_size=1, max_size=10), ndjson=st.booleans(), cut=st.integers(1, 8),
       garbage=st.binary(min_size=1, max_size=16).filter(lambda b: not b.startswith(b"\x1f")))
def test_truncated_gzip_or_garbage_after_it_is_refused_whole(live, entries, ndjson, cut, garbage):
    body, _ = _body(entries, ndjson)
    members = gzip.compress(body[: len(body) // 2]) + gzip.compress(body[len(body) // 2:])
    for payload, word in ((members[:-cut], "truncated"), (members + garbage, "not gzip")):
        stream = f"p{next(_streams)}"
        refusal = _refused_whole(_post(live, stream, payload, ndjson, gzipped=True))
        assert refusal["field"] == "body" and word in refusal["detail"], refusal
        assert stream not in live.services.store.streams()


@settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow])
@given(payload=st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode)),
       ctype=st.sampled_from(["application/json", "application/x-ndjson", "text/plain", ""]),
       encoding=st.sampled_from(["identity", "gzip", "br"]))
def test_any_bytes_are_answered_without_a_server_error(live, payload, ctype, encoding):
    stream = f"p{next(_streams)}"
    headers = {"Authorization": f"Bearer {live.token('analyst')}", "Content-Encoding": encoding}
    if ctype:
        headers["Content-Type"] = ctype
    r = httpx.post(f"{live.url}/api/streams/{stream}/records", content=payload, headers=headers, timeout=30)
    assert r.status_code < 500, r.text
    if r.status_code != 200:
        _refused_whole(r)
    else:
        answer = r.json()
        assert answer["accepted"] + answer["rejected"] >= len(answer["errors"])
        assert all(e["detail"] for e in answer["errors"])


# records that all carry the same keys, each key with values of one JSON type: what Arrow's fast path reads
typed_values = st.sampled_from([
    st.integers(-(10**6), 10**6), st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8), st.booleans(), st.sampled_from(["2024-01-01T00:00:00Z", "2024-01-01T00:00:00.5+01:00",
                                                         "2024-01-01", "never", "1704067200"]),
    st.fixed_dictionaries({"a": st.integers(0, 9), "b": st.text(max_size=3)}),
])
same_keys = st.lists(keys, min_size=1, max_size=5, unique=True).flatmap(
    lambda names: st.tuples(*[typed_values for _ in names]).flatmap(
        lambda values: st.lists(st.fixed_dictionaries(dict(zip(names, values))), min_size=1, max_size=10)))


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(entries=st.one_of(same_keys, st.lists(st.one_of(valid, junk.filter(lambda e: not isinstance(e, Raw))),
                                             min_size=1, max_size=12)))
def test_a_body_means_the_same_as_ndjson_or_as_a_json_array(tmp_path_factory, entries):
    """NDJSON may take Arrow's fast path, a JSON array never does: the verdicts and the good records agree."""
    from nexus_kernel.config import load_settings
    from nexus_kernel.gateway._ingest import StreamIngest, parse_records

    settings = load_settings(home=tmp_path_factory.getbasetemp() / "same-meaning", allowed_lateness=9e9)
    outcomes = []
    for ndjson in (True, False):
        body, _ = _body(entries, ndjson)
        good, _, errors = StreamIngest(settings).validate("same", *parse_records(body, ndjson))
        good = good.drop(columns="seq", errors="ignore")  # numbered by each validator where records give none
        outcomes.append((good[sorted(good.columns)].astype(object).reset_index(drop=True),
                         [(e["index"], e["error"]) for e in errors]))
    (fast, fast_errors), (slow, slow_errors) = outcomes
    assert fast_errors == slow_errors
    pd.testing.assert_frame_equal(fast, slow, check_dtype=False)
