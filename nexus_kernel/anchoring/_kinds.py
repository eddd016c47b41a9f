"""The built-in anchorable item kinds: ``record``, ``anomaly``, ``dead_letter``, ``model``.

Each kind says which fields key an item, how to list ``(key, body)`` pairs from a frame (a bus message
or a store read), and how to read one item back from a store (:class:`~._encoding.ItemKind`).

=============  ==============================  =================================================================
kind           key                             body
=============  ==============================  =================================================================
record         stream, series, ts, seq         the key, ``fields`` (name → value; absent fields left out), attrs
anomaly        stream, series, field, ts,      every column of the ``anomalies`` table
               detector
dead_letter    stream, seq, reason,            every column of the ``dead_letters`` table
               received_at
model          name, version                   every column of the ``models`` table
=============  ==============================  =================================================================

Caveat: a record's fields are the batch's numeric columns that are not NaN, as the store keeps them
(a NaN field is "no such field"). Times are compared to the microsecond (the stores' precision).

Example
-------
>>> import pandas as pd
>>> batch = pd.DataFrame({"stream": ["s"], "series": ["a"], "ts": [pd.Timestamp("2024-01-01", tz="UTC")],
...                       "seq": [1], "value": [2.5]})
>>> ITEM_KINDS.get("record").items(batch)[0][1]["fields"]
{'value': 2.5}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, cast

import numpy as np
import pandas as pd

from ..records import KEY_COLUMNS, field_columns
from ._encoding import ITEM_KINDS, ItemKind, iso_time, normalize

__all__ = ["RecordKind", "TableKind"]

_US = pd.Timedelta(microseconds=1)


def _iso_times(ts: pd.Series) -> list[str]:
    """:func:`~._encoding.iso_time` of each time, at numpy speed (the same text: rounded to the
    microsecond in UTC); years outside 1000–9999, which strftime and numpy write differently, one by one."""
    if not isinstance(ts.dtype, pd.DatetimeTZDtype) and not pd.api.types.is_datetime64_dtype(ts.dtype):
        return [iso_time(v) for v in ts.tolist()]
    utc = ts.dt.tz_localize("UTC") if ts.dt.tz is None else ts.dt.tz_convert("UTC")
    micro = utc.dt.round("us").to_numpy(dtype="datetime64[us]")
    years = micro.astype("datetime64[Y]").astype(np.int64) + 1970
    if len(micro) and (years.min() < 1000 or years.max() > 9999):
        return [iso_time(v) for v in ts.tolist()]
    return [text + "Z" for text in np.datetime_as_string(micro, unit="us").tolist()]


def _time_window(value: Any) -> tuple[pd.Timestamp, pd.Timestamp]:
    stamp = pd.Timestamp(value)
    stamp = (stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")).round("us")
    return stamp - _US, stamp + 2 * _US  # either store's rounding of a sub-microsecond time falls inside


class RecordKind:
    """One stored record (all its fields), keyed like the store keys it."""

    name: ClassVar[str] = "record"
    key_fields: ClassVar[tuple[str, ...]] = KEY_COLUMNS

    def items(self, frame: pd.DataFrame) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        if frame.empty:
            return []
        fields = field_columns(frame)
        values = {f: frame[f].to_numpy(dtype="float64", na_value=np.nan) for f in fields}
        keys = {c: frame[c].tolist() for c in KEY_COLUMNS if c != "ts"}
        keys["ts"] = _iso_times(frame["ts"])
        attrs = frame["attrs"].tolist() if "attrs" in frame.columns else [None] * len(frame)
        names = list(KEY_COLUMNS)
        present_all = {f: ~np.isnan(v) for f, v in values.items()}
        out = []
        for i, row in enumerate(zip(*(keys[c] for c in names))):
            key = normalize(dict(zip(names, row)))
            present = {f: float(v[i]) for f, v in values.items() if present_all[f][i]}
            out.append((key, {**key, "fields": present, "attrs": normalize(attrs[i])}))
        return out

    def fetch(self, store: Any, key: Mapping[str, Any]) -> dict[str, Any] | None:
        start, end = _time_window(key["ts"])
        rows = store.query(key["stream"], series=key["series"], start=start, end=end)
        rows = rows[(rows["seq"] == int(key["seq"])) & (rows["ts"].dt.round("us") == pd.Timestamp(key["ts"]))]
        if rows.empty:
            return None
        items = self.items(rows.iloc[:1].reset_index(drop=True))
        return items[0][1] if items else None


class TableKind:
    """An item that is one row of an auxiliary table of the store, keyed by the table's key."""

    name: ClassVar[str] = ""
    table: ClassVar[str] = ""
    key_fields: ClassVar[tuple[str, ...]] = ()

    def items(self, frame: pd.DataFrame) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        from ..storage import TABLES

        columns = [c for c in TABLES[self.table].names if c in frame.columns]
        rows = frame[columns].to_dict("records")
        out = []
        for row in rows:
            body = normalize(row)
            out.append(({k: body[k] for k in self.key_fields}, body))
        return out

    def fetch(self, store: Any, key: Mapping[str, Any]) -> dict[str, Any] | None:
        from ..storage import TABLES

        spec = TABLES[self.table]
        equals = {k: v for k, v in key.items() if k != spec.time}
        start = end = None
        if spec.time in key:
            start, end = _time_window(key[spec.time])
        rows = store.read(self.table, start=start, end=end, **equals)
        if spec.time in key and len(rows):
            rows = rows[rows[spec.time].dt.round("us") == pd.Timestamp(key[spec.time])]
        if rows.empty:
            return None
        return self.items(rows.iloc[:1])[0][1]


class AnomalyKind(TableKind):
    name = "anomaly"
    table = "anomalies"
    key_fields = ("stream", "series", "field", "ts", "detector")


class DeadLetterKind(TableKind):
    name = "dead_letter"
    table = "dead_letters"
    key_fields = ("stream", "seq", "reason", "received_at")


class ModelKind(TableKind):
    name = "model"
    table = "models"
    key_fields = ("name", "version")


for _kind in (RecordKind(), AnomalyKind(), DeadLetterKind(), ModelKind()):
    ITEM_KINDS.add(_kind.name, cast(ItemKind, _kind))  # mypy does not match ClassVar members to a protocol
