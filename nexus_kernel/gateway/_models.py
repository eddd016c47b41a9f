"""The pydantic models of request bodies, query strings and answers — the OpenAPI document is built
from these, so the docs and the checks cannot drift apart."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

NAME = r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$"
SPAN = r"^ *\d+(\.\d+)? *(ns|us|ms|s|sec|min|m|h|d|D|w|W) *$"


def _positive_span(value: str | None) -> str | None:
    """A span the store accepts: the pattern lets "0s" through, the store would not."""
    if value is not None:
        from ..storage import parse_span

        parse_span(value)  # raises ValueError → a 422 naming the field
    return value

Role = Literal["viewer", "analyst", "admin"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- errors ----------------------------------------------------------------------------------------

class Error(Strict):
    error: str = Field(description="Machine word: unauthorized, forbidden, not_found, invalid, conflict, ...")
    detail: str = Field(description="What went wrong, for people.")
    field: str | None = Field(None, description="The body or query field at fault.")


# -- streams ---------------------------------------------------------------------------------------

class Part(Strict):
    kind: str = Field(pattern=r"^[a-z][a-z0-9_]{0,39}$", description="A registered source or step kind.")
    params: dict[str, Any] = Field(default_factory=dict)


class BatchOptions(Strict):
    size: int | None = Field(None, gt=0, le=1_000_000)
    interval: float | None = Field(None, gt=0, le=3600)


class StreamCreate(Strict):
    name: str = Field(pattern=NAME, description="Letter, then letters, digits, '_', '.', '-' (max 64).")
    source: Part = Field(description="Where records come from, e.g. {'kind': 'simulator', 'params': {...}}.")
    steps: list[Part] = Field(default_factory=list, max_length=64)
    batch: BatchOptions | None = None
    start: bool = Field(False, description="Start the stream right after creating it.")


class StreamUpdate(Strict):
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


# -- queries ---------------------------------------------------------------------------------------

class Frame(BaseModel):
    rows: int
    columns: dict[str, list[Any]] = Field(description="Column name → values; times are RFC 3339 UTC.")


class QueryParams(Strict):
    series: list[str] | None = Field(None, description="Comma-separated series keys.", max_length=1000)
    start: str | None = Field(None, max_length=64, description="Inclusive start time (ISO 8601).")
    end: str | None = Field(None, max_length=64, description="Exclusive end time (ISO 8601).")
    last: str | None = Field(None, pattern=SPAN, description="From now minus this span, e.g. '6h'.")
    every: str | None = Field(None, pattern=SPAN, description="Bucket width, e.g. '5min'.")

    _spans = field_validator("last", "every")(_positive_span)
    agg: list[Literal["mean", "min", "max", "count", "last", "sum"]] = Field(
        default_factory=lambda: ["mean"], description="Comma-separated aggregates (with every).")
    field: str | None = Field(None, max_length=128)
    limit: int | None = Field(None, gt=0, le=1_000_000, description="Keep the newest rows only.")
    format: Literal["json", "csv", "arrow"] = "json"


class TableParams(Strict):
    series: str | None = Field(None, max_length=256)
    start: str | None = Field(None, max_length=64)
    end: str | None = Field(None, max_length=64)
    limit: int | None = Field(1000, gt=0, le=100_000)
    format: Literal["json", "csv", "arrow"] = "json"


class DeadLetterParams(Strict):
    start: str | None = Field(None, max_length=64)
    end: str | None = Field(None, max_length=64)
    limit: int | None = Field(1000, gt=0, le=100_000)
    format: Literal["json", "csv", "arrow"] = "json"


class ModelParams(Strict):
    limit: int | None = Field(100, gt=0, le=10_000)


class DetectRequest(Strict):
    detector: str = Field("ensemble", pattern=r"^[a-z][a-z0-9_]{0,39}$")
    last: str = Field("1h", pattern=SPAN)

    _spans = field_validator("last")(_positive_span)
    series: list[str] | None = Field(None, max_length=1000)
    field: str | None = Field(None, max_length=128)
    save: bool = Field(True, description="Append the anomalies found to the store.")


class DetectResult(BaseModel):
    rows: int
    anomalies: int
    saved: int
    columns: dict[str, list[Any]]


# -- keys, audit, health ---------------------------------------------------------------------------

class KeyCreate(Strict):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[\w .@-]+$")
    role: Role
    streams: list[str] | None = Field(None, max_length=256, description="Limit the key to these streams.")

    @field_validator("streams")
    @classmethod
    def _names(cls, value: list[str] | None) -> list[str] | None:
        import re

        for item in value or []:
            if not re.match(NAME, item):
                raise ValueError(f"invalid stream name {item[:64]!r}")
        return value


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
