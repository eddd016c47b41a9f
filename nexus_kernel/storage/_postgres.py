"""``PostgresStore``: the server-grade store, on psycopg 3 and a psycopg_pool connection pool.

Writes: the long rows are encoded to PostgreSQL's binary COPY format from Arrow (``pgpq``, vectorized,
no per-row Python), copied into a per-connection temporary staging table, and merged with
``INSERT ... SELECT ... ON CONFLICT DO NOTHING`` — one transaction, so a batch is all in or all out, and
a replay of a batch changes nothing.

Layout without TimescaleDB (the case on the machines tested here): ``points`` is range-partitioned by
``ts`` (partitions of ``partition`` width, created ahead of the data automatically), has a BRIN index on
``ts`` and the primary key (stream, series, field, ts, seq). Rollup tables ``points_1m``/``points_1h``
are refreshed incrementally: each write queues the (stream, hour) pairs it touched in ``rollup_dirty``;
a query that can use a rollup (``every`` a multiple of 1 min, or 1 h) first recomputes only the queued
hours, then reads whole buckets from the rollup and the partial buckets at the edges of the range from
``points`` — the same answer as from the raw points (up to floating-point summation order).

With TimescaleDB (detected with ``pg_available_extensions``; kept to the guarded branches in
``_migrations`` and :meth:`refresh_rollups`): a hypertable with a compression policy, and continuous
aggregates of the same name and columns, so the query code is the same.

Safety: every value is a bound parameter; every identifier goes through ``psycopg.sql.Identifier``.
Two documented exceptions, neither user input: partition bounds (DDL cannot take parameters) are
``sql.Literal`` of timestamps we compute, and bulk reads use ``COPY (SELECT ...) TO STDOUT`` whose
parameters psycopg binds client-side with libpq's quoting (COPY cannot take server-side parameters).

Parameters
----------
dsn
    ``postgresql://user@host:port/db``.
schema
    PostgreSQL schema holding the tables (created if missing).
pool_size
    Largest number of pooled connections.
timeout
    Seconds to wait for a connection before :class:`StoreUnavailable`.
partition, ahead
    Width of a time partition, and how many partitions past the newest data to create in advance.
schema_version
    Migrate only up to this version (tests of the upgrade path).

Example
-------
>>> store = PostgresStore("postgresql://postgres@127.0.0.1:5432/postgres", schema="nexus_doc")  # doctest: +SKIP

References: PostgreSQL docs "COPY" (binary format), "Table Partitioning", "BRIN Indexes";
TimescaleDB "Continuous aggregates"; psycopg 3 "COPY" and "psycopg_pool".
"""

from __future__ import annotations

import io
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from ._migrations import TYPES, upgrade
from ._protocol import ORIGIN, STORES, BaseStore, Query, StoreError, StoreUnavailable, split_store_url
from ._tables import POINTS, TableSpec

if TYPE_CHECKING:
    from ..config import Settings

try:
    import pgpq
    import psycopg
    from psycopg import sql
    from psycopg_pool import ConnectionPool, PoolTimeout
except ImportError:  # the `server` extra is not installed
    psycopg = None  # type: ignore[assignment]

__all__ = ["PostgresStore"]

_ARROW = pa.schema([("stream", pa.string()), ("series", pa.string()), ("field", pa.string()),
                    ("ts", pa.timestamp("us", tz="UTC")), ("seq", pa.int64()), ("value", pa.float64()),
                    ("attrs", pa.string())])
_CSV_TYPES = {"text": pa.string(), "int": pa.int64(), "float": pa.float64(), "bool": pa.bool_(), "time": pa.int64()}
_AGG_SQL = {  # raw points -> bucket
    "mean": "avg(value)", "min": "min(value)", "max": "max(value)", "count": "count(value)::float8",
    "sum": "sum(value)", "last": "(array_agg(value ORDER BY ts DESC, seq DESC))[1]",
}
_ROLLUP_SQL = {  # rollup rows -> bucket of a multiple of their width
    "mean": "sum(total) / nullif(sum(n), 0)", "min": "min(lo)", "max": "max(hi)", "count": "sum(n)::float8",
    "sum": "sum(total)", "last": "(array_agg(last_value ORDER BY last_ts DESC, last_seq DESC))[1]",
}
_MAX_NEW_PARTITIONS = 400


class _Context:
    dialect = "postgresql"

    def __init__(self, cur: Any, schema: str, timescale: bool) -> None:
        self.cur, self.schema, self.timescale = cur, schema, timescale

    def _sql(self, template: str, names: dict[str, str]) -> Any:
        idents = {k: (sql.Identifier(v) if k == "index" else sql.Identifier(self.schema, v)) for k, v in names.items()}
        return sql.SQL(template).format(**idents)

    def run(self, template: str, params: tuple[Any, ...] = (), **names: str) -> None:
        self.cur.execute(self._sql(template, names), params or None)

    def scalar(self, template: str, params: tuple[Any, ...] = (), **names: str) -> Any:
        return self.cur.execute(self._sql(template, names), params or None).fetchone()[0]

    def column_list(self, spec: TableSpec) -> Any:
        types = TYPES["postgresql"]
        cols = [sql.SQL("{} {}{}").format(sql.Identifier(c), sql.SQL(types[k]),
                                          sql.SQL(" NOT NULL" if c in spec.key else "")) for c, k in spec.columns]
        key = sql.SQL("PRIMARY KEY ({})").format(sql.SQL(", ").join(map(sql.Identifier, spec.key)))
        return sql.SQL(", ").join([*cols, key]).as_string(self.cur.connection)

    def qualified(self, name: str) -> str:
        return sql.Identifier(self.schema, name).as_string(self.cur.connection)


@STORES.register("postgres")
@STORES.register("postgresql")
class PostgresStore(BaseStore):
    dialect = "postgresql"
    resilient_by_default = True  # a server has transient outages: open_store adds retries and the spool

    @classmethod
    def from_url(cls, url: str, settings: Settings | None = None, **options: Any) -> PostgresStore:
        """The DSN is the URL (libpq reads both schemes), its scheme lower-cased as libpq expects."""
        scheme, rest = split_store_url(url)
        return cls(f"{scheme}://{rest or ''}", **options)

    def __init__(self, dsn: str, *, schema: str = "nexus", pool_size: int = 4, timeout: float = 10.0,
                 partition: str | pd.Timedelta = "1D", ahead: int = 2, schema_version: int | None = None) -> None:
        if psycopg is None:
            raise StoreError("PostgresStore needs psycopg and psycopg_pool: pip install 'nexus-stream[server]'")
        self.dsn, self.schema = dsn, schema
        self.partition, self.ahead = pd.Timedelta(partition), ahead
        self._partitions: set[pd.Timestamp] = set()
        self._partition_lock = threading.Lock()
        self._pool = ConnectionPool(dsn, min_size=1, max_size=pool_size, timeout=timeout, open=False,
                                    check=ConnectionPool.check_connection, configure=self._configure,
                                    name=f"nexus-{schema}")
        self._pool.open(wait=False)
        with self._conn() as conn:
            cur = conn.cursor()
            cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"nexus-migrate-{schema}",))
            self.timescale = bool(cur.execute(
                "SELECT count(*) FROM pg_available_extensions WHERE name = 'timescaledb'").fetchone()[0])
            if self.timescale:
                cur.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
            cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
            upgrade(_Context(cur, schema, self.timescale), schema_version)
            version = cur.execute(sql.SQL("SELECT max(version) FROM {}").format(self._t("schema_version"))).fetchone()[0]
        self._rollups = not self.timescale and version >= 3  # a store held at an older version has none
    def __repr__(self) -> str:
        return f"PostgresStore(schema={self.schema!r})"

    # -- connections
    @staticmethod
    def _configure(conn: Any) -> None:
        conn.execute("SET TimeZone TO 'UTC'")
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS nexus_stage (stream text, series text, field text, "
                     "ts timestamptz, seq bigint, value double precision, attrs text) ON COMMIT DELETE ROWS")
        conn.commit()

    @contextmanager
    def _conn(self) -> Iterator[Any]:
        """A pooled connection in a transaction; a lost or refused connection becomes StoreUnavailable."""
        try:
            with self._pool.connection() as conn:
                yield conn
        except (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StoreUnavailable(f"PostgreSQL unavailable: {first}") from exc

    def _t(self, name: str) -> Any:
        return sql.Identifier(self.schema, name)

    def _fetch(self, query: Any, params: list[Any], kinds: Sequence[tuple[str, str]]) -> pd.DataFrame:
        """Run a SELECT whose time columns are epoch microseconds; parse its CSV COPY output with Arrow."""
        with self._conn() as conn:
            with conn.cursor().copy(sql.SQL("COPY ({}) TO STDOUT (FORMAT csv)").format(query), params) as copy:
                data = b"".join(bytes(chunk) for chunk in copy)
        return _parse_csv(io.BytesIO(data), kinds)

    @staticmethod
    def _columns(kinds: Sequence[tuple[str, str]], prefix: str = "") -> Any:
        parts = []
        for name, kind in kinds:
            col = sql.SQL(prefix) + sql.Identifier(name) if prefix else sql.Identifier(name)
            if kind == "time":
                col = sql.SQL("(extract(epoch from {}) * 1000000)::bigint").format(col)
            parts.append(sql.SQL("{} AS {}").format(col, sql.Identifier(name)))
        return sql.SQL(", ").join(parts)

    # -- partitions
    def _ensure_partitions(self, lo: pd.Timestamp, hi: pd.Timestamp) -> None:
        if self.timescale:
            return
        width = self.partition
        first = ORIGIN + ((lo - ORIGIN) // width) * width
        last = ORIGIN + ((hi - ORIGIN) // width) * width + self.ahead * width
        starts = [first + i * width for i in range(int((last - first) / width) + 1)]
        todo = [s for s in starts if s not in self._partitions]
        if not todo:
            return
        if len(todo) > _MAX_NEW_PARTITIONS:
            raise StoreError(f"batch spans {len(todo)} new time partitions ({lo} .. {hi}); refusing it whole — "
                             "check its timestamps or widen the partition setting")
        with self._partition_lock, self._conn() as conn:
            cur = conn.cursor()
            cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"nexus-partitions-{self.schema}",))
            for start in todo:
                name = f"points_p{start:%Y%m%d_%H%M}"
                cur.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} PARTITION OF {} FOR VALUES FROM ({}) TO ({})").format(
                    self._t(name), self._t("points"), sql.Literal(start.to_pydatetime()),
                    sql.Literal((start + width).to_pydatetime())))
        self._partitions.update(todo)

    # -- points
    def _write_long(self, rows: pd.DataFrame) -> int:
        table = pa.Table.from_pandas(rows, preserve_index=False, nthreads=1).cast(_ARROW)
        self._ensure_partitions(rows["ts"].min(), rows["ts"].max())
        encoder = pgpq.ArrowToPostgresBinaryEncoder(_ARROW)
        payload = bytearray(encoder.write_header())
        for batch in table.to_batches():
            payload += encoder.write_batch(batch)
        payload += encoder.finish()
        with self._conn() as conn:
            cur = conn.cursor()
            try:  # new rows, the usual case: COPY straight into the table, as fast as a raw copy
                with conn.transaction():
                    with cur.copy(sql.SQL("COPY {} FROM STDIN (FORMAT BINARY)").format(self._t("points"))) as copy:
                        copy.write(payload)
                inserted = table.num_rows
                if self._rollups:
                    self._mark_dirty(cur, rows)
            except psycopg.errors.UniqueViolation:  # some keys are stored already: merge through staging
                with cur.copy("COPY nexus_stage FROM STDIN (FORMAT BINARY)") as copy:
                    copy.write(payload)
                cur.execute(sql.SQL("INSERT INTO {} SELECT * FROM nexus_stage ON CONFLICT DO NOTHING").format(
                    self._t("points")))
                inserted = cur.rowcount
                if self._rollups and inserted:
                    cur.execute(sql.SQL("INSERT INTO {} SELECT DISTINCT stream, date_bin('1 hour', ts, %s) "
                                        "FROM nexus_stage ON CONFLICT DO NOTHING").format(self._t("rollup_dirty")),
                                (ORIGIN.to_pydatetime(),))
        return int(inserted)

    def _mark_dirty(self, cur: Any, rows: pd.DataFrame) -> None:
        """Queue the (stream, hour) pairs a write touched for the incremental rollup refresh."""
        hour = 3_600_000_000_000
        ns = rows["ts"].dt.tz_convert(None).to_numpy(dtype="datetime64[ns]").view("int64") - ORIGIN.value
        buckets = pd.DataFrame({"stream": rows["stream"].astype(str).to_numpy(),
                                "hour": ns - np.mod(ns, hour) + ORIGIN.value}).drop_duplicates()
        cur.executemany(sql.SQL("INSERT INTO {} VALUES (%s, %s) ON CONFLICT DO NOTHING").format(self._t("rollup_dirty")),
                        [(s, pd.Timestamp(h, tz="UTC").to_pydatetime()) for s, h in zip(buckets["stream"], buckets["hour"])])

    def _where(self, q: Query, time: str = "ts", start: pd.Timestamp | None = None,
               end: pd.Timestamp | None = None) -> tuple[Any, list[Any]]:
        clauses: list[Any] = [sql.SQL("stream = %s")]  # SQL and Composed pieces
        params: list[Any] = [q.stream]
        if q.series is not None:
            clauses.append(sql.SQL("series = ANY(%s)"))
            params.append(list(q.series))
        if q.field is not None:
            clauses.append(sql.SQL("field = %s"))
            params.append(q.field)
        if start is not None:
            clauses.append(sql.SQL("{} >= %s").format(sql.Identifier(time)))
            params.append(start.to_pydatetime())
        if end is not None:
            clauses.append(sql.SQL("{} < %s").format(sql.Identifier(time)))
            params.append(end.to_pydatetime())
        return sql.SQL(" AND ").join(clauses), params

    def _select(self, q: Query) -> pd.DataFrame:
        where, params = self._where(q, start=q.start, end=q.end)
        query = sql.SQL("SELECT {} FROM {} WHERE {} ORDER BY series, field, ts, seq").format(
            self._columns(list(POINTS.columns)), self._t("points"), where)
        return self._fetch(query, params, list(POINTS.columns))

    def _resample(self, q: Query) -> pd.DataFrame:
        every = q.interval
        grain = "points_1h" if every % pd.Timedelta("1h") == pd.Timedelta(0) else \
            "points_1m" if every % pd.Timedelta("1min") == pd.Timedelta(0) else None
        if grain is None or not (self._rollups or self.timescale):
            return self._bucket(q, q.start, q.end, None)
        self.refresh_rollups(q.stream)
        inner_lo = None if q.start is None else _ceil(q.start, every)
        inner_hi = None if q.end is None else _floor(q.end, every)
        if inner_lo is not None and inner_hi is not None and inner_lo >= inner_hi:
            return self._bucket(q, q.start, q.end, None)
        parts = [self._bucket(q, inner_lo, inner_hi, grain)]
        if q.start is not None and inner_lo is not None and q.start < inner_lo:
            parts.append(self._bucket(q, q.start, inner_lo, None))
        if q.end is not None and inner_hi is not None and inner_hi < q.end:
            parts.append(self._bucket(q, inner_hi, q.end, None))
        parts = [p for p in parts if len(p)]
        return pd.concat(parts, ignore_index=True) if parts else parts_empty(q)

    def _bucket(self, q: Query, start: pd.Timestamp | None, end: pd.Timestamp | None, rollup: str | None) -> pd.DataFrame:
        source, time, exprs = (self._t("points"), "ts", _AGG_SQL) if rollup is None else \
            (self._t(rollup), "bucket", _ROLLUP_SQL)
        where, params = self._where(q, time, start, end)
        aggs = sql.SQL(", ").join(sql.SQL(exprs[a] + " AS {}").format(sql.Identifier(a)) for a in q.aggs)
        query = sql.SQL("SELECT stream, series, field, (extract(epoch from date_bin(%s, {time}, %s)) * 1000000)::bigint "
                        "AS ts, {aggs} FROM {source} WHERE {where} GROUP BY 1, 2, 3, 4").format(
            time=sql.Identifier(time), aggs=aggs, source=source, where=where)
        kinds = [("stream", "text"), ("series", "text"), ("field", "text"), ("ts", "time")] + [(a, "float") for a in q.aggs]
        return self._fetch(query, [every_param(q), ORIGIN.to_pydatetime(), *params], kinds)

    def refresh_rollups(self, stream: str | None = None) -> int:
        """Recompute the rollup buckets of the hours written since the last refresh; returns hours refreshed."""
        if self.timescale:  # guarded: TimescaleDB refreshes its continuous aggregates itself
            with self._conn() as conn:
                conn.autocommit = True
                try:
                    for view in ("points_1m", "points_1h"):
                        conn.execute("CALL refresh_continuous_aggregate(%s::regclass, NULL, NULL)",
                                     (self._t(view).as_string(conn),))
                finally:
                    conn.autocommit = False
            return 0
        with self._conn() as conn:
            cur = conn.cursor()
            where, params = (sql.SQL("WHERE stream = %s"), [stream]) if stream is not None else (sql.SQL(""), [])
            dirty = cur.execute(sql.SQL("DELETE FROM {} {} RETURNING stream, hour").format(
                self._t("rollup_dirty"), where), params or None).fetchall()
            for name, lo, hi in _ranges(dirty):
                for table, width, source in (("points_1m", "1 minute", None), ("points_1h", "1 hour", "points_1m")):
                    cur.execute(sql.SQL("DELETE FROM {} WHERE stream = %s AND bucket >= %s AND bucket < %s").format(
                        self._t(table)), (name, lo, hi))
                    if source is None:
                        select = sql.SQL(
                            "SELECT stream, series, field, date_bin(%s::interval, ts, %s) AS bucket, count(value), "
                            "sum(value), min(value), max(value), (array_agg(value ORDER BY ts DESC, seq DESC))[1], "
                            "max(ts), (array_agg(seq ORDER BY ts DESC, seq DESC))[1] FROM {} "
                            "WHERE stream = %s AND ts >= %s AND ts < %s GROUP BY 1, 2, 3, 4").format(self._t("points"))
                    else:
                        select = sql.SQL(
                            "SELECT stream, series, field, date_bin(%s::interval, bucket, %s) AS b, sum(n), sum(total), "
                            "min(lo), max(hi), (array_agg(last_value ORDER BY last_ts DESC, last_seq DESC))[1], "
                            "max(last_ts), (array_agg(last_seq ORDER BY last_ts DESC, last_seq DESC))[1] FROM {} "
                            "WHERE stream = %s AND bucket >= %s AND bucket < %s GROUP BY 1, 2, 3, 4").format(self._t(source))
                    cur.execute(sql.SQL("INSERT INTO {} ").format(self._t(table)) + select,
                                (width, ORIGIN.to_pydatetime(), name, lo, hi))
            return len(dirty)

    def _latest(self, stream: str, series: tuple[str, ...] | None) -> pd.DataFrame:
        extra, params = sql.SQL(""), list[Any]()
        params.append(stream)
        if series is not None:
            extra, params = sql.SQL(" AND series = ANY(%s)"), [stream, list(series)]
        query = sql.SQL(
            "WITH k AS (SELECT DISTINCT ON (series) series, ts, seq FROM {points} WHERE stream = %s{extra} "
            "ORDER BY series, ts DESC, seq DESC) SELECT {cols} FROM {points} p JOIN k "
            "ON p.series = k.series AND p.ts = k.ts AND p.seq = k.seq WHERE p.stream = %s ORDER BY p.series, p.field"
        ).format(points=self._t("points"), extra=extra, cols=self._columns(list(POINTS.columns), "p."))
        return self._fetch(query, [*params, stream], list(POINTS.columns))

    def _streams(self) -> list[str]:
        with self._conn() as conn:
            rows = conn.execute(sql.SQL("SELECT DISTINCT stream FROM {}").format(self._t("points"))).fetchall()
        return [r[0] for r in rows]

    def _dump_points(self, chunk_rows: int) -> Iterator[pd.DataFrame]:
        query = sql.SQL("SELECT {} FROM {} ORDER BY stream, series, field, ts, seq").format(
            self._columns(list(POINTS.columns)), self._t("points"))
        with tempfile.TemporaryFile() as spill:  # bounded memory: the COPY output goes to disk first
            with self._conn() as conn, conn.cursor().copy(sql.SQL("COPY ({}) TO STDOUT (FORMAT csv)").format(query)) as copy:
                for chunk in copy:
                    spill.write(chunk)
            spill.seek(0)
            if spill.read(1) == b"":
                return
            spill.seek(0)
            reader = pacsv.open_csv(spill, **_csv_options(list(POINTS.columns), block_size=1 << 24))
            for batch in reader:
                yield _to_frame(pa.Table.from_batches([batch]), list(POINTS.columns))

    # -- auxiliary tables
    def _append(self, spec: TableSpec, rows: pd.DataFrame) -> int:
        values = rows.astype(object).where(rows.notna(), None)
        records = [tuple(v.to_pydatetime() if isinstance(v, pd.Timestamp) else v for v in row)
                   for row in values.itertuples(index=False, name=None)]
        stmt = sql.SQL("INSERT INTO {} ({}) VALUES ({}) ON CONFLICT DO NOTHING").format(
            self._t(spec.name), sql.SQL(", ").join(map(sql.Identifier, spec.names)),
            sql.SQL(", ").join(sql.Placeholder() * len(spec.names)))
        with self._conn() as conn:
            cur = conn.cursor()
            cur.executemany(stmt, records)
            return int(cur.rowcount)

    def _read(self, spec: TableSpec, start: pd.Timestamp | None, end: pd.Timestamp | None, limit: int | None,
              equals: dict[str, Any]) -> pd.DataFrame:
        clauses, params = [], []
        for column, value in equals.items():
            clauses.append(sql.SQL("{} = %s").format(sql.Identifier(column)))
            params.append(value.to_pydatetime() if isinstance(value, pd.Timestamp) else value)
        for bound, op in ((start, ">="), (end, "<")):
            if bound is not None:
                clauses.append(sql.SQL("{} " + op + " %s").format(sql.Identifier(spec.time)))
                params.append(bound.to_pydatetime())
        where = sql.SQL("WHERE ") + sql.SQL(" AND ").join(clauses) if clauses else sql.SQL("")
        keys = [spec.time, *spec.key]
        asc = sql.SQL(", ").join(sql.SQL("{} ASC NULLS LAST").format(sql.Identifier(k)) for k in keys)
        kinds = list(spec.columns)
        inner = sql.SQL("SELECT * FROM {} {}").format(self._t(spec.name), where)
        if limit is not None:
            desc = sql.SQL(", ").join(sql.SQL("{} DESC NULLS FIRST").format(sql.Identifier(k)) for k in keys)
            inner = sql.SQL("({} ORDER BY {} LIMIT %s)").format(inner, desc)
            params.append(limit)
        else:
            inner = sql.SQL("({})").format(inner)
        query = sql.SQL("SELECT {} FROM {} t ORDER BY {}").format(self._columns(kinds), inner, asc)
        return self._fetch(query, params, kinds)

    # -- retention
    def _set_retention(self, stream: str, keep: pd.Timedelta | None) -> None:
        with self._conn() as conn:
            if keep is None:
                conn.execute(sql.SQL("DELETE FROM {} WHERE stream = %s").format(self._t("retention")), (stream,))
            else:
                conn.execute(sql.SQL("INSERT INTO {} VALUES (%s, %s) ON CONFLICT (stream) DO UPDATE "
                                     "SET keep_seconds = excluded.keep_seconds").format(self._t("retention")),
                             (stream, keep.total_seconds()))

    def _retention(self) -> list[tuple[str, pd.Timedelta]]:
        with self._conn() as conn:
            rows = conn.execute(sql.SQL("SELECT stream, keep_seconds FROM {} ORDER BY stream").format(
                self._t("retention"))).fetchall()
        return [(s, pd.Timedelta(seconds=k)) for s, k in rows]

    def _delete_before(self, stream: str, cutoff: pd.Timestamp) -> int:
        with self._conn() as conn:
            cur = conn.cursor()
            cur.execute(sql.SQL("DELETE FROM {} WHERE stream = %s AND ts < %s").format(self._t("points")),
                        (stream, cutoff.to_pydatetime()))
            deleted = cur.rowcount
            if self._rollups:
                hour = _floor(cutoff, pd.Timedelta("1h")).to_pydatetime()
                for table in ("points_1m", "points_1h"):
                    cur.execute(sql.SQL("DELETE FROM {} WHERE stream = %s AND bucket < %s").format(self._t(table)),
                                (stream, hour))
                cur.execute(sql.SQL("INSERT INTO {} VALUES (%s, %s) ON CONFLICT DO NOTHING").format(
                    self._t("rollup_dirty")), (stream, hour))
        return int(deleted)

    def schema_version(self) -> int:
        with self._conn() as conn:
            return int(conn.execute(sql.SQL("SELECT coalesce(max(version), 0) FROM {}").format(
                self._t("schema_version"))).fetchone()[0])

    def drop_schema(self) -> None:
        """Remove every table of this store (tests, and ``nexus restore --replace``)."""
        with self._conn() as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(self.schema)))

    def close(self) -> None:
        self._pool.close()


def every_param(q: Query) -> Any:
    return q.interval.to_pytimedelta()


def parts_empty(q: Query) -> pd.DataFrame:
    return pd.DataFrame(columns=["stream", "series", "field", "ts", *q.aggs])


def _floor(t: pd.Timestamp, every: pd.Timedelta) -> pd.Timestamp:
    return ORIGIN + ((t - ORIGIN) // every) * every


def _ceil(t: pd.Timestamp, every: pd.Timedelta) -> pd.Timestamp:
    floor = _floor(t, every)
    return floor if floor == t else floor + every


def _ranges(dirty: list[tuple[str, Any]]) -> list[tuple[str, Any, Any]]:
    """(stream, hour) pairs merged into (stream, lo, hi) runs of consecutive hours."""
    runs: list[tuple[str, Any, Any]] = []
    hour = pd.Timedelta("1h").to_pytimedelta()
    for stream, start in sorted(dirty):
        if runs and runs[-1][0] == stream and runs[-1][2] == start:
            runs[-1] = (stream, runs[-1][1], start + hour)
        else:
            runs.append((stream, start, start + hour))
    return runs


def _csv_options(kinds: Sequence[tuple[str, str]], block_size: int | None = None) -> dict[str, Any]:
    read = pacsv.ReadOptions(column_names=[n for n, _ in kinds], **({"block_size": block_size} if block_size else {}))
    convert = pacsv.ConvertOptions(column_types={n: _CSV_TYPES[k] for n, k in kinds}, strings_can_be_null=True,
                                   quoted_strings_can_be_null=False, true_values=["t"], false_values=["f"])
    return {"read_options": read, "convert_options": convert,
            "parse_options": pacsv.ParseOptions(newlines_in_values=True)}


def _parse_csv(source: io.BytesIO, kinds: Sequence[tuple[str, str]]) -> pd.DataFrame:
    if source.getbuffer().nbytes == 0:
        return pd.DataFrame({n: pd.Series([], dtype=object) for n, _ in kinds})
    return _to_frame(pacsv.read_csv(source, **_csv_options(kinds)), kinds)


def _to_frame(table: pa.Table, kinds: Sequence[tuple[str, str]]) -> pd.DataFrame:
    frame = table.to_pandas()
    for name, kind in kinds:
        if kind == "time":
            micros = frame[name].to_numpy(dtype="float64", na_value=np.nan)
            frame[name] = pd.to_datetime(micros, unit="us", utc=True).astype("datetime64[ns, UTC]")
    return frame
