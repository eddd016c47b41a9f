"""Ingest routing: each request's records go to its stream's pipeline, whose inlet group-commits them.

The gateway validates and stores nothing itself: records POSTed to ``/api/streams/{name}/records`` enter
that stream's running :class:`~nexus_kernel.engine.Pipeline` through its ingest inlet, and are validated,
stored, cached, analysed, windowed and published by its steps exactly as the records of its own source
(see :mod:`nexus_kernel.engine.sources._ingest` for the group commit: concurrent requests to one stream
share one validation and one store transaction, each answered after that commit with its own counts).
What the gateway does first is its own: parsing (:mod:`._ingest`), and refusing records that name another
stream than the URL (``stream_mismatch``).

Which pipeline
--------------
* The stream runs in this process (its manager's pipeline is ``running``): that pipeline.
* The stream is in the registry but not running here (``created``, ``paused``, ``stopped``, ``failed``, or
  running in another process): 409, saying its state and how to start it. Records are never queued for
  a stream that does not run: the client would believe them stored.
* The stream does not exist: it is created, as ingest has always accepted any valid name, as a managed
  stream with the ``ingest`` source and the default stream's steps and batching (validate, store, cache,
  publish, analyze, window), saved in the registry and started — ``nexus streams stop NAME`` stops it.
* A coalescer without a manager (tools, tests) runs pipelines of its own on the caller's loop: the
  ``ingest`` source, then validate and store.

Example
-------
>>> # inside the gateway:  result = await services.coalescer.submit("pumps", raw, index, errors)
>>> # result == {"accepted": 998, "rejected": 2, "written": 998, "errors": [...]}
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pandas as pd

from ..engine import Pipeline, StreamStateError
from ..engine.sources import Ingest, IngestInlet, IngestRefused
from ._errors import ApiError
from ._ingest import MAX_KEYS, StreamIngest, unreadable_dead_letters

__all__ = ["IngestCoalescer", "ingest_spec"]


def ingest_spec(settings: Any) -> dict[str, Any]:
    """The spec of a stream created by ingesting into a new name: the ``ingest`` source, then the default
    stream's steps and batching — without its forecasts.

    Why no forecasts: a forecaster refreshes per N points of a series, so its cost grows with the rate a
    sender chooses (at 100,000 records/s over 100 series it took half the pipeline's time, measured with
    ``bench gateway-ingest``); detection, windows and the live bus stay. Turn forecasts on per stream by
    updating its spec (``PATCH /api/streams/{name}``, the analyze step's ``forecast``).
    """
    from ..runtime import default_spec  # here: the runtime package imports the engine, not the gateway

    spec = default_spec(settings)
    steps = [{**step, "params": {**step.get("params", {}), "forecast": False}} if step["kind"] == "analyze" else step
             for step in spec["steps"]]
    return {"source": {"kind": "ingest", "params": {}}, "steps": steps, "batch": spec["batch"]}


class IngestCoalescer:
    """Hands each ingest request to its stream's pipeline inlet (see the module docs).

    Parameters
    ----------
    ingest
        The gateway's screen (records naming another stream) and settings.
    store
        The store of pipelines this coalescer runs itself (without a manager).
    manager
        The :class:`~nexus_kernel.engine.StreamManager` whose pipelines take the records.
    max_rows, max_cells
        Bounds of one group-commit round (records; records × distinct keys), handed to each inlet.
    """

    def __init__(self, ingest: StreamIngest, store: Any, manager: Any = None, max_rows: int = 50_000,
                 max_cells: int = 4_000_000) -> None:
        self.ingest, self.store, self.manager = ingest, store, manager
        self.max_rows, self.max_cells = max_rows, max_cells
        self._inlets: dict[str, IngestInlet] = {}  # every inlet fed, by stream (counters only)
        self._retired = [0, 0]  # rounds and requests of inlets whose pipeline was replaced
        self._own: dict[str, Pipeline] = {}
        self._creating: dict[str, asyncio.Future[None]] = {}

    @property
    def rounds(self) -> int:
        """Group-commit rounds of the requests this coalescer handed on."""
        return self._retired[0] + sum(inlet.rounds for inlet in self._inlets.values())

    @property
    def requests(self) -> int:
        return self._retired[1] + sum(inlet.requests for inlet in self._inlets.values())

    async def submit(self, stream: str, raw: pd.DataFrame, index: np.ndarray,
                     errors: list[dict[str, Any]]) -> dict[str, Any]:
        """Hand one request's records to the stream's pipeline; resolves once they are committed.

        Raises :class:`ApiError` 409 for a stream that does not run here (its state in the detail).
        """
        raw, index, screened = self.ingest.screen(stream, raw, index, errors)
        dead = unreadable_dead_letters(stream, errors) if errors else None
        inlet = await self._inlet(stream)
        inlet.max_rows, inlet.max_cells, inlet.max_keys = self.max_rows, self.max_cells, MAX_KEYS
        try:
            return await inlet.submit(raw, index, screened, dead=dead)
        except IngestRefused as exc:
            raise ApiError(409, str(exc), error="conflict", field="name") from None

    async def _inlet(self, stream: str) -> IngestInlet:
        pipe = self._running(stream)
        if pipe is None:
            pipe = await self._opened(stream)
        inlet = pipe.inlet
        known = self._inlets.get(stream)
        if known is not inlet:
            if known is not None:
                self._retired[0] += known.rounds
                self._retired[1] += known.requests
            self._inlets[stream] = inlet
        return inlet

    async def _opened(self, stream: str) -> Pipeline:
        """Open the stream once for concurrent first requests; they all wake in one turn of the loop (a
        lock would wake them one per turn, and they would reach the pipeline in rounds of one)."""
        opening = self._creating.get(stream)
        if opening is not None:
            await opening  # not shielded: a shield would wake each waiter a turn later, after the first left
            return self._running(stream) or await self._open(stream)
        opening = self._creating[stream] = asyncio.get_running_loop().create_future()
        try:
            pipe = await self._open(stream)
        except BaseException as exc:
            if not opening.done():
                opening.set_exception(exc)
                opening.exception()  # retrieved: waiters re-raise it, none may be left
            raise
        finally:
            del self._creating[stream]
        if not opening.done():  # a waiter cancelled cancels it
            opening.set_result(None)
        return pipe

    def _running(self, stream: str) -> Pipeline | None:
        pipelines = self.manager.pipelines if self.manager is not None else self._own
        pipe = pipelines.get(stream)
        return pipe if pipe is not None and pipe.state == "running" else None

    async def _open(self, stream: str) -> Pipeline:
        """The pipeline of a stream that runs nowhere in this process: refuse, or create it (module docs)."""
        if self.manager is None:
            own = Pipeline(Ingest(), name=stream, settings=self.ingest.settings).validate().store()
            own.services["store"] = self.store
            self._own[stream] = own.start()
            return own
        manager = self.manager
        entry = manager.streams().get(stream)
        if entry is None:
            try:
                # off the serving loop: checking the spec builds its steps once (the first stream with an
                # analyze step imports the analysis package, seconds on a busy machine) and writes the registry
                await asyncio.to_thread(manager.create, stream, spec=ingest_spec(manager.settings))
            except StreamStateError as exc:
                if "already exists" not in str(exc):  # created meanwhile by another process: judged below
                    raise ApiError(422, str(exc), field="name") from None
            else:
                manager.start(stream)
            entry = manager.streams().get(stream)
        pipe = self._running(stream)
        if pipe is None and entry is not None and entry["state"] == "running" and getattr(manager, "run", False) \
                and stream not in manager.pipelines:
            manager.reconcile()  # saved as running, not run here yet (a restart, another manager's change)
            pipe = self._running(stream)
        if pipe is not None:
            return pipe
        here = manager.pipelines.get(stream)
        state = here.state if here is not None else entry["state"] if entry is not None else "deleted"
        if state in ("running", "paused") and not getattr(manager, "run", True):
            detail = f"stream '{stream}' runs in another process; send its records to that process's gateway"
        elif state == "running":
            detail = f"stream '{stream}' is registered as running but does not run in this process yet; retry"
        else:
            action = "resume" if state == "paused" else "start"
            detail = f"stream '{stream}' is {state}: {action} it to ingest (POST /api/streams/{stream}/{action})"
        raise ApiError(409, detail, error="conflict", field="name")
