"""The record kind's vectorized encoding path gives, byte for byte, what the one-value-at-a-time rules
of ``_encoding`` give (the leaves of existing logs depend on it)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from nexus_kernel.anchoring import ITEM_KINDS, canonical_json, encode_item
from nexus_kernel.anchoring._encoding import iso_time

_NS = st.integers(min_value=-(2**62), max_value=2**62)  # any time pandas holds in nanoseconds


def _reference_items(frame: pd.DataFrame) -> list[tuple[dict, dict]]:
    """The record items built with the scalar rules only (iso_time per value, normalize per value)."""
    out = []
    for row in frame.to_dict("records"):
        key = {"stream": str(row["stream"]), "series": str(row["series"]), "ts": iso_time(row["ts"]),
               "seq": int(row["seq"])}
        fields = {f: float(row[f]) for f in ("value", "temp") if f in row and not np.isnan(row[f])}
        out.append((key, {**key, "fields": fields, "attrs": row.get("attrs")}))
    return out


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(_NS, st.floats(allow_nan=True, allow_infinity=False),
                          st.floats(allow_nan=True, allow_infinity=False),
                          st.text(min_size=1, max_size=8), st.one_of(st.none(), st.text(max_size=8))),
                min_size=1, max_size=20),
       st.sampled_from(["UTC", "Europe/Paris", None]))
def test_vectorized_record_items_match_the_scalar_rules(rows, tz) -> None:
    ts = pd.to_datetime([r[0] for r in rows], unit="ns", utc=True)
    ts = ts.tz_convert(tz) if tz else ts.tz_localize(None)
    frame = pd.DataFrame({"stream": "s", "series": pd.array([r[3] for r in rows], dtype="string"), "ts": ts,
                          "seq": np.arange(len(rows), dtype="int64"), "value": [r[1] for r in rows],
                          "temp": [r[2] for r in rows], "attrs": pd.array([r[4] for r in rows], dtype="string")})
    frame["attrs"] = frame["attrs"].astype(object).where(frame["attrs"].notna(), None)
    ours = ITEM_KINDS.get("record").items(frame)
    expected = _reference_items(frame)
    assert [canonical_json(k) for k, _ in ours] == [canonical_json(k) for k, _ in expected]
    assert [encode_item("record", b) for _, b in ours] == [encode_item("record", b) for _, b in expected]


def test_times_round_to_the_microsecond_half_to_even_as_iso_time_does() -> None:
    ts = pd.Series(pd.to_datetime(["2024-01-01T00:00:00.0000005Z", "2024-01-01T00:00:00.0000015Z",
                                   "2024-01-01T00:00:00.9999996Z", "1970-01-01T00:00:00.0000000Z"],
                                  utc=True))
    frame = pd.DataFrame({"stream": "s", "series": "a", "ts": ts, "seq": range(len(ts)), "value": 1.0})
    got = [k["ts"] for k, _ in ITEM_KINDS.get("record").items(frame)]
    assert got == [iso_time(v) for v in ts]
    assert got[:3] == ["2024-01-01T00:00:00.000000Z", "2024-01-01T00:00:00.000002Z", "2024-01-01T00:00:01.000000Z"]
