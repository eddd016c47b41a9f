"""The route table, the operation decorator and the base handler every endpoint shares.

Adding endpoints (alerts, anchors and proofs join this way)::

    from nexus_kernel.gateway import ApiHandler, operation, route

    @route("/api/alerts/{id}", tag="alerts")
    class AlertHandler(ApiHandler):
        @operation("read", "One alert", response=AlertModel)
        async def get(self, id: str) -> None:
            self.send(...)

and import the module from ``nexus_kernel/gateway/__init__.py`` (or expose the class through the entry
point group ``nexus_kernel.gateway.routes``). The OpenAPI document, authentication, the permission
check, rate limits, audit and metrics come with the decorator: a handler only does its work.

Every request goes through :meth:`ApiHandler.prepare`: address rate limit → authentication →
principal rate limit → permission (role, then stream scope) → query and body validation. Any refusal is
an :class:`ApiError` answered as ``{error, detail, field}``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
import tornado.web
from pydantic import BaseModel, ValidationError

from .._registry import Registry
from ..config import redact
from ..engine._manager import NAME_PATTERN
from ._auth import Principal
from ._errors import ApiError, from_validation
from ._frames import dumps

__all__ = ["Operation", "Route", "routes", "route", "operation", "ApiHandler", "check_name", "tornado_pattern"]

log = logging.getLogger("nexus_kernel.gateway")

_WRITES = frozenset(("POST", "PUT", "PATCH", "DELETE"))


@dataclass(frozen=True)
class Operation:
    """What one HTTP method of a route does, needs and answers (also its OpenAPI entry)."""

    action: str | None  # permission needed (see _auth.PERMISSIONS); None: public
    summary: str
    query: type[BaseModel] | None = None
    body: type[BaseModel] | None = None
    raw_body: dict[str, Any] | None = None  # OpenAPI requestBody for handlers that parse bytes themselves
    response: type[BaseModel] | None = None
    status: int = 200
    content: tuple[str, ...] = ("application/json",)
    rate_limited: bool = True
    stream_param: str | None = "name"  # path parameter holding the stream (scope check)


@dataclass(frozen=True)
class Route:
    path: str  # OpenAPI template, e.g. /api/streams/{name}
    handler: type
    tag: str


routes: Registry[Route] = Registry("gateway routes", group="nexus_kernel.gateway.routes")


H = TypeVar("H", bound="ApiHandler")


def route(path: str, tag: str) -> Callable[[type[H]], type[H]]:
    """Register a handler class at an OpenAPI-style path template."""

    def decorate(cls: type[H]) -> type[H]:
        routes.add(path, Route(path, cls, tag))
        cls.route_path = path
        return cls

    return decorate


def operation(action: str | None, summary: str, **options: Any) -> Callable[[Callable], Callable]:
    def decorate(method: Callable) -> Callable:
        method._op = Operation(action, summary, **options)  # type: ignore[attr-defined]
        return method

    return decorate


def tornado_pattern(path: str, prefix: str = "") -> str:
    return prefix.rstrip("/") + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", path)


def check_name(name: str, field: str = "name") -> str:
    if not NAME_PATTERN.match(name or ""):
        raise ApiError(422, f"invalid {field}: use a letter, then letters, digits, '_', '.', '-' (max 64)",
                       field=field)
    return name


def parse_query(model: type[BaseModel], arguments: dict[str, list[bytes]], skip: tuple[str, ...] = ()) -> Any:
    data: dict[str, Any] = {}
    for key, values in arguments.items():
        if key in skip:
            continue
        if key not in model.model_fields:
            raise ApiError(422, f"unknown query parameter {key[:64]!r}", field=key[:64])
        texts = [v.decode("utf-8", "replace") for v in values]
        annotation = str(model.model_fields[key].annotation)
        if "list" in annotation:
            data[key] = [part for text in texts for part in text.split(",") if part != ""]
        else:
            data[key] = texts[-1]
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise from_validation(exc) from None


class Authorizing:
    """The checks every request (HTTP or WebSocket upgrade) goes through; mixed into the handlers."""

    services: Any
    principal: Principal
    op: Operation | None
    query: Any

    def _address(self) -> str:
        return self.request.remote_ip or "unknown"  # type: ignore[attr-defined]

    async def authorize(self) -> None:
        handler: Any = self
        method = handler.request.method.lower()
        self.op = getattr(getattr(handler, method, None), "_op", None)
        self.principal = Principal("anonymous", "viewer", "anonymous")
        self.query = None
        if self.op is None:
            raise ApiError(405, f"{handler.request.method} is not allowed here")
        services = self.services
        if self.op.rate_limited:
            await self._limit(f"addr:{self._address()}", services.settings.rate_limit_address)
        if self.op.action is not None:
            self.principal = await services.authenticate(handler)
            if self.op.rate_limited:
                await self._limit(self.principal.id, services.settings.rate_limit)
            stream = handler.path_kwargs.get(self.op.stream_param) if self.op.stream_param else None
            if not self.principal.may(self.op.action, None):
                raise ApiError(403, f"role '{self.principal.role}' may not {self.op.action}")
            if stream is not None and not self.principal.may(self.op.action, stream):
                raise ApiError(403, f"this credential is not scoped to stream '{stream[:64]}'")
        if self.op.query is not None:
            self.query = parse_query(self.op.query, handler.request.query_arguments, skip=("token",))

    async def _limit(self, key: str, limit: int) -> None:
        retry = await self.services.limiter.hit(key, limit)
        if retry is not None:
            self.services.metrics.rate_limited.inc()
            raise ApiError(429, f"rate limit exceeded: retry in {int(retry)} s",
                           headers={"Retry-After": str(int(retry))})


class ApiHandler(Authorizing, tornado.web.RequestHandler):
    """Base of every HTTP endpoint: JSON in and out, errors as ``{error, detail, field}``."""

    route_path = ""

    def initialize(self, services: Any) -> None:
        self.services = services
        self.body: Any = None
        self._started = time.perf_counter()
        self.op = None

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Cache-Control", "no-store")

    def check_xsrf_cookie(self) -> None:
        # Credentials travel in the Authorization header, never in cookies: nothing to forge. Under
        # Jupyter, a cookie-authenticated browser request still needs Jupyter's XSRF token.
        if self.services.external_auth is not None and "Authorization" not in self.request.headers:
            super().check_xsrf_cookie()

    async def prepare(self) -> None:
        await self.authorize()
        if self.op is not None and self.op.body is not None:
            self.body = self.parse_body(self.op.body)

    def parse_body(self, model: type[BaseModel]) -> Any:
        ctype = self.request.headers.get("Content-Type", "application/json").split(";")[0].strip().lower()
        if ctype not in ("application/json", ""):
            raise ApiError(415, "send the body as application/json", field="body")
        try:
            data = orjson.loads(self.request.body or b"{}")
        except orjson.JSONDecodeError:
            raise ApiError(400, "body is not valid JSON", field="body") from None
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            raise from_validation(exc) from None

    # -- answers ---------------------------------------------------------------------------------

    def send(self, payload: Any, status: int | None = None) -> None:
        if isinstance(payload, BaseModel):
            payload = payload.model_dump(mode="json")
        self.set_status(status or (self.op.status if self.op else 200))
        self.finish(dumps(payload))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, ApiError):
            body = exc.body()
            for name, value in exc.headers.items():
                self.set_header(name, value)
        elif isinstance(exc, tornado.web.HTTPError):
            word = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(status_code, "invalid")
            body = {"error": word, "detail": exc.reason or self._reason, "field": None}
        else:
            body = {"error": "internal", "detail": "internal error; see the gateway log", "field": None}
        if isinstance(body.get("detail"), str):
            body["detail"] = redact(body["detail"])  # a store error may quote its DSN
        self._error_detail = body["detail"]
        self.set_header("Content-Type", "application/json")
        self.finish(dumps(body))

    def finish(self, chunk: Any = None) -> Any:
        # Audit and count before the answer leaves: whoever reads the answer can read the entry.
        if not self._finished:
            self._account()
        return super().finish(chunk)

    def _account(self) -> None:
        status = self.get_status()
        path = self.route_path or "unmatched"
        method = self.request.method or "?"
        metrics = self.services.metrics
        metrics.requests.labels(method, path, str(status)).inc()
        metrics.latency.labels(method, path).observe(time.perf_counter() - self._started)
        record_audit(self, status)

    async def blocking(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run a blocking store call off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(None, lambda: func(*args, **kwargs))


def record_audit(handler: Any, status: int, detail: str | None = None) -> None:
    method = handler.request.method or "?"
    if method not in _WRITES and status not in (401, 403, 429):
        return
    principal = getattr(handler, "principal", None)
    op = getattr(handler, "op", None)
    handler.services.audit.record(
        principal=principal.id if principal else "anonymous", role=principal.role if principal else None,
        address=handler.request.remote_ip, method=method, path=handler.request.path,
        action=op.action if op else None, status=status,
        outcome="ok" if status < 400 else "error" if status >= 500 else "refused",
        detail=detail or getattr(handler, "_error_detail", None),
    )


class NotFoundHandler(ApiHandler):
    async def prepare(self) -> None:
        raise ApiError(404, "no such endpoint; see /openapi.json")
