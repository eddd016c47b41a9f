"""The anchoring service: fills the Merkle log from the live bus and anchors its signed tree heads.

It subscribes to the bus (the only tap) for the kinds of ``settings.anchor_kinds`` of every stream —
``points`` become ``record`` items, ``anomalies`` ``anomaly`` items, ``dead_letters`` ``dead_letter`` items,
``models`` ``model`` items — and appends them to the log. Every ``anchor_every`` items, or
``anchor_interval`` seconds after the first item of a batch, it closes the batch: signs a tree head, puts
it in the persistent queue (:class:`~._queue.AnchorQueue`) and anchors every pending head through the
backend (``settings.anchor_backend``).

Failure: :class:`AnchorUnavailable` leaves the heads queued and retries after a bounded exponential
backoff (0.5 s doubling to ``anchor_retry_max``); :class:`AnchorDropped` records the drop and the head is
submitted again. A store that fails while items are logged keeps the frames in memory (each kind in order) and
tries again. A subscription that lags (:class:`~nexus_kernel.storage.SubscriberLagged`: the bus dropped
frames) is renewed and the service logs from the store what it missed (:meth:`backfill`): the store is the
source of truth, the bus only the trigger. On start it signs a head over leaves logged but not yet covered (a crash between the two) and
anchors whatever the queue holds, so a head is never left behind and, as backends answer a repeated
submit with the anchor they already made, never anchored twice.

The service runs on a thread of its own with its own event loop (the bus delivers across threads), so the
loop that serves the gateway never waits for hashing or for a backend.

Parameters
----------
settings, store, bus
    The home's; ``bus=None`` runs no subscription (a job feeds :meth:`ingest` itself).
backend
    An anchor backend; default: ``ANCHORS.get(settings.anchor_backend)(settings, store)``.

Example
-------
>>> from nexus_kernel.config import load_settings
>>> from nexus_kernel.storage import open_store
>>> import tempfile, pandas as pd
>>> settings = load_settings(home=tempfile.mkdtemp())
>>> service = AnchorService(settings, open_store("memory"))
>>> frame = pd.DataFrame({"name": ["m"], "version": [1], "stream": ["s"], "kind": ["ets"],
...     "created_at": [pd.Timestamp("2024-01-01", tz="UTC")], "train_start": [pd.NaT], "train_end": [pd.NaT],
...     "metrics": ["{}"], "features": ["[]"], "params": ["{}"], "artifact": [""]})
>>> service.ingest("models", frame), service.close_batch().tree_size, service.queue.pending("ledger")
(1, 1, [])
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from typing import Any

import pandas as pd

from ._encoding import ITEM_KINDS, item_ids
from ._heads import SignedTreeHead, signing_key
from ._log import MerkleLog
from ._protocol import ANCHORS, AnchorBackend, AnchorDropped, AnchorReceipt, AnchorUnavailable
from ._queue import AnchorQueue

__all__ = ["AnchorService", "TOPIC_KINDS"]

log = logging.getLogger("nexus_kernel.anchoring")

#: Longest wait (s) of a frame from the bus before it is logged: the frames of that time share one store
#: transaction per kind. Logged one by one, the log's appends took 15% of a core in the embedded monitor's
#: server at the simulator's ten frames a second (py-spy, ``bench dashboard``'s server): 7% at 0.5 s, 5% at 1 s
DRAIN_EVERY = 1.0

#: Bus topic kind → item kind.
TOPIC_KINDS: dict[str, str] = {"points": "record", "anomalies": "anomaly", "dead_letters": "dead_letter",
                               "models": "model"}
#: Bus topic kind → the store table its frames were written to and that table's time column (what
#: :meth:`AnchorService.backfill` reads; ``points`` are read with ``store.query``).
TOPIC_TABLES: dict[str, tuple[str, str]] = {"points": ("points", "ts"), "anomalies": ("anomalies", "ts"),
                                            "dead_letters": ("dead_letters", "received_at"),
                                            "models": ("models", "created_at")}


class AnchorService:
    def __init__(self, settings: Any, store: Any, bus: Any | None = None, backend: AnchorBackend | None = None,
                 *, first_retry: float = 0.5) -> None:
        self.settings, self.store, self.bus = settings, store, bus
        self.log = MerkleLog(store, signing_key(settings))
        self.queue = AnchorQueue(store)
        self.backend = backend if backend is not None else ANCHORS.get(settings.anchor_backend)(settings, store)
        self.every, self.interval = settings.anchor_every, settings.anchor_interval
        self.first_retry, self.retry_max = first_retry, settings.anchor_retry_max
        self._since_close = 0
        self._batch_started: float | None = None
        self._unlogged: deque[tuple[str, pd.DataFrame]] = deque()
        self._drained_at = 0.0
        self._marks: dict[tuple[str, str], pd.Timestamp] = {}  # (topic kind, stream) → newest time ingested
        self._attempts = 0
        self._next_try = 0.0
        self.backoff = 0.0  # the wait before the next try after the last AnchorUnavailable (s)
        self.unconfirmed = 0  # heads the last round left submitted but not final (the ticker confirms them)
        self._lock = threading.RLock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self.stats = {"items": 0, "heads": 0, "anchored": 0, "unavailable": 0, "dropped": 0, "lagged": 0,
                      "backfilled": 0}
        self.last_error: str | None = None

    # -- the work, callable from any thread (a job calls these directly) ---------------------------

    def ingest(self, topic_kind: str, frame: pd.DataFrame) -> int:
        """Log the items of a frame of bus kind ``topic_kind``; returns the number newly logged.

        A store failure keeps the frame, and every queued frame of its kind after it, in order, for the next
        try (frames of other kinds queued before the failure may be logged meanwhile).
        """
        with self._lock:
            self._enqueue(topic_kind, frame)
            return self._drain()

    def _enqueue(self, topic_kind: str, frame: pd.DataFrame) -> None:
        self._mark(topic_kind, frame)
        self._unlogged.append((TOPIC_KINDS.get(topic_kind, topic_kind), frame))

    def _mark(self, topic_kind: str, frame: pd.DataFrame) -> None:
        """Remember each stream's newest time in ``frame`` (where :meth:`backfill` starts after a lag)."""
        table = TOPIC_TABLES.get(topic_kind)
        if table is None or frame.empty or "stream" not in frame or table[1] not in frame:
            return
        for stream, times in frame.groupby("stream", observed=True)[table[1]]:
            newest = pd.to_datetime(times, utc=True).max()
            key = (topic_kind, str(stream))
            if pd.notna(newest) and (key not in self._marks or newest > self._marks[key]):
                self._marks[key] = newest

    def backfill(self, topic_kind: str) -> int:
        """Log what the store holds of ``topic_kind`` and the log does not (the bus dropped it); the count.

        Per stream it reads from ``anchor_backfill_slack`` seconds before the newest time ingested of that
        stream, the whole stream when none was; items already logged are skipped. Caveat: an item stored
        with a time older than that window while frames were being dropped is left to the anchor job.
        """
        if topic_kind not in TOPIC_TABLES:
            return 0
        table = TOPIC_TABLES[topic_kind][0]
        slack = pd.Timedelta(seconds=float(self.settings.anchor_backfill_slack))
        known = set(self.store.read("log_leaves")["item_id"].astype(str))
        kind = TOPIC_KINDS.get(topic_kind, topic_kind)
        added = 0
        for stream in self.store.streams():
            mark = self._marks.get((topic_kind, stream))
            start = None if mark is None else mark - slack
            frame = (self.store.query(stream, start=start) if table == "points"
                     else self.store.read(table, stream=stream, start=start))
            if frame.empty:
                continue
            ids = item_ids(kind, frame)
            missed = frame[[i not in known for i in ids]]
            if not missed.empty:
                added += self.ingest(topic_kind, missed)
        self.stats["backfilled"] += added
        return added

    def offer(self, topic_kind: str, frame: pd.DataFrame) -> None:
        """Queue a frame of bus kind ``topic_kind`` for the next drain (at most ``DRAIN_EVERY`` s away).

        What the bus follower does: the frames queued meanwhile are logged kind by kind, one store
        transaction per kind, where logging each frame as it came cost a transaction per frame.
        """
        with self._lock:
            self._enqueue(topic_kind, frame)
            if time.monotonic() - self._drained_at >= DRAIN_EVERY:
                self._drain()

    def _drain(self) -> int:
        """Log the queued frames, the kind of the oldest first, all frames of one kind in one append."""
        added = 0
        self._drained_at = time.monotonic()
        while self._unlogged:
            kind = self._unlogged[0][0]
            frames = [f for k, f in self._unlogged if k == kind]
            frame = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
            try:
                logged = self.log.append(kind, ITEM_KINDS.get(kind).items(frame))
            except Exception as exc:  # noqa: BLE001 - a store outage must not lose the frame; retried later
                self.last_error = f"logging {kind} items: {type(exc).__name__}: {exc}"
                log.warning("anchoring: %s (kept for a retry)", self.last_error)
                return added
            self._unlogged = deque((k, f) for k, f in self._unlogged if k != kind)
            added += len(logged)
            if logged and self._batch_started is None:
                self._batch_started = time.monotonic()
            self._since_close += len(logged)
        self.stats["items"] += added
        return added

    def due(self) -> bool:
        """Is the open batch full or old enough to close?"""
        if self._since_close == 0 or self._batch_started is None:
            return False
        return self._since_close >= self.every or time.monotonic() - self._batch_started >= self.interval

    def close_batch(self) -> SignedTreeHead | None:
        """Sign a head over everything logged, queue it and anchor what is pending; the head (None if empty)."""
        with self._lock:
            self._drain()
            if self.log.size == 0:
                return None
            latest = self.log.latest_head()
            head = self.log.sign_head()
            self.queue.enqueue(head.head_id, head.tree_size)  # idempotent: a head signed before a crash is queued too
            if latest is None or latest.head_id != head.head_id:
                self.stats["heads"] += 1
            self._since_close, self._batch_started = 0, None
        self.anchor_pending()
        return head

    def anchor_pending(self) -> int:
        """Anchor every queued head not yet final; returns how many became final now.

        :class:`AnchorUnavailable` stops the round and schedules the next after the backoff.
        """
        done = left = 0
        with self._lock:
            if time.monotonic() < self._next_try:
                return 0
            name = self.backend.name
            states = self.queue.states(name)
            try:
                for head_id in self.queue.pending(name):
                    head = self.log.head(head_id)
                    if head is None:
                        continue
                    status, reference = states.get(head_id, ("", {}))
                    try:
                        if status == "pending":
                            receipt = self.backend.confirm(AnchorReceipt(name, head_id, "pending", reference))
                        else:
                            receipt = self.backend.submit(head.request())
                            if receipt.status == "final":
                                receipt = self.backend.confirm(receipt)
                    except AnchorDropped as exc:
                        self.queue.dropped(head_id, name, str(exc))
                        self.stats["dropped"] += 1
                        left += 1
                        continue  # submitted again on the next round
                    if receipt.status != status or receipt.status == "final" or receipt.reference != reference:
                        self.queue.record(receipt)
                    if receipt.status == "final":
                        done += 1
                    else:
                        left += 1
            except AnchorUnavailable as exc:
                self._attempts += 1
                wait = min(self.retry_max, self.first_retry * 2 ** (self._attempts - 1))
                self._next_try = time.monotonic() + wait
                self.backoff = wait
                self.stats["unavailable"] += 1
                self.last_error = str(exc)
                log.warning("anchoring: %s; retrying in %.1f s", exc, wait)
                return done
            self._attempts, self._next_try = 0, 0.0
            self.unconfirmed = left
            self.stats["anchored"] += done
        return done

    def recover(self) -> None:
        """At start: sign a head over leaves no head covers yet, and anchor what the queue holds."""
        if self.log.size:
            self.close_batch()

    def status(self) -> dict[str, Any]:
        latest = self.log.latest_head()
        return {"backend": self.backend.name, "log_size": self.log.size,
                "head": latest.tree_size if latest else None, "pending": len(self.queue.pending(self.backend.name)),
                "unlogged_frames": len(self._unlogged), "unconfirmed": self.unconfirmed, "last_error": self.last_error,
                **self.stats}

    # -- running on its own thread -----------------------------------------------------------------

    def start(self) -> AnchorService:
        """Run on a thread of its own: subscribe to the bus, close batches on time, retry anchors."""
        if self._thread is not None:
            return self
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            self._stop = asyncio.Event()
            self._loop.call_soon(ready.set)
            try:
                self._loop.run_until_complete(self._main())
            finally:
                self._loop.close()

        self._thread = threading.Thread(target=run, name="nexus-anchoring", daemon=True)
        self._thread.start()
        ready.wait()
        return self

    async def _main(self) -> None:
        assert self._stop is not None
        try:
            self.recover()
        except Exception as exc:  # noqa: BLE001 - a failing store at start: the ticker retries
            self.last_error = f"recovering: {type(exc).__name__}: {exc}"
            log.warning("anchoring: %s", self.last_error)
        tasks = [asyncio.ensure_future(self._follow(kind)) for kind in self.settings.anchor_kinds
                 if self.bus is not None]
        tick = min(DRAIN_EVERY, self.interval / 4)
        while not self._stop.is_set():
            try:
                await asyncio.wait_for(self._stop.wait(), tick)
            except asyncio.TimeoutError:
                pass
            try:
                with self._lock:
                    if self._unlogged:
                        self._drain()
                if self.due():
                    self.close_batch()
                elif time.monotonic() >= self._next_try and (self._attempts or self.unconfirmed):
                    self.anchor_pending()  # retry after an outage; confirm what a chain has not made final yet
            except Exception as exc:  # noqa: BLE001 - the loop must live on; the queue keeps the work
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("anchoring: a round failed")
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _follow(self, topic_kind: str) -> None:
        from ..storage import SubscriberLagged, split_topic, topic_pattern

        assert self.bus is not None
        lagged = False
        while True:
            try:
                async with self.bus.subscribe(topic_pattern("*", topic_kind),
                                              maxsize=max(self.settings.bus_queue, 1000)) as sub:
                    if lagged:  # subscribed again first, so nothing published meanwhile falls between the two
                        added = await asyncio.to_thread(self.backfill, topic_kind)
                        log.info("anchoring: %d %s item(s) the bus dropped logged from the store", added,
                                 topic_kind)
                        lagged = False
                    async for message in sub:
                        _, kind = split_topic(message.topic)
                        self.offer(kind, message.frame)
                        if self._since_close >= self.every:
                            self.close_batch()
            except SubscriberLagged as exc:
                self.stats["lagged"] += exc.dropped
                lagged = True
                log.warning("anchoring: %s; %d frame(s) dropped, logging them from the store", exc, exc.dropped)
            except Exception as exc:  # noqa: BLE001 - a failed backfill (store down): try again after a pause
                self.last_error = f"following {topic_kind}: {type(exc).__name__}: {exc}"
                log.warning("anchoring: %s", self.last_error)
                lagged = True  # frames published while not subscribed are in the store: log them from there
                await asyncio.sleep(1.0)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread; closes the open batch (its head is signed and queued) first."""
        if self._thread is None or self._loop is None or self._stop is None:
            return
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)
        self._thread = None
        try:
            if self._since_close or self._unlogged:
                self.close_batch()
        except Exception as exc:  # noqa: BLE001 - the queue and log are in the store; the next start resumes
            log.warning("anchoring: closing the last batch failed (%s); the next start anchors it", exc)

    def close(self) -> None:
        self.stop()
        self.backend.close()
