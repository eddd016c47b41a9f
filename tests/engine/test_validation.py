"""Validation: every bad row to the dead-letter queue with a reason, every good row through."""

from __future__ import annotations

import json
import math
import re
from datetime import timedelta

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings as hsettings
from hypothesis import strategies as st

from nexus_kernel.records import REASONS, DeadLetterQueue, Schema, Validator, name_fault


def _raw(**cols):
    return pd.DataFrame(cols)


def test_each_reason_is_detected_and_payload_kept():
    v = Validator(Schema("pumps", series=frozenset({"a", "b"}), max_attr_bytes=20))
    raw = _raw(
        series=["a", "a", "a", None, "zz", "a", "a", "a", "b", "a", "a\x00", "a"],
        ts=["2024-01-01T00:00:00Z", None, "yesterday-ish", "2024-01-01T00:00:01Z", "2024-01-01T00:00:02Z",
            "2024-01-01T00:00:03Z", "2024-01-01T00:00:04Z", "2024-01-01T00:00:05Z", "2024-01-01T00:00:06Z",
            "2200-01-01T00:00:00Z", "2024-01-01T00:00:07Z", "2024-01-01T00:00:08Z"],
        value=[1.0, 2.0, 3.0, 4.0, 5.0, "abc", float("nan"), float("inf"), 9.0, 10.0, 11.0, 12.0],
        attrs=[None, None, None, None, None, None, None, None, json.dumps({"k": "x" * 50}), None, None, None],
        **{"\x07bell": [None] * 11 + [1.0]},
    )
    good, dead = v(raw)
    assert list(good["value"]) == [1.0] and list(good.columns) == ["stream", "series", "ts", "seq", "value", "attrs"]
    reasons = dict(zip(dead["seq"], dead["reason"]))
    assert reasons == {1: "missing_time", 2: "bad_time", 3: "missing_series", 4: "unknown_series",
                       5: "non_numeric", 6: "not_finite", 7: "not_finite", 8: "oversized_attrs",
                       9: "future", 10: "bad_series", 11: "bad_field"}
    assert set(reasons.values()) == set(REASONS) - {"late", "bad_attrs", "processing_error"}  # each elsewhere
    payload = json.loads(dead.loc[dead["reason"] == "non_numeric", "payload"].iat[0])
    assert payload["value"] == "abc" and payload["series"] == "a"
    assert json.loads(dead.loc[dead["reason"] == "bad_field", "payload"].iat[0])["\x07bell"] == 1.0
    assert (dead["detail"].str.len() > 0).all()


def test_the_reason_table_in_the_docs_lists_every_reason_in_rank_order():
    import nexus_kernel.records as events

    documented = re.findall(r"^``(\w+)``\s{2,}\S", events.__doc__, flags=re.MULTILINE)  # table rows
    assert tuple(documented) == REASONS


def test_a_row_with_several_faults_takes_the_first_reason_of_the_table():
    v = Validator(Schema("s", series=frozenset({"a"})))
    _, dead = v(_raw(series=["a\x1b", "zz", "a\x1b"], ts=["2200-01-01T00:00:00Z", "2200-01-01T00:00:00Z",
                                                         "2024-01-01T00:00:00Z"], value=["x", 1.0, 1.0]))
    assert list(dead["reason"]) == ["future", "future", "bad_series"]  # not unknown_series, not non_numeric


def test_future_records_never_move_the_watermark():
    v = Validator(Schema("s", allowed_lateness=timedelta(seconds=10)))
    now = pd.Timestamp.now(tz="UTC")
    _, dead = v(_raw(series=["a", "a"], ts=[now + pd.Timedelta(days=1), now - pd.Timedelta("1s")], value=[1.0, 2.0]))
    assert list(dead["reason"]) == ["future"] and v.newest()["a"] == now - pd.Timedelta("1s")
    good, dead = v(_raw(series=["a"], ts=[now], value=[3.0]))
    assert list(good["value"]) == [3.0] and dead.empty


def test_the_stream_clock_is_the_later_of_wall_time_and_the_source_clock():
    now = pd.Timestamp.now(tz="UTC")
    week_ahead = _raw(series=["a"], ts=[now + pd.Timedelta(days=7)], value=[1.0])
    ahead = Validator(Schema("s"), clock=lambda: now + pd.Timedelta(days=7))  # a simulator running fast
    assert len(ahead(week_ahead).good) == 1
    behind = Validator(Schema("s"), clock=lambda: pd.Timestamp("2024-01-01", tz="UTC"))  # a replay of old data
    assert len(behind(_raw(series=["a"], ts=[now], value=[1.0])).good) == 1  # wall time still admits now
    assert list(behind(week_ahead).dead["reason"]) == ["future"]
    assert len(Validator(Schema("s"), clock=lambda: None)(_raw(series=["a"], ts=[now], value=[1.0])).good) == 1


def test_max_future_in_seconds_zero_means_no_slack_and_none_or_past_2262_checks_nothing():
    soon = _raw(series=["a"], ts=[pd.Timestamp.now(tz="UTC") + pd.Timedelta("5s")], value=[1.0])
    assert Schema("s", max_future=300).max_future == timedelta(seconds=300)
    assert len(Validator(Schema("s", max_future=300))(soon).good) == 1
    assert list(Validator(Schema("s", max_future=0))(soon).dead["reason"]) == ["future"]
    far = _raw(series=["a"], ts=["2262-01-01T00:00:00Z"], value=[1.0])
    for off in (None, 1e12, float("inf")):
        assert len(Validator(Schema("s", max_future=off))(far).good) == 1


def test_a_declared_field_with_a_refused_name_is_no_field():
    v = Validator(Schema("s", fields=("value", "bad\u202e")))
    good, dead = v(_raw(series=["a", "a"], ts=["2024-01-01T00:00:00Z", "2024-01-01T00:00:01Z"], value=[1.0, 2.0],
                        **{"bad\u202e": [None, 3.0]}))
    assert list(good.columns) == ["stream", "series", "ts", "seq", "value"] and list(good["value"]) == [1.0]
    assert list(dead["reason"]) == ["bad_field"] and "\\u202e" in dead["detail"].iat[0]


def test_contract_dtypes_and_utc():
    v = Validator(Schema("s"))
    good, _ = v(_raw(series=["a"], ts=["2024-01-01T01:00:00+01:00"], value=[1], seq=[10]))
    assert str(good["ts"].dtype) == "datetime64[ns, UTC]"
    assert good["ts"].iat[0] == pd.Timestamp("2024-01-01T00:00:00Z")
    assert good["seq"].iat[0] == 10 and good["stream"].iat[0] == "s"
    assert good["value"].dtype == np.float64


def test_naive_times_are_utc_and_epoch_seconds_parse():
    v = Validator(Schema("s"))
    good, dead = v(_raw(series=["a", "a"], ts=[pd.Timestamp("2024-01-01 00:00"), pd.Timestamp("2024-01-01 00:01")],
                        value=[1.0, 2.0]))
    assert dead.empty and good["ts"].iat[0] == pd.Timestamp("2024-01-01", tz="UTC")
    good, dead = Validator(Schema("s"))(_raw(series=["a"], ts=[1_704_067_200], value=[1.0]))
    assert good["ts"].iat[0] == pd.Timestamp("2024-01-01", tz="UTC")


def test_lateness_across_batches():
    v = Validator(Schema("s", allowed_lateness=timedelta(seconds=10)))
    v(_raw(series=["a"], ts=["2024-01-01T00:01:00Z"], value=[1.0]))
    good, dead = v(_raw(series=["a", "a", "b"], ts=["2024-01-01T00:00:55Z", "2024-01-01T00:00:30Z",
                                                   "2024-01-01T00:00:00Z"], value=[1.0, 2.0, 3.0]))
    assert list(good["value"]) == [1.0, 3.0]  # b has its own newest time
    assert list(dead["reason"]) == ["late"]


def test_lateness_does_not_depend_on_batch_cut():
    times = pd.to_datetime(["2024-01-01T00:00:00Z", "2024-01-01T00:01:00Z", "2024-01-01T00:00:10Z",
                            "2024-01-01T00:00:59Z"])
    frame = _raw(series=["a"] * 4, ts=times, value=[1.0, 2.0, 3.0, 4.0])
    whole = Validator(Schema("s", allowed_lateness=timedelta(seconds=30)))(frame)
    split = Validator(Schema("s", allowed_lateness=timedelta(seconds=30)))
    parts = [split(frame.iloc[i:i + 1]) for i in range(4)]
    assert list(whole.good["value"]) == list(pd.concat([p.good for p in parts])["value"]) == [1.0, 2.0, 4.0]


def test_empty_batch():
    good, dead = Validator(Schema("s"))(pd.DataFrame())
    assert good.empty and dead.empty


def test_dead_letter_queue_counts_bounds_and_forwards():
    forwarded = []
    q = DeadLetterQueue(capacity=3, sinks=[forwarded.append])
    _, dead = Validator(Schema("s"))(_raw(series=["a"] * 5, ts=[None] * 5, value=[1.0] * 5))
    q.put(dead)
    assert q.total == 5 and q.counts() == {"missing_time": 5}
    assert len(q.recent()) == 3  # memory bounded ...
    assert sum(len(f) for f in forwarded) == 5  # ... but every one forwarded


# -- property: hypothesis-generated messy batches ------------------------------------------------

_cell_value = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**6, 10**6), st.none(),
    st.text(max_size=5), st.sampled_from(["1.5", "nan", "inf", "-1e3", "x"]), st.booleans(),
)
_cell_time = st.one_of(
    st.datetimes(min_value=pd.Timestamp("2000-01-01").to_pydatetime(),
                 max_value=pd.Timestamp("2030-01-01").to_pydatetime()).map(lambda d: d.isoformat()),
    st.none(), st.text(max_size=8), st.integers(0, 2_000_000_000), st.sampled_from(["", "2024-13-45"]),
)
_cell_series = st.one_of(st.sampled_from(["a", "b", "c", "", "a\x00", "\u202eb", "c" * 300]), st.none(),
                         st.integers(0, 3))
_cell_attrs = st.one_of(st.none(), st.dictionaries(st.text(max_size=3), st.integers(), max_size=3),
                        st.text(max_size=10), st.just({"big": "x" * 200}))


@st.composite
def messy_batches(draw):
    n = draw(st.integers(0, 40))
    rows = [
        {"series": draw(_cell_series), "ts": draw(_cell_time), "value": draw(_cell_value),
         "attrs": draw(_cell_attrs)}
        for _ in range(n)
    ]
    return pd.DataFrame(rows, columns=["series", "ts", "value", "attrs"])


def _is_good_number(x) -> bool:
    if isinstance(x, (bool, np.bool_)) or x is None:
        return False
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


@hsettings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messy_batches())
def test_messy_batches_never_raise_and_lose_nothing(raw):
    v = Validator(Schema("s", allowed_lateness=timedelta(days=100_000), max_attr_bytes=100))
    good, dead = v(raw)
    assert len(good) + len(dead) == len(raw)
    assert set(dead["reason"]).issubset(REASONS)
    assert dead["payload"].notna().all() and (dead["detail"].str.len() > 0).all()
    assert np.isfinite(good["value"].to_numpy()).all()
    assert good["ts"].notna().all() and (good["series"].str.len() > 0).all()
    assert all(name_fault(name, 256) is None for name in good["series"].astype(str))
    # a row with a usable number and time and a non-empty series and small attrs must not be dead
    for seq, reason in zip(dead["seq"], dead["reason"]):
        row = raw.iloc[int(seq)]
        if reason in ("non_numeric", "not_finite"):
            assert not _is_good_number(row["value"])
    assert sorted(list(good["seq"]) + list(dead["seq"])) == list(range(len(raw)))
