"""The fluent pipeline: a source, then steps, run on streamz.

::

    pipe = (Pipeline.from_source(sources.replay("pumps.csv", time="ts", speed=60))
              .validate()
              .window("1min", agg=["mean", "max"])
              .sink(print))
    pipe.start(); pipe.status(); pipe.stop()

Each step is a node of a streamz graph (``pipe.stream`` is the last node, so anything streamz can do —
``pipe.stream.sink(buffer.send)`` for a live plot — works on the output). Micro-batches are pushed
through the whole graph synchronously; only then is the source told to ``commit``, so an
acknowledging source never acknowledges a record whose batch did not reach every sink.

A step that raises never stops the pipeline: the batch goes to the dead-letter queue with reason
``processing_error`` (its payload kept), the error is counted and shown in ``status()``, and the next
batch is processed. A source that raises puts the pipeline in state ``failed``.

Records from outside (the gateway's ingest) enter through ``pipe.inlet`` — any pipeline, whatever its
source — and go through the same graph; while such a round is in the graph the pipeline reports what its
first ``validate`` and ``store`` steps did to it, so that each request is answered with its own counts
once its rows are committed (see :mod:`nexus_kernel.engine.sources._ingest`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import time
import traceback
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

import pandas as pd
import streamz

from ..config import Settings, load_settings
from ..records import TIME, DeadLetterQueue, make_dead_letters
from ._loop import running_loop, submit
from ._services import StoreWrite
from ._specs import SpecError, refuse_clear_secrets, resolve_secrets, scrub
from ._steps import Apply, Filter, Sink, StepContext, Validate, as_step, steps
from ._windows import Window
from .sources import BoundedBuffer, Ingest, IngestInlet, Source
from .sources import sources as registered_sources

__all__ = ["Pipeline", "PipelineStateError", "rebatch"]

STATES = ("created", "running", "paused", "stopped", "failed")


class PipelineStateError(RuntimeError):
    """An operation is not allowed in the pipeline's current state."""


class _Guarded:
    """Runs one step; turns its exceptions into dead letters instead of stopping the stream."""

    def __init__(self, step: Any, pipeline: "Pipeline") -> None:
        self.step = step
        self.pipeline = pipeline
        self.name = str(getattr(step, "kind", None) or getattr(step, "__name__", type(step).__name__))
        # an ingested round in the graph is told what the validate and store steps did to its records
        self.role = "validate" if isinstance(step, Validate) else "store" if isinstance(step, StoreWrite) else None

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame | None:
        try:
            ingested = self.pipeline.inlet.current if self.role is not None else None
            if ingested is not None:
                return ingested.validate(self.step, batch) if self.role == "validate" \
                    else ingested.store(self.step, batch)
            return self.step(batch)
        except Exception as exc:  # noqa: BLE001 - the stream must survive any step
            self.pipeline._step_failed(self.name, exc, batch)
            return None


def _nonempty(batch: Any) -> bool:
    return batch is not None and len(batch) > 0


class Pipeline:
    """A source and a chain of steps with a lifecycle.

    Parameters
    ----------
    source
        Any :class:`~nexus_kernel.engine.sources.Source`.
    name
        Stream name written into records (defaults to the source's ``stream`` parameter or kind).
    settings
        The process settings; loaded from the environment when omitted.
    """

    def __init__(self, source: Source, name: str | None = None, settings: Settings | None = None) -> None:
        self.source = source
        self.name = name or source.params.get("stream") or source.kind
        self.settings = settings or load_settings()
        self.dead_letters = DeadLetterQueue()
        self.services: dict[str, Any] = {}
        self.state = "created"
        self.last_error: str | None = None
        self.errors = 0
        self.records_in = 0
        self.records_out = 0
        self.batches = 0
        self.newest_event: pd.Timestamp | None = None
        self.started_at: float | None = None
        self.failed_at: float | None = None
        self._rates: deque[tuple[float, int]] = deque(maxlen=4096)
        self._started_mono: float | None = None
        self._steps: list[Any] = []
        self._head = streamz.Stream(stream_name=f"{self.name}:source")
        self._nodes: list[streamz.Stream] = []
        self._batch_size = self.settings.batch_size
        self._batch_interval = self.settings.batch_interval
        self._task: asyncio.Task[None] | concurrent.futures.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._resume: asyncio.Event | None = None
        self._paused = False
        self._stopping = False
        self._collected: list[pd.DataFrame] | None = None
        self._counting = False
        self._dead_letters_stored = False
        self._secrets: frozenset[str] = frozenset()  # values resolved from secret references: never shown
        self._given: dict[str, Any] | None = None  # the source and steps as from_spec received them
        self.inlet = IngestInlet(self)  # records from outside (the gateway) enter here
        if isinstance(source, Ingest):
            source.inlet = self.inlet

    # -- building ------------------------------------------------------------------------------

    @classmethod
    def from_source(cls, source: Source, name: str | None = None, settings: Settings | None = None) -> "Pipeline":
        return cls(source, name=name, settings=settings)

    def then(self, step: Any) -> "Pipeline":
        """Append any step (a registered step object or a plain callable)."""
        if self.state != "created":
            raise PipelineStateError("steps can only be added before the pipeline starts")
        node = self._tail().map(_Guarded(step, self)).filter(_nonempty)
        self._nodes.append(node)
        self._steps.append(step)
        return self

    def step(self, registered: str, /, **params: Any) -> "Pipeline":
        """Append a registered step by name (built-in or from an entry point)."""
        return self.then(steps.get(registered)(**params))

    def validate(self, **params: Any) -> "Pipeline":
        """Bad rows → dead letters, with reasons (see :class:`~nexus_kernel.records.Validator`)."""
        return self.then(Validate(**params))

    def window(self, size: str = "1min", agg: list[str] | tuple[str, ...] = ("count", "mean", "min", "max"),
               **params: Any) -> "Pipeline":
        """Per-series event-time windows (see :class:`~nexus_kernel.engine.Window`)."""
        return self.then(Window(size, agg=agg, **params))

    def apply(self, transform: str | Callable[..., pd.DataFrame | None], /, **params: Any) -> "Pipeline":
        """Transform batches: a registered transform by name (``apply("scale", factor=2)``, savable in a
        spec) or any callable (in-process only; see :class:`~nexus_kernel.engine.Apply`)."""
        return self.then(Apply(transform, **params))

    def filter(self, predicate: str | Callable[[pd.DataFrame], Any], /, **params: Any) -> "Pipeline":
        """Keep rows: a registered predicate by name (``filter("series_in", series=["a"])``) or a
        callable returning a boolean mask (in-process only). pandas query strings are not accepted."""
        return self.then(Filter(predicate, **params))

    def sink(self, target: Any, topic: str = "points") -> "Pipeline":
        """Write each batch to a store, a bus or a callable, and pass it on."""
        return self.then(Sink(target, topic=topic))

    def store(self) -> "Pipeline":
        """Write batches to the process's store (``services["store"]``), idempotently."""
        return self.step("store")

    def cache(self) -> "Pipeline":
        """Keep latest values and recent windows per series in the process's cache."""
        return self.step("cache")

    def publish(self, topic: str = "points") -> "Pipeline":
        """Publish batches on the live bus as ``stream:<name>:<topic>``."""
        return self.step("publish", topic=topic)

    def analyze(self, **params: Any) -> "Pipeline":
        """Detectors, change points (and forecasts with ``forecast=True``) on every batch; results go to
        the store and the bus (see :class:`~nexus_kernel.analysis.Analyzer` for the parameters)."""
        return self.step("analyze", **params)

    def batch(self, size: int | None = None, interval: float | None = None) -> "Pipeline":
        """Cut the source's output into micro-batches of ``size`` rows or ``interval`` seconds."""
        if size is not None:
            if size <= 0:
                raise ValueError("batch size must be positive")
            self._batch_size = int(size)
        if interval is not None:
            if interval <= 0:
                raise ValueError("batch interval must be positive")
            self._batch_interval = float(interval)
        return self

    def collect(self) -> "Pipeline":
        """Keep every output batch in memory; read them with :meth:`results`."""
        self._collected = []
        self._tail().sink(self._collected.append)
        return self

    def results(self) -> pd.DataFrame:
        if self._collected is None:
            raise PipelineStateError("call .collect() before start() to keep results")
        return pd.concat(self._collected, ignore_index=True) if self._collected else pd.DataFrame()

    @property
    def stream(self) -> streamz.Stream:
        """The streamz node carrying the pipeline's output batches."""
        return self._tail()

    def node_after(self, kind: str) -> streamz.Stream | None:
        """The streamz node carrying the output of the first step of that kind (None if absent)."""
        for step, node in zip(self._steps, self._nodes):
            if getattr(step, "kind", None) == kind:
                return node
        return None

    @property
    def steps(self) -> list[Any]:
        return list(self._steps)

    def validates_first(self) -> bool:
        """Whether a ``validate`` step comes before any ``store`` step (what ingest requires)."""
        for step in self._steps:
            if isinstance(step, Validate):
                return True
            if isinstance(step, StoreWrite):
                return False
        return False

    def spec(self) -> dict[str, Any]:
        """A JSON-able description that :meth:`from_spec` rebuilds (registered steps only).

        A pipeline built by :meth:`from_spec` describes its source and those steps as its spec gave them,
        secret references included — never the secrets they resolved to.
        """
        given = self._given or {}
        steps = list(given.get("steps", []))
        return {
            "name": self.name,
            "source": given.get("source") or self.source.spec(),
            "steps": steps + [as_step(s).spec() for s in self._steps[len(steps):]],
            "batch": {"size": self._batch_size, "interval": self._batch_interval},
        }

    @classmethod
    def from_spec(cls, spec: dict[str, Any], settings: Settings | None = None) -> "Pipeline":
        """Build a pipeline from a spec — data from the network, the CLI or ``streams.json``.

        This is the spec boundary (see :mod:`nexus_kernel.engine._specs`): sources, steps and transforms
        come from registries by name; a secret is a reference ``{"secret": "NAME"}`` resolved here through
        ``settings.secret``, and one given in clear is refused; file sources read only inside the data
        directories. Raises :class:`~nexus_kernel.engine.SpecError` (a ``ValueError`` whose ``field``
        says where) for anything it refuses; its message never holds a resolved secret.
        """
        settings = settings or load_settings()
        if not isinstance(spec, dict) or not isinstance(spec.get("source"), dict):
            raise SpecError("a stream spec needs a 'source': {\"kind\": ..., \"params\": {...}}", field="source")
        source_spec = {"kind": spec["source"].get("kind"), "params": dict(spec["source"].get("params") or {})}
        step_specs = [{"kind": item.get("kind"), "params": dict(item.get("params") or {})}
                      if isinstance(item, dict) else item for item in spec.get("steps") or []]
        found: set[str] = set()
        refuse_clear_secrets(source_spec["params"], "source.params")
        params = resolve_secrets(source_spec["params"], settings, "source.params", found)
        try:
            factory = registered_sources.get(str(source_spec["kind"]))
            source = factory.from_spec(settings, **params)
        except SpecError as exc:
            raise SpecError(scrub(str(exc), found), field=exc.field) from None
        except (LookupError, TypeError, ValueError, ArithmeticError, OSError) as exc:
            raise SpecError(f"source '{source_spec['kind']}': {scrub(str(exc), found)}", field="source") from None
        pipe = cls(source, name=spec.get("name"), settings=settings)
        for index, item in enumerate(step_specs):
            where = f"steps.{index}"
            if not isinstance(item, dict):
                raise SpecError(f"{where} must be {{\"kind\": ..., \"params\": {{...}}}}", field=where)
            refuse_clear_secrets(item["params"], f"{where}.params")
            step_params = resolve_secrets(item["params"], settings, f"{where}.params", found)
            try:
                pipe.step(str(item["kind"]), **step_params)
            except (LookupError, TypeError, ValueError, ArithmeticError) as exc:
                raise SpecError(f"{where} ('{item['kind']}'): {scrub(str(exc), found)}", field=where) from None
        pipe._secrets = frozenset(found)
        pipe._given = {"source": source_spec, "steps": step_specs}
        batch = spec.get("batch") or {}
        return pipe.batch(batch.get("size"), batch.get("interval"))

    def _tail(self) -> streamz.Stream:
        return self._nodes[-1] if self._nodes else self._head

    # -- running -------------------------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> "Pipeline":
        """Start on ``loop`` (a runtime's pipeline thread), else the running event loop (notebook, server),
        else the engine's background loop."""
        if self.state in ("running", "paused"):
            raise PipelineStateError(f"pipeline '{self.name}' is already {self.state}")
        if self.state in ("stopped", "failed") and self.source.exhausted:
            raise PipelineStateError(f"pipeline '{self.name}' has consumed its source; build a new one")
        self._stopping = False
        self._paused = False
        self.inlet.rearm()  # a request sent right after a restart queues until the pump opens the inlet
        self.state = "running"
        current = running_loop()
        if loop is not None and loop is not current:
            self._loop = loop
            self._task = asyncio.run_coroutine_threadsafe(self._pump(), loop)
        elif current is not None:
            self._loop = current
            self._task = current.create_task(self._pump())
        else:
            from ._loop import engine_loop

            self._loop = engine_loop()
            self._task = submit(self._pump())
        return self

    def run(self, timeout: float | None = None) -> "Pipeline":
        """Run until the source ends (or ``timeout`` seconds), blocking the caller."""
        if self.state in ("running", "paused"):
            raise PipelineStateError(f"pipeline '{self.name}' is already {self.state}")
        self.state = "running"
        future = submit(self._pump())
        try:
            future.result(timeout)
        except TimeoutError:
            self.stop()
        return self

    async def run_async(self) -> "Pipeline":
        """Run until the source ends, on the caller's loop."""
        if self.state in ("running", "paused"):
            raise PipelineStateError(f"pipeline '{self.name}' is already {self.state}")
        self.state = "running"
        await self._pump()
        return self

    def pause(self) -> None:
        if self.state != "running":
            raise PipelineStateError(f"cannot pause pipeline '{self.name}' in state {self.state}")
        self._paused = True
        self.state = "paused"
        self._call(lambda: self._resume.clear() if self._resume else None)

    def resume(self) -> None:
        if self.state != "paused":
            raise PipelineStateError(f"cannot resume pipeline '{self.name}' in state {self.state}")
        self._paused = False
        self.state = "running"
        self._call(lambda: self._resume.set() if self._resume else None)

    def stop(self, wait: bool = True, timeout: float = 10.0) -> None:
        """Stop pulling, flush open windows through the remaining steps, close the source.

        Idempotent: on a pipeline that already ended (its source ran out, it failed, or it was stopped) it
        does nothing, so ``pipe.start(); ...; pipe.stop()`` works however long the source lasted. Only a
        pipeline that never started refuses.
        """
        if self.state in ("stopped", "failed"):
            return
        if self.state not in ("running", "paused"):
            raise PipelineStateError(f"cannot stop pipeline '{self.name}' in state {self.state}")
        self._stopping = True
        task = self._task
        if task is None:
            self.state = "stopped"
            return
        if isinstance(task, asyncio.Task):
            loop = task.get_loop()
            if running_loop() is loop:
                task.cancel()  # cannot block the loop we run on; the task finishes by itself
                return
            loop.call_soon_threadsafe(task.cancel)
            return
        task.cancel() if not task.done() else None  # concurrent future from submit()
        if wait:
            with contextlib.suppress(Exception):
                task.result(timeout)
            deadline = time.monotonic() + timeout
            while self.state in ("running", "paused") and time.monotonic() < deadline:
                time.sleep(0.01)

    async def stop_async(self) -> None:
        """:meth:`stop` on the caller's loop (idempotent in the same way)."""
        if self.state in ("stopped", "failed"):
            return
        if self.state not in ("running", "paused"):
            raise PipelineStateError(f"cannot stop pipeline '{self.name}' in state {self.state}")
        self._stopping = True
        task = self._task
        if isinstance(task, asyncio.Task) and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        elif task is not None and not isinstance(task, asyncio.Task):  # on another thread's loop
            task.cancel()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wrap_future(task)
            deadline = time.monotonic() + 10.0
            while self.state in ("running", "paused") and time.monotonic() < deadline:
                await asyncio.sleep(0.01)

    def _call(self, fn: Callable[[], Any]) -> None:
        loop = self._loop
        if loop is None:
            from ._loop import engine_loop

            loop = engine_loop()
        if running_loop() is loop:
            fn()
        else:
            loop.call_soon_threadsafe(fn)

    async def _pump(self) -> None:
        self._loop = asyncio.get_running_loop()  # run() and run_async() too: where the inlet hands records
        self._resume = asyncio.Event()
        if not self._paused:
            self._resume.set()
        self.started_at = time.time()
        self._started_mono = time.monotonic()
        if not self._counting:
            self._tail().sink(self._count_out)
            self._counting = True
        context = StepContext(self.name, self.settings, self.dead_letters, self.services, clock=self.source.clock,
                              failed=self._step_failed)
        for step in self._steps:
            as_step(step).bind(context)
        store, bus = self.services.get("store"), self.services.get("bus")
        if (store is not None or bus is not None) and not self._dead_letters_stored:
            if store is not None:
                self.dead_letters.add_sink(lambda dead: store.append("dead_letters", dead))
            if bus is not None:  # after the store: a reader of the topic (anchoring) finds them stored
                from ..storage import topic

                name = self.name
                self.dead_letters.add_sink(lambda dead: bus.publish_nowait(topic(name, "dead_letters"), dead))
            self._dead_letters_stored = True
        self.inlet.open()
        if self.source.self_buffered:
            buffer: Any = self.source.batches()
        else:
            buffer = BoundedBuffer(self.source.batches(), self.settings.buffer_batches)
        final = "stopped"
        try:
            async for joined in rebatch(buffer, self._batch_size, self._batch_interval):
                if not self._resume.is_set():
                    await self._resume.wait()
                for start in range(0, len(joined), self._batch_size):
                    self._push(joined.iloc[start : start + self._batch_size] if len(joined) > self._batch_size
                               else joined)
                await self.source.commit()  # only now: every record yielded so far has been handled
                if self._stopping:
                    break
                await asyncio.sleep(0)
        except asyncio.CancelledError:
            pass
        except Exception as exc:  # noqa: BLE001 - a failing source fails the stream, visibly
            final = "failed"
            self.failed_at = time.time()
            self.last_error = scrub(f"source: {type(exc).__name__}: {exc}", self._secrets)
            self.errors += 1
        finally:
            self.inlet.close(final)  # before the flush: no round enters a graph being emptied
            self._flush()
            if hasattr(buffer, "aclose"):
                with contextlib.suppress(Exception):
                    await buffer.aclose()
            with contextlib.suppress(Exception):
                await self.source.close()
            self.state = final  # last: whoever waits for the end sees windows flushed and the source closed

    def _push(self, raw: pd.DataFrame) -> None:
        n = len(raw)
        self.records_in += n
        self.batches += 1
        now = time.monotonic()
        self._rates.append((now, n))
        self._head.emit(raw)

    def _emit_after(self, index: int, batch: pd.DataFrame) -> None:
        """Hand ``batch`` to the steps after step ``index`` (the inlet's stored rows, see its ``defer``)."""
        self._nodes[index].emit(batch)

    def _flush(self) -> None:
        for i, step in enumerate(self._steps):
            try:
                out = as_step(step).flush()
            except Exception as exc:  # noqa: BLE001
                self._step_failed(getattr(step, "kind", "step"), exc, pd.DataFrame())
                continue
            if _nonempty(out):
                self._nodes[i].emit(out)

    def _count_out(self, batch: pd.DataFrame) -> None:
        self.records_out += len(batch)
        if TIME in batch.columns and len(batch) and isinstance(batch[TIME].dtype, pd.DatetimeTZDtype):
            newest = batch[TIME].max()
            if self.newest_event is None or newest > self.newest_event:
                self.newest_event = newest

    def _step_failed(self, name: str, exc: Exception, batch: pd.DataFrame) -> None:
        self.errors += 1
        self.last_error = scrub(f"{name}: {type(exc).__name__}: {exc}", self._secrets)
        detail = scrub(f"step '{name}' failed: {type(exc).__name__}: {exc}", self._secrets)
        ingested = self.inlet.current
        if ingested is not None and not ingested.answered:
            # before the commit of an ingested round: its requests get the error (nothing of it was
            # written, the client retries), so its records are no dead letters
            ingested.failed(exc)
            return
        if batch is not None and len(batch):
            self.dead_letters.put(make_dead_letters(batch, self.name, "processing_error", detail))
        if self.settings.log_level == "debug":
            traceback.print_exception(exc)

    # -- observing -----------------------------------------------------------------------------

    def rate(self, horizon: float = 5.0) -> float:
        """Records per second over the last ``horizon`` seconds."""
        if self._started_mono is None:
            return 0.0
        now = time.monotonic()
        recent = sum(n for t, n in list(self._rates) if now - t <= horizon)
        return recent / max(min(horizon, now - self._started_mono), 1e-3)

    def lag(self) -> float | None:
        """Seconds between now and the newest event time seen, or what the source reports."""
        lag = self.source.lag()
        if lag is not None:
            return lag
        if self.newest_event is None:
            return None
        return max(0.0, (pd.Timestamp.now(tz="UTC") - self.newest_event).total_seconds())

    def status(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "state": self.state,
            "source": self.source.kind,
            "rate": round(self.rate(), 1),
            "lag": None if self.lag() is None else round(self.lag() or 0.0, 3),
            "records_in": self.records_in,
            "records_out": self.records_out,
            "batches": self.batches,
            "dead_letters": self.dead_letters.total,
            "dead_letter_reasons": self.dead_letters.counts(),
            "errors": self.errors,
            "last_error": self.last_error,
        }

    def __repr__(self) -> str:
        chain = " → ".join([self.source.kind, *(getattr(s, "kind", type(s).__name__) for s in self._steps)])
        return f"<Pipeline {self.name!r} {self.state}: {chain}>"


async def rebatch(frames: AsyncIterator[pd.DataFrame] | BoundedBuffer, size: int,
                  interval: float) -> AsyncIterator[pd.DataFrame]:
    """Join frames until they hold ``size`` rows or the oldest has waited ``interval`` seconds.

    A joined frame may exceed ``size`` (the pipeline cuts it, and commits once all pieces are handled).
    ``frames`` must survive a cancelled ``__anext__`` (a :class:`BoundedBuffer` does), because waiting
    is bounded with a timeout.
    """
    iterator = frames.__aiter__()
    pending: list[pd.DataFrame] = []
    count = 0
    first_at = 0.0
    exhausted = False
    failure: BaseException | None = None
    while not exhausted:
        timeout = None if not pending else max(0.0, first_at + interval - time.monotonic())
        try:
            frame = await asyncio.wait_for(iterator.__anext__(), timeout) if timeout is not None \
                else await iterator.__anext__()
        except StopAsyncIteration:
            exhausted = True
            frame = None
        except TimeoutError:
            frame = None
        except Exception as exc:  # noqa: BLE001 - deliver what arrived before the failure, then raise
            exhausted, frame, failure = True, None, exc
        if frame is not None and len(frame):
            if not pending:
                first_at = time.monotonic()
            pending.append(frame)
            count += len(frame)
        due = pending and (exhausted or frame is None or count >= size
                           or time.monotonic() - first_at >= interval)
        if due:
            joined = pending[0] if len(pending) == 1 else pd.concat(pending, ignore_index=True)
            pending, count = [], 0
            yield joined
    if failure is not None:
        raise failure
