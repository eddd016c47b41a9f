"""``RemoteSource``: the monitor's questions asked of a running gateway through the SDK.

REST (``nexus_kernel.client.Client``) answers the slow questions — streams and their counters, history,
stored anomalies and forecasts, start / pause / stop — and one WebSocket subscription per stream
(``AsyncClient.subscribe(name, kinds=("points", "anomalies"))``) feeds the same bounded live buffer
:class:`~dashboards._source.EmbeddedSource` uses, so the page code is identical for both.

The subscriptions run on a private event loop in a daemon thread: the page's own loop (a Voila kernel's,
or a Panel server's) never waits on the network, and a dropped connection is retried by the SDK (each
reconnect starts with a snapshot of the newest point per series).

Caveats: live anomalies are those the gateway published after the page connected, plus the
newest stored ones read once per stream at connect time.

Example
-------
>>> source = RemoteSource.connect("http://127.0.0.1:8765", token)     # doctest: +SKIP
>>> page = build_monitor(source)                                      # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ._source import STATUS_COLUMNS, _Live, _points, _tail, _updates, wait_for_points

__all__ = ["RemoteSource"]

log = logging.getLogger(__name__)

_ACTIONS = {"start": "start", "pause": "pause", "stop": "stop"}


class RemoteSource:
    """A ``MonitorSource`` over a gateway (``url``) with a bearer ``token``.

    Parameters
    ----------
    url, token
        The gateway and a credential whose role may ``read`` (and ``control`` for start/pause/stop).
    max_rows
        Rows of the live buffer per stream.
    timeout
        Seconds for each REST call.
    """

    mode = "remote"

    def __init__(self, url: str, token: str | None, max_rows: int = 200_000, timeout: float = 10.0) -> None:
        from nexus_kernel.client import connect

        self.url = url.rstrip("/")
        self._token = token
        self.client = connect(self.url, token, timeout=timeout, retries=1)
        self.max_rows = max_rows
        self.errors = 0
        self.notice = (f"Connected to the gateway at {self.url} through the SDK (token auth); "
                       "live points, anomalies and forecasts arrive over its WebSocket.")
        self._live: dict[str, _Live] = {}
        self._anomalies: dict[str, deque[pd.DataFrame]] = {}
        self._subscriptions: dict[str, Any] = {}
        self._tasks: dict[str, Any] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="nexus-monitor-live", daemon=True)
        self._thread.start()
        self._streams = pd.DataFrame(columns=STATUS_COLUMNS)
        self._closed = False

    @classmethod
    def connect(cls, url: str, token: str | None, **options: Any) -> "RemoteSource":
        """Connect and check the gateway answers this token (raises otherwise, so callers can fall back)."""
        source = cls(url, token, **options)
        try:
            source.streams()  # an authenticated call: a wrong token raises NexusError(401) here
        except Exception:
            source.close()
            raise
        return source

    def __repr__(self) -> str:  # never the token
        return f"RemoteSource({self.url!r})"

    # -- live ------------------------------------------------------------------------------------

    def _follow(self, stream: str) -> None:
        if stream in self._tasks or self._closed:
            return
        self._live[stream] = _Live(self.max_rows)
        self._anomalies[stream] = deque(maxlen=200)
        try:
            stored = self.client.anomalies(stream, limit=50)
            if len(stored):
                self._anomalies[stream].append(stored)
        except Exception:  # noqa: BLE001 - the live feed still fills the panel
            self.errors += 1
            log.exception("could not read stored anomalies of %s", stream)
        self._tasks[stream] = asyncio.run_coroutine_threadsafe(self._run(stream), self._loop)

    async def _run(self, stream: str) -> None:
        from nexus_kernel.client import AsyncClient

        while not self._closed:
            try:
                async with AsyncClient(self.url, self._token, retries=5) as client:
                    subscription = client.subscribe(stream, kinds=("points", "anomalies"), snapshot=True)
                    self._subscriptions[stream] = subscription
                    async for event in subscription:
                        if event.frame is None or not len(event.frame):
                            continue
                        if event.kind == "points":
                            self._on_points(stream, event.frame)
                        elif event.kind == "anomalies":
                            frame = event.frame
                            if "is_anomaly" in frame.columns:
                                frame = frame[frame["is_anomaly"].astype(bool)]
                            if len(frame):
                                self._anomalies[stream].append(frame)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - keep following: the SDK gave up after its retries
                self.errors += 1
                log.exception("live subscription of %s failed; retrying", stream)
                await asyncio.sleep(1.0)

    def _on_points(self, stream: str, frame: pd.DataFrame) -> None:
        if "value" not in frame.columns:
            return
        points = pd.DataFrame({"ts": pd.to_datetime(frame["ts"], utc=True).to_numpy(),
                               "series": frame["series"].astype(str).to_numpy(),
                               "value": pd.to_numeric(frame["value"], errors="coerce").to_numpy(dtype=np.float64)})
        self._live[stream].add(points.sort_values("ts", kind="mergesort"))

    def wait_ready(self, timeout: float = 5.0) -> bool:
        """Block until some stream has buffered points."""
        return wait_for_points(self._live, timeout)

    # -- MonitorSource ---------------------------------------------------------------------------

    def streams(self) -> pd.DataFrame:
        frame = self.client.streams()
        for col in STATUS_COLUMNS:
            if col not in frame.columns:
                frame[col] = None
        frame = frame[STATUS_COLUMNS]
        for name in frame["name"]:
            self._follow(str(name))
        self._streams = frame
        return frame

    def series(self, stream: str) -> list[str]:
        live = self._live.get(stream)
        known = live.series if live else set()
        if not known:
            latest = self.client.latest(stream)
            known = set(latest["series"].astype(str)) if len(latest) else set()
        return sorted(known)

    def updates(self, stream: str, series: Sequence[str] | None, cursor: int) -> tuple[pd.DataFrame, int, float | None]:
        return _updates(self._live.get(stream), series, cursor)

    def snapshot(self, stream: str, series: Sequence[str] | None) -> tuple[pd.DataFrame, int]:
        frame, cursor, _ = self.updates(stream, series, 0)
        return frame, cursor

    def history(self, stream: str, series: Sequence[str], start: Any, end: Any) -> pd.DataFrame:
        if not series:
            return _points(None)
        return _points(self.client.query(stream, series=list(series), start=start, end=end))

    def anomalies(self, stream: str, limit: int = 50) -> pd.DataFrame:
        parts = list(self._anomalies.get(stream, ()))
        return _tail(pd.concat(parts[-limit:], ignore_index=True) if parts else None, limit)

    def forecasts(self, stream: str, series: str) -> pd.DataFrame:
        """The newest stored forecast of one series (the gateway's ``forecasts`` table)."""
        frame = self.client.forecasts(stream, series=series, limit=500)
        if not len(frame) or "made_at" not in frame.columns:
            return pd.DataFrame()
        return frame[frame["made_at"] == frame["made_at"].max()].sort_values("ts").reset_index(drop=True)

    def job_runs(self, limit: int = 10) -> pd.DataFrame:
        """The newest runs of the scheduled jobs, from the store's ``job_runs`` table (``GET /api/jobs/runs``)."""
        runs = self.client.job_runs(limit=limit)
        if not len(runs):
            return pd.DataFrame(columns=["run_id", "job", "started_at", "finished_at", "status", "output", "error"])
        return runs.sort_values("started_at", ascending=False).head(limit).reset_index(drop=True)

    def control(self, stream: str, action: str) -> str:
        if action not in _ACTIONS:
            raise ValueError(f"unknown action {action!r}: start, pause or stop")
        state = self.client.status(stream).get("state") if action == "start" else None
        call = "resume" if action == "start" and state == "paused" else action
        return str(getattr(self.client, call)(stream)["state"])

    def close(self) -> None:
        self._closed = True
        for future in self._tasks.values():
            future.cancel()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self.client.close()
