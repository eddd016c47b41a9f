"""Where the monitor's data comes from: the small ``MonitorSource`` protocol and its members.

The monitor never touches a pipeline or the gateway itself; it asks a ``MonitorSource``:

``EmbeddedSource``  in-process, over a :class:`~nexus_kernel.runtime.Runtime`: reads the runtime's live
                    bus (topics ``stream:<name>:points``, ``:anomalies``, ``:forecasts``, one
                    subscription per kind) and its store (history, stored anomalies and forecasts, job
                    runs), and controls the streams through the runtime's manager. It runs no analysis:
                    the anomalies and forecasts shown are those the pipelines' ``analyze`` steps
                    published or stored, and a stream without one shows none.
``RemoteSource``    the same questions asked of a running gateway through the SDK
                    (``nexus_kernel.client.connect(url, token)``) — see :mod:`._remote`.

Each browser session keeps a cursor and asks :meth:`updates` for what arrived after it; an
``EmbeddedSource`` also tells listeners (``add_listener``) when a batch arrives, so pages are pushed
updates instead of polling for them. Every buffered batch carries ``received`` (epoch seconds when it
entered the buffer, i.e. when the serving loop took it off the bus), which is what the dashboard
benchmark measures latency from.

Caveats: the live buffer holds ``max_rows`` rows per stream (oldest dropped first): the live view covers
the last minutes of a fast stream; older points come from the store (history mode). Only what a stream
publishes reaches the live view: a stream whose spec has no ``publish`` step of ``points`` shows its
history (from the store) but no live line.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd

__all__ = ["MonitorSource", "EmbeddedSource", "CHANGE_DETECTORS", "LIVE_KINDS", "is_change_point", "explain"]

log = logging.getLogger(__name__)

#: detectors whose flags mark a change of regime rather than an outlying point
CHANGE_DETECTORS = frozenset({"bocpd", "cusum", "level_shift"})

#: series names a live buffer remembers (and interns) per stream
MAX_SERIES = 100_000

#: the bus topic kinds the embedded monitor follows (one pattern subscription each, every stream)
LIVE_KINDS = ("points", "anomalies", "forecasts")

#: the columns that tell one anomaly row from another (a store row and its bus twin are equal on them)
ANOMALY_KEY = ["series", "field", "ts", "detector"]

STATUS_COLUMNS = ["name", "state", "source", "rate", "lag", "records_in", "records_out", "dead_letters", "errors",
                  "last_error"]


@runtime_checkable
class MonitorSource(Protocol):
    """What the monitor asks of its data source. Every frame method returns a DataFrame."""

    mode: str  # "embedded" or "remote": shown on the page

    def streams(self) -> pd.DataFrame: ...                        # STATUS_COLUMNS, one row per stream
    def series(self, stream: str) -> list[str]: ...               # known series keys, sorted
    def updates(self, stream: str, series: Sequence[str] | None, cursor: int) -> tuple[pd.DataFrame, int, float | None]: ...
    def snapshot(self, stream: str, series: Sequence[str]) -> tuple[pd.DataFrame, int]: ...
    def history(self, stream: str, series: Sequence[str], start: Any, end: Any) -> pd.DataFrame: ...
    def anomalies(self, stream: str, limit: int = 50) -> pd.DataFrame: ...   # anomalies table schema
    def forecasts(self, stream: str, series: str) -> pd.DataFrame: ...       # forecasts table schema
    def job_runs(self, limit: int = 10) -> pd.DataFrame: ...                 # job_runs table schema
    def control(self, stream: str, action: str) -> str: ...                  # start | pause | stop → new state


def explain(reason: str | None) -> dict[str, Any]:
    """The structured facts of an anomaly's ``reason`` JSON ({} when absent or unreadable)."""
    if not reason:
        return {}
    try:
        facts = json.loads(reason)
    except ValueError:
        return {"text": reason}
    return facts if isinstance(facts, dict) else {"facts": facts}


def is_change_point(facts: dict[str, Any]) -> bool:
    member: dict[str, Any] = facts["member"] if isinstance(facts.get("member"), dict) else {}
    return facts.get("detector") in CHANGE_DETECTORS or member.get("detector") in CHANGE_DETECTORS \
        or facts.get("feature") == "regime" or member.get("feature") == "regime"


class _Live:
    """Bounded recent batches of one stream: (id, received, ts, series, value) as plain arrays.

    Arrays, not a DataFrame per batch: a live batch is a few dozen rows, and a DataFrame's own overhead
    (~8 KB) made the buffer 80 MiB at its 200,000-row cap (measured; the dashboard benchmark's server grew
    4.4 MiB/min while it filled). Series names are interned, so a row costs about 24 bytes.
    """

    def __init__(self, max_rows: int) -> None:
        self.max_rows = max_rows
        self.batches: deque[tuple[int, float, np.ndarray, np.ndarray, np.ndarray]] = deque()
        self.rows = 0
        self.next_id = 1
        self._names: dict[str, str] = {}  # the interned series names: also the known series
        self.lock = threading.Lock()

    @property
    def series(self) -> set[str]:
        """The series seen so far (at most ``MAX_SERIES``)."""
        with self.lock:
            return set(self._names)

    def add(self, frame: pd.DataFrame) -> None:
        """Buffer the ``ts`` / ``series`` / ``value`` columns of ``frame``."""
        stamps = pd.DatetimeIndex(pd.to_datetime(frame["ts"], utc=True)).tz_localize(None).to_numpy()
        keys = frame["series"].astype(str).tolist()
        values = frame["value"].to_numpy(dtype=np.float64, na_value=np.nan)
        with self.lock:
            names = self._names
            intern = names.setdefault if len(names) < MAX_SERIES else names.get
            series = np.array([intern(k, k) for k in keys], dtype=object)
            self.batches.append((self.next_id, time.time(), stamps, series, values))
            self.next_id += 1
            self.rows += len(values)
            while self.rows > self.max_rows and len(self.batches) > 1:
                self.rows -= len(self.batches.popleft()[4])

    def after(self, cursor: int) -> tuple[pd.DataFrame | None, int, float | None]:
        """What arrived after ``cursor`` as one frame (None when nothing), the newest id, its arrival time."""
        with self.lock:
            fresh = [b for b in self.batches if b[0] > cursor] if self.batches and self.batches[-1][0] > cursor else []
            newest = self.next_id - 1
        if not fresh:
            return None, newest, None
        frame = pd.DataFrame({"ts": pd.DatetimeIndex(np.concatenate([b[2] for b in fresh])).tz_localize("UTC"),
                              "series": np.concatenate([b[3] for b in fresh]),
                              "value": np.concatenate([b[4] for b in fresh])})
        return frame, newest, fresh[-1][1]


def wait_for_points(live: dict[str, Any], timeout: float) -> bool:
    """True once some stream's live buffer holds a series, False after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(buffer.series for buffer in live.values()):
            return True
        time.sleep(0.05)
    return False


class EmbeddedSource:
    """A ``MonitorSource`` over a :class:`~nexus_kernel.runtime.Runtime` of this process.

    Parameters
    ----------
    runtime
        The runtime whose bus, store and stream manager the monitor reads (its pipelines run on the
        runtime's own thread; nothing here touches them).
    loop
        The event loop the bus subscriptions run on, where listeners are called: default the running
        loop (the one serving the pages), else the runtime's pipeline loop (a synchronous caller).
    max_rows
        Rows of the live buffer per stream.
    keep
        Anomaly frames kept per stream from the bus (older ones come from the store).
    maxsize
        Messages a subscription may have waiting (default: the bus's own bound). A subscription that
        falls behind is cut off by the bus; it is then renewed and what it missed is replayed.

    Example
    -------
    >>> source = EmbeddedSource.start(load_settings())   # a runtime of its own: notebooks, Voila  # doctest: +SKIP
    >>> source = EmbeddedSource(runtime)                  # over nexus up's runtime (dashboards._serve)  # doctest: +SKIP
    >>> source.streams()[["name", "state", "rate"]]       # doctest: +SKIP
    """

    mode = "embedded"

    def __init__(self, runtime: Any, *, loop: asyncio.AbstractEventLoop | None = None, max_rows: int = 200_000,
                 keep: int = 200, maxsize: int | None = None) -> None:
        if getattr(runtime, "bus", None) is None:
            raise ValueError("the embedded monitor reads the runtime's live bus, and this runtime has none")
        self.runtime = runtime
        self.store = runtime.store
        self.bus = runtime.bus
        self.max_rows = max_rows
        self.keep = keep
        self.maxsize = maxsize
        self.notice = ""
        self.errors = 0
        self.lagged = 0  # times a subscription fell behind and was renewed
        self._live: dict[str, _Live] = {}
        self._anomalies: dict[str, deque[pd.DataFrame]] = {}
        self._forecasts: dict[tuple[str, str], pd.DataFrame] = {}
        self._seen: dict[str, tuple[tuple[int, int], str]] = {}  # per topic: newest (key, id) taken in
        self._listeners: list[Callable[[str], None]] = []
        self._owned: list[Any] = []  # what start() opened for this source alone, closed with it
        self._closed = False
        self._loop = loop or _running_loop() or runtime.loop
        if self._loop is None:
            raise RuntimeError("no event loop to follow the bus on: call from a running loop, pass loop=, "
                               "or give the runtime a pipeline thread (Runtime.open(settings, thread=True))")
        self._subscribed = threading.Event()
        self._attached = 0
        self._tasks: list[concurrent.futures.Future[None]] = [
            asyncio.run_coroutine_threadsafe(self._follow(kind), self._loop) for kind in LIVE_KINDS]

    @classmethod
    def start(cls, settings: Any, store: Any = None, **options: Any) -> EmbeddedSource:
        """A runtime of its own over ``settings.home`` (its saved streams, the built-in simulator stream
        when there are none), started, and a source over it: what a notebook or Voila page runs.

        ``store`` is shared with the runtime (default: the one ``settings`` name, opened and closed with
        the source); the bus is an in-process one unless ``bus=`` is given, so a page's private streams
        never publish on a home's shared Redis. Other ``options`` go to the constructor.
        :meth:`close` (or :meth:`aclose`) stops the pipelines and closes what was opened here.
        """
        from nexus_kernel.runtime import Runtime
        from nexus_kernel.storage import open_bus

        bus = options.pop("bus", None)
        owned = [] if bus is not None else [open_bus(settings, backend="memory")]
        runtime = Runtime.open(settings, store=store, bus=bus if bus is not None else owned[0])
        try:
            runtime.start()
            source = cls(runtime, **options)
        except BaseException:
            runtime.close()
            for service in owned:
                service.close()
            raise
        source._owned = [runtime, *owned]
        return source

    @property
    def manager(self) -> Any:
        """The runtime's :class:`~nexus_kernel.engine.StreamManager` (status and control of the streams)."""
        return self.runtime.manager

    def wait_ready(self, timeout: float = 5.0) -> bool:
        """Block until some stream has buffered points (a page built then opens with its series chosen)."""
        return wait_for_points(self._live, timeout)

    def wait_subscribed(self, timeout: float = 5.0) -> bool:
        """Block until every bus subscription is attached (what is published from then on is seen)."""
        return self._subscribed.wait(timeout)

    # -- feeding: the bus only -------------------------------------------------------------------

    async def _follow(self, kind: str) -> None:
        """Take every ``stream:*:<kind>`` message into the buffers, renewing a subscription cut off for lag."""
        from nexus_kernel.storage import BusError, SubscriberLagged, topic_pattern

        pattern = topic_pattern("*", kind)
        first, pause = True, 0.5
        while not self._closed:
            try:
                async with self.bus.subscribe(pattern, maxsize=self.maxsize) as sub:
                    if first:
                        first = False
                        self._attached += 1
                        if self._attached == len(LIVE_KINDS):
                            self._subscribed.set()
                    else:
                        await self._catch_up(kind)
                    pause = 0.5
                    async for message in sub:
                        self._take(message)
            except SubscriberLagged as lag:
                self.lagged += 1
                log.warning("monitor: the %s subscription fell behind (%d dropped); catching up from the replay",
                            kind, lag.dropped)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - keep following: a bus reconnects, a page must not die
                if self._closed:
                    return
                self.errors += 1
                level = logging.WARNING if isinstance(exc, BusError) else logging.ERROR
                log.log(level, "monitor: the %s subscription failed (%s); retrying in %.1f s", kind, exc, pause,
                        exc_info=not isinstance(exc, BusError))
                await asyncio.sleep(pause)
                pause = min(pause * 2, 10.0)

    async def _catch_up(self, kind: str) -> None:
        """What the bus kept after the newest message taken in, per topic of ``kind`` seen so far."""
        from nexus_kernel.storage import split_topic

        for name, (_, last_id) in list(self._seen.items()):
            if split_topic(name)[1] != kind:
                continue
            for message in await asyncio.to_thread(self.bus.replay, name, after=last_id):
                self._take(message)

    def _take(self, message: Any) -> None:
        """One bus message into its buffer, once (a replayed message already taken live is skipped)."""
        from nexus_kernel.storage import split_topic

        try:
            key = _id_key(message.id)
            seen = self._seen.get(message.topic)
            if seen is not None and key <= seen[0]:
                return
            self._seen[message.topic] = (key, message.id)
            stream, kind = split_topic(message.topic)
            frame = message.frame
            if frame is None or not len(frame):
                return
            if kind == "points":
                self._on_points(stream, frame)
            elif kind == "anomalies":
                self._on_anomalies(stream, frame)
            elif kind == "forecasts":
                self._on_forecasts(stream, frame)
        except Exception:  # noqa: BLE001 - one odd message loses itself, not the subscription
            self.errors += 1
            log.exception("monitor: could not take in %r", message)

    def _on_points(self, stream: str, frame: pd.DataFrame) -> None:
        if "value" not in frame.columns or "series" not in frame.columns:
            return
        live = self._live.get(stream)
        if live is None:
            live = self._live[stream] = _Live(self.max_rows)
        live.add(frame)
        for listener in list(self._listeners):
            try:
                listener(stream)
            except Exception:  # noqa: BLE001 - one page's failure never stops the feed of the others
                self.errors += 1
                log.exception("monitor listener failed on stream %s", stream)

    def _on_anomalies(self, stream: str, frame: pd.DataFrame) -> None:
        if "is_anomaly" in frame.columns:
            frame = frame[frame["is_anomaly"].astype(bool)]
        if len(frame):
            kept = self._anomalies.get(stream)
            if kept is None:
                kept = self._anomalies[stream] = deque(maxlen=self.keep)
            kept.append(frame)

    def _on_forecasts(self, stream: str, frame: pd.DataFrame) -> None:
        """Keep the newest forecast of each series (its ``value`` field when the stream has several)."""
        if "field" in frame.columns and (frame["field"].astype(str) == "value").any():
            frame = frame[frame["field"].astype(str) == "value"]
        for series, rows in frame.groupby(frame["series"].astype(str), sort=False):
            if "made_at" in rows.columns:
                rows = rows[rows["made_at"] == rows["made_at"].max()]
            self._forecasts[(stream, str(series))] = rows.sort_values("ts", kind="mergesort").reset_index(drop=True)

    def add_listener(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(stream)`` each time a batch enters a live buffer (on the source's loop).

        This is what lets a page be *pushed* a batch as it arrives instead of polling for it; a listener
        must return at once (schedule its work) and should not raise (a failure is counted and logged).
        """
        self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[str], None]) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    def cursor(self, stream: str) -> int:
        """Id of the newest batch buffered for ``stream`` (what :meth:`updates` returns as the new cursor)."""
        live = self._live.get(stream)
        return live.next_id - 1 if live is not None else 0

    # -- MonitorSource ---------------------------------------------------------------------------

    def streams(self) -> pd.DataFrame:
        frame = pd.DataFrame(self.manager.status())
        for col in STATUS_COLUMNS:
            if col not in frame.columns:
                frame[col] = None
        return frame[STATUS_COLUMNS]

    def series(self, stream: str) -> list[str]:
        live = self._live.get(stream)
        known = live.series if live else set()
        if not known and self.store is not None:
            latest = self.store.latest(stream)
            known = set(latest["series"].astype(str)) if len(latest) else set()
        return sorted(known)

    def updates(self, stream: str, series: Sequence[str] | None, cursor: int) -> tuple[pd.DataFrame, int, float | None]:
        """Points buffered after ``cursor`` (all series when ``series`` is None), the new cursor, and when
        the newest of them entered the buffer (epoch seconds)."""
        return _updates(self._live.get(stream), series, cursor)

    def snapshot(self, stream: str, series: Sequence[str] | None) -> tuple[pd.DataFrame, int]:
        frame, cursor, _ = self.updates(stream, series, 0)
        return frame, cursor

    def history(self, stream: str, series: Sequence[str], start: Any, end: Any) -> pd.DataFrame:
        if self.store is None or not series:
            return _empty_points()
        frame = self.store.query(stream, series=list(series), start=start, end=end)
        return _points(frame)

    def anomalies(self, stream: str, limit: int = 50) -> pd.DataFrame:
        """The newest ``limit`` anomalies of ``stream``, oldest first (anomalies table schema): those its
        pipeline published since the monitor started, completed from the store's ``anomalies`` table
        (history, or a stream not running in this runtime). A stream that is not analysed has none."""
        parts = list(self._anomalies.get(stream, ()))
        if sum(map(len, parts)) < limit and self.store is not None:
            try:
                parts.insert(0, self.store.read("anomalies", stream=stream, limit=limit))
            except Exception:  # noqa: BLE001 - a store hiccup still shows what the bus brought
                self.errors += 1
                log.exception("could not read the stored anomalies of %s", stream)
        parts = [p for p in parts if len(p)]
        if not parts:
            return _tail(None, limit)
        frame = pd.concat(parts[-limit:], ignore_index=True) if len(parts) > 1 else parts[0]
        key = [c for c in ANOMALY_KEY if c in frame.columns]
        frame = frame.assign(ts=pd.to_datetime(frame["ts"], utc=True))
        return _tail(frame.drop_duplicates(subset=key, keep="last") if key else frame, limit)

    def forecasts(self, stream: str, series: str) -> pd.DataFrame:
        """The newest forecast of one series (forecasts table schema): the last one its pipeline published,
        else the newest in the store's ``forecasts`` table; empty when the stream forecasts nothing."""
        frame = self._forecasts.get((stream, series))
        if frame is not None:
            return frame
        if self.store is None:
            return pd.DataFrame()
        stored = self.store.read("forecasts", stream=stream, series=series, limit=500)
        if not len(stored) or "made_at" not in stored.columns:
            return pd.DataFrame()
        return stored[stored["made_at"] == stored["made_at"].max()].sort_values("ts").reset_index(drop=True)

    def job_runs(self, limit: int = 10) -> pd.DataFrame:
        if self.store is None:
            return pd.DataFrame(columns=["run_id", "job", "started_at", "finished_at", "status", "output", "error"])
        runs = self.store.read("job_runs")
        return runs.sort_values("started_at", ascending=False).head(limit).reset_index(drop=True)

    def control(self, stream: str, action: str) -> str:
        if action not in ("start", "pause", "stop"):
            raise ValueError(f"unknown action {action!r}: start, pause or stop")
        state = self.manager.streams().get(stream, {}).get("state")
        if action == "start" and state == "paused":
            return str(self.manager.resume(stream))
        return str(getattr(self.manager, action)(stream))

    # -- closing ---------------------------------------------------------------------------------

    def _stop_following(self) -> None:
        self._closed = True
        if self._loop.is_closed():
            return
        for task in self._tasks:
            task.cancel()
        if _running_loop() is not self._loop and self._loop.is_running():
            # the subscriptions live on another thread's loop (a runtime's): let them detach from the bus
            # before that loop may be stopped, rather than leave pending tasks behind
            concurrent.futures.wait(self._tasks, timeout=2.0)

    def close(self) -> None:
        """Stop following the bus; close what :meth:`start` opened (its runtime, pipelines and bus)."""
        self._stop_following()
        for service in self._owned:
            with contextlib.suppress(Exception):
                service.close()
        self._owned = []

    async def aclose(self) -> None:
        """:meth:`close` from a coroutine: the pipelines of an owned runtime stop without blocking the loop."""
        self._stop_following()
        for service in self._owned:
            with contextlib.suppress(Exception):
                if hasattr(service, "aclose"):
                    await service.aclose()
                else:
                    service.close()
        self._owned = []


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _id_key(message_id: str) -> tuple[int, int]:
    """A bus message id ``"<ms>-<n>"`` (memory and Redis alike) as a sortable pair."""
    ms, _, n = message_id.partition("-")
    return int(ms), int(n or 0)


def _updates(live: "_Live | None", series: Sequence[str] | None, cursor: int) -> tuple[pd.DataFrame, int, float | None]:
    if live is None:
        return _empty_points(), cursor, None
    frame, newest, received = live.after(cursor)
    if frame is None:
        return _empty_points(), newest, None
    if series is not None:
        frame = frame[frame["series"].isin(set(series))]
    return frame, newest, received


def _points(frame: pd.DataFrame | None) -> pd.DataFrame:
    """ts / series / value columns of a query answer (empty frame when it has no ``value``)."""
    if frame is None or frame.empty or "value" not in frame.columns:
        return _empty_points()
    return pd.DataFrame({"ts": pd.to_datetime(frame["ts"], utc=True).to_numpy(),
                         "series": frame["series"].astype(str).to_numpy(),
                         "value": frame["value"].to_numpy(dtype=np.float64)})


def _tail(frame: pd.DataFrame | None, limit: int) -> pd.DataFrame:
    if frame is None or not len(frame):
        from nexus_kernel.analysis import empty_anomalies

        return empty_anomalies()
    return frame.sort_values("ts", kind="mergesort").tail(limit).reset_index(drop=True)


def _empty_points() -> pd.DataFrame:
    return pd.DataFrame({"ts": pd.Series([], dtype="datetime64[ns, UTC]"), "series": pd.Series([], dtype=object),
                         "value": pd.Series([], dtype="float64")})
