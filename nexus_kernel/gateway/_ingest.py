"""Ingest: bytes of a request body → records → validated batch → store + live bus + dead letters.

Accepted bodies: a JSON array of record objects (``application/json``) or one object per line
(``application/x-ndjson``), optionally gzip-compressed (``Content-Encoding: gzip``). The body size is
bounded twice — the announced ``Content-Length`` before reading, the bytes actually received while
streaming — and the *decompressed* size is bounded too, so a gzip bomb stops at the limit.

Parsing is vectorized where it can be: NDJSON goes through ``pyarrow.json`` (C++, multi-threaded) in one
call; only when that fails (a bad line, mixed types) does it fall back to orjson line by line, so a bad
record costs its own line and never the batch. Records that cannot be read at all come back as
``bad_json`` / ``not_an_object`` errors with their index; records that the stream's
:class:`~nexus_kernel.events.Validator` refuses come back with their dead-letter reason and go to the
store's ``dead_letters`` table. A record naming another stream than the URL is refused
(``stream_mismatch``) — a credential scoped to one stream cannot write to another.
"""

from __future__ import annotations

import io
import json
import zlib
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.json as paj

from ..config import Settings
from ..events import Schema, Validator, empty_dead_letters
from ._errors import ApiError

__all__ = ["BoundedBody", "parse_records", "StreamIngest", "MAX_ERRORS"]

MAX_ERRORS = 1000


class BoundedBody:
    """Collects a streamed body, inflating gzip on the fly, refusing more than ``limit`` bytes."""

    def __init__(self, limit: int, gzip: bool) -> None:
        self.limit = limit
        self.received = 0
        self._parts: list[bytes] = []
        self._size = 0
        self._inflate = zlib.decompressobj(16 + zlib.MAX_WBITS) if gzip else None
        self.error: ApiError | None = None

    def feed(self, chunk: bytes) -> None:
        """Take a chunk; past the limit, remember the refusal (raised by :meth:`finish`) and drop the rest.

        Raising from tornado's ``data_received`` would drop the connection without an answer.
        """
        if self.error is not None:
            return
        try:
            self._feed(chunk)
        except ApiError as exc:
            self.error = exc
            self._parts.clear()

    def _feed(self, chunk: bytes) -> None:
        self.received += len(chunk)
        if self.received > self.limit:
            raise _too_large(self.limit)
        if self._inflate is not None:
            try:
                chunk = self._inflate.decompress(chunk, self.limit - self._size + 1)
            except zlib.error:
                raise ApiError(400, "body is not valid gzip", field="body") from None
            if self._inflate.unconsumed_tail:
                raise _too_large(self.limit, "decompressed ")
        self._size += len(chunk)
        if self._size > self.limit:
            raise _too_large(self.limit, "decompressed " if self._inflate else "")
        self._parts.append(chunk)

    def finish(self) -> bytes:
        if self.error is not None:
            raise self.error
        if self._inflate is not None:
            tail = self._inflate.flush()
            self._size += len(tail)
            if self._size > self.limit:
                raise _too_large(self.limit, "decompressed ")
            self._parts.append(tail)
            if not self._inflate.eof and self.received:
                raise ApiError(400, "gzip body is truncated", field="body")
        return b"".join(self._parts)


def _too_large(limit: int, what: str = "") -> ApiError:
    return ApiError(413, f"{what}body larger than {limit} bytes", field="body")


def parse_records(body: bytes, ndjson: bool) -> tuple[pd.DataFrame, np.ndarray, list[dict[str, Any]]]:
    """Records as a raw frame, the body index of each frame row, and the records that could not be read."""
    if ndjson:
        frame = _arrow_ndjson(body)
        if frame is not None:
            return frame, np.arange(len(frame)), []
        lines = [line for line in body.split(b"\n")]
        items: list[Any] = []
        for line in lines:
            if line.strip():
                try:
                    items.append(orjson.loads(line))
                except orjson.JSONDecodeError as exc:
                    items.append(_BadJson(str(exc)))
    else:
        try:
            items = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise ApiError(400, f"body is not valid JSON: {str(exc)[:120]}", field="body") from None
        if isinstance(items, dict):
            items = [items]
        if not isinstance(items, list):
            raise ApiError(422, "body must be a JSON array of record objects (or NDJSON)", field="body")
    good, index, errors = [], [], []
    for i, item in enumerate(items):
        if isinstance(item, dict):
            good.append(item)
            index.append(i)
        elif isinstance(item, _BadJson):
            errors.append({"index": i, "error": "bad_json", "detail": item.detail[:200]})
        else:
            errors.append({"index": i, "error": "not_an_object", "detail": "a record is a JSON object"})
    frame = pd.DataFrame.from_records(good) if good else pd.DataFrame()
    return frame, np.asarray(index, dtype=np.int64), errors


class _BadJson:
    def __init__(self, detail: str) -> None:
        self.detail = detail


_READ = paj.ReadOptions(use_threads=False, block_size=1 << 24)


def _arrow_ndjson(body: bytes) -> pd.DataFrame | None:
    if not body.strip():
        return pd.DataFrame()
    try:
        table = paj.read_json(io.BytesIO(body), read_options=_READ)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    for name, column in zip(table.column_names, table.columns):
        nested = pa.types.is_struct(column.type) or pa.types.is_list(column.type)
        if nested and name != "attrs":
            return None  # nested values outside attrs: the slow path reports them per record
    table = _arrow_times(table)
    frame = table.to_pandas()
    if "attrs" in frame.columns and frame["attrs"].dtype == object:
        frame["attrs"] = frame["attrs"].map(lambda v: json.dumps(v) if isinstance(v, dict) else v)
    return frame


_UTC_NS = pa.timestamp("ns", tz="UTC")


def _arrow_times(table: pa.Table) -> pa.Table:
    """ISO-8601 event times parsed in Arrow (C++), so the validator gets times and skips its parser.

    All or nothing: if any value does not cast (no zone, another format, a number, out of the ns range),
    the column stays text and the validator parses it, reporting each bad value with its index.
    """
    if "ts" not in table.column_names or not pa.types.is_string(table.schema.field("ts").type):
        return table
    try:
        times = table.column("ts").cast(_UTC_NS)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return table
    return table.set_column(table.column_names.index("ts"), "ts", times)


class _IndexedValidator(Validator):
    """A Validator that remembers which input rows it dead-lettered (to report their body index)."""

    last_dead: np.ndarray | None = None

    def _dead_letters(self, raw, mask, reason, detail, seq):  # type: ignore[no-untyped-def]
        self.last_dead = np.asarray(mask, dtype=bool)
        return super()._dead_letters(raw, mask, reason, detail, seq)


class StreamIngest:
    """The validators of the streams this gateway ingests into (lateness is judged per stream)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._validators: dict[str, _IndexedValidator] = {}

    def validator(self, stream: str) -> _IndexedValidator:
        validator = self._validators.get(stream)
        if validator is None:
            schema = Schema(stream, allowed_lateness=pd.Timedelta(seconds=self.settings.allowed_lateness),
                            max_attr_bytes=self.settings.max_attr_bytes)
            validator = self._validators[stream] = _IndexedValidator(schema)
        return validator

    def screen(self, stream: str, raw: pd.DataFrame, index: np.ndarray,
               errors: list[dict[str, Any]]) -> tuple[pd.DataFrame, np.ndarray, list[dict[str, Any]]]:
        """Refuse records naming another stream (``stream_mismatch``); the rest without a stream column."""
        if "stream" in raw.columns:
            other = (raw["stream"].notna() & (raw["stream"].astype(str) != stream)).to_numpy()
            if other.any():
                for i in index[other]:
                    errors.append({"index": int(i), "error": "stream_mismatch",
                                   "detail": f"record names another stream than '{stream}'"})
                raw, index = raw.loc[~other].reset_index(drop=True), index[~other]
            raw = raw.drop(columns="stream")
        return raw, index, errors

    def validate_raw(self, stream: str, raw: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
        """Good batch, dead letters (in input order), and which input rows died."""
        if raw.empty:
            return raw, empty_dead_letters(), np.zeros(len(raw), dtype=bool)
        validator = self.validator(stream)
        validator.last_dead = None
        good, dead = validator(raw)
        mask = validator.last_dead if len(dead) and validator.last_dead is not None \
            else np.zeros(len(raw), dtype=bool)
        return good, dead, mask

    def validate(self, stream: str, raw: pd.DataFrame, index: np.ndarray,
                 errors: list[dict[str, Any]]) -> tuple[pd.DataFrame, pd.DataFrame, list[dict[str, Any]]]:
        """Good batch, dead letters, and every per-record error sorted by index (one request alone)."""
        raw, index, errors = self.screen(stream, raw, index, errors)
        good, dead, mask = self.validate_raw(stream, raw)
        for i, reason, detail in zip(index[mask], dead["reason"], dead["detail"]):
            errors.append({"index": int(i), "error": str(reason), "detail": str(detail)})
        errors.sort(key=lambda e: e["index"])
        return good, dead, errors


def unreadable_dead_letters(stream: str, body_errors: list[dict[str, Any]]) -> pd.DataFrame:
    """Records that were not even JSON objects still reach the dead letters, with their index as payload."""
    rows = [e for e in body_errors if e["error"] in ("bad_json", "not_an_object")]
    if not rows:
        return empty_dead_letters()
    now = pd.Timestamp.now(tz="UTC")
    return pd.DataFrame({
        "stream": pd.array([stream] * len(rows), dtype="string"),
        "reason": pd.array(["processing_error"] * len(rows), dtype="string"),
        "detail": pd.array([f"{e['error']}: {e['detail']}" for e in rows], dtype="string"),
        "payload": pd.array([json.dumps({"index": e["index"]}) for e in rows], dtype="string"),
        "received_at": pd.Series([now] * len(rows), dtype="datetime64[ns, UTC]"),
        "seq": np.asarray([-1 - e["index"] for e in rows], dtype=np.int64),
    })
