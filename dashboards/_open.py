"""``open_source(settings)``: the gateway through the SDK when one answers, else an embedded pipeline."""

from __future__ import annotations

import logging
import tempfile
from typing import Any

from ._source import EmbeddedSource

__all__ = ["open_source"]

log = logging.getLogger(__name__)


def _gateway(settings: Any) -> str:
    return settings.gateway_url or f"http://{settings.host}:{settings.port}"


def open_source(settings: Any, token: str | None = None) -> Any:
    """A ``MonitorSource`` for a notebook or Voila page.

    With a token (argument or ``settings.gateway_token``) and a gateway answering at
    ``settings.gateway_url`` (default ``http://host:port``), the page reads it through the SDK. Without a
    token, when ``nexus up`` owns ``settings.home``, the page reads that runtime's gateway, found from the
    home (``runtime.json``) with a token signed by the home's own secret — nothing to configure.
    Otherwise it runs its *own* simulated stream in a private, temporary home with an in-memory store —
    never the streams of ``settings.home``, which belong to ``nexus up`` — and its ``notice`` says so.
    """
    token = token or (settings.gateway_token.get_secret_value() if settings.gateway_token else None)
    url = _gateway(settings)
    why = "no gateway token configured (NEXUS_GATEWAY_TOKEN) and no nexus up running for this home"
    if not token:
        from nexus_kernel.runtime._discovery import live_runtime

        live = live_runtime(settings)
        if live is not None and live.gateway is not None:
            url, token = live.gateway, live.token(ttl=settings.jwt_ttl)  # a page may stay open for hours
    if token:
        try:
            from ._remote import RemoteSource

            return RemoteSource.connect(url, token)
        except Exception as exc:  # noqa: BLE001 - any failure to reach the gateway falls back, visibly
            why = f"gateway at {url} not usable: {type(exc).__name__}: {exc}"
            log.warning("monitor: %s", why)
    from nexus_kernel.storage import open_store

    private = settings.model_copy(update={"home": __import__("pathlib").Path(tempfile.mkdtemp(prefix="nexus-page-")),
                                          "store": "memory"})
    source = EmbeddedSource.start(private, store=open_store("memory"))
    source.notice = (f"No gateway: {why}. This page runs its own embedded pipeline (simulated stream "
                     f"'sensors', in-memory store) inside its kernel.")
    return source
