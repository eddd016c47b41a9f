"""Series and field names are bounded: no control or format characters, at most ``max_name_length``.

The finding: series names took NUL, ESC, RTL overrides and 10,000 characters unchecked — straight into
the store, the dashboards and the logs. Now a record whose series name is refused is dead-lettered as
``bad_series``, a record carrying a value in a field column whose name is refused as ``bad_field``; the
detail shows the name escaped and cut, never raw, and every valid record of the batch still goes through.
"""

from __future__ import annotations

import asyncio
import json

import httpx
import pandas as pd
import pytest

from nexus_kernel.config import load_settings
from nexus_kernel.engine import Pipeline, sources
from nexus_kernel.records import Schema, Validator

BAD_NAMES = {
    "nul": "pump\x00evil",
    "esc": "pump\x1b[31mred",
    "rtl_override": "pump\u202egpj.exe",
    "isolate": "pump\u2066x\u2069",
    "zero_width": "pu\u200bmp",
    "line_separator": "pump\u2028two",
    "10000_chars": "x" * 10_000,
}
RAW = ("\x00", "\x1b", "\u202e", "\u2066", "\u200b", "\u2028")


def _no_raw_characters(text: str) -> bool:
    return not any(char in text for char in RAW) and len(text) < 300


def _times(n: int) -> list[str]:
    return [t.isoformat() for t in pd.date_range("2024-01-01", periods=n, freq="s", tz="UTC")]


@pytest.mark.parametrize("name", BAD_NAMES.values(), ids=BAD_NAMES.keys())
def test_a_bad_series_name_is_dead_lettered_and_the_rest_kept(name):
    v = Validator(Schema("pumps"))
    good, dead = v(pd.DataFrame({"series": ["a", name, "b"], "ts": _times(3), "value": [1.0, 2.0, 3.0]}))
    assert good["series"].astype(str).tolist() == ["a", "b"] and good["value"].tolist() == [1.0, 3.0]
    assert dead["reason"].tolist() == ["bad_series"] and dead["seq"].tolist() == [1]
    detail = dead["detail"].iat[0]
    assert detail.startswith("series name ") and _no_raw_characters(detail)
    assert repr(name[:40]) in detail  # escaped, and at most 40 characters of it
    assert json.loads(dead["payload"].iat[0])["series"] == name  # the payload keeps what came, as JSON
    assert name not in set(good["series"].cat.categories) and set(v.newest()) == {"a", "b"}


@pytest.mark.parametrize("name", BAD_NAMES.values(), ids=BAD_NAMES.keys())
def test_a_bad_field_name_dead_letters_the_records_that_carry_it(name):
    raw = pd.DataFrame({"series": ["a", "a", "a"], "ts": _times(3), "value": [1.0, 2.0, 3.0],
                        name: [None, 5.0, None]})
    good, dead = Validator(Schema("pumps"))(raw)
    assert good["value"].tolist() == [1.0, 3.0] and name not in good.columns
    assert dead["reason"].tolist() == ["bad_field"] and dead["seq"].tolist() == [1]
    detail = dead["detail"].iat[0]
    assert detail.startswith("field name ") and _no_raw_characters(detail) and repr(name[:40]) in detail


def test_names_at_exactly_the_limit_are_accepted_one_more_is_refused():
    v = Validator(Schema("pumps", max_name_length=256))
    at, over = "s" * 256, "s" * 257
    good, dead = v(pd.DataFrame({"series": [at, over], "ts": _times(2), "value": [1.0, 2.0],
                                 "f" * 256: [1.0, 2.0]}))
    assert good["series"].astype(str).tolist() == [at] and "f" * 256 in good.columns
    assert dead["reason"].tolist() == ["bad_series"] and "longer than 256 characters" in dead["detail"].iat[0]
    good, dead = v(pd.DataFrame({"series": ["a"], "ts": _times(1), "value": [1.0], "f" * 257: [1.0]}))
    assert good.empty and dead["reason"].tolist() == ["bad_field"]


def test_names_in_other_scripts_and_with_spaces_are_names():
    names = ["насос", "泵站 1", "pompe à eau", "مضخة", "pump\u00a01", "🔥 hot"]
    good, dead = Validator(Schema("pumps"))(pd.DataFrame({"series": names, "ts": _times(len(names)),
                                                          "value": range(len(names)), "débit": 1.0}))
    assert dead.empty and good["series"].astype(str).tolist() == names and "débit" in good.columns


def test_the_pipeline_takes_the_bound_from_settings():
    settings = load_settings(max_name_length=8)
    rows = [{"series": "s" * 8, "ts": "2024-01-01T00:00:00Z", "value": 1.0},
            {"series": "s" * 9, "ts": "2024-01-01T00:00:01Z", "value": 2.0}]
    pipe = Pipeline.from_source(sources.iterable(rows), name="pumps", settings=settings).validate().collect()
    asyncio.run(pipe.run_async())
    assert pipe.results()["value"].tolist() == [1.0] and pipe.dead_letters.counts() == {"bad_series": 1}


def _post(gateway, records: list[dict]) -> dict:
    r = httpx.post(f"{gateway.url}/api/streams/pumps/records", json=records,
                   headers={"Authorization": f"Bearer {gateway.token('analyst')}"})
    assert r.status_code == 200, r.text
    return r.json()


def test_bad_series_names_over_rest_are_refused_with_their_reason_and_nothing_valid_is_lost(gw):
    times = _times(len(BAD_NAMES) + 2)
    records = [{"series": "a", "ts": times[0], "value": 2.0}]
    records += [{"series": name, "ts": t, "value": 1.0} for name, t in zip(BAD_NAMES.values(), times[1:])]
    records.append({"series": "b", "ts": times[-1], "value": 4.0})
    answer = _post(gw, records)
    assert answer["accepted"] == 2 and answer["written"] == 2
    assert [(e["index"], e["error"]) for e in answer["errors"]] == [(i, "bad_series") for i in range(1, 8)]
    assert all(_no_raw_characters(e["detail"]) for e in answer["errors"])
    stored = gw.services.store.query("pumps")
    assert sorted(stored["value"].tolist()) == [2.0, 4.0] and set(stored["series"]) == {"a", "b"}
    dead = gw.services.store.read("dead_letters", stream="pumps")
    assert dead["reason"].tolist() == ["bad_series"] * len(BAD_NAMES)


def test_a_bad_field_name_over_rest_refuses_only_the_record_that_carries_it(gw):
    records = [{"series": "a", "ts": t, "value": float(i)} for i, t in enumerate(_times(3))]
    records[1]["\x1b[2J"] = 9.0  # a field named ESC[2J (clears a terminal that prints it raw)
    answer = _post(gw, records)
    assert answer["accepted"] == 2 and [(e["index"], e["error"]) for e in answer["errors"]] == [(1, "bad_field")]
    assert _no_raw_characters(answer["errors"][0]["detail"])
    stored = gw.services.store.query("pumps")
    assert sorted(stored["value"].tolist()) == [0.0, 2.0]
    assert gw.services.store.read("dead_letters", stream="pumps")["reason"].tolist() == ["bad_field"]


def test_the_gateway_takes_the_bound_from_settings(serve_with):
    with serve_with(max_name_length=16) as gateway:
        answer = _post(gateway, [{"series": "s" * 16, "ts": "2024-01-01T00:00:00Z", "value": 1.0},
                                 {"series": "s" * 17, "ts": "2024-01-01T00:00:01Z", "value": 2.0}])
        assert answer["accepted"] == 1 and [e["error"] for e in answer["errors"]] == ["bad_series"]
