"""Ingest into a running pipeline: records from outside (the gateway) enter the graph beside its source.

Every :class:`~nexus_kernel.engine.Pipeline` has an :class:`IngestInlet` (``pipe.inlet``), whatever its
source: records POSTed to a stream are validated, stored, cached, analysed, windowed and published by the
same steps as the records of its simulator, broker or file. A stream fed only from outside has the
``ingest`` source (:class:`Ingest`), which yields nothing and runs until stopped.

How a request travels
---------------------
``await inlet.submit(raw, index, errors)`` may be called from any event loop. When the pipeline runs on
another thread's loop (a runtime's ``nexus-pipelines`` thread) the request is handed across with
``loop.call_soon_threadsafe`` and its answer comes back through a ``concurrent.futures.Future`` awaited
with :func:`asyncio.wrap_future`; on the pipeline's own loop there is no hop. On the pipeline's loop the
requests wait in one queue; a drain task takes them in *rounds* (group commit): while one round is in the
graph, the requests that arrive queue up, and the next round takes all of them (up to ``max_rows``
records, ``max_cells`` cells, ``max_keys`` distinct keys). There is no timer: a lone request goes at once.

A round is one frame — the requests' records one after another, numbered ``0..n-1`` by the frame's
index, so a row's number says which request and which body index it is — pushed through the graph like a
batch of the source (the source's and the inlet's pushes take turns on the loop; each push is
synchronous). The pipeline tells the round what its steps did (:meth:`IngestRound.validate` and
:meth:`IngestRound.store`, called in place of the first ``validate`` and ``store`` steps while the round
is in the graph):

* at ``validate``, the records are judged each on the keys it carries
  (:meth:`~nexus_kernel.records.Validator.validate_records`) by the step's own validator, so lateness is
  judged against everything the stream has seen; ``dead_rows`` maps each dead letter back to its request
  and body index (the dead letters, reasons and details, go to the pipeline's dead-letter queue as any
  other);
* at ``store``, the round's good rows are written in ONE transaction, counted per request
  (``store.write_groups`` with the request of each row, or one ``write`` per request for a store without
  it), and every request is answered right then — after the commit holding its rows, before analysis
  and windows run; the stored rows then go on to the steps after ``store`` (cache, publish, analyze,
  window...) joined with the rows of the rounds that follow while requests keep coming
  (:meth:`IngestInlet.defer`: analysis costs about as much for 100,000 rows as for 20,000), at the
  latest ``tail_delay`` seconds later;
* a round that never reaches ``store`` (every record refused, or no store step) is answered when its push
  ends; a step failing before the answer fails every request of the round with that error (nothing of it
  was written, so a retry is safe).

Caveats
-------
* Ingest needs a ``validate`` step before any ``store`` step (records from outside are never stored
  unjudged); :meth:`IngestInlet.submit` refuses a pipeline without one (:class:`IngestRefused`).
* Steps before ``validate`` may drop rows (a filter) but must keep the index labels they were given; a
  step that renumbers rows there makes the round fail with a clear error.
* A paused or stopped pipeline refuses ingest (:class:`IngestRefused` says its state); requests queued
  when it stops fail with the same error.

Example
-------
>>> import asyncio, pandas as pd
>>> from nexus_kernel.engine import Pipeline, sources
>>> async def main():
...     pipe = Pipeline(sources.make("ingest"), name="doc").validate().collect().start()
...     raw = pd.DataFrame({"series": ["a", "a"], "ts": ["2024-01-01T00:00:00Z", "never"], "value": [1.0, 2.0]})
...     answer = await pipe.inlet.submit(raw, index=[0, 1])
...     await pipe.stop_async()
...     return answer["accepted"], [e["error"] for e in answer["errors"]]
>>> asyncio.run(main())
(1, ['bad_time'])
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ...config import Settings
from ...records import SEQ
from ._base import Source, sources

if TYPE_CHECKING:
    from .._pipeline import Pipeline

__all__ = ["Ingest", "IngestInlet", "IngestRefused", "IngestRound"]

Answer = dict[str, Any]


class IngestRefused(RuntimeError):
    """The pipeline cannot take ingested records now (its state, or no validate step); ``state`` says why."""

    def __init__(self, message: str, state: str) -> None:
        super().__init__(message)
        self.state = state


@sources.register("ingest")
class Ingest(Source):
    """The source of a stream fed only from outside: yields nothing, runs until stopped (or :meth:`end`).

    Records reach its pipeline through the pipeline's inlet (``pipe.inlet.submit``), as they reach any
    other pipeline's; see the module docs. It takes no parameters.
    """

    kind = "ingest"
    self_buffered = True  # it yields nothing: no buffer needed between it and the pipeline

    def __init__(self, **params: Any) -> None:
        if params:
            raise TypeError(f"the ingest source takes no parameters (got {sorted(params)[:10]})")
        super().__init__()
        self._ended: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.inlet: IngestInlet | None = None  # set by the pipeline this source feeds

    @classmethod
    def from_spec(cls, settings: Settings, **params: Any) -> Ingest:
        return cls(**params)

    async def batches(self) -> AsyncIterator[pd.DataFrame]:
        self._loop = asyncio.get_running_loop()
        self._ended = asyncio.Event()
        await self._ended.wait()
        self.exhausted = True
        return
        yield  # an async generator that yields nothing  # pragma: no cover

    def end(self) -> None:
        """No more records will come: the pipeline ends as when any source runs out (from any thread)."""
        if self._loop is not None and self._ended is not None:
            self._loop.call_soon_threadsafe(self._ended.set)


@dataclass
class _Pending:
    raw: pd.DataFrame
    index: np.ndarray
    errors: list[dict[str, Any]]
    dead: pd.DataFrame | None
    future: asyncio.Future[Answer] | concurrent.futures.Future[Answer] = field(repr=False)


def _settle(future: asyncio.Future[Answer] | concurrent.futures.Future[Answer], result: Answer | None = None,
            error: BaseException | None = None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)  # type: ignore[arg-type]


class IngestRound:
    """One push of queued requests through the graph; the pipeline reports its steps' results to it."""

    def __init__(self, requests: Sequence[_Pending]) -> None:
        self.requests = list(requests)
        sizes = np.asarray([len(p.raw) for p in self.requests], dtype=np.int64)
        self.owner = np.repeat(np.arange(len(self.requests)), sizes)  # request of each row of the frame
        self.body_index = np.concatenate([np.asarray(p.index, dtype=np.int64) for p in self.requests]) \
            if self.requests else np.zeros(0, dtype=np.int64)
        raws = [p.raw for p in self.requests if len(p.raw)]
        frame = pd.concat(raws, ignore_index=True, sort=False) if len(raws) > 1 else \
            (raws[0].reset_index(drop=True) if raws else pd.DataFrame(index=pd.RangeIndex(0)))
        self.frame = frame
        self.errors = [list(p.errors) for p in self.requests]
        self.accepted = np.zeros(len(self.requests), dtype=np.int64)
        self.good_owner: np.ndarray | None = None  # request of each good row, once validated
        self.good_seq: np.ndarray | None = None
        self.validated = self.stored = self.answered = False
        self.failure: BaseException | None = None
        self.deferred: tuple[Any, pd.DataFrame] | None = None  # the store step and the rows it passed on

    # -- what the pipeline reports -------------------------------------------------------------

    def validate(self, step: Any, batch: pd.DataFrame) -> pd.DataFrame:
        """In place of the first ``validate`` step: judge the records, remember who owns what."""
        if self.validated or getattr(step, "validator", None) is None:
            return step(batch)
        positions = self._positions(batch)
        result = step.validator.validate_records(batch)
        step.context.dead_letters.put(result.dead)
        dead = result.dead_rows if len(result.dead_rows) else np.zeros(len(batch), dtype=bool)
        for pos, reason, detail in zip(positions[dead], result.dead["reason"], result.dead["detail"]):
            self.errors[self.owner[pos]].append({"index": int(self.body_index[pos]), "error": str(reason),
                                                 "detail": str(detail)})
        self.good_owner = self.owner[positions[~dead]]
        self.accepted = np.bincount(self.good_owner, minlength=len(self.requests))
        self.good_seq = result.good[SEQ].to_numpy() if SEQ in result.good.columns else None
        self.validated = True
        return result.good

    def store(self, step: Any, batch: pd.DataFrame) -> pd.DataFrame | None:
        """In place of the first ``store`` step after validation: one transaction, then the answers; the
        rows go on to the steps after it later, joined with other rounds' (see :meth:`IngestInlet.defer`)."""
        if self.stored or not self.validated:
            return step(batch)
        store = step.target
        written = [0] * len(self.requests)
        if store is not None and len(batch):
            owner = self._owners(batch)
            write_groups = getattr(store, "write_groups", None)
            if write_groups is not None:
                written = [int(count) for count in write_groups(batch, owner, len(self.requests))]
            else:
                for i in np.unique(owner):
                    written[i] = int(store.write(batch.iloc[np.flatnonzero(owner == i)]))
            step.written += len(batch)
        self.stored = True
        self.answer(written)
        self.deferred = (step, batch)
        return None  # the chain stops here for now: the inlet hands the rows on after the round

    def failed(self, error: BaseException) -> None:
        """A step failed while the round was in the graph (before its answer: the requests get it)."""
        if not self.answered and self.failure is None:
            self.failure = error

    def finish(self) -> None:
        """The push is over: answer what the store step did not (nothing stored, or a failure)."""
        if self.answered:
            return
        if self.failure is not None:
            self.answered = True
            for p in self.requests:
                _settle(p.future, error=self.failure)
            return
        self.answer([0] * len(self.requests))

    def answer(self, written: Sequence[int]) -> None:
        self.answered = True
        for i, p in enumerate(self.requests):
            errors = sorted(self.errors[i], key=lambda e: e["index"])
            _settle(p.future, {"accepted": int(self.accepted[i]), "rejected": len(errors),
                               "written": int(written[i]), "errors": errors})

    # -- mapping rows back to requests ---------------------------------------------------------

    def _positions(self, batch: pd.DataFrame) -> np.ndarray:
        n = len(self.frame)
        index = batch.index
        if isinstance(index, pd.RangeIndex) and index.step == 1 and index.start == 0 and len(index) == n:
            return np.arange(n)
        labels = index.to_numpy()
        if labels.dtype.kind in "iu" and index.is_unique and (len(labels) == 0 or
                                                              (labels.min() >= 0 and labels.max() < n)):
            return labels.astype(np.int64)
        raise RuntimeError("a step before validate renumbered the ingested records (keep the index labels "
                           "a step is given, e.g. filter rows instead of rebuilding the frame)")

    def _owners(self, batch: pd.DataFrame) -> np.ndarray:
        """The request of each row the store step got: its validated rows as they were, or, when a step
        between validate and store dropped some, found again by ``seq``."""
        assert self.good_owner is not None
        if len(batch) == len(self.good_owner):
            return self.good_owner
        if self.good_seq is None or SEQ not in batch.columns:
            raise RuntimeError("the store step got rows the validate step did not give, without seq")
        # the first validated row carrying a seq owns it (exact when seqs are unique in the round)
        first = pd.Series(self.good_owner).groupby(self.good_seq, sort=False).first()
        return first.reindex(batch[SEQ].to_numpy()).fillna(0).to_numpy(dtype=np.int64)


class IngestInlet:
    """The door of a pipeline for records from outside (see the module docs).

    Parameters
    ----------
    pipeline
        The pipeline the records enter.
    max_rows, max_cells, max_keys
        Bounds of one round: records, cells (records × distinct keys) and distinct keys of its frame
        (a round always takes at least one request). The gateway sets them from its own limits.
    """

    def __init__(self, pipeline: Pipeline, max_rows: int = 50_000, max_cells: int = 4_000_000,
                 max_keys: int = 1024, tail_rows: int = 100_000, tail_delay: float = 1.0,
                 tail_idle: float = 0.1) -> None:
        self.pipeline = pipeline
        self.max_rows, self.max_cells, self.max_keys = max_rows, max_cells, max_keys
        self.tail_rows, self.tail_delay, self.tail_idle = tail_rows, tail_delay, tail_idle
        self._arrived: asyncio.Event | None = None  # set when requests arrive while the drain waits
        self._tail: list[pd.DataFrame] = []  # stored rows waiting for the steps after the store step
        self._tail_node: int | None = None
        self._tail_count = 0
        self._tail_since = 0.0
        self.rounds = 0  # rounds pushed and requests answered: for /metrics and the tests
        self.requests = 0
        self.current: IngestRound | None = None  # the round in the graph right now
        self._queue: list[_Pending] = []
        self._open = False
        self._closed: IngestRefused | None = None
        self._draining = False
        self._outboxes: dict[asyncio.AbstractEventLoop, list[_Pending]] = {}  # per caller loop, this turn's

    # -- the caller's side ---------------------------------------------------------------------

    async def submit(self, raw: pd.DataFrame, index: Sequence[int] | np.ndarray | None = None,
                     errors: list[dict[str, Any]] | None = None, dead: pd.DataFrame | None = None) -> Answer:
        """Push one request's records through the pipeline; resolves once its rows are committed.

        Parameters
        ----------
        raw
            The records (one row each, no ``stream`` column: the pipeline's stream is theirs).
        index
            Each row's index in the request body (default ``0..n-1``), for the answer's errors.
        errors
            Errors the caller found already (records it could not read), returned with the others.
        dead
            Dead letters of those records, put in the pipeline's dead-letter queue with the round.

        Returns ``{"accepted", "rejected", "written", "errors"}``; raises :class:`IngestRefused` when the
        pipeline does not run (or cannot ingest), or the error of a step that failed before the commit.
        """
        pipe = self.pipeline
        self._check()
        loop = pipe._loop
        if loop is None or loop.is_closed():
            raise IngestRefused(f"stream '{pipe.name}' is not running", pipe.state)
        positions = np.arange(len(raw), dtype=np.int64) if index is None else np.asarray(index, dtype=np.int64)
        if len(positions) != len(raw):
            raise ValueError(f"index has {len(positions)} entries for {len(raw)} records")
        caller = asyncio.get_running_loop()
        if caller is loop:
            future: asyncio.Future[Answer] = caller.create_future()
            self._enqueue(_Pending(raw, positions, list(errors or []), dead, future))
            return await future
        across: concurrent.futures.Future[Answer] = concurrent.futures.Future()
        # requests submitted in one turn of the caller's loop cross in one hop, so the pipeline finds them
        # queued together (one round) instead of racing them one by one across threads
        box = self._outboxes.setdefault(caller, [])
        box.append(_Pending(raw, positions, list(errors or []), dead, across))
        if len(box) == 1:
            caller.call_soon(self._ship, caller, loop)
        return await asyncio.wrap_future(across)

    def _ship(self, caller: asyncio.AbstractEventLoop, loop: asyncio.AbstractEventLoop) -> None:
        box = self._outboxes.pop(caller, [])
        try:
            loop.call_soon_threadsafe(self._enqueue_all, box)
        except RuntimeError:  # the pipeline's loop closed meanwhile
            for p in box:
                _settle(p.future, error=IngestRefused(f"stream '{self.pipeline.name}' is not running",
                                                      self.pipeline.state))

    def _check(self) -> None:
        pipe = self.pipeline
        if self._closed is not None:
            raise self._closed
        if pipe.state != "running":
            raise IngestRefused(f"stream '{pipe.name}' is {pipe.state}: start (or resume) it to ingest", pipe.state)
        if not pipe.validates_first():
            raise IngestRefused(f"stream '{pipe.name}' has no validate step before its store step: records from "
                                "outside are never stored unjudged (add {\"kind\": \"validate\"} first)",
                                pipe.state)

    @property
    def accepting(self) -> bool:
        """Whether rounds run now: the pipeline has bound its steps and not ended."""
        return self._open

    # -- the pipeline's side (on its loop) -----------------------------------------------------

    def open(self) -> None:
        """The pipeline's steps are bound: rounds may run (called by the pipeline on its loop)."""
        self._open, self._closed = True, None
        self._kick()

    def rearm(self) -> None:
        """The pipeline is starting again: forget the refusal of its last end, so that requests queue until
        :meth:`open` (called from any thread before the pump runs; the queue itself lives on its loop)."""
        self._closed = None

    def close(self, state: str) -> None:
        """The pipeline ended: refuse what is queued and what comes (called by the pipeline on its loop);
        stored rows still waiting for the steps after the store step go through them first."""
        self._flush_tail()
        self._open = False
        self._closed = IngestRefused(f"stream '{self.pipeline.name}' is {state}: start it to ingest", state)
        queued, self._queue = self._queue, []
        for p in queued:
            _settle(p.future, error=self._closed)

    def _enqueue(self, pending: _Pending) -> None:
        self._enqueue_all([pending])

    def _enqueue_all(self, pendings: list[_Pending]) -> None:
        if self._closed is not None:
            for p in pendings:
                _settle(p.future, error=self._closed)
            return
        self._queue.extend(pendings)
        if self._arrived is not None:
            self._arrived.set()
        self._kick()

    def _kick(self) -> None:
        if self._open and self._queue and not self._draining:
            self._draining = True
            asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        pipe = self.pipeline
        try:
            while self._open and (self._queue or self._tail):
                if not self._queue:
                    # nobody waits for an answer: after a short quiet time, the steps after the store step
                    # (a client answered a moment ago is likely sending its next request)
                    self._arrived = asyncio.Event()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._arrived.wait(), self.tail_idle)
                    self._arrived = None
                    if not self._queue or time.monotonic() - self._tail_since >= self.tail_delay:
                        self._flush_tail()
                    continue
                resume = pipe._resume
                if resume is not None and not resume.is_set():
                    await resume.wait()
                    continue
                take = self._take(self._queue)
                group, self._queue = self._queue[:take], self._queue[take:]
                self._run(group)
                await asyncio.sleep(0)  # let the source, and requests arriving meanwhile, in
                if self._tail_count >= self.tail_rows or \
                        (self._tail and time.monotonic() - self._tail_since >= self.tail_delay):
                    self._flush_tail()
        finally:
            self._draining = False
            if self._queue and self._open:
                self._kick()

    def _take(self, queue: list[_Pending]) -> int:
        """How many queued requests the next round takes: at least one, then more while the round stays
        within ``max_rows`` records, ``max_keys`` distinct keys and ``max_cells`` (requests naming keys
        of their own must not widen one another's frame)."""
        take, rows, keys = 1, len(queue[0].raw), set(queue[0].raw.columns)
        while take < len(queue):
            raw = queue[take].raw
            wider, more = keys.union(raw.columns), rows + len(raw)
            if more > self.max_rows or len(wider) > self.max_keys or more * len(wider) > self.max_cells:
                break
            take, rows, keys = take + 1, more, wider
        return take

    def _run(self, group: list[_Pending]) -> None:
        self.rounds += 1  # counted first: a request is answered mid-push, and its caller may look at once
        self.requests += len(group)
        round_ = IngestRound(group)
        for p in group:
            if p.dead is not None and len(p.dead):
                self.pipeline.dead_letters.put(p.dead)
        self.current = round_
        try:
            if len(round_.frame):
                self.pipeline._push(round_.frame)
        except Exception as exc:  # noqa: BLE001 - the graph guards its steps; this is the push itself
            round_.failed(exc)
        finally:
            self.current = None
            round_.finish()
        if round_.deferred is not None:
            self.defer(*round_.deferred)

    def defer(self, step: Any, batch: pd.DataFrame) -> None:
        """Keep a round's stored rows for the steps after ``step`` (cache, publish, analyze, window...).

        Why: analysis has a large fixed cost per batch and series (a batch of 50,000 rows costs about
        twice one of 10,000, 100,000 not three times), and the requests are answered at the store step already; so while requests
        keep coming, the rows of several rounds go on together — when no request waits, or every
        ``tail_rows`` rows, or ``tail_delay`` seconds after the oldest (no request for ``tail_idle``
        seconds counts as none waiting). Every row goes on; none is dropped.
        """
        if not len(batch):
            return
        node = self.pipeline.steps.index(step)
        if self._tail_node is not None and node != self._tail_node:
            self._flush_tail()
        if not self._tail:
            self._tail_since = time.monotonic()
        self._tail.append(batch)
        self._tail_node = node
        self._tail_count += len(batch)

    def _flush_tail(self) -> None:
        if not self._tail or self._tail_node is None:
            return
        parts, node = self._tail, self._tail_node
        self._tail, self._tail_node, self._tail_count = [], None, 0
        joined = parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)
        self.pipeline._emit_after(node, joined)
