"""``websocket``: a client of a ``ws://`` / ``wss://`` feed, reconnecting with backoff.

Messages are JSON text (or UTF-8 bytes): an object is one record, an array of objects several, and
NDJSON text one record per line. Records are gathered into micro-batches of ``batch_size`` records, or
whatever arrived within ``batch_interval`` seconds of the first record of a batch, whichever comes first.
A message that is not JSON, or JSON that is not an object, becomes a row the Validator dead-letters
(raw text and error in ``attrs``): it is neither lost nor fatal.

When the connection drops (or cannot be opened) the source waits and tries again, with exponential
backoff and jitter: the n-th consecutive failure waits a random time in ``[d/2, d]`` where
``d = min(max_backoff, initial_backoff * 2**(n-1))``. The failure count resets once a message arrives.
After ``max_retries`` consecutive failures (``None``: never give up) the source raises
:class:`ConnectionError`. ``subscribe`` is sent again on every (re)connect.

Caveats
-------
- A WebSocket feed has no acknowledgements: what the server sent while the source was disconnected
  is gone, unless the feed replays on subscribe. ``commit()`` is a no-op.
- Records get no ``seq`` unless they carry one (the Validator numbers them).
- Messages larger than ``max_size`` bytes make the library close the connection (code 1009); the
  source reconnects, the message is lost. Raise ``max_size`` for feeds with large frames.
- Backpressure: at most ``buffer`` batches wait for the pipeline; past that the source stops reading
  the socket and TCP flow control slows the server down (or the server drops us).
- Proxies from the environment are ignored (``proxy=None``): feeds are reached directly.

Parameters
----------
url
    ``ws://host:port/path``.
batch_size, batch_interval
    Records per batch; seconds after which a partial batch is handed on.
subscribe
    A message sent after each connect: text as is, anything else as JSON.
initial_backoff, max_backoff, max_retries
    Reconnect policy (seconds, seconds, consecutive failures or ``None``).
buffer
    Batches waiting for the pipeline before the source stops reading.
stop_on_close
    End the iteration when the server closes the connection normally (code 1000/1001): a finite feed.
open_timeout, max_size
    Handshake timeout (seconds) and largest message (bytes).

In a stream spec no parameter reaches a file or a local socket; a URL with a password, or a credential
in ``subscribe`` (a key named like ``token``), must be a secret reference ``{"secret": "NAME"}``.

Example
-------
>>> import asyncio, json
>>> from websockets.asyncio.server import serve
>>> async def feed(ws):
...     await ws.send(json.dumps([{"series": "a", "ts": 1.7e9 + i, "value": i} for i in range(3)]))
>>> async def main():
...     async with serve(feed, "127.0.0.1", 0) as server:
...         port = server.sockets[0].getsockname()[1]
...         src = WebSocketSource(f"ws://127.0.0.1:{port}", batch_interval=0.05, stop_on_close=True)
...         rows = [len(b) async for b in src]
...         await src.close()
...         return rows
>>> asyncio.run(main())
[3]

References
----------
- websockets client: https://websockets.readthedocs.io/en/stable/reference/asyncio/client.html
- Exponential backoff and jitter: https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator
from typing import Any

import pandas as pd

from ._base import BoundedBuffer, Source, sources
from ._jsonrecords import BufferedBatches, frame_from_records, records_from_text

__all__ = ["WebSocketSource"]


@sources.register("websocket")
class WebSocketSource(Source):
    """Client of a WebSocket feed of JSON records; see the module docstring."""

    kind = "websocket"
    self_buffered = True

    def __init__(
        self,
        url: str,
        batch_size: int = 1000,
        batch_interval: float = 0.5,
        subscribe: Any = None,
        initial_backoff: float = 0.5,
        max_backoff: float = 30.0,
        max_retries: int | None = None,
        buffer: int = 8,
        stop_on_close: bool = False,
        open_timeout: float = 10.0,
        max_size: int = 2**22,
    ) -> None:
        if not url.startswith(("ws://", "wss://")):
            raise ValueError(f"websocket url must start with ws:// or wss://, got {url!r}")
        if batch_size <= 0 or batch_interval <= 0 or buffer <= 0:
            raise ValueError("batch_size, batch_interval and buffer must be > 0")
        if initial_backoff < 0 or max_backoff < initial_backoff:
            raise ValueError("need 0 <= initial_backoff <= max_backoff")
        if max_retries is not None and max_retries < 0:
            raise ValueError("max_retries must be >= 0 or None")
        super().__init__(
            url=url, batch_size=batch_size, batch_interval=batch_interval, subscribe=subscribe,
            initial_backoff=initial_backoff, max_backoff=max_backoff, max_retries=max_retries,
            buffer=buffer, stop_on_close=stop_on_close, open_timeout=open_timeout, max_size=max_size,
        )
        self._buffer: BoundedBuffer | None = None
        self.connections = 0  # successful connects, reconnects included
        self.messages = 0
        self.last_error: str | None = None

    def backoff(self, failures: int) -> float:
        """Seconds to wait after ``failures`` consecutive failed or dropped connections."""
        p = self.params
        ceiling = min(p["max_backoff"], p["initial_backoff"] * 2 ** max(failures - 1, 0))
        return random.uniform(ceiling / 2, ceiling)

    async def _produce(self) -> AsyncIterator[pd.DataFrame]:
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed, ConnectionClosedOK, InvalidHandshake, InvalidURI

        p = self.params
        pending: list[dict[str, Any]] = []
        first_at = 0.0
        failures = 0

        def take(n: int) -> pd.DataFrame:
            nonlocal pending, first_at
            out, pending = pending[:n], pending[n:]
            first_at = time.monotonic()
            return frame_from_records(out)

        while True:
            try:
                async with connect(
                    p["url"], proxy=None, open_timeout=p["open_timeout"], max_size=p["max_size"],
                    close_timeout=2,
                ) as ws:
                    self.connections += 1
                    if p["subscribe"] is not None:
                        sub = p["subscribe"]
                        await ws.send(sub if isinstance(sub, str) else json.dumps(sub))
                    while True:
                        wait = None
                        if pending:
                            wait = max(0.0, first_at + p["batch_interval"] - time.monotonic())
                        try:
                            async with asyncio.timeout(wait):  # recv is cancel-safe: nothing is lost
                                message = await ws.recv()
                        except TimeoutError:
                            yield take(len(pending))
                            continue
                        self.messages += 1
                        failures = 0
                        if not pending:
                            first_at = time.monotonic()
                        pending.extend(records_from_text(message))
                        while len(pending) >= p["batch_size"]:
                            yield take(p["batch_size"])
                        if pending and time.monotonic() - first_at >= p["batch_interval"]:
                            yield take(len(pending))
            except InvalidURI:
                raise
            except ConnectionClosedOK as exc:
                self.last_error = f"closed by server: {exc}"
                if p["stop_on_close"]:
                    if pending:
                        yield take(len(pending))
                    return
            except (OSError, TimeoutError, ConnectionClosed, InvalidHandshake) as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
            if pending:  # do not hold records back while waiting to reconnect
                yield take(len(pending))
            failures += 1
            if p["max_retries"] is not None and failures > p["max_retries"]:
                raise ConnectionError(
                    f"websocket {p['url']}: gave up after {failures} failed attempts ({self.last_error})"
                )
            await asyncio.sleep(self.backoff(failures))

    def batches(self) -> AsyncIterator[pd.DataFrame]:
        def make_buffer() -> BoundedBuffer:
            self._buffer = BoundedBuffer(self._produce(), self.params["buffer"])
            return self._buffer

        def accept(frame: pd.DataFrame) -> pd.DataFrame | None:
            if frame.empty:
                return None
            self.emitted += len(frame)
            return frame

        return BufferedBatches(make_buffer, accept, self._ended)

    def _ended(self) -> None:
        self.exhausted = True

    async def close(self) -> None:
        """Close the connection and stop reading. Idempotent."""
        if self._buffer is not None:
            buffer, self._buffer = self._buffer, None
            await buffer.aclose()
