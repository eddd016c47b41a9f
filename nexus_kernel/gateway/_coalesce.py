"""Group commit for ingest: concurrent requests to one stream share one validation and one store write.

Validating a batch and writing it to the store each cost a fixed ~10 ms whether the batch holds 1,000
records or 8,000; parsing is what grows with the rows. So while one write of a stream is in flight, the
requests that arrive for that stream wait in a queue, and the next round takes all of them at once
(up to ``max_rows``): one ``Validator`` call over their concatenation, one store transaction. There is
no timer — an idle gateway writes a lone request at once; a busy one batches by itself.

Each request is still answered only after the transaction holding its rows has committed, with its own
counts: ``accepted``/``rejected`` and the per-record errors from its own rows (body indexes), and
``written`` from :meth:`DuckDBStore.write_groups`, which counts new values per request inside one
transaction. A store without ``write_groups`` (PostgreSQL) gets one ``write`` per request in the same
round (validation is still shared).

Caveats
-------
* The validator is the same one a lone request would meet, and its answer does not depend on how
  records are cut into batches (lateness uses the running newest time; each record is judged on the
  keys it carries, see :meth:`StreamIngest.validate_raw`), so coalescing changes no verdict.
* A round's frame is the union of its requests' keys: it is bounded (``max_rows``, ``max_cells``,
  ``MAX_KEYS``), so a request naming many keys of its own goes in a round of its own.
* One failing write fails every request of its round (each gets the error); nothing of the round was
  written, so a client's retry is safe (writes are idempotent).
* Rounds of one stream are serialized; different streams write concurrently (the store serializes them).

Example
-------
>>> # inside the gateway:  result = await services.coalescer.submit("pumps", raw, index, errors)
>>> # result == {"accepted": 998, "rejected": 2, "written": 998, "errors": [...], "good": <frame>}
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..records import empty_dead_letters
from ._ingest import MAX_KEYS, StreamIngest, unreadable_dead_letters

__all__ = ["IngestCoalescer"]


@dataclass
class _Pending:
    raw: pd.DataFrame
    index: np.ndarray
    errors: list[dict[str, Any]]
    future: asyncio.Future = field(repr=False)


class IngestCoalescer:
    """Queues parsed ingest requests per stream and writes each round of them in one go.

    Parameters
    ----------
    ingest
        The gateway's validators (one per stream).
    store
        The store; ``write_groups`` is used when it has one.
    max_rows
        Most raw records one round takes (a round always takes at least one request).
    max_cells
        Most cells (records × distinct keys) of one round's frame.
    """

    def __init__(self, ingest: StreamIngest, store: Any, max_rows: int = 50_000,
                 max_cells: int = 4_000_000) -> None:
        self.ingest, self.store, self.max_rows, self.max_cells = ingest, store, max_rows, max_cells
        self._queues: dict[str, list[_Pending]] = {}
        self._busy: set[str] = set()
        self.rounds = 0  # counters for /metrics and the tests
        self.requests = 0

    async def submit(self, stream: str, raw: pd.DataFrame, index: np.ndarray,
                     errors: list[dict[str, Any]]) -> dict[str, Any]:
        """Validate and store one request's records; resolves once they are committed."""
        loop = asyncio.get_running_loop()
        pending = _Pending(raw, index, errors, loop.create_future())
        self._queues.setdefault(stream, []).append(pending)
        if stream not in self._busy:
            self._busy.add(stream)
            loop.create_task(self._drain(stream))
        return await pending.future

    async def _drain(self, stream: str) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._queues.get(stream):
                queue = self._queues[stream]
                take = self._take(queue)
                group, self._queues[stream] = queue[:take], queue[take:]
                try:
                    results = await loop.run_in_executor(None, self._round, stream, group)
                except Exception as exc:  # noqa: BLE001 - handed to every request of the round
                    for p in group:
                        if not p.future.done():
                            p.future.set_exception(exc)
                    continue
                self.rounds += 1
                self.requests += len(group)
                for p, result in zip(group, results):
                    if not p.future.done():
                        p.future.set_result(result)
        finally:
            self._busy.discard(stream)
            self._queues.pop(stream, None) if not self._queues.get(stream) else None

    def _take(self, queue: list[_Pending]) -> int:
        """How many queued requests the next round takes: at least one, then more while the round
        stays within ``max_rows`` records, :data:`~._ingest.MAX_KEYS` distinct keys and ``max_cells``
        (requests naming keys of their own must not widen one another's frame)."""
        take, rows, keys = 1, len(queue[0].raw), set(queue[0].raw.columns)
        while take < len(queue):
            raw = queue[take].raw
            wider, more = keys.union(raw.columns), rows + len(raw)
            if more > self.max_rows or len(wider) > MAX_KEYS or more * len(wider) > self.max_cells:
                break
            take, rows, keys = take + 1, more, wider
        return take

    def _round(self, stream: str, group: list[_Pending]) -> list[dict[str, Any]]:
        """Off the event loop: validate the round, write it in one transaction, split the answers."""
        parts = [self.ingest.screen(stream, p.raw, p.index, p.errors) for p in group]
        raws = [raw for raw, _, _ in parts]
        sizes = np.asarray([len(r) for r in raws], dtype=np.int64)
        nonempty = [r for r in raws if len(r)]
        combined = pd.concat(nonempty, ignore_index=True, sort=False) if len(nonempty) > 1 else \
            (nonempty[0].reset_index(drop=True) if nonempty else pd.DataFrame())
        good, dead, dead_mask = self.ingest.validate_raw(stream, combined)
        owner = np.repeat(np.arange(len(group)), sizes)
        good_owner = owner[~dead_mask] if len(owner) else owner
        answers, goods, dead_frames = [], [], [dead]
        offsets = np.concatenate([[0], np.cumsum(sizes)])
        for i, (raw, index, errors) in enumerate(parts):
            lo, hi = offsets[i], offsets[i + 1]
            mine_dead = np.flatnonzero(dead_mask[lo:hi]) if len(dead_mask) else np.empty(0, dtype=np.int64)
            if len(mine_dead):
                # the dead-letter frame lists dead rows in input order: pick this request's slice
                before = int(dead_mask[:lo].sum())
                for k, j in enumerate(mine_dead):
                    errors.append({"index": int(index[j]), "error": str(dead["reason"].iat[before + k]),
                                   "detail": str(dead["detail"].iat[before + k])})
            errors.sort(key=lambda e: e["index"])
            mine = good.iloc[np.flatnonzero(good_owner == i)] if len(good) else good
            goods.append(mine)
            if group[i].errors:  # records refused while parsing: dead letters too
                dead_frames.append(unreadable_dead_letters(stream, group[i].errors))
            answers.append({"accepted": len(mine), "rejected": len(errors), "errors": errors})
        written = self._write(goods)
        dead_all = pd.concat([d for d in dead_frames if len(d)], ignore_index=True) \
            if any(len(d) for d in dead_frames) else empty_dead_letters()
        if len(dead_all):
            self.store.append("dead_letters", dead_all)
        for answer, count in zip(answers, written):
            answer["written"] = int(count)
        if answers:
            answers[0]["good"] = good  # the whole round's points, published once by the first request
        return answers

    def _write(self, goods: list[pd.DataFrame]) -> list[int]:
        if not any(len(g) for g in goods):
            return [0] * len(goods)
        write_groups = getattr(self.store, "write_groups", None)
        if write_groups is not None and len(goods) > 1:
            return list(write_groups(goods))
        return [self.store.write(g) if len(g) else 0 for g in goods]
