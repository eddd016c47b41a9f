"""Schemas of the store's tables: the points and the auxiliary tables every producer shares.

Points are kept in *long* format, one row per (record, field)::

    stream  series  field  ts  seq  value  attrs

A batch with fields ``value`` and ``temp`` becomes two rows per record. Why long: streams add fields
without DDL (no identifier is ever built from a field name, so a field called ``x"; drop table`` is just a
value), ``query(field=...)`` is a plain filter, rollups are one table for every field, and the key
(stream, series, field, ts, seq) makes a write idempotent per field. The cost is that key columns repeat
once per field; with DuckDB's dictionary compression and PostgreSQL's TOAST-free narrow rows that has been
the better trade for streams of a handful of fields.

Auxiliary tables are described by :data:`TABLES`; producers build frames with exactly these columns.
:func:`conform` checks and converts a frame to a table's dtypes, refusing the whole frame with a
:class:`~nexus_kernel.storage.BatchTypeError` that names the column when a value does not fit.

Caveat: a change to a spec here needs a new migration in ``_migrations.py``; the migrations create the
tables from these specs as they stand at that version.

Example
-------
>>> TABLES["anomalies"].key
('stream', 'series', 'field', 'ts', 'detector')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

__all__ = ["TableSpec", "TABLES", "V2_TABLES", "V4_TABLES", "POINT_COLUMNS", "POINT_KEY", "POINTS", "conform",
           "empty_frame", "BatchTypeError"]

Kind = Literal["text", "int", "float", "bool", "time"]


class BatchTypeError(TypeError, ValueError):
    """A batch or frame whose columns do not have the contract's types; nothing of it was written."""


@dataclass(frozen=True)
class TableSpec:
    """One table: ordered columns with their kind, the idempotency key, and the column that orders it."""

    name: str
    columns: tuple[tuple[str, Kind], ...]
    key: tuple[str, ...]
    time: str
    stream: str | None = "stream"  # column ``read(stream=...)`` filters on; None when there is none

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c for c, _ in self.columns)

    def kind(self, column: str) -> Kind:
        return dict(self.columns)[column]


def _spec(name: str, cols: str, key: tuple[str, ...], time: str, stream: str | None = "stream") -> TableSpec:
    columns = tuple((c.split(":")[0], c.split(":")[1]) for c in cols.split())
    return TableSpec(name, columns, key, time, stream)  # type: ignore[arg-type]


POINTS = _spec(
    "points",
    "stream:text series:text field:text ts:time seq:int value:float attrs:text",
    ("stream", "series", "field", "ts", "seq"),
    "ts",
)
POINT_COLUMNS = POINTS.names
POINT_KEY = POINTS.key

TABLES: dict[str, TableSpec] = {
    t.name: t
    for t in (
        _spec("dead_letters", "stream:text reason:text detail:text payload:text received_at:time seq:int",
              ("stream", "seq", "reason", "received_at"), "received_at"),
        _spec("anomalies", "stream:text series:text field:text ts:time detector:text score:float "
              "is_anomaly:bool reason:text", ("stream", "series", "field", "ts", "detector"), "ts"),
        _spec("forecasts", "stream:text series:text field:text model:text made_at:time ts:time yhat:float "
              "lo:float hi:float level:float", ("stream", "series", "field", "model", "made_at", "ts"), "ts"),
        _spec("models", "name:text version:int stream:text kind:text created_at:time train_start:time "
              "train_end:time metrics:text features:text params:text artifact:text",
              ("name", "version"), "created_at"),
        _spec("alerts", "id:text stream:text series:text ts:time rule:text severity:text state:text "
              "message:text facts:text", ("id",), "ts"),
        _spec("job_runs", "run_id:text job:text started_at:time finished_at:time status:text output:text "
              "error:text params:text", ("run_id",), "started_at", stream=None),
        # anchoring (nexus_kernel/anchoring, migration 4): the Merkle log, its signed heads, the anchor
        # queue and receipts, and the ledger backend's hash chain. Hashes are lower-case hex.
        _spec("log_leaves", "idx:int item_id:text kind:text item_key:text leaf_hash:text appended_at:time",
              ("idx",), "appended_at", stream=None),
        _spec("log_heads", "tree_size:int root:text signed_at:time head_id:text payload:text signature:text "
              "public_key:text", ("tree_size",), "signed_at", stream=None),
        _spec("anchor_queue", "head_id:text tree_size:int queued_at:time", ("head_id",), "queued_at", stream=None),
        _spec("anchor_receipts", "head_id:text backend:text status:text reference:text recorded_at:time",
              ("head_id", "backend", "status", "recorded_at"), "recorded_at", stream=None),
        _spec("ledger", "seq:int head_id:text root:text tree_size:int prev_hash:text entry_hash:text "
              "recorded_at:time", ("seq",), "recorded_at", stream=None),
    )
}
#: Tables an earlier migration made and a later one dropped: kept so that the migrations run as released.
#: ``anchors`` (2, dropped by 5) was a placeholder that nothing wrote; anchoring keeps its own tables (4).
RETIRED_TABLES: dict[str, TableSpec] = {
    "anchors": _spec("anchors", "batch_id:int backend:text stream:text root:text start:time end:time count:int "
                     "tx:text uri:text created_at:time", ("batch_id", "backend"), "created_at"),
}
#: The tables migration 2 created (later tables come with their own migration).
V2_TABLES: tuple[str, ...] = ("dead_letters", "anomalies", "forecasts", "models", "alerts", "anchors", "job_runs")
#: The tables migration 4 created (anchoring).
V4_TABLES: tuple[str, ...] = ("log_leaves", "log_heads", "anchor_queue", "anchor_receipts", "ledger")

_DTYPES: dict[str, str] = {
    "text": "string",
    "int": "Int64",
    "float": "float64",
    "bool": "boolean",
    "time": "datetime64[ns, UTC]",
}


def empty_frame(spec: TableSpec) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series([], dtype=_out_dtype(spec, c)) for c in spec.names})


def _out_dtype(spec: TableSpec, column: str) -> str:
    kind = spec.kind(column)
    if column in spec.key and kind == "int":
        return "int64"  # keys are never null
    if kind == "bool" and column in spec.key:
        return "bool"
    return _DTYPES[kind]


def _fail(table: str, column: str, why: str) -> BatchTypeError:
    return BatchTypeError(f"{table}: column '{column}' {why}; nothing was written")


def _time(values: pd.Series, table: str, column: str) -> pd.Series:
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return values.dt.tz_convert("UTC").astype("datetime64[ns, UTC]")
    if values.isna().all():
        return pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns, UTC]")
    if pd.api.types.is_datetime64_dtype(values.dtype):
        raise _fail(table, column, "holds naive datetimes; expected timezone-aware UTC times")
    if values.dtype == object and values.dropna().map(lambda v: isinstance(v, pd.Timestamp) and v.tzinfo).all():
        return pd.to_datetime(values, utc=True).astype("datetime64[ns, UTC]")
    raise _fail(table, column, f"has dtype {values.dtype}; expected datetime64[ns, UTC]")


def _text(values: pd.Series, table: str, column: str) -> pd.Series:
    if isinstance(values.dtype, pd.CategoricalDtype) and (
            values.cat.categories.empty or pd.api.types.infer_dtype(values.cat.categories) == "string"):
        return values.astype("string")  # the engine's categorical keys: text with a dictionary
    if isinstance(values.dtype, pd.StringDtype) or pd.api.types.is_string_dtype(values.dtype):
        ok = values.dropna().map(lambda v: isinstance(v, str)).all() if values.dtype == object else True
        if ok:
            return values.astype("string")
    elif values.isna().all():
        return values.astype("string")
    raise _fail(table, column, f"has dtype {values.dtype}; expected text")


def _number(values: pd.Series, table: str, column: str, kind: str) -> pd.Series:
    dtype = values.dtype
    if pd.api.types.is_bool_dtype(dtype) or not (pd.api.types.is_numeric_dtype(dtype) or values.isna().all()):
        raise _fail(table, column, f"has dtype {dtype}; expected {'integers' if kind == 'int' else 'numbers'}")
    if kind == "float":
        return values.astype("float64")
    if pd.api.types.is_float_dtype(dtype):
        whole = values.dropna()
        if not np.all(np.equal(np.mod(whole.to_numpy(), 1), 0)):
            raise _fail(table, column, "holds fractional numbers; expected integers")
    return values.astype("Int64")


def _bool(values: pd.Series, table: str, column: str) -> pd.Series:
    if pd.api.types.is_bool_dtype(values.dtype) or values.isna().all():
        return values.astype("boolean")
    if values.dtype == object and values.dropna().map(lambda v: isinstance(v, (bool, np.bool_))).all():
        return values.astype("boolean")
    raise _fail(table, column, f"has dtype {values.dtype}; expected booleans")


def conform(spec: TableSpec, frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with exactly the table's columns and dtypes, or :class:`BatchTypeError` for the whole of it.

    Missing or unknown columns are refused (a typo would otherwise lose data silently); key columns
    may not be null.
    """
    missing = [c for c in spec.names if c not in frame.columns]
    extra = [c for c in frame.columns if c not in spec.names]
    if missing or extra:
        raise BatchTypeError(
            f"{spec.name}: columns do not match the table (missing {missing}, unknown {extra}); nothing was written"
        )
    out = {}
    for column, kind in spec.columns:
        values = frame[column].reset_index(drop=True)
        if kind == "time":
            values = _time(values, spec.name, column)
        elif kind == "text":
            values = _text(values, spec.name, column)
        elif kind == "bool":
            values = _bool(values, spec.name, column)
        else:
            values = _number(values, spec.name, column, kind)
        if column in spec.key and values.isna().any():
            raise _fail(spec.name, column, "is part of the key and has empty values")
        out[column] = values.astype(pd.api.types.pandas_dtype(_out_dtype(spec, column)))
    return pd.DataFrame(out)
