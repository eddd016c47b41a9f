"""Ingest: bytes of a request body → records, screened for the stream's pipeline (which validates them).

Accepted bodies: a JSON array of record objects (``application/json``) or one object per line
(``application/x-ndjson``), optionally gzip-compressed (``Content-Encoding: gzip``; every member of a
multi-member gzip is read, bytes after the last member are refused). The body size is bounded twice —
the announced ``Content-Length`` before reading, the bytes actually received while streaming — and the
*decompressed* size is bounded too, across all members, so a gzip bomb stops at the limit.

Parsing is vectorized where it can be: NDJSON whose lines all carry the first line's keys, with no null,
goes through ``pyarrow.json`` (C++) in one call, read with the first line's types; any other body falls
back to orjson line by line, so a bad record costs its own line and never the batch, and both paths
read a record alike. Records that cannot be read at all come back as ``bad_json`` / ``not_an_object``
(or ``missing_series`` for a series that is a JSON object or array) errors with their index; records
that the stream's :class:`~nexus_kernel.records.Validator` refuses come back with their dead-letter
reason and go to the store's ``dead_letters`` table. A record naming another stream than the URL is
refused (``stream_mismatch``) — a credential scoped to one stream cannot write to another.

A record is judged on the keys it carries, whatever else its body (or its coalesced round) holds: a
JSON ``null`` is a key not sent, a field another record has and this one lacks is no fault of this one
(see :meth:`Validator.validate_records <nexus_kernel.records.Validator.validate_records>`). The records
are validated and stored by the stream's own pipeline (see :mod:`._coalesce`); this module reads them.
A body is refused whole (422) when its records name more than
:data:`MAX_KEYS` distinct keys, or more cells (records × keys) than :func:`cell_budget` allows — a few
kilobytes of records with keys of their own would otherwise make a frame of gigabytes.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.json as paj

from ..config import Settings
from ..records import ATTRS, REASONS, SEQ, SERIES, STREAM, Schema, Validator, empty_dead_letters
from ._errors import ApiError

__all__ = ["BoundedBody", "parse_records", "check_width", "cell_budget", "StreamIngest", "unreadable_dead_letters",
           "MAX_ERRORS", "MAX_KEYS"]

MAX_ERRORS = 1000  # per-record errors listed in an answer (all are counted and dead-lettered)
MAX_KEYS = 1024  # distinct keys the records of one body (or one coalesced round) may name


_GZIP_MAGIC = b"\x1f\x8b"


class BoundedBody:
    """Collects a streamed body, inflating gzip on the fly, refusing more than ``limit`` bytes.

    Parameters
    ----------
    limit
        Largest body in bytes, both as received and, for gzip, once inflated.
    gzip
        Whether the body is gzip (``Content-Encoding: gzip``).

    Caveats
    -------
    A gzip body may hold several members one after the other (RFC 1952 §2.2, what ``cat a.gz b.gz``
    makes): every member is inflated, and the decompressed bound spans all of them, so a bomb split over
    many members stops at the same limit. Bytes after the last member that do not start another member
    are refused (400) rather than ignored: they could only be a client's mistake, and ignoring them
    would lose records silently. An empty body is an empty body, with or without gzip.
    """

    def __init__(self, limit: int, gzip: bool) -> None:
        self.limit = limit
        self.received = 0
        self.members = 0  # gzip members inflated to their end
        self._parts: list[bytes] = []
        self._size = 0
        self._gzip = gzip
        self._inflate: zlib._Decompress | None = None  # the member being inflated; None between members
        self._between = b""  # bytes seen after a member's end, too few yet to tell what they start
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
        if self._gzip:
            self._inflate_chunk(chunk)
        else:
            self._keep(chunk)

    def _inflate_chunk(self, data: bytes) -> None:
        while data:
            if self._inflate is None:  # at the start of the body or after a member's end
                data, self._between = self._between + data, b""
                if len(data) < len(_GZIP_MAGIC):
                    self._between = data
                    return
                if not data.startswith(_GZIP_MAGIC):
                    raise _not_gzip(self.members)
                self._inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
            try:
                # at most one byte past the room left: enough to know the limit is crossed
                out = self._inflate.decompress(data, self.limit - self._size + 1)
            except zlib.error:
                what = "body" if self.members == 0 else f"gzip member {self.members + 1}"
                raise ApiError(400, f"{what} is not valid gzip", field="body") from None
            if self._inflate.unconsumed_tail:
                raise _too_large(self.limit, "decompressed ")
            self._keep(out)
            if self._inflate.eof:
                data, self._inflate = self._inflate.unused_data, None
                self.members += 1
            else:
                data = b""

    def _keep(self, data: bytes) -> None:
        self._size += len(data)
        if self._size > self.limit:
            raise _too_large(self.limit, "decompressed " if self._gzip else "")
        self._parts.append(data)

    def finish(self) -> bytes:
        """The whole (inflated) body; raises the refusal met while feeding, or a 400 for a truncated gzip."""
        if self.error is not None:
            raise self.error
        if self._inflate is not None or self._between.startswith(_GZIP_MAGIC[:1]):
            raise ApiError(400, "gzip body is truncated", field="body")
        if self._between:
            raise _not_gzip(self.members)
        return b"".join(self._parts)


def _not_gzip(members: int) -> ApiError:
    if members == 0:
        return ApiError(400, "body is not gzip (it was sent with Content-Encoding: gzip)", field="body")
    return ApiError(400, f"bytes after gzip member {members} are not gzip: send only gzip members", field="body")


def _too_large(limit: int, what: str = "") -> ApiError:
    return ApiError(413, f"{what}body larger than {limit} bytes", field="body")


def parse_records(body: bytes, ndjson: bool) -> tuple[pd.DataFrame, np.ndarray, list[dict[str, Any]]]:
    """Records as a raw frame, the body index of each frame row, and the records that could not be read.

    Parameters
    ----------
    body
        The whole (inflated) body.
    ndjson
        One JSON value per line; otherwise a JSON array of records (or one record object).

    A JSON ``null`` is a key not sent (except ``series``: a null series is an empty one, refused as
    ``missing_series``), so a record means the same whatever other records share its body. Raises a 400
    for a JSON array that does not parse, and a 422 for a body naming more than :data:`MAX_KEYS`
    distinct keys or more cells (records × distinct keys) than :func:`cell_budget` allows.
    """
    if ndjson:
        frame = _arrow_ndjson(body)
        if frame is not None:
            return frame, np.arange(len(frame)), []
        items: list[Any] = []
        for line in body.split(b"\n"):
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
    keys: set[str] = set()
    for i, item in enumerate(items):
        if isinstance(item, dict):
            if None in item.values():
                item = _without_nulls(item)
            if isinstance(item.get(SERIES), (dict, list)):
                errors.append({"index": i, "error": "missing_series",
                               "detail": "series key is a JSON object or array, not text or a number"})
                continue
            keys.update(item)
            good.append(item)
            index.append(i)
        elif isinstance(item, _BadJson):
            errors.append({"index": i, "error": "bad_json", "detail": item.detail[:200]})
        else:
            errors.append({"index": i, "error": "not_an_object", "detail": "a record is a JSON object"})
    check_width(len(good), len(keys), len(body))
    frame = pd.DataFrame.from_records(good) if keys else pd.DataFrame(index=pd.RangeIndex(len(good)))
    return frame, np.asarray(index, dtype=np.int64), errors


def cell_budget(body_bytes: int) -> int:
    """Most cells (records × distinct keys) the frame of a body may hold: one per body byte, plus 1 Mi.

    A dense body holds one cell per 4 or more bytes (``"a":1,``), so no body of records that share
    their keys comes near; a sparse one (every record naming keys of its own) would otherwise turn a
    few kilobytes into a frame of gigabytes.
    """
    return body_bytes + (1 << 20)


def check_width(rows: int, keys: int, body_bytes: int) -> None:
    """Refuse (422) a body whose records name too many distinct keys for one frame."""
    if keys > MAX_KEYS:
        raise ApiError(422, f"the records name {keys} distinct keys; at most {MAX_KEYS} in one body",
                       field="body")
    if rows * keys > cell_budget(body_bytes):
        raise ApiError(422, f"{rows} records naming {keys} distinct keys make {rows * keys} cells, more than "
                            f"{cell_budget(body_bytes)} for a body of {body_bytes} bytes: send records that "
                            "share their keys, or fewer records per body", field="body")


def _without_nulls(record: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in record.items() if v is not None}
    if SERIES in record and record[SERIES] is None:
        out[SERIES] = ""  # the validator refuses it as missing_series, as it would a lone null series
    return out


class _BadJson:
    def __init__(self, detail: str) -> None:
        self.detail = detail


_READ = paj.ReadOptions(use_threads=False, block_size=1 << 24)


def _arrow_ndjson(body: bytes) -> pd.DataFrame | None:
    """The fast path: a body whose lines all carry the first line's keys, read by Arrow; else ``None``.

    The first line fixes the schema (:func:`_first_line_schema`) and any other key makes Arrow stop, so
    the table is never wider than that line (and its cells are bounded before the read); a body with a
    null or a missing key anywhere goes to the slow path too, which tells a key not sent from a value.
    """
    body = body.strip()
    if not body:
        return pd.DataFrame()
    schema = _first_line_schema(body.split(b"\n", 1)[0])
    if schema is None or len(schema) * (body.count(b"\n") + 1) > cell_budget(len(body)):
        return None
    options = paj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="error")
    try:
        table = paj.read_json(pa.BufferReader(body), read_options=_READ, parse_options=options)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    if any(_has_nulls(column) for column in table.columns):
        return None
    table = _arrow_times(table)
    frame = table.to_pandas()
    if ATTRS in frame.columns and frame[ATTRS].dtype == object:
        frame[ATTRS] = frame[ATTRS].map(lambda v: json.dumps(v) if isinstance(v, dict) else v)
    return frame


def _first_line_schema(line: bytes) -> pa.Schema | None:
    """The explicit schema the fast path reads a body with, from its first line (``None``: slow path).

    Types are chosen so that a record reads as it would on the slow path (orjson, then pandas): numbers
    of fields and times are float64 (a field sent as 1 on one line and 1.5 on the next), integers of
    ``series``, ``seq`` and ``stream`` stay exact, text stays text (``ts`` is cast to a time after the
    read, all or nothing, by :func:`_arrow_times`). A null, or a nested value outside ``attrs``, sends
    the body to the slow path.
    """
    try:
        first = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(first, dict) or not first or len(first) > MAX_KEYS:
        return None  # no keys: Arrow would read a line "null" as a record of none, not as no object
    fields = []
    for name, value in first.items():
        if isinstance(value, bool):
            kind = pa.bool_()
        elif isinstance(value, int) and name in (SERIES, SEQ, STREAM):
            kind = pa.int64()
        elif isinstance(value, (int, float)):
            kind = pa.float64()
        elif isinstance(value, str):
            kind = pa.string()
        elif isinstance(value, dict) and name == ATTRS:
            kind = _inferred(line, ATTRS)
            if kind is None:
                return None
        else:  # null, or a nested value outside attrs: the slow path reports them per record
            return None
        fields.append(pa.field(name, kind))
    return pa.schema(fields)


def _inferred(line: bytes, name: str) -> pa.DataType | None:
    """The type Arrow infers for one column of one line (the nested ``attrs``, whose type is a struct)."""
    try:
        kind = paj.read_json(pa.BufferReader(line), read_options=_READ).schema.field(name).type
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, KeyError):
        return None
    return None if pa.types.is_null(kind) else kind


def _has_nulls(array: pa.Array | pa.ChunkedArray) -> bool:
    """Nulls anywhere, struct children included (a struct's own count misses a child key not sent)."""
    chunks = array.chunks if isinstance(array, pa.ChunkedArray) else [array]
    for chunk in chunks:
        if chunk.null_count:
            return True
        if pa.types.is_struct(chunk.type):
            if any(_has_nulls(chunk.field(i)) for i in range(chunk.type.num_fields)):
                return True
        elif pa.types.is_list(chunk.type) and _has_nulls(chunk.flatten()):
            return True
    return False


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


class StreamIngest:
    """What the gateway judges before records reach a stream's pipeline, and the verdict of a lone request.

    :meth:`screen` is the gateway's own check (a record naming another stream than the URL). The records
    themselves are validated by the stream's pipeline, through its ingest inlet (see
    :mod:`nexus_kernel.engine.sources._ingest`); :meth:`validate` gives the verdict one request would get
    alone from a fresh validator with the settings' schema — the reference that tools and tests compare a
    pipeline's answers with. It stores nothing.
    """

    def __init__(self, settings: Settings, manager: Any = None) -> None:
        self.settings = settings
        self.manager = manager
        self._validators: dict[str, Validator] = {}

    def validator(self, stream: str) -> Validator:
        """The validator that judges the stream's ingested records: the first ``validate`` step's of its
        pipeline running here (read it, e.g. ``newest()``; it runs on the pipeline's loop), else the
        reference validator :meth:`validate` uses."""
        pipe = self.manager.pipelines.get(stream) if self.manager is not None else None
        for step in pipe.steps if pipe is not None else ():
            if getattr(step, "kind", None) == "validate" and getattr(step, "validator", None) is not None:
                return step.validator
        return self._reference(stream)

    def _reference(self, stream: str) -> Validator:
        validator = self._validators.get(stream)
        if validator is None:
            schema = Schema(stream, allowed_lateness=pd.Timedelta(seconds=self.settings.allowed_lateness),
                            max_attr_bytes=self.settings.max_attr_bytes,
                            max_future=self.settings.max_future, max_name_length=self.settings.max_name_length)
            validator = self._validators[stream] = Validator(schema)
        return validator

    def screen(self, stream: str, raw: pd.DataFrame, index: np.ndarray,
               errors: list[dict[str, Any]]) -> tuple[pd.DataFrame, np.ndarray, list[dict[str, Any]]]:
        """Refuse records naming another stream (``stream_mismatch``); the rest without a stream column.

        ``errors`` is not changed: the answer's errors are a new list (the parse errors, then these).
        """
        errors = list(errors)
        if STREAM in raw.columns:
            other = (raw[STREAM].notna() & (raw[STREAM].astype(str) != stream)).to_numpy()
            if other.any():
                for i in index[other]:
                    errors.append({"index": int(i), "error": "stream_mismatch",
                                   "detail": f"record names another stream than '{stream}'"})
                raw, index = raw.loc[~other].reset_index(drop=True), index[~other]
            raw = raw.drop(columns=STREAM)
        return raw, index, errors

    def validate_raw(self, stream: str, raw: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
        """Good batch, dead letters (in input order), and which input rows died; each record judged on the
        keys it carries (see :meth:`Validator.validate_records <nexus_kernel.records.Validator.validate_records>`)."""
        result = self._reference(stream).validate_records(raw)
        return result.good, result.dead, result.dead_rows

    def validate(self, stream: str, raw: pd.DataFrame, index: np.ndarray,
                 errors: list[dict[str, Any]]) -> tuple[pd.DataFrame, pd.DataFrame, list[dict[str, Any]]]:
        """Good batch, dead letters, and every per-record error sorted by index (one request alone)."""
        raw, index, errors = self.screen(stream, raw, index, errors)
        good, dead, mask = self.validate_raw(stream, raw)
        for i, reason, detail in zip(index[mask], dead["reason"], dead["detail"]):
            errors.append({"index": int(i), "error": str(reason), "detail": str(detail)})
        errors.sort(key=lambda e: e["index"])
        return good, dead, errors


def unreadable_dead_letters(stream: str, parse_errors: list[dict[str, Any]]) -> pd.DataFrame:
    """Records refused while parsing (not JSON, not an object, a nested series) still reach the dead
    letters, with their index as payload and the error as reason (``processing_error`` when it is no
    dead-letter reason)."""
    rows = parse_errors
    if not rows:
        return empty_dead_letters()
    now = pd.Timestamp.now(tz="UTC")
    return pd.DataFrame({
        "stream": pd.array([stream] * len(rows), dtype="string"),
        "reason": pd.array([e["error"] if e["error"] in REASONS else "processing_error" for e in rows],
                           dtype="string"),
        "detail": pd.array([e["detail"] if e["error"] in REASONS else f"{e['error']}: {e['detail']}" for e in rows],
                           dtype="string"),
        "payload": pd.array([json.dumps({"index": e["index"]}) for e in rows], dtype="string"),
        "received_at": pd.Series([now] * len(rows), dtype="datetime64[ns, UTC]"),
        "seq": np.asarray([-1 - e["index"] for e in rows], dtype=np.int64),
    })
