"""Live subscriptions: an async iterator of :class:`LiveEvent`, and a streamz source of DataFrames.

The iterator reconnects after a dropped connection (exponential backoff, ``retries`` times in a row);
each reconnect starts with a fresh snapshot, so a plot recovers by itself. ``dropped`` and ``gap`` events
say that messages were lost (this client was too slow, or the gateway fell behind).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import orjson
import pandas as pd
import streamz
import websockets

from ._core import NexusError, frame_from_columns

__all__ = ["LiveEvent", "Subscription", "LiveSource"]


@dataclass
class LiveEvent:
    """One message: ``type`` is hello, snapshot, data, dropped or gap; ``frame`` for snapshot/data."""

    type: str
    kind: str | None = None
    frame: pd.DataFrame | None = None
    id: str | None = None
    count: int = 0
    raw: dict[str, Any] | None = None


def _events(message: dict[str, Any]) -> list[LiveEvent]:
    kind = message.get("type")
    if kind == "batch":
        return [e for m in message.get("messages", []) for e in _events(m)]
    if kind in ("data", "snapshot"):
        return [LiveEvent(kind, message.get("kind"), frame_from_columns(message), message.get("id"),
                          message.get("rows", 0))]
    if kind == "dropped":
        return [LiveEvent("dropped", count=message.get("count", 0), raw=message)]
    if kind == "gap":
        return [LiveEvent("gap", count=message.get("dropped", 0), raw=message)]
    return [LiveEvent(str(kind), raw=message)]


class Subscription:
    """``async for event in client.subscribe(...)``; ``await sub.close()`` (or leave the loop) to end."""

    def __init__(self, url: str, token: str | None, name: str, series: Sequence[str] | None,
                 kinds: Sequence[str], snapshot: bool, verify: Any, retries: int) -> None:
        base = url.replace("https://", "wss://", 1).replace("http://", "ws://", 1).rstrip("/")
        query = {"kinds": ",".join(kinds), "snapshot": "true" if snapshot else "false"}
        if series:
            query["series"] = ",".join(series)
        self.url = f"{base}/api/streams/{name}/live?{urlencode(query)}"
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.ssl = _ssl(verify) if self.url.startswith("wss://") else None
        self.retries = retries
        self.dropped = 0
        self._ws: Any = None
        self._closed = False

    async def close(self) -> None:
        self._closed = True
        if self._ws is not None:
            await self._ws.close()

    async def _connect(self) -> Any:
        try:
            return await websockets.connect(self.url, additional_headers=self.headers, ssl=self.ssl,
                                            max_size=1 << 26, open_timeout=10)
        except websockets.InvalidStatus as exc:
            response = exc.response
            try:
                body = orjson.loads(response.body or b"{}")
            except orjson.JSONDecodeError:
                body = {}
            raise NexusError(response.status_code, body.get("error", "error"), body.get("detail", "refused"),
                             body.get("field")) from None

    def __aiter__(self) -> AsyncIterator[LiveEvent]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[LiveEvent]:
        failures = 0
        while not self._closed:
            try:
                self._ws = await self._connect()
                failures = 0
                async for text in self._ws:
                    for event in _events(orjson.loads(text)):
                        if event.type == "dropped":
                            self.dropped += event.count
                        yield event
            except (OSError, websockets.ConnectionClosedError, asyncio.TimeoutError):
                failures += 1
                if failures > self.retries or self._closed:
                    raise
                await asyncio.sleep(min(5.0, 0.1 * 2 ** failures))
                continue
            finally:
                if self._ws is not None:
                    await self._ws.close()
            if self._closed:
                break
            await asyncio.sleep(0.1)  # the server closed cleanly: reconnect


def _ssl(verify: Any) -> Any:
    if verify is False:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    if isinstance(verify, str):
        return ssl.create_default_context(cafile=verify)
    if isinstance(verify, ssl.SSLContext):
        return verify
    return True


class LiveSource(streamz.Source):
    """A streamz source emitting the DataFrames of a live subscription (snapshot first, then data).

    ``source.sink(buffer.send)`` feeds a HoloViews ``Buffer``; ``source.stop()`` ends the subscription.
    Only ``kind`` events (default ``points``) are emitted; loss notices are counted in ``dropped``.
    """

    def __init__(self, subscription: Subscription, kind: str = "points", **kwargs: Any) -> None:
        self.subscription = subscription
        self.kind = kind
        super().__init__(**kwargs)

    @property
    def dropped(self) -> int:
        return self.subscription.dropped

    async def run(self) -> None:
        async for event in self.subscription:
            if self.stopped:
                break
            if event.type in ("data", "snapshot") and event.kind == self.kind and event.frame is not None:
                await asyncio.gather(*self._emit(event.frame))
        await self.subscription.close()

    def stop(self) -> None:
        super().stop()
        loop = self.loop.asyncio_loop
        loop.call_soon_threadsafe(lambda: asyncio.ensure_future(self.subscription.close()))
