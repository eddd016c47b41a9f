"""The pydantic models of request bodies, query strings and answers — the OpenAPI document is built
from these, so the docs and the checks cannot drift apart."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

NAME = r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$"
SPAN = r"^ *([1-9][0-9]*(?:\.[0-9]+)?) *(ns|us|ms|s|sec|min|m|h|d|D|w|W) *$"  # at least one unit

# Spans and time bounds: the document says which texts are accepted (a pattern, RFC 3339 formats), and
# the server accepts every text the document accepts — a span too long for the store is clamped, a
# time outside the years the store holds (1677–2262) is clamped to them — so the two cannot disagree.
_UNIT_NS = {"ns": 1, "us": 10**3, "ms": 10**6, "s": 10**9, "sec": 10**9, "min": 60 * 10**9, "m": 60 * 10**9,
            "h": 3600 * 10**9, "d": 86_400 * 10**9, "D": 86_400 * 10**9, "w": 604_800 * 10**9,
            "W": 604_800 * 10**9}
MAX_SPAN_NS = 200 * 365 * 86_400 * 10**9  # 200 years: "now minus the span" stays within the store's years


def _span(value: str | None) -> str | None:
    """A span (already matching :data:`SPAN`) as nanoseconds the store reads, clamped to 200 years."""
    if value is None:
        return None
    match = re.fullmatch(SPAN, value)
    if match is None:  # the field's pattern is checked first; kept for direct calls
        raise ValueError(f"not a span: use a number and a unit, e.g. '5min', '6h', '7d' ({value[:32]!r})")
    ns = int(Decimal(match.group(1)) * _UNIT_NS[match.group(2)])
    return f"{min(max(ns, 1), MAX_SPAN_NS)}ns"


_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_DATE_TIME = re.compile(r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|([+-])(\d{2}):(\d{2}))")
_FIRST = datetime(1677, 9, 22, tzinfo=timezone.utc)  # within pandas' nanosecond range, on whole seconds
_LAST = datetime(2262, 4, 11, tzinfo=timezone.utc)
TIME_BOUND_SCHEMA: dict[str, Any] = {"anyOf": [{"type": "string", "format": "date-time", "maxLength": 64},
                               {"type": "string", "format": "date", "maxLength": 64}],
                     "description": "RFC 3339: a date-time with its offset (2024-01-01T00:00:00Z) or a date "
                                    "(2024-01-01, midnight UTC)."}


def _time_bound(value: str | None) -> str | None:
    """An RFC 3339 date or date-time as an ISO UTC time the store reads; outside 1677–2262, clamped."""
    if value is None:
        return None
    try:
        when = _rfc3339(value)
    except (ValueError, OverflowError):
        raise ValueError("not an RFC 3339 date (2024-01-01) or date-time with offset "
                         "(2024-01-01T00:00:00Z)") from None
    return min(max(when, _FIRST), _LAST).isoformat()


def _rfc3339(text: str) -> datetime:
    if _DATE.fullmatch(text):
        whole_day = date.fromisoformat(text)
        return datetime(whole_day.year, whole_day.month, whole_day.day, tzinfo=timezone.utc)
    match = _DATE_TIME.fullmatch(text)
    if match is None:
        raise ValueError(text)
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    micro = int((match.group(7) or ".0")[1:7].ljust(6, "0"))
    if second == 60:  # a leap second (RFC 3339 §5.7): the last instant of its minute
        second, micro = 59, 999_999
    offset = timedelta(0)
    if match.group(9):
        off_h, off_m = int(match.group(10)), int(match.group(11))
        if off_h > 23 or off_m > 59:
            raise ValueError(text)
        offset = (1 if match.group(9) == "+" else -1) * timedelta(hours=off_h, minutes=off_m)
    local = datetime(year, month, day, hour, minute, second, micro)  # raises on a day or hour out of range
    try:
        return (local - offset).replace(tzinfo=timezone.utc)
    except OverflowError:  # year 1 minus an offset, or 9999 plus one: past datetime's years, so clamped
        return _FIRST if offset > timedelta(0) else _LAST


Role = Literal["viewer", "analyst", "admin"]


class Strict(BaseModel):
    """Refuses keys it does not know (a query string, whose values are all text, is read this way)."""

    model_config = ConfigDict(extra="forbid")


class Body(Strict):
    """A JSON request body: besides unknown keys, no value is coerced (``"save": 0`` is no boolean, ``"5"``
    no number), so the server accepts exactly the types the document names."""

    model_config = ConfigDict(extra="forbid", strict=True)


# -- errors ----------------------------------------------------------------------------------------

class Error(Strict):
    error: str = Field(description="Machine word: unauthorized, forbidden, not_found, invalid, conflict, ...")
    detail: str = Field(description="What went wrong, for people.")
    field: str | None = Field(None, description="The body or query field at fault.")


# -- streams ---------------------------------------------------------------------------------------

class Part(Body):
    kind: str = Field(pattern=r"^[a-z][a-z0-9_]{0,39}$", description="A registered source or step kind.")
    params: dict[str, Any] = Field(default_factory=dict)


class BatchOptions(Body):
    size: int | None = Field(None, gt=0, le=1_000_000)
    interval: float | None = Field(None, gt=0, le=3600)


class StreamCreate(Body):
    name: str = Field(pattern=NAME, description="Letter, then letters, digits, '_', '.', '-' (max 64).")
    source: Part = Field(description="Where records come from, e.g. {'kind': 'simulator', 'params': {...}}.")
    steps: list[Part] = Field(default_factory=list, max_length=64)
    batch: BatchOptions | None = None
    start: bool = Field(False, description="Start the stream right after creating it.")


class StreamUpdate(Body):
    source: Part | None = None
    steps: list[Part] | None = Field(None, max_length=64)
    batch: BatchOptions | None = None


class StreamInfo(BaseModel):
    name: str
    state: str = Field(description="created, running, paused, stopped, failed — or 'push' for a stream that "
                                   "only receives records through the API.")
    source: str
    rate: float = 0.0
    lag: float | None = None
    records_in: int = 0
    records_out: int = 0
    dead_letters: int = 0
    errors: int = 0
    last_error: str | None = None


class StreamList(BaseModel):
    streams: list[StreamInfo]


class StreamState(BaseModel):
    name: str
    state: str


class Deleted(BaseModel):
    name: str
    deleted: bool


# -- ingest ----------------------------------------------------------------------------------------

class RecordError(BaseModel):
    index: int = Field(description="Position of the record in the body (0-based).")
    error: str = Field(description="Dead-letter reason (missing_time, bad_time, non_numeric, ...) or 'bad_json'.")
    detail: str


class IngestResult(BaseModel):
    accepted: int = Field(description="Records that passed validation.")
    rejected: int = Field(description="Records refused; each is listed in errors (up to 1000) and dead-lettered.")
    written: int = Field(description="Field values newly stored (0 for records already stored).")
    errors: list[RecordError]


# The ingest body as the server reads it: any item of the array may be refused on its own (answered in
# ``errors`` with its index, the others still stored), so the document asks for any JSON value per item.
RECORDS_BODY: dict[str, Any] = {
    "anyOf": [{"type": "array", "items": {}}, {"type": "object"}],
    "description": "Records: an array of objects {series, ts, seq?, <field>: number..., attrs?} (or one object). "
                   "An item that is no valid record is refused with its index and reason; the rest are stored. "
                   "The body is bounded by bytes (413), not by items.",
}
NDJSON_BODY: dict[str, Any] = {
    "type": "string",
    "description": "One record object per line; a line that is not one is refused with its index and reason.",
}


# -- queries ---------------------------------------------------------------------------------------

class Frame(BaseModel):
    rows: int
    columns: dict[str, list[Any]] = Field(description="Column name → values; times are RFC 3339 UTC.")


def _default_agg() -> list[Literal["mean", "min", "max", "count", "last", "sum"]]:
    return ["mean"]


class QueryParams(Strict):
    series: list[str] | None = Field(None, description="Comma-separated series keys.", max_length=1000)
    start: str | None = Field(None, max_length=64, json_schema_extra={
        **TIME_BOUND_SCHEMA, "description": "Inclusive start. " + TIME_BOUND_SCHEMA["description"]})
    end: str | None = Field(None, max_length=64, json_schema_extra={
        **TIME_BOUND_SCHEMA, "description": "Exclusive end. " + TIME_BOUND_SCHEMA["description"]})
    last: str | None = Field(None, pattern=SPAN, description="From now minus this span, e.g. '6h' (with start: "
                                                             "the later of the two).")
    every: str | None = Field(None, pattern=SPAN, description="Bucket width, e.g. '5min'.")

    _spans = field_validator("last", "every")(_span)
    _bounds = field_validator("start", "end")(_time_bound)
    agg: list[Literal["mean", "min", "max", "count", "last", "sum"]] = Field(
        default_factory=_default_agg, description="Comma-separated aggregates (with every).")
    field: str | None = Field(None, max_length=128)
    limit: int | None = Field(None, gt=0, le=1_000_000, description="Keep the newest rows only.")
    format: Literal["json", "csv", "arrow"] = "json"


class TableParams(Strict):
    series: str | None = Field(None, max_length=256)
    start: str | None = Field(None, max_length=64, json_schema_extra=TIME_BOUND_SCHEMA)
    end: str | None = Field(None, max_length=64, json_schema_extra=TIME_BOUND_SCHEMA)
    limit: int | None = Field(1000, gt=0, le=100_000)
    format: Literal["json", "csv", "arrow"] = "json"


class DeadLetterParams(Strict):
    start: str | None = Field(None, max_length=64, json_schema_extra=TIME_BOUND_SCHEMA)
    end: str | None = Field(None, max_length=64, json_schema_extra=TIME_BOUND_SCHEMA)
    limit: int | None = Field(1000, gt=0, le=100_000)
    format: Literal["json", "csv", "arrow"] = "json"


class ModelParams(Strict):
    limit: int | None = Field(100, gt=0, le=10_000)


def _detectors() -> list[str]:
    from ..analysis.detectors import detectors

    return detectors.names()


def _detector_enum(schema: dict[str, Any]) -> None:
    schema["enum"] = _detectors()  # read when the document is built: plugins registered by then are listed


class DetectRequest(Body):
    detector: str = Field("ensemble", max_length=40, json_schema_extra=_detector_enum,
                          description="A registered detector.")
    last: str = Field("1h", pattern=SPAN)

    _spans = field_validator("last")(_span)

    @field_validator("detector")
    @classmethod
    def _registered(cls, value: str) -> str:
        if value not in _detectors():
            raise ValueError(f"unknown detector (known: {', '.join(_detectors())})")
        return value

    series: list[str] | None = Field(None, max_length=1000)
    field: str | None = Field(None, max_length=128)
    save: bool = Field(True, description="Append the anomalies found to the store.")


class DetectResult(BaseModel):
    rows: int
    anomalies: int
    saved: int
    columns: dict[str, list[Any]]


# -- keys, audit, health ---------------------------------------------------------------------------

class KeyCreate(Body):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[\w .@-]+$")
    role: Role
    streams: list[Annotated[str, Field(pattern=NAME)]] | None = Field(
        None, min_length=1, max_length=256, description="Limit the key to these streams (leave out for every stream).")


class KeyInfo(BaseModel):
    id: str
    name: str
    role: str
    streams: list[str] | None = None
    created_at: float
    revoked_at: float | None = None


class KeyCreated(KeyInfo):
    key: str = Field(description="The full API key; shown once.")


class KeyList(BaseModel):
    keys: list[KeyInfo]


class AuditParams(Strict):
    limit: int = Field(100, gt=0, le=10_000)
    outcome: Literal["ok", "refused", "error"] | None = None


class AuditList(BaseModel):
    entries: list[dict[str, Any]]


class Health(BaseModel):
    status: str
    checks: dict[str, str] = Field(default_factory=dict)


# -- scheduled notebook jobs -------------------------------------------------------------------------

def _instant(value: str) -> str:
    """An RFC 3339 date-time with its offset, as an ISO UTC time (a run's start or end); outside the
    years the store holds (1677–2262), clamped to them, as every time bound of this API is."""
    try:
        when = _rfc3339(value)
    except (ValueError, OverflowError):
        raise ValueError("not an RFC 3339 date-time with offset (2024-01-01T00:00:00Z)") from None
    return min(max(when, _FIRST), _LAST).isoformat()


_NO_NUL = r"^[^\x00]*$"  # a text column of PostgreSQL holds no NUL character


class JobRunParams(Strict):
    job: str | None = Field(None, pattern=NAME, description="Only the runs of this job.")
    limit: int = Field(100, gt=0, le=10_000, description="The newest runs only.")


class JobRun(Body):
    """One finished run of a notebook job, as the scheduler records it (the ``job_runs`` table)."""

    run_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
    job: str = Field(pattern=NAME)
    started_at: str = Field(max_length=64, json_schema_extra={"format": "date-time"},
                            description="RFC 3339 date-time with offset; outside 1677–2262, clamped.")
    finished_at: str = Field(max_length=64, json_schema_extra={"format": "date-time"},
                             description="RFC 3339 date-time with offset; outside 1677–2262, clamped.")
    status: Literal["succeeded", "failed", "skipped"]
    output: str = Field("", max_length=4096, pattern=_NO_NUL,
                        description="The executed notebook's path ('' when none was written).")
    error: str = Field("", max_length=16_384, pattern=_NO_NUL,
                       description="Why it failed: the failing cell, its exception.")
    params: str = Field("{}", max_length=65_536, pattern=_NO_NUL, description="The notebook parameters, as JSON text.")

    _instants = field_validator("started_at", "finished_at")(_instant)


class JobRunRecorded(BaseModel):
    run_id: str
    recorded: int = Field(description="1 when the run is new, 0 when it was recorded before (a resend).")


# -- results written by a client of the runtime (a scheduled notebook's models and forecasts) ---------

_TEXT_KEY = r"^[^\x00]{1,256}$"  # a series, field, detector or model name: some text, no NUL


class ForecastRow(Body):
    """One forecast of the ``forecasts`` table; its stream is the path's."""

    series: str = Field(max_length=256, pattern=_TEXT_KEY)
    field: str = Field(max_length=128, pattern=_TEXT_KEY)
    model: str = Field(max_length=64, pattern=_TEXT_KEY, description="The forecaster that made it.")
    made_at: str = Field(max_length=64, json_schema_extra={"format": "date-time"},
                         description="When it was made: RFC 3339 date-time with offset; outside 1677–2262, clamped.")
    ts: str = Field(max_length=64, json_schema_extra={"format": "date-time"},
                    description="The time forecast: RFC 3339 date-time with offset; outside 1677–2262, clamped.")
    yhat: float | None = Field(None, allow_inf_nan=False)
    lo: float | None = Field(None, allow_inf_nan=False)
    hi: float | None = Field(None, allow_inf_nan=False)
    level: float | None = Field(None, gt=0, lt=1, description="The band's coverage, e.g. 0.9.")

    _instants = field_validator("made_at", "ts")(_instant)


class ForecastRows(Body):
    rows: list[ForecastRow] = Field(max_length=10_000, description="At most 10,000 rows per request.")


class AnomalyRow(Body):
    """One finding of the ``anomalies`` table; its stream is the path's."""

    series: str = Field(max_length=256, pattern=_TEXT_KEY)
    field: str = Field(max_length=128, pattern=_TEXT_KEY)
    ts: str = Field(max_length=64, json_schema_extra={"format": "date-time"},
                    description="RFC 3339 date-time with offset; outside 1677–2262, clamped.")
    detector: str = Field(max_length=64, pattern=_TEXT_KEY)
    score: float | None = Field(None, allow_inf_nan=False)
    is_anomaly: bool = True
    reason: str = Field("", max_length=4096, pattern=_NO_NUL)

    _instants = field_validator("ts")(_instant)


class AnomalyRows(Body):
    rows: list[AnomalyRow] = Field(max_length=10_000, description="At most 10,000 rows per request.")


class RowsRecorded(BaseModel):
    rows: int = Field(description="Rows received.")
    recorded: int = Field(description="Rows newly stored (a row whose key is stored already changes nothing).")


def _json_object(value: str) -> str:
    import json

    try:
        decoded = json.loads(value)
    except ValueError:
        raise ValueError("not JSON text") from None
    if not isinstance(decoded, dict):
        raise ValueError("not a JSON object")
    return value


class ModelRecordIn(Body):
    """One version of a trained model, as :func:`nexus_kernel.analysis.save_model` records it (the
    ``models`` table). Its ``artifact`` must already be a regular file inside the home's model directory."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$", description="e.g. 'sensors:forecast'.")
    version: int = Field(ge=1, le=2**31 - 1)
    stream: str = Field(pattern=NAME)
    kind: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$", description="The forecaster family.")
    created_at: str = Field(max_length=64, json_schema_extra={"format": "date-time"},
                            description="RFC 3339 date-time with offset; outside 1677–2262, clamped.")
    train_start: str | None = Field(None, max_length=64, json_schema_extra={"format": "date-time"})
    train_end: str | None = Field(None, max_length=64, json_schema_extra={"format": "date-time"})
    metrics: str = Field("{}", max_length=65_536, pattern=_NO_NUL, description="A JSON object, as text.")
    features: str = Field("{}", max_length=65_536, pattern=_NO_NUL, description="A JSON object, as text.")
    params: str = Field("{}", max_length=65_536, pattern=_NO_NUL, description="A JSON object, as text.")
    artifact: str = Field(min_length=1, max_length=4096, pattern=_NO_NUL,
                          description="Absolute path of the joblib file: it must resolve (symlinks resolved) to a "
                                      "regular file inside the home's model directory (home/models), else 422.")

    _instants = field_validator("created_at")(_instant)

    @field_validator("train_start", "train_end")
    @classmethod
    def _optional_instant(cls, value: str | None) -> str | None:
        return None if value is None else _instant(value)

    _objects = field_validator("metrics", "features", "params")(_json_object)


class ModelRecorded(BaseModel):
    name: str
    version: int
    recorded: int = Field(description="1 when the version is new, 0 when that name and version were recorded before.")
    artifact: str = Field(description="The artifact path recorded (symlinks resolved).")
