"""Nothing lost through an outage: retries with backoff, then a bounded disk spool replayed on recovery.

:class:`ResilientStore` wraps any store. A write that fails with :class:`StoreUnavailable` is retried
(tenacity, exponential backoff with jitter); when the retries are spent the batch goes to the
:class:`Spool` — one Parquet file per batch under ``settings.spool_dir``, written to a temporary name and
renamed, so a crash leaves either a whole file or none. Every later write first replays the spool in
order, and :meth:`ResilientStore.replay` does it on demand. Replay cannot double anything: store writes
are idempotent on their key, so a batch that did commit before its acknowledgement was lost is a no-op
the second time. A file is deleted only after its write committed.

Caveats
-------
* The spool is bounded (``max_bytes``). When full, :class:`SpoolFullError` is raised to the caller —
  back-pressure instead of silent loss; the batch is not written anywhere.
* Wrong-typed batches (:class:`BatchTypeError`) are refused at once, never retried or spooled.
* Reads are retried but not spooled; after the retries they raise :class:`StoreUnavailable`.
* While the spool is not empty, new writes go to the spool behind it, so per-series order of arrival
  is kept.

Example
-------
>>> from nexus_kernel.storage import open_store
>>> import tempfile
>>> store = ResilientStore(open_store("memory"), tempfile.mkdtemp(), attempts=2, max_wait=0.1)
>>> store.pending()
0

References: tenacity (tenacity.readthedocs.io); Apache Parquet.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from ._protocol import StoreError, StoreUnavailable

if TYPE_CHECKING:
    from ..config import Settings

__all__ = ["Spool", "SpoolFullError", "ResilientStore"]

log = logging.getLogger(__name__)
T = TypeVar("T")


class SpoolFullError(StoreError):
    """The spool reached its bound while the backend was down; the batch was not accepted."""


class Spool:
    """Batches waiting on disk, oldest first. ``kind`` is ``"points"`` or an auxiliary table name."""

    def __init__(self, directory: str | Path, max_bytes: int = 1 << 30) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self._counter = itertools.count()
        self._lock = threading.Lock()

    def files(self) -> list[Path]:
        return sorted(self.directory.glob("*.parquet"))

    def size(self) -> int:
        return sum(f.stat().st_size for f in self.files())

    def __len__(self) -> int:
        return len(self.files())

    def put(self, kind: str, frame: pd.DataFrame) -> Path:
        table = pa.Table.from_pandas(frame, preserve_index=False, nthreads=1)
        with self._lock:
            if self.size() + table.nbytes > self.max_bytes:
                raise SpoolFullError(f"spool {self.directory} is full ({self.max_bytes} bytes) and the store is down; "
                                     "batch not accepted")
            # the name sorts by time of arrival; the counter orders batches within one nanosecond
            name = f"{time.time_ns():020d}-{next(self._counter):08d}-{os.getpid()}.{kind}"
            tmp = self.directory / f".{name}.tmp"
            pq.write_table(table, tmp)
            final = self.directory / f"{name}.parquet"
            os.replace(tmp, final)
        return final

    @staticmethod
    def read(path: Path) -> tuple[str, pd.DataFrame]:
        kind = path.name[: -len(".parquet")].rsplit(".", 1)[1]
        return kind, pq.read_table(path).to_pandas()


class ResilientStore:
    """A store that retries, spools and replays (see the module docstring).

    Parameters
    ----------
    store
        The store to protect (any :class:`~nexus_kernel.storage.Store`).
    spool_dir, max_bytes
        Where the spool lives and its bound.
    attempts, max_wait
        Tries per operation, and the cap of the exponential backoff between them (seconds).
    """

    def __init__(self, store: Any, spool_dir: str | Path, *, max_bytes: int = 1 << 30, attempts: int = 5,
                 max_wait: float = 2.0) -> None:
        self.store = store
        self.spool = Spool(spool_dir, max_bytes)
        self.attempts, self.max_wait = attempts, max_wait
        self._lock = threading.RLock()
        self.spooled = 0  # batches that went to the spool, for monitoring
        self.replayed = 0

    @classmethod
    def from_settings(cls, store: Any, settings: Settings) -> ResilientStore:
        return cls(store, settings.spool_dir, max_bytes=settings.spool_max_bytes, attempts=settings.store_retries,
                   max_wait=settings.store_retry_wait)

    def __repr__(self) -> str:
        return f"ResilientStore({self.store!r}, pending={self.pending()})"

    def _retry(self, call: Callable[[], T]) -> T:
        retrying = Retrying(stop=stop_after_attempt(self.attempts), reraise=True,
                            wait=wait_exponential_jitter(multiplier=0.05, max=self.max_wait),
                            retry=retry_if_exception_type(StoreUnavailable))
        return retrying(call)

    def pending(self) -> int:
        """Batches waiting in the spool."""
        return len(self.spool)

    def replay(self) -> int:
        """Write the spooled batches in order; returns how many were replayed. Stops at the first outage."""
        done = 0
        with self._lock:
            for path in self.spool.files():
                kind, frame = self.spool.read(path)
                try:
                    self._retry(lambda: self._send(kind, frame))
                except StoreUnavailable:
                    break
                path.unlink()
                done += 1
        self.replayed += done
        return done

    def _send(self, kind: str, frame: pd.DataFrame) -> int:
        return self.store.write(frame) if kind == "points" else self.store.append(kind, frame)

    def _write(self, kind: str, frame: pd.DataFrame, check: Callable[[pd.DataFrame], Any]) -> int:
        check(frame)  # a wrong-typed batch fails here, before any retry or spooling
        with self._lock:
            if self.pending():
                self.replay()
                if self.pending():  # still down: queue behind what is waiting, keeping arrival order
                    self.spool.put(kind, frame)
                    self.spooled += 1
                    return 0
            try:
                return self._retry(lambda: self._send(kind, frame))
            except StoreUnavailable as exc:
                log.warning("store unavailable, batch spooled: %s", exc)
                self.spool.put(kind, frame)
                self.spooled += 1
                return 0

    def write(self, batch: pd.DataFrame) -> int:
        """Write, retrying; spool on a lasting outage. Returns values stored now (0 when spooled)."""
        from ._protocol import batch_to_long

        return self._write("points", batch, batch_to_long)

    def append(self, table: str, frame: pd.DataFrame) -> int:
        from ._protocol import _table
        from ._tables import conform

        return self._write(table, frame, lambda f: conform(_table(table), f))

    def __getattr__(self, name: str) -> Any:
        # reads and everything else: retried, not spooled
        attr = getattr(self.store, name)
        if not callable(attr) or name.startswith("_"):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._retry(lambda: attr(*args, **kwargs))

        call.__doc__ = attr.__doc__
        return call

    def close(self) -> None:
        try:
            if self.pending():
                self.replay()
        finally:
            self.store.close()

    def __enter__(self) -> ResilientStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
