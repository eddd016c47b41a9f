"""Putting the gateway together: the services it uses, the tornado application, the running server.

Example
-------
>>> import asyncio
>>> from nexus_kernel.config import load_settings
>>> from nexus_kernel.gateway import Services, start_gateway, first_admin_token
>>> async def main(home):
...     settings = load_settings(home=home, store="memory", port=0)
...     gateway = await start_gateway(settings, Services.create(settings))
...     token = first_admin_token(settings)
...     await gateway.stop()
...     return gateway.url.startswith("http://127.0.0.1:"), token.count(".")
>>> import tempfile; asyncio.run(main(tempfile.mkdtemp()))
(True, 2)

Caveats: one process serves one ``Services``; under Jupyter the same handlers are mounted with Jupyter's
own authentication (see :mod:`._jupyter`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import tornado.httpserver
import tornado.netutil
import tornado.web

from ..config import Settings, redact
from . import _handlers, _live  # noqa: F401  (register their routes)
from ._audit import AuditLog
from ._auth import Authenticator, Principal, mint_token
from ._base import NotFoundHandler, routes, tornado_pattern
from ._coalesce import IngestCoalescer
from ._ingest import StreamIngest
from ._keys import KeyStore
from ._live import LiveHub
from ._metrics import Metrics
from ._ratelimit import RateLimiter, open_limiter

__all__ = ["Services", "make_app", "Gateway", "start_gateway", "first_admin_token"]

log = logging.getLogger("nexus_kernel.gateway")
access_log = logging.getLogger("tornado.access")


@dataclass
class Services:
    """What the handlers use: a :class:`~nexus_kernel.runtime.Runtime`'s store, bus and stream manager,
    plus the gateway's own keys, audit log, rate limiter and metrics. Build with :meth:`create`.

    The gateway builds no store, bus or manager of its own: they are the runtime's. It closes the
    runtime only when it opened it (``owns_runtime``: :meth:`create` without one).
    """

    settings: Settings
    runtime: Any
    keys: KeyStore = None  # type: ignore[assignment]
    audit: AuditLog = None  # type: ignore[assignment]
    limiter: RateLimiter = None  # type: ignore[assignment]
    metrics: Metrics = field(default_factory=Metrics)
    external_auth: Callable[[Any], Awaitable[Principal]] | None = None
    owns_runtime: bool = False

    def __post_init__(self) -> None:
        home = self.settings.home
        self.keys = self.keys or KeyStore.for_home(home)
        self.audit = self.audit or AuditLog(home / "audit.jsonl")
        self.limiter = self.limiter or open_limiter(self.settings)
        self.authenticator = Authenticator(self.settings, self.keys)
        self.ingest = StreamIngest(self.settings, self.manager)
        self.coalescer = IngestCoalescer(self.ingest, self.store, manager=self.manager)
        self.hub = LiveHub(self)

    @property
    def store(self) -> Any:
        """The runtime's store."""
        return self.runtime.store

    @property
    def bus(self) -> Any:
        """The runtime's live bus."""
        return self.runtime.bus

    @property
    def manager(self) -> Any:
        """The runtime's stream manager: REST start/stop/... run its pipelines on the runtime's thread."""
        return self.runtime.manager

    @classmethod
    def create(cls, settings: Settings, runtime: Any = None, **options: Any) -> Services:
        """The gateway's services over ``runtime`` (default: a runtime opened here, and closed with them).

        Parameters
        ----------
        settings
            The home (keys, audit log) and the gateway's settings.
        runtime
            The process's :class:`~nexus_kernel.runtime.Runtime`; nothing is opened when it is given.
        options
            Other fields (``external_auth=``, ``limiter=``, ...).

        Example: ``Services.create(settings, runtime=rt)`` in ``nexus up``; ``Services.create(settings)``
        for a gateway alone (``python -m nexus_kernel.gateway``).
        """
        if runtime is not None:
            return cls(settings, runtime, **options)
        from ..runtime import Runtime

        opened = Runtime.open(settings)
        try:
            return cls(settings, opened, owns_runtime=True, **options)
        except BaseException:
            opened.close()
            raise

    async def authenticate(self, handler: Any) -> Principal:
        if self.external_auth is not None:
            return await self.external_auth(handler)
        credential = handler.request.headers.get("Authorization")
        if not credential:
            token = handler.get_query_argument("token", None)  # browsers cannot set WebSocket headers
            credential = f"Bearer {token}" if token else None
        try:
            return self.authenticator.authenticate(credential)
        except Exception:
            self.metrics.auth_refused.labels("401").inc()
            raise

    async def close(self) -> None:
        await self.hub.close()
        await self.limiter.close()
        self.audit.close()
        if self.owns_runtime:
            await self.runtime.aclose()


class RedactFilter(logging.Filter):
    """Masks DSN passwords in a record's message and traceback (a driver error may quote its DSN)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return True


_REDACT = RedactFilter()
_LOGGERS = ("nexus_kernel", "nexus_kernel.gateway", "nexus_kernel.gateway.live", "tornado.access",
            "tornado.application", "tornado.general", "asyncio")


def install_redaction() -> None:
    """Put the filter on the loggers the gateway's code paths write to (idempotent)."""
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        if _REDACT not in logger.filters:
            logger.addFilter(_REDACT)


_SECRET_QUERY = re.compile(r"([?&](?:token|key|api_key|access_token)=)[^&]*", re.I)


def _log_request(handler: tornado.web.RequestHandler) -> None:
    """Tornado's access log line, with credentials in the query string masked."""
    status = handler.get_status()
    level = logging.INFO if status < 400 else logging.WARNING if status < 500 else logging.ERROR
    uri = _SECRET_QUERY.sub(r"\1***", handler.request.uri or "")
    access_log.log(level, "%d %s %s (%s) %.2fms", status, handler.request.method, uri,
                   handler.request.remote_ip, 1000.0 * handler.request.request_time())


def handlers(services: Services, prefix: str = "") -> list[tuple[str, type, dict[str, Any]]]:
    """The (pattern, handler, kwargs) list, to mount in any tornado application under ``prefix``."""
    return [(tornado_pattern(path, prefix), r.handler, {"services": services}) for path, r in routes.items()]


def make_app(services: Services, prefix: str = "") -> tornado.web.Application:
    """The gateway as a tornado application (no server started)."""
    app = tornado.web.Application(
        handlers(services, prefix),
        default_handler_class=NotFoundHandler, default_handler_args={"services": services},
        log_function=_log_request, nexus_prefix=prefix, compress_response=True,
        websocket_max_message_size=1 << 20,
    )
    return app


class Gateway:
    """A running gateway on the current event loop: ``url``, ``port``, ``await stop()``."""

    def __init__(self, server: tornado.httpserver.HTTPServer, services: Services, url: str, port: int) -> None:
        self.server, self.services, self.url, self.port = server, services, url, port

    async def stop(self) -> None:
        self.server.stop()
        await self.services.close()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.server.close_all_connections(), 5)


def _tls(settings: Settings) -> ssl.SSLContext | None:
    if settings.tls_cert is None and settings.tls_key is None:
        return None
    if settings.tls_cert is None or settings.tls_key is None:
        raise ValueError("HTTPS needs both tls_cert and tls_key")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(settings.tls_cert), str(settings.tls_key))
    return context


async def start_gateway(settings: Settings, services: Services | None = None, *, runtime: Any = None) -> Gateway:
    """Serve the gateway on ``settings.host:settings.port`` (0 = any free port), HTTPS when configured.

    ``services`` (default: :meth:`Services.create` over ``runtime``, or over a runtime of its own).
    """
    install_redaction()
    if services is not None and runtime is not None and services.runtime is not runtime:
        raise ValueError("start_gateway: pass services or runtime, not two different runtimes")
    services = services or Services.create(settings, runtime=runtime)
    app = make_app(services)
    tls = _tls(settings)
    server = tornado.httpserver.HTTPServer(app, ssl_options=tls, max_body_size=settings.max_body_bytes * 2,
                                           xheaders=False)
    sockets = tornado.netutil.bind_sockets(settings.port, settings.host)
    server.add_sockets(sockets)
    port = sockets[0].getsockname()[1]
    host = settings.host if ":" not in settings.host else f"[{settings.host}]"
    url = f"{'https' if tls else 'http'}://{host}:{port}"
    log.info("gateway listening on %s", url)
    return Gateway(server, services, url, port)


def first_admin_token(settings: Settings, subject: str = "admin", ttl: float | None = None) -> str:
    """A JWT with the admin role, to print when ``nexus up`` starts."""
    return mint_token(settings, subject, "admin", ttl=ttl)
