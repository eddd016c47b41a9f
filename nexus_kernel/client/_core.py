"""What the sync and async clients share: the calls (one definition per endpoint), answers → DataFrames,
errors, and the retry policy.

Each endpoint method builds a :class:`Call` and hands it to ``self._run``; the sync client's ``_run``
returns the result, the async client's returns a coroutine — so both clients have every endpoint with
one definition.
"""

from __future__ import annotations

import gzip as gzip_module
import io
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
import orjson
import pandas as pd
import tenacity

__all__ = ["NexusError", "Call", "Endpoints", "frame_from_columns", "result_rows", "retry_policy"]


class NexusError(RuntimeError):
    """An error answer from the gateway: ``status``, ``error`` (machine word), ``detail``, ``field``."""

    def __init__(self, status: int, error: str, detail: str, field: str | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(f"{status} {error}: {detail}" + (f" (field: {field})" if field else ""))
        self.status, self.error, self.detail, self.field, self.retry_after = status, error, detail, field, retry_after


class _Retryable(Exception):
    def __init__(self, error: NexusError) -> None:
        self.error = error


def frame_from_columns(payload: Mapping[str, Any]) -> pd.DataFrame:
    """A DataFrame from the gateway's columnar JSON (times back to datetime64[ns, UTC])."""
    cols = payload.get("columns") or {}
    frame = pd.DataFrame({k: v for k, v in cols.items()})
    for name in frame.columns:
        if name in ("ts", "received_at", "made_at", "created_at", "start", "end", "train_start", "train_end",
                    "started_at", "finished_at") and not pd.api.types.is_datetime64_any_dtype(frame[name]) \
                and not pd.api.types.is_numeric_dtype(frame[name]):
            frame[name] = pd.to_datetime(frame[name], utc=True, format="ISO8601").astype("datetime64[ns, UTC]")
        elif not pd.api.types.is_numeric_dtype(frame[name]) and name in ("stream", "series", "field", "reason", "detail", "payload"):
            frame[name] = frame[name].astype("string")
    return frame


def _decode(response: httpx.Response, kind: str) -> Any:
    if kind == "frame":
        ctype = response.headers.get("Content-Type", "")
        if ctype.startswith("text/csv"):
            return pd.read_csv(io.BytesIO(response.content))
        if "arrow" in ctype:
            import pyarrow as pa

            return pa.ipc.open_stream(response.content).read_all().to_pandas()
        return frame_from_columns(orjson.loads(response.content))
    if kind == "text":
        return response.text
    data: Any = orjson.loads(response.content) if response.content else None
    if kind in ("streams", "keys") and not isinstance(data, dict):
        raise NexusError(response.status_code, "bad_response", f"expected a JSON object listing {kind}")
    if kind == "streams":
        return pd.DataFrame(data["streams"])
    if kind == "keys":
        return pd.DataFrame(data["keys"])
    return data


def _error(response: httpx.Response) -> NexusError:
    try:
        body = orjson.loads(response.content)
        error, detail, fld = body.get("error", "error"), body.get("detail", response.reason_phrase), body.get("field")
    except (orjson.JSONDecodeError, AttributeError):
        error, detail, fld = "error", response.reason_phrase or "error", None
    retry = response.headers.get("Retry-After")
    return NexusError(response.status_code, error, detail, fld, float(retry) if retry else None)


@dataclass
class Call:
    method: str
    path: str
    params: dict[str, Any] | None = None
    json: Any = None
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    decode: str = "json"
    idempotent: bool = True  # safe to resend after a 5xx or a dropped connection

    def finish(self, response: httpx.Response) -> Any:
        if response.status_code >= 500:
            raise _Retryable(_error(response))
        if response.status_code >= 400:
            raise _error(response)
        return _decode(response, self.decode)


def retry_policy(retries: int, call: Call, asynchronous: bool) -> Any:
    """Exponential backoff with jitter on connection errors (and on 5xx for idempotent calls)."""

    def retryable(exc: BaseException) -> bool:
        if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
            return True  # never reached the server
        return call.idempotent and isinstance(exc, (_Retryable, httpx.TransportError))

    cls = tenacity.AsyncRetrying if asynchronous else tenacity.Retrying
    return cls(stop=tenacity.stop_after_attempt(retries + 1), reraise=True,
               wait=tenacity.wait_exponential_jitter(multiplier=0.1, max=5.0),
               retry=tenacity.retry_if_exception(retryable))


def _csv(values: str | Sequence[str] | None) -> str | None:
    if values is None:
        return None
    return values if isinstance(values, str) else ",".join(values)


def _params(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def records_body(records: pd.DataFrame | Iterable[Mapping[str, Any]], compress: bool) -> tuple[bytes, dict[str, str]]:
    """Records as NDJSON (a DataFrame is encoded column-wise by pandas), gzip-compressed if asked."""
    if isinstance(records, pd.DataFrame):
        frame = records.copy()
        for name in frame.columns:
            if isinstance(frame[name].dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(frame[name]):
                stamps = frame[name].dt.tz_convert("UTC") if isinstance(frame[name].dtype, pd.DatetimeTZDtype) \
                    else frame[name].dt.tz_localize("UTC")
                frame[name] = np.datetime_as_string(stamps.dt.tz_localize(None).to_numpy("datetime64[us]"),
                                                    unit="us", timezone="UTC")
        body = frame.to_json(orient="records", lines=True, date_format="iso").encode()
    else:
        body = b"\n".join(orjson.dumps(r, option=orjson.OPT_SERIALIZE_NUMPY, default=str) for r in records)
    headers = {"Content-Type": "application/x-ndjson"}
    if compress:
        body = gzip_module.compress(body, compresslevel=5)
        headers["Content-Encoding"] = "gzip"
    return body, headers


class Endpoints:
    """Every gateway endpoint, as a method returning what ``_run`` makes of its :class:`Call`."""

    _run: Callable[[Call], Any]

    # streams
    def streams(self) -> Any:
        """All streams (DataFrame: name, state, source, rate, lag, counters)."""
        return self._run(Call("GET", "/api/streams", decode="streams"))

    def stream(self, name: str) -> Any:
        return self._run(Call("GET", f"/api/streams/{name}"))

    def status(self, name: str) -> Any:
        return self._run(Call("GET", f"/api/streams/{name}/status"))

    def create_stream(self, name: str, source: Mapping[str, Any], steps: Sequence[Mapping[str, Any]] = (),
                      batch: Mapping[str, Any] | None = None, start: bool = False) -> Any:
        body = {"name": name, "source": dict(source), "steps": [dict(s) for s in steps], "start": start}
        if batch:
            body["batch"] = dict(batch)
        return self._run(Call("POST", "/api/streams", json=body, idempotent=False))

    def update_stream(self, name: str, source: Mapping[str, Any] | None = None,
                      steps: Sequence[Mapping[str, Any]] | None = None, batch: Mapping[str, Any] | None = None) -> Any:
        body = _params(source=source, steps=list(steps) if steps is not None else None, batch=batch)
        return self._run(Call("PATCH", f"/api/streams/{name}", json=body, idempotent=False))

    def delete_stream(self, name: str) -> Any:
        return self._run(Call("DELETE", f"/api/streams/{name}", idempotent=False))

    def start(self, name: str) -> Any:
        return self._run(Call("POST", f"/api/streams/{name}/start", idempotent=False))

    def pause(self, name: str) -> Any:
        return self._run(Call("POST", f"/api/streams/{name}/pause", idempotent=False))

    def resume(self, name: str) -> Any:
        return self._run(Call("POST", f"/api/streams/{name}/resume", idempotent=False))

    def stop(self, name: str) -> Any:
        return self._run(Call("POST", f"/api/streams/{name}/stop", idempotent=False))

    # ingest and queries
    def ingest(self, name: str, records: pd.DataFrame | Iterable[Mapping[str, Any]], gzip: bool = False) -> Any:
        """Send records; returns ``{accepted, rejected, written, errors}``.

        Records that carry ``seq`` are idempotent (a resend stores nothing twice); without it the
        gateway numbers them, so a resend is stored again.
        """
        body, headers = records_body(records, gzip)
        return self._run(Call("POST", f"/api/streams/{name}/records", content=body, headers=headers))

    def query(self, name: str, series: str | Sequence[str] | None = None, start: Any = None, end: Any = None,
              last: str | None = None, every: str | None = None, agg: str | Sequence[str] | None = None,
              field: str | None = None, limit: int | None = None, format: str = "json") -> Any:
        """Points as a DataFrame (raw, or bucketed by ``every`` with ``agg``)."""
        params = _params(series=_csv(series), start=_time(start), end=_time(end), last=last, every=every,
                         agg=_csv(agg), field=field, limit=limit, format=format if format != "json" else None)
        return self._run(Call("GET", f"/api/streams/{name}/query", params=params, decode="frame"))

    def latest(self, name: str, series: str | Sequence[str] | None = None) -> Any:
        return self._run(Call("GET", f"/api/streams/{name}/latest", params=_params(series=_csv(series)),
                              decode="frame"))

    def anomalies(self, name: str, series: str | None = None, start: Any = None, end: Any = None,
                  limit: int | None = 1000) -> Any:
        return self._table(name, "anomalies", series, start, end, limit)

    def forecasts(self, name: str, series: str | None = None, start: Any = None, end: Any = None,
                  limit: int | None = 1000) -> Any:
        return self._table(name, "forecasts", series, start, end, limit)

    def dead_letters(self, name: str, start: Any = None, end: Any = None, limit: int | None = 1000) -> Any:
        return self._table(name, "dead-letters", None, start, end, limit)

    def _table(self, name: str, table: str, series: str | None, start: Any, end: Any, limit: int | None) -> Any:
        params = _params(series=series, start=_time(start), end=_time(end), limit=limit)
        return self._run(Call("GET", f"/api/streams/{name}/{table}", params=params, decode="frame"))

    def models(self, stream: str | None = None, limit: int | None = 100) -> Any:
        return self._run(Call("GET", "/api/models", params=_params(stream=stream, limit=limit), decode="frame"))

    # results a client made (a scheduled notebook's forecasts and models), appended to the owner's store
    def append_forecasts(self, name: str, rows: pd.DataFrame | Iterable[Mapping[str, Any]]) -> Any:
        """Append forecasts of stream ``name`` (columns ``series, field, model, made_at, ts, yhat, lo, hi,
        level``; a ``stream`` column is dropped); returns ``{rows, recorded}``. At most 10,000 rows per call;
        keyed, so a resend records nothing twice."""
        body = {"rows": result_rows(rows, ("made_at", "ts"))}
        return self._run(Call("POST", f"/api/streams/{name}/forecasts", json=body))

    def append_anomalies(self, name: str, rows: pd.DataFrame | Iterable[Mapping[str, Any]]) -> Any:
        """Append anomalies of stream ``name`` (columns ``series, field, ts, detector, score, is_anomaly,
        reason``); returns ``{rows, recorded}``. At most 10,000 rows per call; keyed, as above."""
        body = {"rows": result_rows(rows, ("ts",))}
        return self._run(Call("POST", f"/api/streams/{name}/anomalies", json=body))

    def record_model(self, record: Mapping[str, Any]) -> Any:
        """Record one model version (a row of the ``models`` table, e.g. ``ModelRecord.frame()``'s); returns
        ``{name, version, recorded, artifact}``. The artifact must be a file inside the home's model
        directory (422 otherwise); keyed by ``name`` and ``version``, so a resend records nothing twice."""
        row = result_rows([record], ("created_at", "train_start", "train_end"), drop=())[0]
        row.setdefault("train_start", None)
        row.setdefault("train_end", None)
        return self._run(Call("POST", "/api/models", json=row))

    def detect(self, name: str, detector: str = "ensemble", last: str = "1h", series: Sequence[str] | None = None,
               field: str | None = None, save: bool = True) -> Any:
        body = _params(detector=detector, last=last, series=list(series) if series else None, field=field, save=save)
        return self._run(Call("POST", f"/api/streams/{name}/detect", json=body))

    # scheduled notebook jobs
    def job_runs(self, job: str | None = None, limit: int | None = 100) -> Any:
        """Recorded runs of notebook jobs, newest first (the ``job_runs`` table as a DataFrame)."""
        return self._run(Call("GET", "/api/jobs/runs", params=_params(job=job, limit=limit), decode="frame"))

    def record_job_run(self, run: Mapping[str, Any]) -> Any:
        """Record one finished run (``run_id, job, started_at, finished_at, status, output, error, params``);
        returns ``{run_id, recorded}``. Keyed by ``run_id``, so a resend records nothing twice."""
        body = {k: (_time(v) if k in ("started_at", "finished_at") else ("" if v is None else v))
                for k, v in run.items()}
        return self._run(Call("POST", "/api/jobs/runs", json=body))

    # anchoring
    def verify(self, item_id: str) -> Any:
        """Walk an anchored item's proof on the owner's home: ``{item_id, verified, failed_step, steps, bundle}``
        (``bundle`` is the proof file ``nexus verify --bundle`` checks without the home)."""
        return self._run(Call("GET", "/api/verify/" + urllib.parse.quote(item_id, safe=":")))

    def anchors(self, limit: int = 20) -> Any:
        """The anchoring service's state and the newest anchor receipts: ``{service, receipts}`` (a frame)."""
        return self._run(Call("GET", "/api/anchors", params=_params(limit=limit)))

    # admin
    def keys(self) -> Any:
        return self._run(Call("GET", "/api/keys", decode="keys"))

    def create_key(self, name: str, role: str, streams: Sequence[str] | None = None) -> Any:
        body = _params(name=name, role=role, streams=list(streams) if streams else None)
        return self._run(Call("POST", "/api/keys", json=body, idempotent=False))

    def revoke_key(self, key_id: str) -> Any:
        return self._run(Call("DELETE", f"/api/keys/{key_id}", idempotent=False))

    def audit(self, limit: int = 100, outcome: str | None = None) -> Any:
        return self._run(Call("GET", "/api/audit", params=_params(limit=limit, outcome=outcome)))

    # health
    def health(self) -> Any:
        return self._run(Call("GET", "/healthz"))

    def ready(self) -> Any:
        return self._run(Call("GET", "/readyz"))

    def metrics(self) -> Any:
        return self._run(Call("GET", "/metrics", decode="text"))

    def openapi(self) -> Any:
        return self._run(Call("GET", "/openapi.json"))


def result_rows(rows: pd.DataFrame | Iterable[Mapping[str, Any]], times: Sequence[str],
                drop: Sequence[str] = ("stream",)) -> list[dict[str, Any]]:
    """Rows as the JSON objects the results endpoints take: ``times`` as RFC 3339 UTC text, missing values
    (NaN, NA, NaT) as null, numpy scalars as plain numbers, the keys ``drop`` left out (a stream the path
    already says)."""
    records = rows.to_dict("records") if isinstance(rows, pd.DataFrame) else [dict(r) for r in rows]
    out = []
    for record in records:
        row: dict[str, Any] = {}
        for name, value in record.items():
            key = str(name)
            if key in drop:
                continue
            if value is None or (not isinstance(value, str) and pd.api.types.is_scalar(value) and pd.isna(value)):
                row[key] = None
            elif key in times:
                row[key] = _time(value)
            elif isinstance(value, np.generic):
                row[key] = value.item()
            else:
                row[key] = value
        out.append(row)
    return out


def _time(value: Any) -> str | None:
    """Any time pandas reads ("2024-01-01 00:00", a datetime, a Timestamp) as the RFC 3339 UTC text the gateway
    takes; text pandas cannot read is sent as it is, for the gateway to explain."""
    if value is None:
        return None
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError, OverflowError):
        return value if isinstance(value, str) else str(value)
    if stamp is pd.NaT:
        return value if isinstance(value, str) else None
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.isoformat()
