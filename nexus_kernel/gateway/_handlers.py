"""The endpoints: streams and their lifecycle, ingest, queries, result tables, detection, keys, audit,
health and metrics. Each handler only does its work; :mod:`._base` checks who may call it."""

from __future__ import annotations

from typing import Any

import pandas as pd
import tornado.web
from pydantic import BaseModel, Field

from ..engine import StreamStateError
from ..storage._known import unknown_stream_message
from . import _models as m
from ._base import ApiHandler, check_name, operation, route
from ._errors import ApiError
from ._frames import columns, dumps, to_arrow, to_csv
from ._ingest import MAX_ERRORS, BoundedBody, parse_records

_PUSH = {"state": "push", "source": "http", "rate": 0.0, "lag": None, "records_in": 0, "records_out": 0,
         "dead_letters": 0, "errors": 0, "last_error": None}


def _clean(row: dict[str, Any]) -> dict[str, Any]:
    return m.StreamInfo.model_validate({k: row.get(k) for k in m.StreamInfo.model_fields if k in row}).model_dump()


async def _stream_rows(handler: ApiHandler) -> list[dict[str, Any]]:
    services = handler.services
    rows = {r["name"]: _clean(r) for r in (services.manager.status() if services.manager else [])}
    for name in await handler.blocking(services.store.streams):
        rows.setdefault(name, {"name": name, **_PUSH})
    scope = handler.principal.streams
    return [rows[k] for k in sorted(rows) if scope is None or k in scope]


def _state_error(exc: StreamStateError, field: str | None = None) -> ApiError:
    text = str(exc)
    if text.startswith("no stream named"):
        return ApiError(404, text, field="name")
    if "already exists" in text:
        return ApiError(409, text, field="name")
    if text.startswith("cannot "):
        return ApiError(409, text, error="conflict")
    return ApiError(422, text, field=field)


def _spec(body: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"source": body.source.model_dump(), "steps": [s.model_dump() for s in body.steps or []]}
    if body.batch is not None:
        spec["batch"] = body.batch.model_dump()
    return spec


def _invalid_spec(exc: Exception) -> ApiError:
    """A refused spec as a 422 naming the part at fault (``source.params.path``, ``steps.0``...); the
    engine's messages never quote a resolved secret or a file's content."""
    field = getattr(exc, "field", None) or "source"
    return ApiError(422, f"invalid stream spec: {str(exc)[:400]}", field=field)


def _manager(handler: ApiHandler) -> Any:
    if handler.services.manager is None:
        raise ApiError(503, "this gateway does not manage streams", error="unavailable")
    return handler.services.manager


@route("/api/streams", tag="streams")
class StreamsHandler(ApiHandler):
    @operation("read", "List streams", response=m.StreamList)
    async def get(self) -> None:
        self.send({"streams": await _stream_rows(self)})

    @operation("control", "Create a stream from a source and steps", body=m.StreamCreate, response=m.StreamInfo,
               status=201, stream_param=None)
    async def post(self) -> None:
        body = self.body
        if self.principal.streams is not None and body.name not in self.principal.streams:
            raise ApiError(403, f"this credential is not scoped to stream '{body.name}'")
        manager = _manager(self)
        try:
            manager.create(body.name, spec=_spec(body))
            if body.start:
                manager.start(body.name)
        except StreamStateError as exc:
            raise _state_error(exc, "source") from None
        except (LookupError, TypeError, ValueError) as exc:
            raise _invalid_spec(exc) from None
        self.send(_clean(manager.status(body.name)))


@route("/api/streams/{name}", tag="streams")
class StreamHandler(ApiHandler):
    @operation("read", "One stream's state and counters", response=m.StreamInfo)
    async def get(self, name: str) -> None:
        check_name(name)
        self.send(await _one(self, name))

    @operation("control", "Change a stream's source, steps or batching (not while it runs)",
               body=m.StreamUpdate, response=m.StreamInfo)
    async def patch(self, name: str) -> None:
        check_name(name)
        manager = _manager(self)
        entry = manager.streams().get(name)
        if entry is None:
            raise ApiError(404, f"no stream named '{name}'", field="name")
        if entry["state"] in ("running", "paused"):
            raise ApiError(409, f"stream '{name}' is {entry['state']}: stop it before changing it")
        spec = dict(entry["spec"])
        body = self.body
        if body.source is not None:
            spec["source"] = body.source.model_dump()
        if body.steps is not None:
            spec["steps"] = [s.model_dump() for s in body.steps]
        if body.batch is not None:
            spec["batch"] = body.batch.model_dump()
        from ..engine import Pipeline

        try:
            Pipeline.from_spec({**spec, "name": name}, manager.settings)
        except (LookupError, TypeError, ValueError) as exc:
            raise _invalid_spec(exc) from None
        try:
            manager.delete(name)
            manager.create(name, spec=spec)
        except StreamStateError as exc:
            raise _state_error(exc) from None
        self.send(_clean(manager.status(name)))

    @operation("delete", "Delete a stream (not while it runs); its stored data stays", response=m.Deleted)
    async def delete(self, name: str) -> None:
        check_name(name)
        try:
            _manager(self).delete(name)
        except StreamStateError as exc:
            raise _state_error(exc) from None
        self.send({"name": name, "deleted": True})


async def _one(handler: ApiHandler, name: str) -> dict[str, Any]:
    manager = handler.services.manager
    if manager is not None and name in manager.streams():
        return _clean(manager.status(name))
    if name in await handler.blocking(handler.services.store.streams):
        return {"name": name, **_PUSH}
    raise ApiError(404, f"no stream named '{name}'", field="name")


@route("/api/streams/{name}/status", tag="streams")
class StatusHandler(ApiHandler):
    @operation("read", "A stream's state and counters", response=m.StreamInfo)
    async def get(self, name: str) -> None:
        check_name(name)
        self.send(await _one(self, name))


def _lifecycle(action: str) -> type:
    async def post(self: ApiHandler, name: str) -> None:
        check_name(name)
        try:
            state = getattr(_manager(self), action)(name)
        except StreamStateError as exc:
            raise _state_error(exc) from None
        except (LookupError, TypeError, ValueError) as exc:  # a saved spec refused now (a secret unset...)
            raise _invalid_spec(exc) from None
        self.send({"name": name, "state": state})

    post = operation("control", f"{action.capitalize()} a stream", response=m.StreamState)(post)
    cls = type(f"{action.capitalize()}Handler", (ApiHandler,), {"post": post, "__doc__": f"{action} a stream"})
    return route(f"/api/streams/{{name}}/{action}", tag="streams")(cls)


for _action in ("start", "pause", "resume", "stop"):
    _lifecycle(_action)


_NDJSON = ("application/x-ndjson", "application/ndjson", "application/jsonl", "application/json-seq")


@route("/api/streams/{name}/records", tag="ingest")
@tornado.web.stream_request_body
class RecordsHandler(ApiHandler):
    """Ingest; the body streams in so that its size is checked before it is read or parsed."""

    @operation("ingest", "Ingest records into the stream's pipeline (JSON array or NDJSON, gzip accepted): "
               "validated, stored, analysed, windowed and published like its source's; a name that is no "
               "stream yet becomes one (ingest source, default steps); a stream that exists but does not "
               "run here answers 409 with its state", response=m.IngestResult,
               raw_body={"required": True, "content": {
                   "application/json": {"schema": m.RECORDS_BODY},
                   "application/x-ndjson": {"schema": m.NDJSON_BODY}}})
    async def post(self, name: str) -> None:
        services = self.services
        body = self._body.finish()
        ndjson = self._ctype in _NDJSON
        # parsing a large body takes a while: off the loop that serves everyone else
        # parsed on the loop: a 1,000-record body takes ~2.5 ms; in the default executor it queued behind
        # (and ahead of) the coalescer's write rounds and cost bench gateway-ingest about a fifth
        raw, index, errors = parse_records(body, ndjson)
        # into the stream's pipeline, where concurrent requests share one validation and one store
        # transaction (see _coalesce); answered once its own rows are committed, before their analysis
        result = await services.coalescer.submit(name, raw, index, errors)
        services.metrics.records.labels("accepted").inc(result["accepted"])
        services.metrics.records.labels("rejected").inc(result["rejected"])
        errors = result["errors"]
        self.send({"accepted": result["accepted"], "rejected": result["rejected"],
                   "written": result["written"], "errors": errors[:MAX_ERRORS]})

    async def prepare(self) -> None:
        await self.authorize()
        check_name(self.path_kwargs["name"])
        limit = self.services.settings.max_body_bytes
        length = self.request.headers.get("Content-Length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            raise ApiError(413, f"body larger than {limit} bytes", field="body")
        # Past 2× the limit tornado drops the connection; up to there the body is drained and answered 413.
        self.request.connection.set_max_body_size(2 * limit + 65536)  # type: ignore[union-attr]
        self._ctype = self.request.headers.get("Content-Type", "application/json").split(";")[0].strip().lower()
        if self._ctype not in ("application/json", "", *_NDJSON):
            raise ApiError(415, "send application/json (array) or application/x-ndjson", field="body")
        encoding = self.request.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding not in ("identity", "gzip", "x-gzip"):
            raise ApiError(415, "Content-Encoding must be gzip or identity", field="body")
        self._body = BoundedBody(limit, gzip=encoding != "identity")

    def data_received(self, chunk: bytes) -> None:
        self._body.feed(chunk)


def _frame_answer(handler: ApiHandler, frame: pd.DataFrame, fmt: str) -> None:
    if fmt == "csv":
        handler.set_header("Content-Type", "text/csv")
        handler.finish(to_csv(frame))
    elif fmt == "arrow":
        handler.set_header("Content-Type", "application/vnd.apache.arrow.stream")
        handler.finish(to_arrow(frame))
    else:
        handler.send({"rows": len(frame), "columns": columns(frame)})


_FRAME_TYPES = ("application/json", "text/csv", "application/vnd.apache.arrow.stream")


@route("/api/streams/{name}/query", tag="query")
class QueryHandler(ApiHandler):
    @operation("read", "Points of a stream: raw or bucketed (every + agg)", query=m.QueryParams,
               response=m.Frame, content=_FRAME_TYPES)
    async def get(self, name: str) -> None:
        check_name(name)
        q = self.query
        start: str | pd.Timestamp | None = q.start
        if q.last is not None:  # with start too: the later of the two (both are lower bounds)
            since = pd.Timestamp.now(tz="UTC") - pd.Timedelta(q.last)
            start = since if start is None else max(pd.Timestamp(start), since)
        try:
            frame = await self.blocking(self.services.store.query, name, series=q.series, start=start,
                                        end=q.end, every=q.every, agg=q.agg, field=q.field)
        except (ValueError, TypeError) as exc:
            raise ApiError(422, str(exc)[:300], field="query") from None
        if not len(frame):  # nothing in range, or no such stream: a misspelt name is a 404 naming the streams
            await _require_known(self, name)
        if q.limit is not None:
            frame = frame.sort_values("ts", kind="stable").tail(q.limit) if len(frame) else frame
        _frame_answer(self, frame, q.format)


async def _require_known(handler: ApiHandler, name: str) -> None:
    """404 naming the caller's streams unless ``name`` is registered or has stored points."""
    manager = handler.services.manager
    if manager is not None and name in manager.streams():
        return
    stored = await handler.blocking(handler.services.store.streams)
    if name not in stored:
        scope = handler.principal.streams
        visible = [k for k in stored if scope is None or k in scope]
        raise ApiError(404, unknown_stream_message(name, visible), field="name")


@route("/api/streams/{name}/latest", tag="query")
class LatestHandler(ApiHandler):
    class Params(BaseModel):
        model_config = {"extra": "forbid"}
        series: list[str] | None = Field(None, max_length=1000)
        format: str = Field("json", pattern="^(json|csv|arrow)$")

    @operation("read", "The newest record per series", query=Params, response=m.Frame, content=_FRAME_TYPES)
    async def get(self, name: str) -> None:
        check_name(name)
        frame = await self.blocking(self.services.store.latest, name, self.query.series)
        _frame_answer(self, frame, self.query.format)


def _table_route(path: str, table: str, summary: str) -> None:
    async def get(self: ApiHandler, name: str) -> None:
        check_name(name)
        q = self.query
        series = getattr(q, "series", None)
        equals = {"series": series} if series else {}
        try:
            frame = await self.blocking(self.services.store.read, table, stream=name, start=q.start, end=q.end,
                                        limit=q.limit, **equals)
        except (ValueError, TypeError) as exc:
            raise ApiError(422, str(exc)[:300], field="query") from None
        if kind is not None and len(frame):
            from ..anchoring import item_ids

            # what `nexus verify ITEM_ID`, GET /api/verify/{item_id} and client.verify() take
            frame = frame.assign(item_id=item_ids(kind, frame))
        _frame_answer(self, frame, q.format)

    kind = {"anomalies": "anomaly", "dead_letters": "dead_letter"}.get(table)  # anchorable: rows carry item ids
    params = m.DeadLetterParams if table == "dead_letters" else m.TableParams  # no series column there
    get = operation("read", summary, query=params, response=m.Frame, content=_FRAME_TYPES)(get)
    name = "".join(p.capitalize() for p in table.split("_")) + "Handler"
    route(path, tag="results")(type(name, (ApiHandler,), {"get": get}))


_table_route("/api/streams/{name}/anomalies", "anomalies", "Anomalies found in a stream")
_table_route("/api/streams/{name}/forecasts", "forecasts", "Forecasts made for a stream")
_table_route("/api/streams/{name}/dead-letters", "dead_letters", "Records refused, with their reasons")


@route("/api/models", tag="results")
class ModelsHandler(ApiHandler):
    class Params(m.ModelParams):
        stream: str | None = Field(None, max_length=64)

    @operation("read", "Trained models and their metrics", query=Params, response=m.Frame, stream_param=None)
    async def get(self) -> None:
        q = self.query
        frame = await self.blocking(self.services.store.read, "models", stream=q.stream, limit=q.limit)
        scope = self.principal.streams
        if scope is not None and len(frame):
            frame = frame[frame["stream"].isin(list(scope))]
        self.send({"rows": len(frame), "columns": columns(frame)})


@route("/api/streams/{name}/detect", tag="analysis")
class DetectHandler(ApiHandler):
    @operation("analyze", "Run anomaly detection over recent points (and store what it finds)",
               body=m.DetectRequest, response=m.DetectResult)
    async def post(self, name: str) -> None:
        check_name(name)
        body = self.body
        store = self.services.store
        frame = await self.blocking(store.query, name, series=body.series, last=body.last, field=body.field)
        if frame.empty:
            self.send({"rows": 0, "anomalies": 0, "saved": 0, "columns": {}})
            return
        from ..analysis import detect

        field = body.field or ("value" if "value" in frame.columns else None)
        try:
            found = await self.blocking(detect, frame, body.detector, field=field)
        except LookupError as exc:
            raise ApiError(422, str(exc)[:300], field="detector") from None
        flagged = found[found["is_anomaly"]] if "is_anomaly" in found.columns else found.iloc[0:0]
        saved = 0
        if body.save and len(flagged):
            rows = pd.DataFrame({
                "stream": pd.array([name] * len(flagged), dtype="string"),
                "series": flagged["series"].astype("string").to_numpy(),
                "field": (flagged["field"].astype("string").to_numpy() if "field" in flagged.columns
                          else pd.array([field or "value"] * len(flagged), dtype="string")),
                "ts": flagged["ts"].to_numpy(), "detector": pd.array([body.detector] * len(flagged), dtype="string"),
                "score": flagged["score"].astype("float64").to_numpy(),
                "is_anomaly": flagged["is_anomaly"].astype(bool).to_numpy(),
                "reason": flagged["reason"].astype("string").to_numpy(),
            })
            rows["ts"] = pd.to_datetime(rows["ts"], utc=True)
            saved = await self.blocking(store.append, "anomalies", rows)
        keep = [c for c in ("series", "field", "ts", "value", "score", "is_anomaly", "reason") if c in found.columns]
        self.send({"rows": len(found), "anomalies": len(flagged), "saved": int(saved),
                   "columns": columns(flagged[keep])})


@route("/api/keys", tag="admin")
class KeysHandler(ApiHandler):
    @operation("admin", "List API keys (never their secrets)", response=m.KeyList)
    async def get(self) -> None:
        self.send({"keys": self.services.keys.list()})

    @operation("admin", "Create an API key; the full key is in this answer only", body=m.KeyCreate,
               response=m.KeyCreated, status=201)
    async def post(self) -> None:
        body = self.body
        key, entry = self.services.keys.create(body.name, body.role, body.streams)
        self.send({**entry, "key": key})


@route("/api/keys/{id}", tag="admin")
class KeyHandler(ApiHandler):
    @operation("admin", "Revoke an API key", response=m.Deleted, stream_param=None)
    async def delete(self, id: str) -> None:
        if not self.services.keys.revoke(id[:64]):
            raise ApiError(404, "no active API key with that id", field="id")
        self.send({"name": id, "deleted": True})


@route("/api/audit", tag="admin")
class AuditHandler(ApiHandler):
    @operation("admin", "Recent audit entries (writes and refusals)", query=m.AuditParams, response=m.AuditList)
    async def get(self) -> None:
        self.send({"entries": self.services.audit.tail(self.query.limit, self.query.outcome)})


@route("/healthz", tag="health")
class HealthHandler(ApiHandler):
    @operation(None, "Liveness: the process answers", response=m.Health, rate_limited=False)
    async def get(self) -> None:
        self.send({"status": "ok", "checks": {}})


@route("/readyz", tag="health")
class ReadyHandler(ApiHandler):
    @operation(None, "Readiness: the store answers", response=m.Health, rate_limited=False)
    async def get(self) -> None:
        checks = {}
        try:
            await self.blocking(self.services.store.streams)
            checks["store"] = "ok"
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            checks["store"] = f"failing: {type(exc).__name__}"
        ok = all(v == "ok" for v in checks.values())
        self.send({"status": "ok" if ok else "unavailable", "checks": checks}, status=200 if ok else 503)


@route("/metrics", tag="health")
class MetricsHandler(ApiHandler):
    @operation(None, "Prometheus metrics", content=("text/plain",), rate_limited=False)
    async def get(self) -> None:
        self.set_header("Content-Type", "text/plain; version=0.0.4")
        self.finish(self.services.metrics.render())


@route("/openapi.json", tag="health")
class OpenAPIHandler(ApiHandler):
    @operation(None, "This API's OpenAPI 3.1 document", rate_limited=False)
    async def get(self) -> None:
        from ._openapi import openapi

        self.finish(dumps(openapi(self.services.settings, self.application.settings.get("nexus_prefix", ""))))
