"""Steps that hand batches to the shared services of a process: the store, the cache, the live bus, and
the analysis that scores every batch.

They find their service in the pipeline's :class:`~nexus_kernel.engine.StepContext` (``services``),
so a saved stream spec names only the step (``{"kind": "store"}``), never a connection: the process that
runs the stream decides where its data goes. A step whose service is absent passes batches on untouched.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from typing import Any

import pandas as pd

from ._steps import BaseStep, StepContext, steps

__all__ = ["Analyze", "Publish", "StoreWrite", "CacheLatest"]


def _call_soon(loop: asyncio.AbstractEventLoop | None, callback: Any, *args: Any) -> None:
    """Run ``callback`` on ``loop`` from another thread; a loop closed meanwhile takes nothing."""
    if loop is None or loop.is_closed():
        return
    try:
        loop.call_soon_threadsafe(callback, *args)
    except RuntimeError:  # closed between the check and the call
        pass


class _ServiceStep(BaseStep):
    kind = "service"
    service = ""

    def __init__(self) -> None:
        self.context: StepContext | None = None
        self.written = 0

    @property
    def target(self) -> Any:
        return None if self.context is None else self.context.services.get(self.service)

    def spec(self) -> dict[str, Any]:
        return {"kind": self.kind, "params": {}}


@steps.register("store")
class StoreWrite(_ServiceStep):
    """Write each batch to the process's store (idempotently) and pass it on.

    The write happens before the source is told to commit, so an acknowledging source (Redis Streams)
    acknowledges only records the store has committed — or spooled to disk, for a store that spools.
    """

    kind = "store"
    service = "store"

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        store = self.target
        if store is not None and not batch.empty:
            store.write(batch)
            self.written += len(batch)
        return batch


@steps.register("cache")
class CacheLatest(_ServiceStep):
    """Keep the latest value and a recent window per series in the process's cache."""

    kind = "cache"
    service = "cache"

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        cache = self.target
        if cache is not None and not batch.empty:
            cache.put_latest(batch)
        return batch


@steps.register("publish")
class Publish(_ServiceStep):
    """Publish each batch on the live bus as ``stream:<name>:<topic>``; never waits for subscribers."""

    kind = "publish"
    service = "bus"
    examples = ({}, {"topic": "windows"})

    def __init__(self, topic: str = "points") -> None:
        super().__init__()
        from ..storage import check_kind  # here, not at the top: the storage package is heavy to import

        self.topic = check_kind(topic)  # a bad kind in a spec is refused when the step is built

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        bus = self.target
        if bus is not None and not batch.empty and self.context is not None:
            from ..storage import topic

            bus.publish_nowait(topic(self.context.stream, self.topic), batch)
        return batch

    def spec(self) -> dict[str, Any]:
        return {"kind": self.kind, "params": {"topic": self.topic}}


@steps.register("analyze")
class Analyze(_ServiceStep):
    """Score every batch with the analysis package; anomalies (and forecasts) go to the store and bus.

    Parameters are those of :class:`nexus_kernel.analysis.Analyzer`, and ``every``. Only flagged points are
    stored and published by default (``only_anomalies=True``): on a busy stream, every score would be most
    of the traffic. The batch itself passes on unchanged, and nothing is kept on the step: its readers (the
    terminal view, the monitor, later alerts) read the bus — ``topic(stream, "anomalies")`` and, with
    ``forecast=True``, ``topic(stream, "forecasts")`` — or the store, never the step.

    ``every`` (seconds, default 0: each batch as it comes) is the analysis cadence: the rows of the
    batches that arrive within ``every`` seconds of the first one waiting are scored together, once, on
    a thread of the step's own (and whatever waits when the pipeline stops, on the pipeline's loop). Why
    together: analysis costs mostly per call and series, not per row — measured on the default stream's
    shape (20 series, a tick every 0.1 s, ensemble and forecasts), scoring took 88 ms of CPU per second
    of data batch by batch and 31 ms at ``every=0.5``. Why a thread: the detectors' kernels release the
    GIL, so scoring runs beside the pipeline's validation and store writes instead of between them
    (``bench gateway-ingest``: 1.10–1.19× direct store writes with scoring on the pipeline's loop,
    1.17–1.30× on its own thread). One round is scored at a time; rows that come meanwhile wait for the next, which
    starts as soon as it ends. Every row is still scored, in order; anomalies reach the bus and store
    (written from the pipeline's loop) up to ``every`` seconds plus one round's scoring later. Outside a
    running pipeline (no loop bound) the step scores each batch at once.

    With ``forecast=True``, ``forecast_every`` (points of a series between its forecasts) is what keeps
    the cost down on a live stream: the default stream forecasts ``horizon=60`` steps once per 100
    points of each series (10 s of data at its 0.1 s tick), not every batch.

    Caveat: a failure of a delayed scoring is reported as a failing step is (counted on the stream, its
    rows dead-lettered ``processing_error``), through the pipeline's :class:`StepContext`.
    """

    kind = "analyze"
    examples = ({}, {"detector": "ewma", "only_anomalies": False},
                {"detector": "cusum", "forecast": True, "horizon": 3},
                {"forecast": True, "horizon": 60, "forecast_every": 100}, {"every": 0.5})

    def __init__(self, detector: str = "ensemble", only_anomalies: bool = True, forecast: bool = False,
                 every: float = 0.0, **params: Any) -> None:
        super().__init__()
        from ..analysis import Analyzer

        if isinstance(every, bool) or not isinstance(every, (int, float)) or not 0.0 <= float(every) <= 60.0:
            raise ValueError(f"every must be a number of seconds from 0 to 60, not {every!r}")
        self.every = float(every)
        self.params = {"detector": detector, "only_anomalies": only_anomalies, "forecast": forecast, **params}
        if self.every:
            self.params["every"] = self.every
        self.analyzer = Analyzer(detector=detector, only_anomalies=only_anomalies, forecast=forecast, **params)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: list[pd.DataFrame] = []
        self._timer: asyncio.TimerHandle | None = None
        self._worker: concurrent.futures.ThreadPoolExecutor | None = None  # one thread: rounds stay in order
        self._running: concurrent.futures.Future[Any] | None = None  # the round being scored there

    def bind(self, context: StepContext) -> None:
        """Bound as its pipeline starts, on the pipeline's loop and before records come in: the detector's
        kernels are loaded here (:meth:`~nexus_kernel.analysis.Analyzer.warm`, once per process), not on
        the first busy batch, where they stalled every stream of the pipeline thread for up to a second."""
        super().bind(context)
        self.analyzer.warm()
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        if batch.empty:
            return batch
        if self.every <= 0 or self._loop is None or self._loop.is_closed():
            self._score(batch)
            return batch
        self._pending.append(batch)
        if self._timer is None:
            self._timer = self._loop.call_later(self.every, self._due)
        return batch

    def flush(self) -> pd.DataFrame | None:
        """The pipeline stops: score what waits now (nothing is passed on; the batches went on already)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        running, self._running = self._running, None
        if running is not None:
            self._settle(running)  # its rows came first: their results go out before the rest's
        self._score_pending()
        if self._worker is not None:
            self._worker.shutdown(wait=False)
            self._worker = None
        return None

    def _due(self) -> None:
        self._timer = None
        if self._running is not None:
            return  # scored when the running round is done (see _done), together with what came meanwhile
        joined = self._take_pending()
        if joined is None:
            return
        if self._worker is None:
            name = f"analyze-{self.context.stream if self.context is not None else 'stream'}"
            self._worker = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        running = self._running = self._worker.submit(self._compute, joined)
        loop = self._loop
        running.add_done_callback(lambda _: _call_soon(loop, self._done, running))

    def _done(self, running: concurrent.futures.Future[Any]) -> None:
        if running is not self._running:
            return  # settled by flush already
        self._running = None
        self._settle(running)
        if self._pending and self._timer is None and self._loop is not None:
            # rows waited at least as long as the round took: score them now rather than a period later
            self._timer = self._loop.call_later(0, self._due)

    def _settle(self, running: concurrent.futures.Future[Any]) -> None:
        self._deliver(*running.result())

    def _score_pending(self) -> None:
        joined = self._take_pending()
        if joined is not None:
            self._deliver(*self._compute(joined))

    def _take_pending(self) -> pd.DataFrame | None:
        parts, self._pending = self._pending, []
        if not parts:
            return None
        return parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)

    def _compute(self, batch: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any], Exception | None]:
        try:
            return batch, self.analyzer.update(batch), None
        except Exception as exc:  # noqa: BLE001 - reported on the pipeline's loop, as the graph's guard would
            return batch, {}, exc

    def _deliver(self, batch: pd.DataFrame, results: dict[str, Any], error: Exception | None) -> None:
        if error is not None:
            self._failed(error, batch)
        else:
            self._emit(results)

    def _failed(self, error: Exception, batch: pd.DataFrame) -> None:
        failed = self.context.failed if self.context is not None else None
        if failed is None:
            raise error
        failed(self.kind, error, batch)

    def _score(self, batch: pd.DataFrame) -> None:
        self._emit(self.analyzer.update(batch))

    def _emit(self, results: dict[str, Any]) -> None:
        services = self.context.services if self.context is not None else {}
        stream = self.context.stream if self.context is not None else "stream"
        for table, frame in results.items():
            if frame is None or frame.empty:
                continue
            if services.get("store") is not None:
                services["store"].append(table, frame)
            if services.get("bus") is not None:
                from ..storage import topic

                services["bus"].publish_nowait(topic(stream, table), frame)

    def spec(self) -> dict[str, Any]:
        return {"kind": self.kind, "params": dict(self.params)}
