"""The store of a home, wherever its owner is: :func:`home_store` and the :class:`RemoteStore` it may return.

While ``nexus up`` owns a home (see :mod:`nexus_kernel.runtime._discovery`), every other process of that
home is its client: :func:`home_store` answers a :class:`RemoteStore`, the read side of the ``Store``
protocol over the owner's gateway and the SDK (``query``, ``latest``, ``streams``, ``read``, and
``append`` of job runs, model versions, forecasts and anomalies — what a scheduled ``retrain`` notebook
writes). Inside the owner it answers the runtime's own store (which the caller's
``close`` leaves open); with no owner, the store the settings name, opened here as before.

Example
-------
>>> store = home_store(load_settings(home="/tmp/nexus-home"))     # doctest: +SKIP
>>> store.query("sensors", last="1h", every="1min")                  # doctest: +SKIP
>>> store.close()                                                    # doctest: +SKIP

Caveats
-------
* A remote store reads what the gateway serves: the tables ``anomalies``, ``forecasts``,
  ``dead_letters``, ``models`` and ``job_runs``; ``alerts`` and ``anchors`` have no endpoint yet.
  Writing points, the other tables, retention, backup and restore are the owner's: they raise
  :class:`RemoteStoreError` saying so.
* A model version is accepted only when its artifact is a file inside the home's model directory
  (``home/models``, where ``save_model`` writes by default): a record pointing elsewhere is a
  :class:`ValueError` naming that rule, and its file stays where it was written.
* One ``read`` fetches at most :data:`MAX_ROWS` rows per stream; asking for more (no ``limit``, or a
  filter the gateway cannot apply) raises :class:`RemoteStoreError` rather than answering a part.
* The settings must name the store the owner serves; settings naming another store open that one here.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import httpx
import pandas as pd

from ..config import Settings, load_settings
from ..runtime._discovery import TOKEN_TTL, LiveRuntime, live_runtime, store_identity
from ..storage import TABLES, StoreError, StoreLockedError, StoreUnavailable, open_store, parse_span
from ..storage._tables import conform, empty_frame
from ._core import NexusError

__all__ = ["home_store", "RemoteStore", "RemoteStoreError", "BorrowedStore", "MAX_ROWS", "APPEND_CHUNK"]

#: the most rows one remote ``read`` fetches per stream (the gateway's own bound on one answer)
MAX_ROWS = 100_000
# what the gateway filters on, per table (the rest would be filtered here, after its limit: refused)
_SERVER_FILTERS: dict[str, tuple[str, ...]] = {"anomalies": ("series",), "forecasts": ("series",),
                                               "dead_letters": (), "models": (), "job_runs": ("job",)}
_MAX_LIMIT = {"models": 10_000, "job_runs": 10_000}
#: the most result rows one append call sends (the gateway's bound on one request)
APPEND_CHUNK = 10_000
# what a client may append through the owner (the rest is written by the owner's pipelines)
_ANNOTATIONS = ("item_id",)  # what the gateway adds to a table's rows (anchoring ids): not the table's
_APPENDS = ("job_runs", "models", "forecasts", "anomalies")


class RemoteStoreError(StoreError):
    """What a store reached through a live ``nexus up`` cannot do (writes, retention, backups...)."""


def home_store(settings: Settings | None = None, **options: Any) -> Any:
    """The store of ``settings.home`` (default: the configured home), reached the way its owner allows.

    Parameters
    ----------
    settings
        The home and the store to reach.
    options
        For a :class:`RemoteStore` (``timeout``, ``retries``).

    Returns the runtime's store when this process owns the home (its ``close`` does nothing), a
    :class:`RemoteStore` when another process does and serves its gateway, else ``open_store(settings)``.
    Raises :class:`~nexus_kernel.storage.StoreLockedError` naming the owner when it serves no gateway.
    """
    settings = settings or load_settings()
    live = live_runtime(settings)
    if live is not None and live.store in (None, store_identity(settings)):
        if live.in_process:
            return BorrowedStore(live.runtime.store)
        if live.gateway is not None:
            return RemoteStore(live, **options)
    try:
        return open_store(settings)
    except StoreLockedError as exc:
        from .._home_lock import holder_pid

        pid = holder_pid(settings.home)
        if not pid:
            raise
        raise StoreLockedError(f"{exc} — nexus up (pid {pid}) owns {settings.home} and serves no gateway to "
                               "reach it through (started with --no-gateway?): restart it with its gateway, "
                               "or stop it") from None


class BorrowedStore:
    """Another owner's store, lent: every call goes to it, ``close`` leaves it open."""

    def __init__(self, store: Any) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def close(self) -> None:
        """Nothing: the store belongs to the runtime that lent it."""

    def __enter__(self) -> BorrowedStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"BorrowedStore({self._store!r})"


class RemoteStore:
    """A home's store through the gateway of the ``nexus up`` that owns it: reads, and the appends of results.

    Parameters
    ----------
    live
        The owner, as :func:`~nexus_kernel.runtime._discovery.live_runtime` found it.
    timeout, retries
        Of each gateway call (the SDK retries calls that never reached it).
    """

    def __init__(self, live: LiveRuntime, timeout: float = 30.0, retries: int = 2) -> None:
        if live.gateway is None:
            raise ValueError("a remote store needs the owner's gateway URL")
        self.live = live
        self.url = live.gateway
        self._options = {"timeout": timeout, "retries": retries}
        self._client: Any = None
        self._signed = 0.0

    # -- the SDK client, its token signed again before it expires -----------------------------------

    def _sdk(self) -> Any:
        if self._client is None or time.monotonic() - self._signed > TOKEN_TTL / 2:
            if self._client is not None:
                self._client.close()
            self._client = self.live.client(**self._options)
            self._signed = time.monotonic()
        return self._client

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return getattr(self._sdk(), method)(*args, **kwargs)
        except NexusError as exc:
            if exc.status == 422:
                raise ValueError(exc.detail) from None
            raise RemoteStoreError(f"nexus up (pid {self.live.pid}) at {self.url} refused: {exc}") from None
        except httpx.HTTPError as exc:
            raise StoreUnavailable(f"nexus up (pid {self.live.pid}) owns this home but its gateway at {self.url} "
                                   f"does not answer: {type(exc).__name__}: {exc}") from None

    # -- points ------------------------------------------------------------------------------------

    def query(self, stream: str, series: str | Sequence[str] | None = None, start: Any = None, end: Any = None,
              last: Any = None, every: Any = None, agg: str | Sequence[str] = ("mean",), field: str | None = None,
              limit: int | None = None) -> pd.DataFrame:
        """As :meth:`nexus_kernel.storage.Store.query`; ``limit`` keeps the newest rows only."""
        if not isinstance(stream, str):
            raise TypeError("stream must be a string")
        if last is not None and start is not None:
            raise ValueError("give either start or last, not both")
        return self._call("query", stream, series=series, start=start, end=end, last=_span(last),
                          every=_span(every), agg=agg, field=field, limit=limit)

    def latest(self, stream: str, series: str | Sequence[str] | None = None) -> pd.DataFrame:
        """Per series, the newest record."""
        return self._call("latest", stream, series=series)

    def streams(self) -> list[str]:
        """Names of the home's streams (those its owner runs and those with stored points)."""
        frame = self._call("streams")
        return sorted(str(n) for n in frame["name"]) if len(frame) else []

    # -- auxiliary tables --------------------------------------------------------------------------

    def read(self, table: str, stream: str | None = None, start: Any = None, end: Any = None,
             limit: int | None = None, **equals: Any) -> pd.DataFrame:
        """Rows of an auxiliary table as :meth:`nexus_kernel.storage.Store.read` returns them.

        Raises :class:`RemoteStoreError` for a table the gateway does not serve, or when the answer would
        need more than :data:`MAX_ROWS` rows of one stream.
        """
        spec = TABLES.get(table)
        if spec is None:
            raise ValueError(f"unknown table {table!r} (known: {', '.join(TABLES)})")
        if table not in _SERVER_FILTERS:
            raise RemoteStoreError(f"the gateway of nexus up (pid {self.live.pid}) serves no '{table}' table "
                                   f"(it serves {', '.join(_SERVER_FILTERS)})")
        unknown = [c for c in equals if c not in spec.names]
        if unknown:
            raise ValueError(f"{table} has no column(s) {unknown}")
        if stream is not None and spec.stream is None:
            raise ValueError(f"{table} has no stream column")
        if limit is not None and (not isinstance(limit, int) or limit < 0):
            raise ValueError("limit must be a non-negative integer")
        served = {k: v for k, v in equals.items() if k in _SERVER_FILTERS[table]}
        local = {k: v for k, v in equals.items() if k not in served}
        times_here = table in ("models", "job_runs") and (start is not None or end is not None)
        cap = min(MAX_ROWS, _MAX_LIMIT.get(table, MAX_ROWS))
        whole = limit is None or limit > cap or bool(local) or times_here  # everything must come, to filter or count here
        ask = cap if whole else min(limit or cap, cap)
        names: list[str | None]
        if spec.stream is not None and stream is None and table != "models":
            names = list(self.streams())
        else:
            names = [stream]
        frames = []
        for name in names:
            part = self._fetch(table, name, start, end, ask, served)
            if whole and len(part) >= cap:
                raise RemoteStoreError(f"{table}{f' of {name!r}' if name else ''} holds {cap:,} rows or more: "
                                       "too many to fetch through the gateway in one read — narrow it with "
                                       "start/end or a limit")
            frames.append(part)
        rows = pd.concat([f for f in frames if len(f)], ignore_index=True) if any(len(f) for f in frames) else None
        if rows is None:
            return empty_frame(spec)
        rows = conform(spec, rows.drop(columns=list(_ANNOTATIONS), errors="ignore"))
        for column, value in local.items():
            rows = rows[rows[column] == value]
        if times_here:
            when = rows[spec.time]
            if start is not None:
                rows = rows[when >= _utc(start)]
            if end is not None:
                rows = rows[when < _utc(end)]
        rows = rows.sort_values(spec.time, kind="mergesort")
        if limit is not None:
            rows = rows.tail(limit)
        return rows.reset_index(drop=True)

    def _fetch(self, table: str, stream: str | None, start: Any, end: Any, limit: int,
               served: dict[str, Any]) -> pd.DataFrame:
        if table == "job_runs":
            return self._call("job_runs", job=served.get("job"), limit=limit)
        if table == "models":
            return self._call("models", stream=stream, limit=limit)
        method = {"anomalies": "anomalies", "forecasts": "forecasts", "dead_letters": "dead_letters"}[table]
        options = {"series": served["series"]} if "series" in served else {}
        return self._call(method, stream, start=start, end=end, limit=limit, **options)

    def append(self, table: str, frame: pd.DataFrame) -> int:
        """Record rows through the owner, idempotent on the table's key; returns the rows newly stored.

        ``job_runs`` (one call per run), ``models`` (one per version; its artifact must be a file of the
        home's model directory, else :class:`ValueError` naming the rule), ``forecasts`` and ``anomalies``
        (per stream, :data:`APPEND_CHUNK` rows a call). Other tables are the pipelines': refused.
        """
        if table not in _APPENDS:
            raise RemoteStoreError(f"nexus up (pid {self.live.pid}) owns this home's store: its '{table}' rows "
                                   f"are written by its pipelines, not by a client (a client may append "
                                   f"{', '.join(_APPENDS)})")
        rows = conform(TABLES[table], frame)
        if table in ("job_runs", "models"):
            method = "record_job_run" if table == "job_runs" else "record_model"
            return sum(int(self._call(method, row)["recorded"]) for row in rows.to_dict("records"))
        method = "append_forecasts" if table == "forecasts" else "append_anomalies"
        recorded = 0
        for stream, part in rows.groupby("stream", sort=False):
            for at in range(0, len(part), APPEND_CHUNK):
                recorded += int(self._call(method, str(stream), part.iloc[at:at + APPEND_CHUNK])["recorded"])
        return recorded

    # -- what only the owner does ------------------------------------------------------------------

    def _owners(self, what: str) -> RemoteStoreError:
        return RemoteStoreError(f"{what} is done by the store's owner, nexus up (pid {self.live.pid}): stop it to "
                                f"do this here, or send records through its gateway ({self.url}, "
                                "nk.connect(...).ingest)")

    def write(self, batch: pd.DataFrame) -> int:
        raise self._owners("writing points")

    def set_retention(self, stream: str, keep: Any) -> None:
        raise self._owners("setting retention")

    def apply_retention(self, now: Any = None) -> int:
        raise self._owners("applying retention")

    def dump(self, name: str, chunk_rows: int = 1_000_000) -> Any:
        raise self._owners("a backup")

    def load(self, name: str, frame: pd.DataFrame) -> int:
        raise self._owners("a restore")

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> RemoteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RemoteStore({self.url!r}, owner pid {self.live.pid})"


def _span(value: Any) -> str | None:
    """Any span the local store reads ("7d", a timedelta) as nanoseconds, which the gateway reads too."""
    return None if value is None else f"{parse_span(value).value}ns"


def _utc(value: Any) -> pd.Timestamp:
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
