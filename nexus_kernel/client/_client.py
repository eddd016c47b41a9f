"""The SDK: :class:`Client` (blocking) and :class:`AsyncClient` (``await``), with the same methods.

Example
-------
>>> import nexus_kernel as nk                                               # doctest: +SKIP
>>> client = nk.connect("http://127.0.0.1:8765", token="...")               # doctest: +SKIP
>>> client.ingest("pumps", [{"series": "a", "ts": "2024-01-01T00:00:00Z", "value": 1.0}])  # doctest: +SKIP
>>> client.query("pumps", every="1min")                                     # doctest: +SKIP
>>> source = client.subscribe("pumps")    # a streamz source of DataFrames  # doctest: +SKIP

Retries: connection failures always (the request never reached the gateway); 5xx answers and broken
connections only for idempotent calls (reads, ingest — writes are keyed, so resending is harmless).
Backoff is exponential with jitter (tenacity). A 4xx raises :class:`NexusError` at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import ssl

import httpx

from ._core import Call, Endpoints, retry_policy
from ._live import LiveSource, Subscription

__all__ = ["Client", "AsyncClient", "connect"]


def _headers(token: str | None) -> dict[str, str]:
    headers = {"User-Agent": "nexus-kernel-sdk"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


class _Common:
    def __init__(self, url: str, token: str | None, timeout: float, retries: int, verify: Any) -> None:
        self.url = url.rstrip("/")
        if isinstance(verify, str):  # a CA bundle (e.g. a self-signed gateway's certificate)
            verify = ssl.create_default_context(cafile=verify)
        self._token = token
        self.retries = retries
        self.tls_verify = verify  # not `verify`: that name is the anchoring call (client.verify(item_id))
        self.timeout = timeout

    def __repr__(self) -> str:  # never the token
        return f"{type(self).__name__}({self.url!r})"

    def _subscription(self, name: str, series: Sequence[str] | None, kinds: Sequence[str],
                      snapshot: bool) -> Subscription:
        return Subscription(self.url, self._token, name, series, kinds, snapshot, self.tls_verify, self.retries)


class Client(_Common, Endpoints):
    """Blocking client. ``verify``: True, False or a CA bundle path (for self-signed HTTPS)."""

    def __init__(self, url: str, token: str | None = None, timeout: float = 30.0, retries: int = 3,
                 verify: Any = True) -> None:
        super().__init__(url, token, timeout, retries, verify)
        self._http = httpx.Client(base_url=self.url, headers=_headers(token), timeout=timeout, verify=verify)

    def _run(self, call: Call) -> Any:
        for attempt in retry_policy(self.retries, call, asynchronous=False):
            with attempt:
                response = self._http.request(call.method, call.path, params=call.params, json=call.json,
                                              content=call.content, headers=call.headers)
                return call.finish(response)
        raise AssertionError("unreachable")

    def subscribe(self, name: str, series: Sequence[str] | None = None, kinds: Sequence[str] = ("points",),
                  snapshot: bool = True, start: bool = True, **kwargs: Any) -> LiveSource:
        """A streamz source of the stream's live DataFrames (runs on the notebook's or a background loop)."""
        return LiveSource(self._subscription(name, series, kinds, snapshot), kind=kinds[0], start=start, **kwargs)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient(_Common, Endpoints):
    """The same calls, awaited: ``frame = await client.query("pumps", last="1h")``."""

    def __init__(self, url: str, token: str | None = None, timeout: float = 30.0, retries: int = 3,
                 verify: Any = True) -> None:
        super().__init__(url, token, timeout, retries, verify)
        self._http = httpx.AsyncClient(base_url=self.url, headers=_headers(token), timeout=timeout, verify=verify)

    async def _run(self, call: Call) -> Any:
        async for attempt in retry_policy(self.retries, call, asynchronous=True):
            with attempt:
                response = await self._http.request(call.method, call.path, params=call.params, json=call.json,
                                                    content=call.content, headers=call.headers)
                return call.finish(response)
        raise AssertionError("unreachable")

    def subscribe(self, name: str, series: Sequence[str] | None = None, kinds: Sequence[str] = ("points",),
                  snapshot: bool = True) -> Subscription:
        """``async for event in client.subscribe("pumps"): event.type, event.kind, event.frame``."""
        return self._subscription(name, series, kinds, snapshot)

    def stream_source(self, name: str, series: Sequence[str] | None = None, kinds: Sequence[str] = ("points",),
                      snapshot: bool = True, start: bool = True, **kwargs: Any) -> LiveSource:
        return LiveSource(self._subscription(name, series, kinds, snapshot), kind=kinds[0], start=start, **kwargs)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def connect(url: str | None = None, token: str | None = None, *, asynchronous: bool = False,
            **options: Any) -> Any:
    """A :class:`Client` (or :class:`AsyncClient` with ``asynchronous=True``) for the gateway at ``url``.

    With no ``url``: the gateway of the ``nexus up`` that owns the configured home (found through
    ``home/runtime.json``), with a token signed by the home's own secret when none is given, so a notebook
    on the machine that runs ``nexus up`` needs neither the URL nor a token. Raises ``LookupError`` saying
    what to do when no ``nexus up`` owns the home.

    Caveat: a locally signed token is valid for ``TOKEN_TTL`` seconds (15 minutes); call ``connect()``
    again after that, or pass a longer-lived ``token`` (``nexus token``).

    >>> client = connect()                                   # doctest: +SKIP
    >>> client = connect("http://127.0.0.1:8765", token=t)   # doctest: +SKIP
    """
    if url is None:
        from ..config import load_settings
        from ..runtime._discovery import live_runtime

        settings = load_settings()
        live = live_runtime(settings)
        if live is None or live.gateway is None:
            raise LookupError(f"no running nexus up serves a gateway for {settings.home}: start one (`nexus up`), "
                              "or give the gateway's address: connect('http://host:8765', token=...)")
        url, token = live.gateway, token or live.token()
    return (AsyncClient if asynchronous else Client)(url, token, **options)
