"""The cache: latest values, a recent window per series, and query results invalidated by writes.

The cache sits beside the store (see ``DESIGN.md``): dashboards ask it for the newest value of every
series and for the last few hundred points of one series without touching the store, and expensive
queries are memoized until new data arrives for their stream.

Three parts, one object:

- **latest** — one row per ``(stream, series)``, the newest by ``(ts, seq)``. A late or replayed batch
  never replaces a newer value.
- **recent** — the last ``recent_size`` rows per series, ordered by ``(ts, seq)``; rows older than the
  window are dropped, an identical row delivered twice (at-least-once sources) is kept once.
- **query results** — :meth:`Cache.get_or_compute` memoizes ``compute()`` under ``key_parts`` (the
  first part is the stream it concerns) for ``ttl`` seconds. :meth:`Cache.invalidate` — and every
  :meth:`Cache.put_latest` for that stream — makes earlier results unreachable. Invalidation bumps a
  per-stream *generation* that is part of every key, so a result computed while a write happened is
  stored under the old generation and never served: no race between compute and invalidate.

Backends register in :data:`caches`; :func:`open_cache` picks Redis when ``settings.redis_url`` is set,
the in-process :class:`MemoryCache` otherwise.

Caveats: hit/miss counts are per cache object (per process), not shared through Redis. Concurrent misses
for the same key each compute (no single-flight). Returned frames are copies; mutate them freely.

Example
-------
>>> import pandas as pd
>>> from nexus_kernel.storage._cache import MemoryCache
>>> cache = MemoryCache(recent_size=3)
>>> batch = pd.DataFrame({"stream": "pumps", "series": ["p1", "p1", "p2"],
...                       "ts": pd.to_datetime([1, 2, 1], unit="s", utc=True),
...                       "seq": [1, 2, 3], "value": [1.0, 2.0, 5.0]})
>>> cache.put_latest(batch)
3
>>> cache.latest("pumps")["value"].tolist()
[2.0, 5.0]
>>> cache.get_or_compute(("pumps", "mean"), lambda: 2.5)
2.5
>>> cache.stats()["misses"]
1

References
----------
Generation-based invalidation: the "namespace versioning" pattern of memcached (memcached wiki,
"Deleting by namespace").
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd
import pyarrow as pa

from .._registry import Registry
from ..records import ATTRS, KEY_COLUMNS, SEQ, SERIES, STREAM, TIME, field_columns

if TYPE_CHECKING:
    from ..config import Settings

__all__ = ["Cache", "MemoryCache", "caches", "open_cache", "CacheStats"]

CacheStats = dict[str, float]
_SORT = [SERIES, TIME, SEQ]


@runtime_checkable
class Cache(Protocol):
    """What every cache backend offers."""

    recent_size: int

    def put_latest(self, batch: pd.DataFrame) -> int:
        """Take a batch (the batch contract): update latest values and recent windows, invalidate the
        query results of its streams. Returns the number of rows taken."""

    def latest(self, stream: str, series: str | Sequence[str] | None = None) -> pd.DataFrame:
        """The newest row of each series of ``stream`` (or of the given series), sorted by series."""

    def recent(self, stream: str, series: str, n: int | None = None) -> pd.DataFrame:
        """The last ``n`` (default and at most ``recent_size``) rows of one series, oldest first."""

    def get_or_compute(
        self, key_parts: Sequence[Hashable], compute: Callable[[], Any], ttl: float | None = None
    ) -> Any:
        """The cached result for ``key_parts`` (``key_parts[0]`` is the stream), else ``compute()``,
        stored for ``ttl`` seconds. Results are DataFrames or JSON-able values."""

    def invalidate(self, stream: str) -> None:
        """Forget every query result of ``stream``."""

    def stats(self) -> CacheStats:
        """``hits``, ``misses``, ``hit_ratio``, ``invalidations``, ``writes`` of this cache object."""

    def clear(self) -> None:
        """Drop everything this cache holds."""

    def close(self) -> None: ...


class CacheBackend(Protocol):
    """What a member of :data:`caches` is: a class (or any object) that opens a cache from settings."""

    def from_settings(self, settings: Settings) -> Cache: ...


caches: Registry[CacheBackend] = Registry("caches")


def open_cache(settings: Settings | None = None, backend: str | None = None) -> Cache:
    """The cache the settings ask for: ``redis`` when ``redis_url`` is set, else ``memory``."""
    if settings is None:
        from ..config import load_settings

        settings = load_settings()
    if backend is None:
        backend = "redis" if settings.redis_url is not None else "memory"
    if backend == "redis":
        from . import _cache_redis  # noqa: F401  (registers itself; needs the `server` extra)
    return caches.get(backend).from_settings(settings)


# --- helpers shared by the backends ---------------------------------------------------------------


def check_batch(batch: pd.DataFrame) -> pd.DataFrame:
    """Refuse, whole and with a clear message, a batch that breaks the contract; else it, normalized."""
    return normalize(checked(batch))


def checked(batch: pd.DataFrame) -> pd.DataFrame:
    """The batch as it is, once it is known to keep the contract (:func:`check_batch` without normalizing)."""
    if not isinstance(batch, pd.DataFrame):
        raise TypeError(f"a batch is a pandas DataFrame, got {type(batch).__name__}")
    missing = [c for c in KEY_COLUMNS if c not in batch.columns]
    if missing:
        raise ValueError(f"batch lacks the column(s) {missing}; the contract is {list(KEY_COLUMNS)} + fields")
    if not isinstance(batch[TIME].dtype, pd.DatetimeTZDtype):
        raise ValueError(f"batch column 'ts' must be timezone-aware UTC datetimes, got {batch[TIME].dtype}")
    if not pd.api.types.is_integer_dtype(batch[SEQ].dtype):
        raise ValueError(f"batch column 'seq' must be int64, got {batch[SEQ].dtype}")
    fields = field_columns(batch)
    bad = [c for c in fields if not pd.api.types.is_numeric_dtype(batch[c].dtype)]
    if bad:
        raise ValueError(f"batch field column(s) {bad} are not numeric")
    if batch[STREAM].isna().any() or batch[SERIES].isna().any():
        raise ValueError("batch has rows without a stream or series")
    return batch


def normalize(frame: pd.DataFrame) -> pd.DataFrame:
    """Contract dtypes and column order: keys, fields in order of appearance, ``attrs`` last."""
    fields = field_columns(frame)
    out = pd.DataFrame(
        {
            STREAM: _text(frame[STREAM]),
            SERIES: _text(frame[SERIES]),
            TIME: frame[TIME].astype("datetime64[ns, UTC]"),
            SEQ: frame[SEQ].astype("int64"),
        },
        index=frame.index,
    )
    for name in fields:
        out[name] = frame[name].astype("float64")
    if ATTRS in frame.columns:
        out[ATTRS] = frame[ATTRS].astype("string")
    return out.reset_index(drop=True)


def _text(column: pd.Series) -> pd.Series:
    """A key column as the ``string`` dtype; a categorical one (what the validator hands on) through its
    categories, so each distinct name is converted once, not once per row."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        codes = column.cat.codes.to_numpy()
        if len(codes) and codes.min() >= 0:
            names = pd.array(column.cat.categories.astype(str).to_numpy(), dtype="string")
            return pd.Series(names.take(codes), index=column.index, name=column.name)
    return column.astype("string")


def _ranks(column: pd.Series) -> np.ndarray:
    """Integer codes of a text column that sort as its values do as text (what ``sort_values`` orders by
    once the column is text); a categorical one ranks its categories, not its rows."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        names = column.cat.categories.astype(str).to_numpy(dtype=object)
        rank = np.empty(len(names) + 1, dtype=np.int64)
        rank[np.argsort(names, kind="stable")] = np.arange(len(names))
        rank[-1] = len(names)  # a missing value (code -1) sorts last
        return rank[column.cat.codes.to_numpy()]
    codes = pd.factorize(column, sort=True)[0].astype(np.int64)
    missing = codes < 0
    if missing.any():  # sort_values puts missing values last
        codes[missing] = codes.max() + 1
    return codes


def _sorted_order(frame: pd.DataFrame, keys: Sequence[str]) -> tuple[np.ndarray, list[np.ndarray]]:
    """``frame.sort_values(keys, kind="stable")``'s row order, from integer codes (text keys ranked once):
    the same order, without comparing strings row by row. Returns it and each key's codes in that order."""
    codes = [frame[k].array.asi8 if k == TIME else (frame[k].to_numpy(np.int64) if k == SEQ else _ranks(frame[k]))
             for k in keys]
    order = np.lexsort(codes[::-1])  # lexsort is stable; its last key is the primary one
    return order, [c[order] for c in codes]


def _group_ends(codes: Sequence[np.ndarray]) -> np.ndarray:
    """Where each run of equal keys ends, in rows sorted by those keys (True on a run's last row)."""
    n = len(codes[0])
    ends = np.zeros(n, dtype=bool)
    if n:
        ends[-1] = True
        for c in codes:
            ends[:-1] |= c[1:] != c[:-1]
    return ends


def _per_stream(batch: pd.DataFrame) -> Iterator[tuple[str, pd.DataFrame]]:
    """The batch's rows per stream: a pipeline's batch is one stream's, so that case is not grouped."""
    streams = batch[STREAM]
    first = streams.iloc[0]
    if bool((streams == first).all()):
        yield str(first), batch
        return
    for key, part in batch.groupby(STREAM, sort=False, observed=True):
        yield str(key), part  # the stream column holds text; a group key is typed as any scalar


def newest_per_series(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (stream, series): the last by (ts, seq); vectorized.

    The same rows, order and index as ``frame.sort_values([stream, series, ts, seq], kind="stable")
    .drop_duplicates([stream, series], keep="last")``, with the text keys ranked once instead of sorted.
    """
    if len(frame) < 2:
        return frame.copy()
    order, codes = _sorted_order(frame, [STREAM, *_SORT])
    return frame.iloc[order[_group_ends(codes[:2])]]


def result_key(key_parts: Sequence[Hashable]) -> tuple[str, str]:
    """(stream, digest) of a query-result key; parts are JSON-encoded, so 1 and "1" differ."""
    if isinstance(key_parts, (str, bytes)) or not key_parts:
        raise ValueError("key_parts is a non-empty sequence whose first item is the stream")
    text = json.dumps([_plain(p) for p in key_parts], sort_keys=True, default=str)
    return str(key_parts[0]), hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def _plain(part: Any) -> Any:
    if isinstance(part, (list, tuple)):
        return [_plain(p) for p in part]
    if isinstance(part, (pd.Timestamp, pd.Timedelta)):
        return f"{type(part).__name__}:{part.isoformat()}"
    return part


def encode_value(value: Any) -> bytes:
    """DataFrames as Arrow IPC, anything else as JSON; never pickle."""
    if isinstance(value, pd.DataFrame):
        table = pa.Table.from_pandas(value, preserve_index=True)
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        return b"A" + sink.getvalue().to_pybytes()
    try:
        return b"J" + json.dumps(value, allow_nan=True).encode()
    except TypeError as exc:
        raise TypeError(f"a cached result must be a DataFrame or JSON-able, not {type(value).__name__}") from exc


def decode_value(blob: bytes) -> Any:
    if blob[:1] == b"A":
        return pa.ipc.open_stream(blob[1:]).read_all().to_pandas()
    return json.loads(blob[1:])


class _Stats:
    def __init__(self) -> None:
        self.hits = self.misses = self.invalidations = self.writes = 0

    def snapshot(self) -> CacheStats:
        looked = self.hits + self.misses
        return {
            "hits": self.hits,
            "misses": self.misses,
            "hit_ratio": self.hits / looked if looked else 0.0,
            "invalidations": self.invalidations,
            "writes": self.writes,
        }


# --- the in-process cache -------------------------------------------------------------------------


class _Window:
    """Recent rows of one stream, all series together.

    Batches are appended as chunks and compacted (sort, dedupe, keep the last ``size`` rows per series)
    only when the pending rows outgrow what was kept, so each row is sorted O(1) times on average.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.kept: pd.DataFrame | None = None
        self.pending: list[pd.DataFrame] = []
        self.pending_rows = 0

    def append(self, part: pd.DataFrame) -> None:
        self.pending.append(part)
        self.pending_rows += len(part)
        kept_rows = 0 if self.kept is None else len(self.kept)
        if self.pending_rows > max(kept_rows, self.size):
            self.compact()

    def compact(self) -> pd.DataFrame | None:
        if self.pending:
            frames = ([self.kept] if self.kept is not None else []) + self.pending
            merged = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
            self.kept = _recent(merged, self.size)
            self.pending, self.pending_rows = [], 0
        return self.kept


def _recent(merged: pd.DataFrame, size: int) -> pd.DataFrame:
    """The last ``size`` rows per series by (ts, seq), exact duplicate rows dropped (the last kept).

    The same frame as ``merged.sort_values([series, ts, seq], kind="stable").drop_duplicates(keep="last")
    .groupby(series, sort=False).tail(size).reset_index(drop=True)``, cheaper: the sort runs on integer
    codes, and only rows sharing their (series, ts, seq) with a neighbour are compared whole (an exact
    duplicate shares its key, and equal keys are neighbours once sorted).
    """
    if not len(merged):
        return merged.reset_index(drop=True)
    order, (series, ts, seq) = _sorted_order(merged, _SORT)
    same = np.zeros(len(order), dtype=bool)
    same[1:] = (series[1:] == series[:-1]) & (ts[1:] == ts[:-1]) & (seq[1:] == seq[:-1])
    keep = np.ones(len(order), dtype=bool)
    if same.any():
        shared = same.copy()
        shared[:-1] |= same[1:]  # a run's first row too
        candidates = np.flatnonzero(shared)
        keep[candidates[merged.iloc[order[candidates]].duplicated(keep="last").to_numpy()]] = False
    order, series = order[keep], series[keep]
    ends = np.flatnonzero(_group_ends([series]))  # last row of each series' run
    run_end = ends[np.searchsorted(ends, np.arange(len(order)))]
    return merged.iloc[order[run_end - np.arange(len(order)) < size]].reset_index(drop=True)


@caches.register("memory")
class MemoryCache:
    """The in-process cache: plain pandas frames under a lock.

    Parameters
    ----------
    recent_size
        Rows per series kept in the recent window.
    ttl
        Default lifetime, in seconds, of a query result.
    max_entries
        Query results held at most; the least recently used goes first.
    state_ttl
        Seconds after its last write that a stream's latest/recent state is forgotten; ``None`` keeps it.

    Thread-safe; ``compute`` runs outside the lock.
    """

    def __init__(
        self,
        recent_size: int = 1000,
        ttl: float = 60.0,
        max_entries: int = 1024,
        state_ttl: float | None = None,
    ) -> None:
        if recent_size <= 0 or ttl <= 0 or max_entries <= 0:
            raise ValueError("recent_size, ttl and max_entries must be positive")
        self.recent_size, self.ttl, self.max_entries, self.state_ttl = recent_size, ttl, max_entries, state_ttl
        self._lock = threading.RLock()
        self._latest: dict[str, pd.DataFrame] = {}
        self._windows: dict[str, _Window] = {}
        self._written: dict[str, float] = {}
        self._gen: dict[str, int] = {}
        self._results: OrderedDict[tuple[str, int, str], tuple[float, Any]] = OrderedDict()
        self._stats = _Stats()

    @classmethod
    def from_settings(cls, settings: Settings) -> MemoryCache:
        return cls(settings.cache_recent, settings.cache_ttl, settings.cache_entries, settings.cache_state_ttl)

    def put_latest(self, batch: pd.DataFrame) -> int:
        batch = checked(batch)
        if batch.empty:
            return 0
        # the newest rows are found before normalizing: the validator's categorical keys rank cheaply
        newest = normalize(newest_per_series(batch))
        now = time.monotonic()
        with self._lock:
            for stream, part in _per_stream(batch):
                part = normalize(part)
                self._expire(stream, now)
                fresh = newest[newest[STREAM] == stream]
                old = self._latest.get(stream)
                both = fresh if old is None else pd.concat([old, fresh], ignore_index=True)
                self._latest[stream] = newest_per_series(both).reset_index(drop=True)
                self._windows.setdefault(stream, _Window(self.recent_size)).append(part)
                self._written[stream] = now
                self._bump(stream)
            self._stats.writes += len(batch)
        return len(batch)

    def latest(self, stream: str, series: str | Sequence[str] | None = None) -> pd.DataFrame:
        with self._lock:
            self._expire(stream, time.monotonic())
            frame = self._latest.get(stream)
        if frame is None:
            return _empty()
        if series is not None:
            wanted = [series] if isinstance(series, str) else list(series)
            frame = frame[frame[SERIES].isin(wanted)]
        return normalize(frame.sort_values(SERIES, kind="stable"))

    def recent(self, stream: str, series: str, n: int | None = None) -> pd.DataFrame:
        n = self.recent_size if n is None else min(int(n), self.recent_size)
        with self._lock:
            self._expire(stream, time.monotonic())
            window = self._windows.get(stream)
            kept = window.compact() if window is not None else None
        if kept is None or n <= 0:
            return _empty()
        rows = kept[kept[SERIES] == series]
        return normalize(rows.tail(n))

    def get_or_compute(
        self, key_parts: Sequence[Hashable], compute: Callable[[], Any], ttl: float | None = None
    ) -> Any:
        stream, digest = result_key(key_parts)
        now = time.monotonic()
        with self._lock:
            key = (stream, self._gen.get(stream, 0), digest)
            found = self._results.get(key)
            if found is not None and found[0] > now:
                self._results.move_to_end(key)
                self._stats.hits += 1
                return _copy(found[1])
            self._stats.misses += 1
        value = compute()
        encode_value(value)  # the same values are cacheable in every backend
        with self._lock:
            self._results[key] = (time.monotonic() + (ttl or self.ttl), _copy(value))
            self._results.move_to_end(key)
            while len(self._results) > self.max_entries:
                self._results.popitem(last=False)
        return value

    def invalidate(self, stream: str) -> None:
        with self._lock:
            self._bump(stream)

    def stats(self) -> CacheStats:
        with self._lock:
            return self._stats.snapshot()

    def clear(self) -> None:
        with self._lock:
            self._latest.clear()
            self._windows.clear()
            self._written.clear()
            self._results.clear()
            for stream in list(self._gen):
                self._bump(stream)

    def close(self) -> None:
        self.clear()

    def _bump(self, stream: str) -> None:
        # Old generations become unreachable; drop them now so memory follows the live keys.
        self._gen[stream] = self._gen.get(stream, 0) + 1
        for key in [k for k in self._results if k[0] == stream]:
            del self._results[key]
        self._stats.invalidations += 1

    def _expire(self, stream: str, now: float) -> None:
        if self.state_ttl is not None and now - self._written.get(stream, now) > self.state_ttl:
            self._latest.pop(stream, None)
            self._windows.pop(stream, None)
            self._written.pop(stream, None)


def _copy(value: Any) -> Any:
    return value.copy() if isinstance(value, pd.DataFrame) else value


def _empty() -> pd.DataFrame:
    return normalize(
        pd.DataFrame(
            {
                STREAM: pd.Series([], dtype="string"),
                SERIES: pd.Series([], dtype="string"),
                TIME: pd.Series([], dtype="datetime64[ns, UTC]"),
                SEQ: pd.Series([], dtype=np.int64),
            }
        )
    )
