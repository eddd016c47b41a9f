"""``DuckDBStore``: the embedded default, a DuckDB file under ``settings.home`` or a database in memory.

Writes go in as Arrow: the long rows are registered as an Arrow table and inserted with an anti-join
against the points of the same streams in the batch's time range. Why no primary key: DuckDB's ART
index made bulk inserts about 3× slower here (330k vs 1.1M rows/s), and the anti-join is safe because
one process owns the file (DuckDB's own file lock) and this class serializes its writers; the time-range
filter lets DuckDB's zone maps skip old row groups, so the cost does not grow with history.

Caveats
-------
* One process owns a DuckDB file. A second process that opens it gets :class:`StoreLockedError`;
  other processes read through the gateway.
* Times are kept to the microsecond (DuckDB's TIMESTAMPTZ); two records that differ only in
  nanoseconds are one key.
* Within one batch, rows repeating a key keep one of them (no order is promised).

Parameters
----------
path
    ``":memory:"`` or a file path (its folder is created).
schema_version
    Migrate only up to this version (tests of the upgrade path); default: the newest.

Example
-------
>>> store = DuckDBStore(":memory:")
>>> store.schema_version()
5

References: DuckDB, "Concurrency" and "Indexes" (duckdb.org/docs), Arrow integration.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ._arrow_long import ARROW_POINTS, long_table
from ._migrations import TYPES, upgrade
from ._protocol import (STORES, BaseStore, Query, StoreError, StoreLockedError, batch_to_long_rows,
                        split_store_url)
from ._tables import POINT_COLUMNS, POINT_KEY, BatchTypeError, TableSpec

if TYPE_CHECKING:
    from ..config import Settings

__all__ = ["DuckDBStore"]

_KEY = "stream, series, field, ts, seq"


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class _Context:
    dialect = "duckdb"
    timescale = False

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con

    def _sql(self, template: str, names: dict[str, str]) -> str:
        return template.format(**{k: _q(v) for k, v in names.items()}).replace("%s", "?")

    def run(self, template: str, params: tuple[Any, ...] = (), **names: str) -> None:
        self.con.execute(self._sql(template, names), list(params))

    def scalar(self, template: str, params: tuple[Any, ...] = (), **names: str) -> Any:
        return _one(self.con.execute(self._sql(template, names), list(params)).fetchone())

    def column_list(self, spec: TableSpec) -> str:
        types = TYPES["duckdb"]
        cols = [f"{_q(c)} {types[k]}{' NOT NULL' if c in spec.key else ''}" for c, k in spec.columns]
        return ", ".join(cols) + f", PRIMARY KEY ({', '.join(_q(k) for k in spec.key)})"

    def qualified(self, name: str) -> str:
        return _q(name)


def _as_arrow(rows: pd.DataFrame) -> pa.Table:
    """Long rows (a pandas frame) as an Arrow table of the points table's types."""
    table = pa.Table.from_pandas(rows, preserve_index=False, nthreads=1)
    return table.cast(ARROW_POINTS, safe=False) if table.schema != ARROW_POINTS else table


@STORES.register("memory")
@STORES.register("duckdb")
class DuckDBStore(BaseStore):
    dialect = "duckdb"

    @classmethod
    def from_url(cls, url: str, settings: Settings | None = None, **options: Any) -> DuckDBStore:
        """``memory``: in memory; ``duckdb``: ``settings.home/"nexus.duckdb"``; ``duckdb:///path.db``: that
        file (``duckdb://`` alone: in memory)."""
        scheme, rest = split_store_url(url)
        if scheme == "memory":
            return cls(":memory:", **options)
        if rest is not None:
            return cls(rest or ":memory:", **options)
        if settings is None:
            from ..config import load_settings

            settings = load_settings()
        return cls(Path(settings.home) / "nexus.duckdb", **options)

    def __init__(self, path: str | Path = ":memory:", *, schema_version: int | None = None) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._con = duckdb.connect(self.path)
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower():
                raise
            pid = re.search(r"PID (\d+)", str(exc))
            owner = f"process {pid.group(1)}" if pid else "another process"
            raise StoreLockedError(
                f"{self.path} is owned by {owner}: one process writes a DuckDB store; "
                "read it through that process's gateway (nexus up) or stop it first"
            ) from None
        self._con.execute("SET TimeZone = 'UTC'")
        self._lock = threading.RLock()
        with self._tx() as con:
            upgrade(_Context(con), schema_version)

    def __repr__(self) -> str:
        return f"DuckDBStore({self.path!r})"

    @contextmanager
    def _tx(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self._lock:
            self._con.begin()
            try:
                yield self._con
            except BaseException:
                self._con.rollback()
                raise
            self._con.commit()

    def _frame(self, sql: str, params: list[Any]) -> pd.DataFrame:
        with self._lock:
            return self._con.execute(sql, params).df()

    # -- points
    def write(self, batch: pd.DataFrame) -> int:
        """Store a batch idempotently; returns the number of field values newly stored.

        An engine-shaped batch goes to Arrow straight from its columns (:mod:`._arrow_long`); any other
        is checked and converted through pandas (:meth:`BaseStore.write`), which refuses what breaks the
        contract."""
        fast = long_table(batch)
        if fast is None:
            return super().write(batch)
        return int(self._insert_new(fast[0], None)[0]) if fast[0].num_rows else 0

    def _write_long(self, rows: pd.DataFrame) -> int:
        return int(self._insert_new(_as_arrow(rows), None)[0])

    def write_groups(self, batch: pd.DataFrame, group: Sequence[int] | np.ndarray,
                     groups: int | None = None) -> list[int]:
        """Write a batch in ONE transaction, counting the field values newly stored per group of rows.

        ``group`` labels each row ``0..groups-1`` (e.g. the request it came from). The same as writing
        each group's rows with ``store.write``, in label order (a lower label wins a key that a higher one
        repeats), but with one fixed cost: the gateway's ingest rounds write concurrent requests this way
        and still answer each with its own count. A batch that breaks the contract writes nothing.

        >>> import pandas as pd
        >>> store = DuckDBStore(":memory:")
        >>> b = pd.DataFrame({"stream": ["s", "s"], "series": ["a", "a"], "seq": [1, 1], "value": [1.0, 1.0],
        ...                   "ts": pd.to_datetime(["2024-01-01", "2024-01-01"], utc=True)})
        >>> store.write_groups(b, [0, 1])
        [1, 0]
        """
        labels = np.asarray(group, dtype=np.int64)
        if not isinstance(batch, pd.DataFrame):
            raise BatchTypeError(f"a batch is a pandas DataFrame, not {type(batch).__name__}; nothing was written")
        if labels.shape != (len(batch),):
            raise ValueError(f"group has {labels.size} labels for {len(batch)} rows; nothing was written")
        count = int(labels.max()) + 1 if len(labels) else 0
        groups = count if groups is None else groups
        if len(labels) and (labels.min() < 0 or count > groups):
            raise ValueError(f"group labels must lie in 0..{groups - 1}; nothing was written")
        if not len(batch):
            return [0] * groups
        fast = long_table(batch)  # one contract check and conversion for all groups
        if fast is None:
            long, wide_rows = batch_to_long_rows(batch)
            table = _as_arrow(long)
        else:
            table, wide_rows = fast
        if table.num_rows == 0:
            return [0] * groups
        if labels.min() == labels.max():  # one group (a lone request): the plain write, counted for it
            alone = [0] * groups
            alone[int(labels[0])] = int(self._insert_new(table, None)[0])
            return alone
        counts = self._insert_new(table, labels[wide_rows].astype(np.int32), groups)
        return [int(c) for c in counts]

    def _insert_new(self, table: pa.Table, group: np.ndarray | None, groups: int = 1) -> np.ndarray:
        """Insert the rows whose key is not stored yet; per group (or in all), how many went in.

        Why an anti-join and not a key: see the module docstring. ``table`` has the points table's Arrow
        types (string, microsecond UTC times), so DuckDB scans it without converting.
        """
        span = pc.min_max(table.column("ts"))
        lo, hi = span["min"].as_py(), span["max"].as_py()
        streams = pc.unique(table.column("stream")).to_pylist()
        cols = ", ".join(POINT_COLUMNS)
        existing = (f"(SELECT {_KEY} FROM points WHERE ts >= ? AND ts <= ? "
                    "AND stream IN (SELECT unnest(?::VARCHAR[]))) o")
        with self._tx() as con:
            if group is None:
                con.register("nexus_incoming", table)
                try:
                    count = _one(con.execute(
                        f"INSERT INTO points SELECT i.* FROM (SELECT DISTINCT ON ({_KEY}) {cols} FROM nexus_incoming) i "
                        f"ANTI JOIN {existing} USING ({_KEY})", [lo, hi, streams]).fetchone())
                finally:
                    con.unregister("nexus_incoming")
                return np.asarray([count])
            # Which row stores each new key: of the rows sharing a key, the earliest group's, and in it the
            # first (as sequential writes would). A hash aggregate over the keys alone, rank = group, row;
            # the rows it names are then taken from the round and inserted.
            keys = table.select(list(POINT_KEY)).append_column("nexus_rank", pa.array(
                group.astype(np.int64) * (1 << 32) + np.arange(table.num_rows, dtype=np.int64)))
            con.register("nexus_incoming", keys)
            try:
                ranks = con.execute(
                    f"SELECT i.r FROM (SELECT {_KEY}, min(nexus_rank) AS r FROM nexus_incoming GROUP BY ALL) i "
                    f"ANTI JOIN {existing} USING ({_KEY})", [lo, hi, streams]).fetchnumpy()["r"]
            finally:
                con.unregister("nexus_incoming")
            rows = np.sort(np.asarray(ranks, dtype=np.int64) & ((1 << 32) - 1))
            con.register("nexus_new", table.take(pa.array(rows)))
            try:
                con.execute(f"INSERT INTO points SELECT {cols} FROM nexus_new")
            finally:
                con.unregister("nexus_new")
        return np.bincount(group[rows], minlength=groups)

    @staticmethod
    def _where(q: Query) -> tuple[str, list[Any]]:
        clauses, params = ["stream = ?"], list[Any]()
        params.append(q.stream)
        if q.series is not None:
            clauses.append("series IN (SELECT unnest(?::VARCHAR[]))")
            params.append(list(q.series))
        if q.field is not None:
            clauses.append("field = ?")
            params.append(q.field)
        if q.start is not None:
            clauses.append("ts >= ?")
            params.append(q.start.to_pydatetime())
        if q.end is not None:
            clauses.append("ts < ?")
            params.append(q.end.to_pydatetime())
        return " AND ".join(clauses), params

    def _select(self, q: Query) -> pd.DataFrame:
        where, params = self._where(q)
        return self._frame(f"SELECT {', '.join(POINT_COLUMNS)} FROM points WHERE {where} "
                           "ORDER BY series, field, ts, seq", params)

    def _resample(self, q: Query) -> pd.DataFrame:
        where, params = self._where(q)
        exprs = {"mean": "avg(value)", "min": "min(value)", "max": "max(value)", "count": "count(value)::DOUBLE",
                 "sum": "sum(value)", "last": "arg_max(value, (ts, seq))"}
        aggs = ", ".join(f"{exprs[a]} AS {_q(a)}" for a in q.aggs)
        sql = (f"SELECT stream, series, field, time_bucket(?::INTERVAL, ts, ?::TIMESTAMPTZ) AS bucket, {aggs} "
               f"FROM points WHERE {where} GROUP BY ALL ORDER BY series, field, bucket")
        from ._protocol import ORIGIN

        frame = self._frame(sql, [q.interval.to_pytimedelta(), ORIGIN.to_pydatetime(), *params])
        return frame.rename(columns={"bucket": "ts"})

    def _latest(self, stream: str, series: tuple[str, ...] | None) -> pd.DataFrame:
        extra, params = "", list[Any]()
        params.append(stream)
        if series is not None:
            extra, params = " AND series IN (SELECT unnest(?::VARCHAR[]))", [stream, list(series)]
        return self._frame(
            f"WITH k AS (SELECT DISTINCT ON (series) series, ts, seq FROM points WHERE stream = ?{extra} "
            "ORDER BY series, ts DESC, seq DESC) "
            f"SELECT {', '.join('p.' + c for c in POINT_COLUMNS)} FROM points p JOIN k "
            "ON p.series = k.series AND p.ts = k.ts AND p.seq = k.seq WHERE p.stream = ? ORDER BY p.series, p.field",
            [*params, stream],
        )

    def _streams(self) -> list[str]:
        with self._lock:
            return [r[0] for r in self._con.execute("SELECT DISTINCT stream FROM points").fetchall()]

    def _dump_points(self, chunk_rows: int) -> Iterator[pd.DataFrame]:
        cursor = self._con.cursor()  # its own connection: a slow reader does not hold the write lock
        try:
            cursor.execute("SET TimeZone = 'UTC'")
            reader = cursor.sql(f"SELECT {', '.join(POINT_COLUMNS)} FROM points ORDER BY {_KEY}") \
                .to_arrow_reader(chunk_rows)
            for batch in reader:
                yield batch.to_pandas()
        finally:
            cursor.close()

    # -- auxiliary tables
    def _append(self, spec: TableSpec, rows: pd.DataFrame) -> int:
        cols = ", ".join(_q(c) for c in spec.names)
        key = ", ".join(_q(c) for c in spec.key)
        with self._tx() as con:
            con.register("nexus_incoming", pa.Table.from_pandas(rows, preserve_index=False, nthreads=1))
            try:
                count = _one(con.execute(
                    f"INSERT INTO {_q(spec.name)} ({cols}) SELECT DISTINCT ON ({key}) {cols} FROM nexus_incoming "
                    "ON CONFLICT DO NOTHING"
                ).fetchone())
            finally:
                con.unregister("nexus_incoming")
        return int(count)

    def _read(self, spec: TableSpec, start: pd.Timestamp | None, end: pd.Timestamp | None, limit: int | None,
              equals: dict[str, Any]) -> pd.DataFrame:
        clauses, params = [], []
        for column, value in equals.items():
            clauses.append(f"{_q(column)} = ?")
            params.append(value)
        if start is not None:
            clauses.append(f"{_q(spec.time)} >= ?")
            params.append(start.to_pydatetime())
        if end is not None:
            clauses.append(f"{_q(spec.time)} < ?")
            params.append(end.to_pydatetime())
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        keys = [_q(spec.time), *(_q(k) for k in spec.key)]
        order = ", ".join(f"{k} ASC NULLS LAST" for k in keys)
        sql = f"SELECT {', '.join(_q(c) for c in spec.names)} FROM {_q(spec.name)} {where}"
        if limit is not None:
            desc = ", ".join(f"{k} DESC NULLS FIRST" for k in keys)
            sql = f"SELECT * FROM ({sql} ORDER BY {desc} LIMIT ?) ORDER BY {order}"
            params.append(limit)
        else:
            sql += f" ORDER BY {order}"
        return self._frame(sql, params)

    # -- retention
    def _set_retention(self, stream: str, keep: pd.Timedelta | None) -> None:
        with self._tx() as con:
            con.execute("DELETE FROM retention WHERE stream = ?", [stream])
            if keep is not None:
                con.execute("INSERT INTO retention VALUES (?, ?)", [stream, keep.total_seconds()])

    def _retention(self) -> list[tuple[str, pd.Timedelta]]:
        with self._lock:
            rows = self._con.execute("SELECT stream, keep_seconds FROM retention ORDER BY stream").fetchall()
        return [(s, pd.Timedelta(seconds=k)) for s, k in rows]

    def _delete_before(self, stream: str, cutoff: pd.Timestamp) -> int:
        with self._tx() as con:
            return int(_one(con.execute("DELETE FROM points WHERE stream = ? AND ts < ?",
                                   [stream, cutoff.to_pydatetime()]).fetchone()))

    def schema_version(self) -> int:
        with self._lock:
            return int(_one(self._con.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()))

    def close(self) -> None:
        with self._lock:
            self._con.close()


def _one(row: tuple[Any, ...] | None) -> Any:
    """The single value of a one-row result (a count, a ``RETURNING``): every statement here yields one."""
    if row is None:
        raise StoreError("the store returned no row where one was due")
    return row[0]
