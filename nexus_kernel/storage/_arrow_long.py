"""A batch's long point rows built straight as Arrow, for batches of the usual shape (the DuckDB write path).

:func:`~._protocol.batch_to_long_rows` checks any batch and makes long rows as a pandas frame; a backend
that reads Arrow then converts that frame again, text cell by text cell. Most batches have one shape —
text keys (categoricals with text categories, as the validator hands them on, or text columns), UTC
times, int64 ``seq``, numeric fields, no ``attrs`` values — and for that shape the Arrow columns are made
from the batch's own buffers: a key column is codes into its few distinct names (a categorical's own, a
text column's factorized), decoded in Arrow; the field name is a dictionary of the field names. Anything
else returns ``None`` and goes the checked way, which refuses a batch that breaks the contract with its
message; both ways store the same rows (a test holds them equal).

Example
-------
>>> import pandas as pd
>>> batch = pd.DataFrame({"stream": pd.Categorical(["s"]), "series": pd.Categorical(["a"]),
...                       "ts": pd.to_datetime(["2024-01-01"], utc=True), "seq": [1], "value": [2.0]})
>>> table, rows = long_table(batch)
>>> table.column("field").to_pylist(), rows.tolist()
(['value'], [0])
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from ..records import ATTRS, KEY_COLUMNS, SEQ, SERIES, STREAM, TIME, field_columns

__all__ = ["ARROW_POINTS", "long_table"]

#: The points table's columns as Arrow types (microsecond UTC times, as the stores keep them).
ARROW_POINTS = pa.schema([(STREAM, pa.string()), (SERIES, pa.string()), ("field", pa.string()),
                          (TIME, pa.timestamp("us", tz="UTC")), (SEQ, pa.int64()), ("value", pa.float64()),
                          (ATTRS, pa.string())])


def long_table(batch: pd.DataFrame, schema: pa.Schema = ARROW_POINTS) -> tuple[pa.Table, np.ndarray] | None:
    """The long rows of a ``batch`` of the usual shape as an Arrow table of ``schema`` (the points table's
    columns), and the batch row each came from; ``None`` for a batch of any other shape (see the module)."""
    if not isinstance(batch, pd.DataFrame) or not len(batch) or any(c not in batch.columns for c in KEY_COLUMNS):
        return None
    fields = field_columns(batch)
    if not fields or (ATTRS in batch.columns and not batch[ATTRS].isna().all()):
        return None
    stream, series = _codes(batch[STREAM]), _codes(batch[SERIES])
    times = batch[TIME]
    if stream is None or series is None or not isinstance(times.dtype, pd.DatetimeTZDtype) \
            or batch[SEQ].dtype != np.int64:
        return None
    ts = pa.array(times.array)
    if ts.null_count:
        return None
    values = []
    for name in fields:
        column = batch[name]
        if not isinstance(column.dtype, np.dtype) or column.dtype.kind not in "fiu":
            return None
        values.append(column.to_numpy(dtype=np.float64))
    n, k = len(batch), len(fields)
    value = np.concatenate(values) if k > 1 else values[0]
    rows = np.tile(np.arange(n, dtype=np.int64), k)
    present = ~np.isnan(value)
    keep = None if present.all() else present
    if keep is not None:
        rows, value = rows[keep], value[keep]

    def tiled(array: np.ndarray) -> np.ndarray:  # a batch column, once per field, empty cells dropped
        out = np.tile(array, k) if k > 1 else array
        return out if keep is None else out[keep]

    field_codes = np.repeat(np.arange(k, dtype=np.int32), n)

    columns = {
        STREAM: _decoded(tiled(stream[0]), stream[1]),
        SERIES: _decoded(tiled(series[0]), series[1]),
        "field": _decoded(field_codes if keep is None else field_codes[keep], fields),
        TIME: pa.array(tiled(ts.cast(pa.int64()).to_numpy()), type=pa.timestamp(ts.type.unit, tz="UTC")),
        SEQ: pa.array(tiled(batch[SEQ].to_numpy())),
        "value": pa.array(value),
        ATTRS: pa.nulls(len(rows), pa.string()),
    }
    table = pa.table([columns[f.name] for f in schema], names=schema.names)
    return table.cast(schema, safe=False), rows


def _codes(column: pd.Series) -> tuple[np.ndarray, list[str]] | None:
    """A key column as codes into its distinct names: a categorical one through its categories, a text one
    (``string`` or ``object`` of ``str``) factorized; ``None`` for any other column, or one with an empty
    cell (the checked way refuses it)."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        categories = column.cat.categories
        if len(categories) and pd.api.types.infer_dtype(categories) != "string":
            return None
        codes, names = column.cat.codes.to_numpy(), [str(c) for c in categories]
    elif isinstance(column.dtype, pd.StringDtype) or column.dtype == object:
        codes, uniques = pd.factorize(column, use_na_sentinel=True)
        names = list(uniques)
        if not all(type(name) is str for name in names):  # a number or an object among the keys
            return None
    else:
        return None
    if len(codes) and codes.min() < 0:
        return None
    return codes.astype(np.int32), names


def _decoded(codes: np.ndarray, names: list[str]) -> pa.Array:
    """Text from codes into ``names``, decoded by Arrow (each distinct name converted once)."""
    return pa.DictionaryArray.from_arrays(pa.array(codes, type=pa.int32()),
                                          pa.array(names, type=pa.string())).cast(pa.string())
