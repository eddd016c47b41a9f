"""JSON messages → raw micro-batches, shared by the network sources (``redis``, ``websocket``).

A message is a JSON object (one record), a JSON array of objects (several records), or NDJSON text
(one object per line). Anything that cannot be read that way becomes a *malformed row*: no event time,
and the raw text with the parse error kept in ``attrs``. The :class:`~nexus_kernel.records.Validator`
dead-letters such a row (reason ``missing_time``) with its payload, so a bad message is never lost and
never stops the source.

Caveats
-------
- Parsing JSON is per message (``json.loads``): that is the edge of the system, where per-record Python
  is unavoidable. Everything after it — building the frame, coercing times — works on whole columns.
- Event times given as numbers, or as strings holding a number, are seconds since the Unix epoch (the
  Validator's convention for numeric times).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import pandas as pd

from ...records import ATTRS, TIME, field_columns
from ._base import BoundedBuffer

__all__ = ["malformed", "records_from_text", "frame_from_records", "BufferedBatches"]

MALFORMED_KEY = "malformed"


def malformed(error: str, raw: Any, **meta: Any) -> dict[str, Any]:
    """A row the Validator will dead-letter, carrying the raw input and why it was refused."""
    return {TIME: None, ATTRS: {MALFORMED_KEY: error, "raw": raw, **meta}}


def _from_value(value: Any, raw: str, meta: dict[str, Any]) -> list[dict[str, Any]]:
    if isinstance(value, dict):
        return [value]
    if isinstance(value, list):
        rows: list[dict[str, Any]] = []
        for item in value:
            if isinstance(item, dict):
                rows.append(item)
            else:
                rows.append(malformed("array item is not a JSON object", json.dumps(item), **meta))
        return rows
    return [malformed(f"JSON {type(value).__name__} is not an object or an array of objects", raw, **meta)]


def records_from_text(text: str | bytes, **meta: Any) -> list[dict[str, Any]]:
    """Records of one message: a JSON object, a JSON array of objects, or NDJSON lines.

    ``meta`` (for example the broker's entry id) is stored with any malformed row, to trace it back.

    >>> records_from_text('{"series": "a", "ts": 1, "value": 2}')
    [{'series': 'a', 'ts': 1, 'value': 2}]
    >>> [sorted(r) for r in records_from_text('{"value": 1}\\nnot json')]
    [['value'], ['attrs', 'ts']]
    """
    if isinstance(text, (bytes, bytearray)):
        raw = bytes(text)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            return [malformed(f"not UTF-8: {exc}", raw.decode("utf-8", "backslashreplace"), **meta)]
    try:
        return _from_value(json.loads(text), text, meta)
    except ValueError as whole_error:
        lines = [line for line in text.splitlines() if line.strip()]
        if len(lines) <= 1:
            return [malformed(f"not JSON: {whole_error}", text, **meta)]
    rows: list[dict[str, Any]] = []
    for line in lines:  # NDJSON: a bad line is refused alone, its neighbours pass
        try:
            rows.extend(_from_value(json.loads(line), line, meta))
        except ValueError as exc:
            rows.append(malformed(f"not JSON: {exc}", line, **meta))
    return rows


def _epoch_seconds_as_times(column: pd.Series) -> pd.Series:
    """Numbers and numeric strings in a time column → UTC timestamps; other values untouched.

    Needed because a column mixing numbers and ISO strings (or numbers sent as strings) would otherwise
    reach the Validator as text, where ``"1700000000"`` is not a parseable time.
    """
    if not (pd.api.types.is_object_dtype(column.dtype) or pd.api.types.is_string_dtype(column.dtype)):
        return column
    is_bool = column.map(lambda v: isinstance(v, bool)).to_numpy()
    numbers = pd.to_numeric(column.where(~is_bool), errors="coerce")
    numeric = (numbers.notna() & np.isfinite(numbers.astype("float64"))).to_numpy()
    if not numeric.any():
        return column
    if numeric.all():
        return pd.to_datetime(numbers.astype("float64"), unit="s", utc=True)
    out = column.astype(object).copy()
    out[numeric] = pd.to_datetime(numbers[numeric].astype("float64"), unit="s", utc=True, errors="coerce")
    return out


def frame_from_records(records: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """One raw micro-batch from record dicts: times coerced column-wise, at least one field column."""
    frame = pd.DataFrame.from_records(list(records))
    if frame.empty:
        return frame
    if TIME in frame.columns:
        frame[TIME] = _epoch_seconds_as_times(frame[TIME])
    if not field_columns(frame):  # e.g. a batch of malformed rows only: the Validator needs a field
        frame["value"] = np.nan
    return frame


class BufferedBatches:
    """The iterator ``batches()`` returns: items of a :class:`BoundedBuffer`, cancel-safe.

    Not an async generator on purpose: a consumer that waits with a timeout
    (``asyncio.wait_for(it.__anext__(), t)``) cancels ``__anext__``; an async generator would be
    finished by that cancellation, while here it only cancels a ``Queue.get`` and the next call goes on.
    ``accept(item)`` turns a buffered item into the frame to hand on, or ``None`` to skip it; it runs
    exactly when the frame is handed on (so a source knows what was yielded).
    """

    def __init__(self, make_buffer: Callable[[], BoundedBuffer], accept: Callable[[Any], pd.DataFrame | None],
                 on_end: Callable[[], None]) -> None:
        self._make_buffer = make_buffer
        self._accept = accept
        self._on_end = on_end
        self._iterator: BoundedBuffer | None = None

    def __aiter__(self) -> "BufferedBatches":
        return self

    async def __anext__(self) -> pd.DataFrame:
        if self._iterator is None:  # started lazily: the buffer's task needs a running loop
            self._iterator = self._make_buffer().__aiter__()
        while True:
            try:
                item = await self._iterator.__anext__()
            except StopAsyncIteration:
                self._on_end()
                raise
            frame = self._accept(item)
            if frame is not None:
                return frame
