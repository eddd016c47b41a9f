"""The ``Store`` protocol, the registry of store backends, and the logic every backend shares.

Choosing a backend: :data:`STORES` maps a URL scheme to the backend that serves it. Built-ins register
themselves when their module is imported — ``duckdb`` and ``memory`` (:class:`DuckDBStore`),
``postgresql`` and ``postgres`` (:class:`PostgresStore`) — and other packages add schemes through the
``nexus_kernel.stores`` entry-point group (entry point name = scheme). :func:`open_store` parses the
scheme of ``settings.store`` (or of the URL it is given), asks the registry, and calls the member's
``from_url`` (see :class:`StoreBackend`); ``Settings`` asks the same registry when it validates ``store``,
so an unknown scheme fails at start with a message naming the known ones.

A store keeps *points* (records of the batch contract, see :mod:`nexus_kernel.records`) and the
auxiliary tables of :mod:`._tables`. Backends subclass :class:`BaseStore` and implement a handful of
``_``-methods in their own SQL dialect; checking input, turning batches into long rows and back, and
parsing times/spans happen here once, so both backends answer the same way.

Semantics shared by every backend
---------------------------------
* ``write`` is idempotent on (stream, series, ts, seq) per field: the first write of a key wins,
  writing it again changes nothing. It returns the number of field values newly stored (rows × fields
  for a new batch of complete rows, 0 for a repeat). NaN field cells mean "this record has no such
  field" and are not stored. A batch whose types do not fit is refused whole
  (:class:`BatchTypeError`) before anything is written; a write is one transaction.
* ``query`` without ``every`` returns the records as a batch (wide: ``stream, series, ts, seq,
  <fields...>[, attrs]``), ordered by series, ts, seq. With ``every`` it returns buckets aligned to
  2000-01-03T00:00Z (a Monday, the TimescaleDB/DuckDB default origin): ``stream, series, ts, seq`` and,
  with one aggregate, one column per field named after the field (the frame is a batch again);
  with several aggregates ``<field>_<agg>``. Every aggregate is float64 (``count`` too), ``seq`` is 0.
  ``start`` is inclusive, ``end`` exclusive; ``last="6h"`` means from now (wall clock) minus 6 h.
* ``latest`` returns, per series, the record with the greatest (ts, seq), all its fields.
* ``read`` orders by the table's time column; ``limit`` keeps the newest ``limit`` rows.

Example
-------
>>> import pandas as pd
>>> from nexus_kernel.storage import open_store
>>> store = open_store("memory")
>>> batch = pd.DataFrame({"stream": ["pumps"] * 2, "series": ["a", "a"],
...     "ts": pd.to_datetime(["2024-01-01T00:00:00Z", "2024-01-01T00:00:30Z"]), "seq": [1, 2],
...     "value": [1.0, 3.0]})
>>> store.write(batch), store.write(batch)
(2, 0)
>>> store.query("pumps", every="1min")["value"].tolist()
[2.0]
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, cast, runtime_checkable

import numpy as np
import pandas as pd

from .._registry import Registry, UnknownPluginError
from ..records import KEY_COLUMNS, field_columns
from ._tables import POINTS, TABLES, BatchTypeError, TableSpec, conform, empty_frame

if TYPE_CHECKING:
    from ..config import Settings

__all__ = [
    "Store",
    "BaseStore",
    "StoreBackend",
    "STORES",
    "AGGREGATES",
    "ORIGIN",
    "StoreError",
    "StoreUnavailable",
    "StoreLockedError",
    "UnknownStoreError",
    "BatchTypeError",
    "open_store",
    "split_store_url",
    "store_backend",
    "parse_span",
    "parse_time",
]

AGGREGATES: tuple[str, ...] = ("mean", "min", "max", "count", "last", "sum")
ORIGIN = pd.Timestamp("2000-01-03T00:00:00Z")
WhenLike = str | datetime | pd.Timestamp | None
SpanLike = str | timedelta | pd.Timedelta


class StoreError(RuntimeError):
    """A store operation failed."""


class StoreUnavailable(StoreError):
    """The backend cannot be reached right now (refused, dropped, timed out); worth retrying."""


class StoreLockedError(StoreError):
    """Another process owns the store file."""


class UnknownStoreError(UnknownPluginError, ValueError):
    """No store backend serves that URL's scheme; the message names the known schemes.

    A ``ValueError`` too, so that the ``store`` setting's validator reports it as a bad value.
    """


@runtime_checkable
class Store(Protocol):
    """What every store backend offers (the interface agreed with the engine and analysis)."""

    def write(self, batch: pd.DataFrame) -> int: ...
    def query(self, stream: str, series: str | Sequence[str] | None = None, start: WhenLike = None,
              end: WhenLike = None, last: SpanLike | None = None, every: SpanLike | None = None,
              agg: str | Sequence[str] = ("mean",), field: str | None = None) -> pd.DataFrame: ...
    def latest(self, stream: str, series: str | Sequence[str] | None = None) -> pd.DataFrame: ...
    def append(self, table: str, frame: pd.DataFrame) -> int: ...
    def read(self, table: str, stream: str | None = None, start: WhenLike = None, end: WhenLike = None,
             limit: int | None = None, **equals: Any) -> pd.DataFrame: ...
    def set_retention(self, stream: str, keep: SpanLike | None) -> None: ...
    def apply_retention(self, now: WhenLike = None) -> int: ...
    def close(self) -> None: ...


class StoreBackend(Protocol):
    """What a member of :data:`STORES` is: a class (or any object) that opens a store from its URL.

    :class:`BaseStore` gives its subclasses both members, so a plugin subclassing it only registers.
    """

    #: Wrap the store in :class:`~nexus_kernel.storage.ResilientStore` unless the caller says otherwise
    #: (a server can have transient outages; a local file has none).
    resilient_by_default: bool

    def from_url(self, url: str, settings: Settings | None = None, **options: Any) -> Store:
        """Open the store ``url`` names (the whole URL, as configured: a DSN is passed on unchanged).

        ``settings`` are the caller's, or None when it gave none (``load_settings()`` then, if needed);
        ``options`` are the keyword arguments of ``open_store`` meant for the backend.
        """
        ...


#: URL scheme → the backend serving it; see the module docstring.
STORES: Registry[StoreBackend] = Registry("stores")

# RFC 3986: scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ); schemes are case-insensitive.
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")


def split_store_url(url: str) -> tuple[str, str | None]:
    """``(scheme, rest)`` of a store URL; ``rest`` is None for a bare name such as ``"memory"``.

    >>> split_store_url("duckdb:///data/n.duckdb"), split_store_url("memory")
    (('duckdb', '/data/n.duckdb'), ('memory', None))

    Raises :class:`UnknownStoreError` when ``url`` starts with no scheme (the message never quotes the
    URL: it may hold a password).
    """
    if not isinstance(url, str):
        raise TypeError(f"a store URL is a string, not {type(url).__name__}")
    scheme, sep, rest = url.partition("://")
    if not _SCHEME.fullmatch(scheme):
        raise UnknownStoreError(f"not a store URL: expected a scheme, alone ('memory') or before '://' "
                                f"('duckdb:///path.db') ({_known_schemes()})")
    return scheme.lower(), (rest if sep else None)


def store_backend(url: str) -> StoreBackend:
    """The member of :data:`STORES` serving ``url``'s scheme (entry points are loaded if needed).

    Raises :class:`UnknownStoreError` naming the known schemes when no backend serves it.
    """
    scheme, _ = split_store_url(url)
    try:
        return STORES.get(scheme)
    except UnknownPluginError:
        raise UnknownStoreError(f"unknown store scheme '{scheme}' ({_known_schemes()}; a package adds one "
                                f"through the '{STORES.group}' entry-point group)") from None


def _known_schemes() -> str:
    return "known: " + (", ".join(STORES.names()) or "none")


def parse_time(value: WhenLike) -> pd.Timestamp | None:
    """A UTC timestamp; naive input is taken as UTC."""
    if value is None:
        return None
    stamp = pd.Timestamp(value)
    if pd.isna(stamp):
        raise ValueError(f"not a time: {value!r}")
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def parse_span(value: SpanLike) -> pd.Timedelta:
    """A positive duration from ``"5min"``, ``"6h"``, ``"7d"`` or a timedelta."""
    if isinstance(value, str):  # pandas deprecates the lower-case day unit that people write ("7d")
        value = re.sub(r"(?<=\d)d\b", "D", re.sub(r"\s+", "", value))
    try:
        span = pd.Timedelta(value)
    except (ValueError, TypeError):
        raise ValueError(f"not a duration: {value!r} (try '5min', '6h', '7d')") from None
    if pd.isna(span) or span <= pd.Timedelta(0):
        raise ValueError(f"duration must be positive: {value!r}")
    return span


class Query:
    """Checked arguments of ``Store.query`` (what the backends receive)."""

    def __init__(self, stream: str, series: str | Sequence[str] | None, start: WhenLike, end: WhenLike,
                 last: SpanLike | None, every: SpanLike | None, agg: str | Sequence[str],
                 field: str | None) -> None:
        if not isinstance(stream, str):
            raise TypeError("stream must be a string")
        self.stream = stream
        self.series = _names(series)
        self.field = field
        self.start, self.end = parse_time(start), parse_time(end)
        if last is not None:
            if start is not None:
                raise ValueError("give either start or last, not both")
            self.start = pd.Timestamp.now(tz="UTC") - parse_span(last)
        self.every = parse_span(every) if every is not None else None
        aggs = (agg,) if isinstance(agg, str) else tuple(agg)
        unknown = [a for a in aggs if a not in AGGREGATES]
        if unknown or not aggs:
            raise ValueError(f"unknown aggregate {unknown} (known: {', '.join(AGGREGATES)})")
        self.aggs = tuple(dict.fromkeys(aggs))

    @property
    def interval(self) -> pd.Timedelta:
        """``every``, for a backend's resampling — which runs only when the caller gave one."""
        if self.every is None:
            raise ValueError("this query does not resample: it has no 'every'")
        return self.every


def _names(series: str | Sequence[str] | None) -> tuple[str, ...] | None:
    if series is None:
        return None
    if isinstance(series, str):
        return (series,)
    return tuple(str(s) for s in series)


# -- batches <-> long rows ---------------------------------------------------------------------


def batch_to_long(batch: pd.DataFrame) -> pd.DataFrame:
    """Check a batch against the contract and turn it into long point rows (see ``_tables``)."""
    return batch_to_long_rows(batch)[0]


def batch_to_long_rows(batch: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """:func:`batch_to_long`, and the batch row (position) each long row came from.

    A batch row gives one long row per field it carries, fields in column order (empty cells give none),
    so a caller that labels batch rows (the request each came from) labels long rows with ``labels[rows]``.
    """
    if not isinstance(batch, pd.DataFrame):
        raise BatchTypeError(f"a batch is a pandas DataFrame, not {type(batch).__name__}; nothing was written")
    missing = [c for c in KEY_COLUMNS if c not in batch.columns]
    if missing:
        raise BatchTypeError(f"batch lacks columns {missing}; nothing was written")
    fields = field_columns(batch)
    if not fields:
        raise BatchTypeError("batch has no field column (e.g. 'value'); nothing was written")
    keys = conform(_BATCH_KEYS, batch[list(_BATCH_KEYS.names)] if "attrs" in batch.columns
                   else batch[list(KEY_COLUMNS)].assign(attrs=pd.Series(pd.NA, index=batch.index, dtype="string")))
    values = []
    for name in fields:
        column = batch[name]
        if pd.api.types.is_bool_dtype(column.dtype) or not pd.api.types.is_numeric_dtype(column.dtype):
            raise BatchTypeError(f"field '{name}' has dtype {column.dtype}; expected float64; nothing was written")
        values.append(column.to_numpy(dtype="float64", na_value=np.nan))
    k = len(fields)
    rows = np.arange(len(keys), dtype=np.int64)
    if k == 1:
        long = keys.assign(field=pd.array(np.full(len(keys), fields[0], dtype=object), dtype="string"),
                           value=values[0])
    else:
        long = pd.DataFrame({c: np.tile(keys[c].to_numpy(), k) for c in keys.columns})
        long = long.astype({c: keys[c].dtype for c in keys.columns})
        long["field"] = pd.array(np.repeat(np.asarray(fields, dtype=object), len(keys)), dtype="string")
        long["value"] = np.concatenate(values)
        rows = np.tile(rows, k)
    long = long[list(POINTS.names)]
    present = ~np.isnan(long["value"].to_numpy())
    if present.all():
        return long, rows
    return long[present].reset_index(drop=True), rows[present]


_BATCH_KEYS = TableSpec("batch", (("stream", "text"), ("series", "text"), ("ts", "time"), ("seq", "int"),
                                  ("attrs", "text")), KEY_COLUMNS, "ts")


def points_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Long rows from a backend with the contract dtypes."""
    return conform(POINTS, frame) if len(frame) else empty_frame(POINTS)


def long_to_wide(long: pd.DataFrame, field: str | None = None) -> pd.DataFrame:
    from ..records import empty_batch

    if long.empty:
        return empty_batch((field,) if field else ("value",))
    keys = list(KEY_COLUMNS)
    wide = long.set_index([*keys, "field"])["value"].unstack("field")
    wide = wide[sorted(wide.columns)]
    wide.columns.name = None
    wide = wide.reset_index()
    if long["attrs"].notna().any():
        attrs = long.dropna(subset=["attrs"]).drop_duplicates(keys)[[*keys, "attrs"]]
        wide = wide.merge(attrs, on=keys, how="left")
    wide = wide.sort_values(["series", "ts", "seq"], kind="stable").reset_index(drop=True)
    wide.columns = pd.Index([str(c) for c in wide.columns])  # plain labels, not the field values' dtype
    return wide.astype({"stream": "string", "series": "string", "ts": "datetime64[ns, UTC]", "seq": "int64"})


def aggregates_to_wide(frame: pd.DataFrame, aggs: Sequence[str], field: str | None = None) -> pd.DataFrame:
    """Bucketed long rows (stream, series, field, ts, <aggs>) to the wide frame ``query`` returns."""
    if frame.empty:
        from ..records import empty_batch

        names = [field or "value"] if len(aggs) == 1 else [f"{field or 'value'}_{a}" for a in aggs]
        return empty_batch(names)
    frame = frame.astype({"ts": "datetime64[ns, UTC]", **{a: "float64" for a in aggs}})
    # unstacking a frame with a row MultiIndex gives a frame (the stubs allow a Series for any unstack)
    wide = cast(pd.DataFrame, frame.set_index(["stream", "series", "ts", "field"])[list(aggs)].unstack("field"))
    fields = sorted(wide.columns.get_level_values(1).unique())
    order = [(a, f) for f in fields for a in aggs]
    wide = wide[order]
    wide.columns = [f if len(aggs) == 1 else f"{f}_{a}" for a, f in order]
    wide = wide.reset_index()
    wide.insert(3, "seq", np.zeros(len(wide), dtype="int64"))
    wide = wide.sort_values(["series", "ts"], kind="stable").reset_index(drop=True)
    wide.columns = pd.Index([str(c) for c in wide.columns])
    return wide.astype({"stream": "string", "series": "string"})


# -- the shared half of every backend ------------------------------------------------------------


class BaseStore:
    """Checks arguments and shapes results; subclasses implement the ``_``-methods below."""

    dialect: str = ""
    resilient_by_default: ClassVar[bool] = False

    @classmethod
    def from_url(cls, url: str, settings: Settings | None = None, **options: Any) -> BaseStore:
        """``cls(rest, **options)`` for ``"<scheme>://rest"``, ``cls(**options)`` for a bare name or an
        empty rest; backends whose URLs mean more (see :class:`StoreBackend`) override it."""
        _, rest = split_store_url(url)
        make: Callable[..., BaseStore] = cls  # each backend's own constructor, which BaseStore does not declare
        return make(rest, **options) if rest else make(**options)

    # --- points
    def write(self, batch: pd.DataFrame) -> int:
        """Store a batch idempotently; returns the number of field values newly stored."""
        long = batch_to_long(batch)
        return self._write_long(long) if len(long) else 0

    def query(self, stream: str, series: str | Sequence[str] | None = None, start: WhenLike = None,
              end: WhenLike = None, last: SpanLike | None = None, every: SpanLike | None = None,
              agg: str | Sequence[str] = ("mean",), field: str | None = None) -> pd.DataFrame:
        """Points of one stream, raw or bucketed by ``every`` with aggregates ``agg``."""
        q = Query(stream, series, start, end, last, every, agg, field)
        if q.every is None:
            return long_to_wide(points_frame(self._select(q)), q.field)
        return aggregates_to_wide(self._resample(q), q.aggs, q.field)

    def latest(self, stream: str, series: str | Sequence[str] | None = None) -> pd.DataFrame:
        """Per series, the newest record (greatest ts, then seq)."""
        return long_to_wide(points_frame(self._latest(stream, _names(series))))

    def streams(self) -> list[str]:
        """Names of the streams that have points."""
        return sorted(self._streams())

    # --- auxiliary tables
    def append(self, table: str, frame: pd.DataFrame) -> int:
        """Add rows to an auxiliary table, idempotent on its key; returns the rows newly stored."""
        spec = _table(table)
        rows = conform(spec, frame)
        return self._append(spec, rows) if len(rows) else 0

    def read(self, table: str, stream: str | None = None, start: WhenLike = None, end: WhenLike = None,
             limit: int | None = None, **equals: Any) -> pd.DataFrame:
        """Rows of an auxiliary table, filtered by stream, time range of its time column and equalities."""
        spec = _table(table)
        unknown = [c for c in equals if c not in spec.names]
        if unknown:
            raise ValueError(f"{table} has no column(s) {unknown}")
        if stream is not None:
            if spec.stream is None:
                raise ValueError(f"{table} has no stream column")
            equals = {spec.stream: stream, **equals}
        if limit is not None and (not isinstance(limit, int) or limit < 0):
            raise ValueError("limit must be a non-negative integer")
        rows = self._read(spec, parse_time(start), parse_time(end), limit, equals)
        return conform(spec, rows) if len(rows) else empty_frame(spec)

    # --- retention
    def set_retention(self, stream: str, keep: SpanLike | None) -> None:
        """Keep ``stream``'s points for ``keep`` (e.g. ``"7d"``); None keeps them forever."""
        self._set_retention(stream, None if keep is None else parse_span(keep))

    def retention(self) -> dict[str, pd.Timedelta]:
        return dict(self._retention())

    def apply_retention(self, now: WhenLike = None) -> int:
        """Delete points older than each stream's retention; returns the rows deleted."""
        now_ts = parse_time(now) or pd.Timestamp.now(tz="UTC")
        return sum(self._delete_before(stream, now_ts - keep) for stream, keep in self._retention())

    # --- backup support: whole tables as frames, and their import
    def dump(self, name: str, chunk_rows: int = 1_000_000) -> Iterator[pd.DataFrame]:
        """Every row of ``points`` (long rows), ``retention`` or an auxiliary table, in chunks."""
        if name == "points":
            for chunk in self._dump_points(chunk_rows):
                yield points_frame(chunk)
        elif name == "retention":
            yield pd.DataFrame({"stream": [s for s, _ in self._retention()],
                                "keep_seconds": [k.total_seconds() for _, k in self._retention()]})
        else:
            yield self.read(name)

    def load(self, name: str, frame: pd.DataFrame) -> int:
        """Import rows produced by :meth:`dump` (idempotent)."""
        if name == "points":
            rows = conform(POINTS, frame)
            return self._write_long(rows) if len(rows) else 0
        if name == "retention":
            for stream, secs in zip(frame["stream"], frame["keep_seconds"], strict=True):
                self._set_retention(str(stream), pd.Timedelta(seconds=float(secs)))
            return len(frame)
        return self.append(name, frame)

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- what a backend implements
    def _write_long(self, rows: pd.DataFrame) -> int: raise NotImplementedError
    def _select(self, q: Query) -> pd.DataFrame: raise NotImplementedError
    def _resample(self, q: Query) -> pd.DataFrame: raise NotImplementedError
    def _latest(self, stream: str, series: tuple[str, ...] | None) -> pd.DataFrame: raise NotImplementedError
    def _streams(self) -> list[str]: raise NotImplementedError
    def _append(self, spec: TableSpec, rows: pd.DataFrame) -> int: raise NotImplementedError
    def _read(self, spec: TableSpec, start: pd.Timestamp | None, end: pd.Timestamp | None,
              limit: int | None, equals: dict[str, Any]) -> pd.DataFrame: raise NotImplementedError
    def _set_retention(self, stream: str, keep: pd.Timedelta | None) -> None: raise NotImplementedError
    def _retention(self) -> list[tuple[str, pd.Timedelta]]: raise NotImplementedError
    def _delete_before(self, stream: str, cutoff: pd.Timestamp) -> int: raise NotImplementedError
    def _dump_points(self, chunk_rows: int) -> Iterator[pd.DataFrame]: raise NotImplementedError
    def schema_version(self) -> int: raise NotImplementedError
    def close(self) -> None: raise NotImplementedError


def _table(name: str) -> TableSpec:
    try:
        return TABLES[name]
    except KeyError:
        raise ValueError(f"unknown table {name!r} (known: {', '.join(TABLES)})") from None


# -- opening a store -----------------------------------------------------------------------------


def open_store(spec: str | Settings | None = None, *, settings: Settings | None = None,
               resilient: bool | None = None, **options: Any) -> Any:
    """Open the store named by ``spec`` (a URL or :class:`Settings`; default ``settings.store``).

    The URL's scheme picks the backend in :data:`STORES`: ``"memory"`` is DuckDB in memory, ``"duckdb"``
    the DuckDB file ``settings.home/"nexus.duckdb"``, ``"duckdb:///path.db"`` that file,
    ``"postgresql://..."`` (or ``postgres://``) PostgreSQL, ``"<scheme>://..."`` a plugin's backend.
    ``options`` go to the backend (e.g. ``schema=`` for PostgreSQL). ``resilient`` wraps the store in
    :class:`~nexus_kernel.storage.ResilientStore` (retries, then a spool under ``settings.spool_dir``);
    by default as the backend says (``resilient_by_default``): on for PostgreSQL, off for DuckDB (a local
    file has no transient outages).

    Raises :class:`UnknownStoreError` (naming the known schemes) when no backend serves the scheme.
    """
    from ..config import Settings, load_settings

    if isinstance(spec, Settings):
        settings, spec = spec, spec.store
    if spec is None:
        settings = settings or load_settings()
        spec = settings.store
    backend = store_backend(spec)
    store = backend.from_url(spec, settings, **options)
    if not (backend.resilient_by_default if resilient is None else resilient):
        return store
    from ._spool import ResilientStore

    return ResilientStore.from_settings(store, settings or load_settings())
