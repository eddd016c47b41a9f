"""Where the monitor's data comes from: the small ``MonitorSource`` protocol and its members.

The monitor never touches a pipeline, a store or the gateway itself; it asks a ``MonitorSource``:

``EmbeddedSource``  in-process: taps the validated output of running pipelines (``StreamManager``), keeps
                    a bounded live buffer, shows the anomalies the pipeline's own ``analyze`` step found
                    (from the live bus topic ``stream:<name>:anomalies``, else that step's results, else
                    the store's ``anomalies`` table), forecasts on demand, reads history from the store,
                    and controls the streams. Only a pipeline *without* an analyze step is scored here.
``RemoteSource``    the same questions asked of a running gateway through the SDK
                    (``nexus_kernel.client.connect(url, token)``) — see :mod:`._remote`.

Each browser session keeps a cursor and asks :meth:`updates` for what arrived after it; an
``EmbeddedSource`` also tells listeners (``add_listener``) when a batch arrives, so pages are pushed
updates instead of polling for them. Every buffered batch carries ``received`` (epoch seconds when it
entered the buffer), which is what the dashboard benchmark measures latency from.

Caveats: the live buffer holds ``max_rows`` rows per stream (oldest dropped first): the live view covers
the last minutes of a fast stream; older points come from the store (history mode).
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd

__all__ = ["MonitorSource", "EmbeddedSource", "CHANGE_DETECTORS", "is_change_point", "explain"]

log = logging.getLogger(__name__)

#: detectors whose flags mark a change of regime rather than an outlying point
CHANGE_DETECTORS = frozenset({"bocpd", "cusum", "level_shift"})

#: series names a live buffer remembers (and interns) per stream
MAX_SERIES = 100_000

STATUS_COLUMNS = ["name", "state", "source", "rate", "lag", "records_in", "dead_letters", "errors", "last_error"]


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
    member = facts.get("member") if isinstance(facts.get("member"), dict) else {}
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
    """A ``MonitorSource`` over the pipelines of this process.

    Parameters
    ----------
    manager
        The :class:`~nexus_kernel.engine.StreamManager` running the streams (``run=True``).
    store
        Where history and job runs are read (and the stored anomalies, when nothing fresher is at hand).
    bus
        The live bus the pipelines publish on (default: ``manager.services["bus"]``). The anomaly feed
        reads the topic ``stream:<name>:anomalies`` from it — the very frames the analyze step stored.
    detector
        Registered detector used *only* for pipelines without an ``analyze`` step (scored here once a
        second, on what arrived since; those anomalies are appended to ``store`` too).
    max_rows
        Rows of the live buffer per stream.

    Where the anomaly feed comes from, per stream (``anomaly_source(name)`` says which):
    ``"bus"`` (the pipeline analyzes and a bus is known), ``"step"`` (it analyzes, no bus: the step's own
    ``recent`` results), ``"store"`` (not running here, a store is given), ``"monitor"`` (no analyze step:
    the fallback detector above).

    Example
    -------
    >>> source = EmbeddedSource.start(load_settings())  # doctest: +SKIP
    >>> source.streams()[["name", "state", "rate"]]       # doctest: +SKIP
    """

    mode = "embedded"

    def __init__(self, manager: Any, store: Any = None, bus: Any = None, detector: str = "ensemble",
                 max_rows: int = 200_000, analyze_every: float = 1.0, forecast_every: float = 10.0,
                 horizon: int = 60) -> None:
        self.manager = manager
        self.store = store if store is not None else getattr(manager, "services", {}).get("store")
        self.bus = bus if bus is not None else getattr(manager, "services", {}).get("bus")
        self.detector = detector
        self.max_rows = max_rows
        self.analyze_every = analyze_every
        self.forecast_every = forecast_every
        self.horizon = horizon
        self.notice = ""
        self._live: dict[str, _Live] = {}
        self._pending: dict[str, list[pd.DataFrame]] = {}
        self._last_analysis: dict[str, float] = {}
        self._analyzers: dict[str, Any] = {}
        self._anomalies: dict[str, deque[pd.DataFrame]] = {}
        self._bus_cursor: dict[str, str | None] = {}
        self._analyze_steps: dict[str, Any] = {}
        self._forecasts: dict[tuple[str, str], tuple[float, pd.DataFrame]] = {}
        self._forecasting: set[tuple[str, str]] = set()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nexus-monitor-forecast")
        self.errors = 0
        self._tapped: set[int] = set()
        self._listeners: list[Callable[[str], None]] = []
        for name, pipe in list(manager.pipelines.items()):
            self.watch(name, pipe)

    @classmethod
    def start(cls, settings: Any, store: Any = None, **options: Any) -> "EmbeddedSource":
        """Run the streams of ``settings.home`` in this process (the built-in simulator stream when there
        are none) and watch them. Pipelines start on the running event loop, or the engine's loop.

        The ``store`` given (and an in-process live bus) become the pipelines' services, so the default
        stream's analyze step stores and publishes its anomalies where the monitor reads them.
        """
        from nexus_kernel._up import DEFAULT_STREAM, default_pipeline
        from nexus_kernel.engine import StreamManager
        from nexus_kernel.storage import open_bus

        services = {"bus": options.pop("bus", None) or open_bus(settings, backend="memory")}
        if store is not None:
            services["store"] = store
        manager = StreamManager(settings, services=services, run=True)
        if not manager.streams():
            manager.create(DEFAULT_STREAM, default_pipeline(settings))
            manager.start(DEFAULT_STREAM)
        manager.restore()
        return cls(manager, store=store, bus=services["bus"], **options)

    def wait_ready(self, timeout: float = 5.0) -> bool:
        """Block until some stream has buffered points (a page built then opens with its series chosen)."""
        return wait_for_points(self._live, timeout)

    # -- feeding ---------------------------------------------------------------------------------

    def watch(self, name: str, pipe: Any) -> None:
        """Tap ``pipe`` after its validate step (its raw, valid points) into the live buffer."""
        if id(pipe) in self._tapped:
            return
        self._tapped.add(id(pipe))
        node = pipe.node_after("validate") or pipe.stream
        if name not in self._live:
            self._live[name] = _Live(self.max_rows)
            self._pending[name] = []
            self._anomalies[name] = deque(maxlen=200)
        step = next((s for s in getattr(pipe, "steps", []) if getattr(s, "kind", None) == "analyze"), None)
        if step is not None:
            self._analyze_steps[name] = step
        else:
            self._analyze_steps.pop(name, None)
        node.sink(lambda batch, _name=name: self._on_batch(_name, batch))

    def add_listener(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(stream)`` each time a batch enters a live buffer (on the pipeline's thread).

        This is what lets a page be *pushed* a batch as it arrives instead of polling for it; a listener
        must return at once (schedule its work) and never raise into the pipeline.
        """
        self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[str], None]) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    def cursor(self, stream: str) -> int:
        """Id of the newest batch buffered for ``stream`` (what :meth:`updates` returns as the new cursor)."""
        live = self._live.get(stream)
        return live.next_id - 1 if live is not None else 0

    def anomaly_source(self, stream: str) -> str:
        """Where the feed of ``stream`` comes from: bus, step, store or monitor (see the class doc)."""
        if stream in self._analyze_steps:
            return "bus" if self.bus is not None else "step"
        if stream in self._live:
            return "monitor"
        return "store" if self.store is not None else "monitor"

    def _on_batch(self, name: str, batch: pd.DataFrame) -> None:
        try:
            if batch is None or batch.empty or "value" not in batch.columns:
                return
            self._live[name].add(batch)
            for listener in list(self._listeners):
                try:
                    listener(name)
                except Exception:  # noqa: BLE001 - a page's failure never reaches the pipeline
                    self.errors += 1
                    log.exception("monitor listener failed on stream %s", name)
            if name in self._analyze_steps:
                return  # the pipeline scores its own batches: nothing to do twice
            self._pending[name].append(batch)
            now = time.monotonic()
            if now - self._last_analysis.get(name, 0.0) >= self.analyze_every:
                self._last_analysis[name] = now
                self._analyze(name)
        except Exception:  # noqa: BLE001 - the monitor must never break the pipeline it watches
            self.errors += 1
            log.exception("monitor tap of stream %s failed", name)

    def _analyze(self, name: str) -> None:
        """Fallback for a pipeline without an analyze step: score what arrived since the last call."""
        from nexus_kernel.analysis import Analyzer

        pending, self._pending[name] = self._pending[name], []
        if not pending:
            return
        batch = pd.concat(pending, ignore_index=True).astype({"stream": "string", "series": "string"})
        analyzer = self._analyzers.get(name)
        if analyzer is None:
            analyzer = self._analyzers[name] = Analyzer(detector=self.detector, only_anomalies=True, fields=["value"])
        found = analyzer.update(batch)["anomalies"]
        if len(found):
            self._anomalies[name].append(found)
            if self.store is not None:
                try:
                    self.store.append("anomalies", found)
                except Exception:  # noqa: BLE001 - a store hiccup loses no live view
                    self.errors += 1
                    log.exception("could not store anomalies of %s", name)

    def _from_bus(self, stream: str) -> None:
        """Append what the pipeline published on ``stream:<name>:anomalies`` since the last read."""
        from nexus_kernel.storage import topic as bus_topic  # loaded already: a bus comes from there

        topic = bus_topic(stream, "anomalies")
        after = self._bus_cursor.get(stream)
        messages = self.bus.replay(topic, after=after) if after is not None else self.bus.replay(topic)
        for message in messages:
            frame = message.frame
            if "is_anomaly" in frame.columns:
                frame = frame[frame["is_anomaly"].astype(bool)]
            if len(frame):
                self._anomalies[stream].append(frame)
            self._bus_cursor[stream] = message.id

    # -- MonitorSource ---------------------------------------------------------------------------

    def streams(self) -> pd.DataFrame:
        rows = self.manager.status()
        for name, pipe in list(self.manager.pipelines.items()):
            self.watch(name, pipe)  # streams started after the monitor
        frame = pd.DataFrame(rows)
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
        """The newest ``limit`` anomalies of ``stream``, oldest first (anomalies table schema)."""
        where = self.anomaly_source(stream)
        if where == "bus":
            try:
                self._from_bus(stream)
            except Exception:  # noqa: BLE001 - a bus hiccup shows the store's anomalies instead
                self.errors += 1
                log.exception("reading anomalies of %s from the bus failed", stream)
        elif where == "step":
            recent = getattr(self._analyze_steps[stream], "recent", None)
            return _tail(recent, limit)
        parts = list(self._anomalies.get(stream, ()))
        if not parts and self.store is not None:
            return _tail(self.store.read("anomalies", stream=stream, limit=limit), limit)
        return _tail(pd.concat(parts[-limit:], ignore_index=True) if parts else None, limit)

    def forecasts(self, stream: str, series: str) -> pd.DataFrame:
        """The newest forecast of one series; refreshed in a worker thread every ``forecast_every`` s."""
        key = (stream, series)
        made, frame = self._forecasts.get(key, (0.0, pd.DataFrame()))
        if time.monotonic() - made >= self.forecast_every and key not in self._forecasting:
            points, _ = self.snapshot(stream, [series])
            if len(points) >= 50:
                self._forecasting.add(key)
                self._pool.submit(self._forecast, key, points.tail(3000))
        return frame

    def _forecast(self, key: tuple[str, str], points: pd.DataFrame) -> None:
        from nexus_kernel.analysis import forecast

        try:
            self._forecasts[key] = (time.monotonic(), forecast(points, horizon=self.horizon, level=0.9))
        except Exception:  # noqa: BLE001
            self.errors += 1
            self._forecasts[key] = (time.monotonic(), pd.DataFrame())
            log.exception("forecast of %s failed", key)
        finally:
            self._forecasting.discard(key)

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
            new = self.manager.resume(stream)
        else:
            new = getattr(self.manager, action)(stream)
        pipe = self.manager.pipelines.get(stream)
        if pipe is not None:
            self.watch(stream, pipe)  # a restart may have built a new pipeline
        return new

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


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
