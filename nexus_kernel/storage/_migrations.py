"""Versioned schema migrations, shared by every backend.

Each :class:`Migration` has a version, a description and one function that receives a
:class:`Context` — the backend's way to run a statement whose identifiers are filled in safely
(``psycopg.sql.Identifier`` for PostgreSQL, double-quoted for DuckDB). Version numbers are the same for
every backend (a step a dialect does not need is a no-op there), so a backup records one version.
Applied versions are rows of ``schema_version``; :func:`upgrade` applies the missing ones in order, in
one transaction, under the backend's lock.

=======  =========================================================================================
version  what
=======  =========================================================================================
1        ``points`` (long rows). PostgreSQL: range-partitioned by ``ts`` with a BRIN index on ``ts``
         (or a hypertable with compression when TimescaleDB exists). DuckDB: no index — writes
         dedupe with an anti-join (see ``_duckdb``).
2        the auxiliary tables of ``_tables.TABLES`` and ``retention``
3        PostgreSQL rollups ``points_1m``/``points_1h`` and their dirty-hour queue (continuous
         aggregates under TimescaleDB); no-op for DuckDB
4        anchoring: ``log_leaves``, ``log_heads``, ``anchor_queue``, ``anchor_receipts``, ``ledger``
         (PostgreSQL: an index on ``log_leaves.item_id``, which the verifier looks items up by)
5        drops ``anchors`` (made by 2 as a placeholder, never written: anchoring has its tables of 4)
=======  =========================================================================================

Caveat: a migration, once released, is never edited; change the schema with a new one.

Example
-------
>>> [m.version for m in MIGRATIONS]
[1, 2, 3, 4, 5]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ._tables import RETIRED_TABLES, TABLES, V2_TABLES, V4_TABLES, TableSpec

__all__ = ["Migration", "MIGRATIONS", "LATEST", "Context", "upgrade"]

TYPES = {
    "duckdb": {"text": "VARCHAR", "int": "BIGINT", "float": "DOUBLE", "bool": "BOOLEAN", "time": "TIMESTAMPTZ"},
    "postgresql": {"text": "text", "int": "bigint", "float": "double precision", "bool": "boolean",
                   "time": "timestamptz"},
}


class Context(Protocol):
    dialect: str
    timescale: bool

    def run(self, template: str, params: tuple[Any, ...] = (), **names: str) -> None:
        """Run ``template`` with ``{name}`` replaced by the quoted identifier of table/index ``names``."""

    def scalar(self, template: str, params: tuple[Any, ...] = (), **names: str) -> Any: ...

    def column_list(self, spec: TableSpec) -> str:
        """``"col" TYPE, ..., PRIMARY KEY (...)`` for a spec; column names are ours, not user input."""

    def qualified(self, name: str) -> str:
        """The schema-qualified, quoted name of a table as text (for ``regclass`` parameters)."""


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    apply: Callable[[Context], None]


def _points(ctx: Context) -> None:
    cols = ("stream {t} NOT NULL, series {t} NOT NULL, field {t} NOT NULL, ts {ts} NOT NULL, "
            "seq {i} NOT NULL, value {f}, attrs {t}")
    types = TYPES[ctx.dialect]
    cols = cols.replace("{t}", types["text"]).replace("{ts}", types["time"]).replace("{i}", types["int"])
    cols = cols.replace("{f}", types["float"])
    if ctx.dialect == "duckdb":
        ctx.run(f"CREATE TABLE {{points}} ({cols})", points="points")
        return
    key = "PRIMARY KEY (stream, series, field, ts, seq)"
    if ctx.timescale:  # guarded: only when the extension is installed (not on the machines tested here)
        ctx.run(f"CREATE TABLE {{points}} ({cols}, {key})", points="points")
        ctx.run("SELECT create_hypertable(%s::regclass, 'ts', chunk_time_interval => interval '1 day')",
                (ctx.qualified("points"),))
        ctx.run("ALTER TABLE {points} SET (timescaledb.compress, "
                "timescaledb.compress_segmentby = 'stream, series, field')", points="points")
        ctx.run("SELECT add_compression_policy(%s::regclass, interval '7 days')", (ctx.qualified("points"),))
        return
    ctx.run(f"CREATE TABLE {{points}} ({cols}, {key}) PARTITION BY RANGE (ts)", points="points")
    ctx.run("CREATE INDEX {index} ON {points} USING brin (ts)", points="points", index="points_ts_brin")


def _aux(ctx: Context) -> None:
    for name in V2_TABLES:  # as they stood at version 2; tables added later come with their own migration
        spec = TABLES[name] if name in TABLES else RETIRED_TABLES[name]
        ctx.run(f"CREATE TABLE {{table}} ({ctx.column_list(spec)})", table=name)
    types = TYPES[ctx.dialect]
    ctx.run(f"CREATE TABLE {{table}} (stream {types['text']} PRIMARY KEY, keep_seconds {types['float']} NOT NULL)",
            table="retention")


_ROLLUP_COLS = ("stream text NOT NULL, series text NOT NULL, field text NOT NULL, bucket timestamptz NOT NULL, "
                "n bigint NOT NULL, total double precision, lo double precision, hi double precision, "
                "last_value double precision, last_ts timestamptz, last_seq bigint")


def _rollups(ctx: Context) -> None:
    if ctx.dialect != "postgresql":
        return
    for name, width in (("points_1m", "1 minute"), ("points_1h", "1 hour")):
        if ctx.timescale:  # guarded: continuous aggregates, refreshed by TimescaleDB's own policy
            ctx.run(
                "CREATE MATERIALIZED VIEW {view} WITH (timescaledb.continuous) AS "
                f"SELECT stream, series, field, time_bucket('{width}', ts) AS bucket, count(value) AS n, "
                "sum(value) AS total, min(value) AS lo, max(value) AS hi, last(value, ts) AS last_value, "
                "max(ts) AS last_ts, last(seq, ts) AS last_seq FROM {points} GROUP BY 1, 2, 3, 4 WITH NO DATA",
                view=name, points="points")
            ctx.run(f"SELECT add_continuous_aggregate_policy(%s::regclass, start_offset => NULL, "
                    f"end_offset => interval '{width}', schedule_interval => interval '{width}')",
                    (ctx.qualified(name),))
            continue
        ctx.run(f"CREATE TABLE {{table}} ({_ROLLUP_COLS}, PRIMARY KEY (stream, bucket, series, field))", table=name)
    if not ctx.timescale:
        ctx.run("CREATE TABLE {table} (stream text NOT NULL, hour timestamptz NOT NULL, PRIMARY KEY (stream, hour))",
                table="rollup_dirty")
        # points written before this version: queue their hours so the first query builds their rollups
        ctx.run("INSERT INTO {dirty} SELECT DISTINCT stream, date_bin('1 hour', ts, '2000-01-03T00:00:00Z') "
                "FROM {points}", dirty="rollup_dirty", points="points")


def _anchoring(ctx: Context) -> None:
    for name in V4_TABLES:
        ctx.run(f"CREATE TABLE {{table}} ({ctx.column_list(TABLES[name])})", table=name)
    ctx.run("CREATE INDEX {index} ON {table} (item_id)", table="log_leaves", index="log_leaves_item_id")


def _drop_placeholder_anchors(ctx: Context) -> None:
    ctx.run("DROP TABLE IF EXISTS {table}", table="anchors")


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "points", _points),
    Migration(2, "auxiliary tables and retention", _aux),
    Migration(3, "rollups (PostgreSQL)", _rollups),
    Migration(4, "anchoring: Merkle log, tree heads, anchor queue and ledger", _anchoring),
    Migration(5, "drop the placeholder anchors table", _drop_placeholder_anchors),
)
LATEST = MIGRATIONS[-1].version


def upgrade(ctx: Context, target: int | None = None) -> list[int]:
    """Apply the migrations above the current version up to ``target`` (default: all); returns those applied.

    The caller runs this inside one transaction holding its lock.
    """
    target = LATEST if target is None else target
    if not 0 <= target <= LATEST:
        raise ValueError(f"schema version must be between 0 and {LATEST}")
    types = TYPES[ctx.dialect]
    ctx.run(f"CREATE TABLE IF NOT EXISTS {{table}} (version {types['int']} PRIMARY KEY, "
            f"description {types['text']} NOT NULL, applied_at {types['time']} NOT NULL)", table="schema_version")
    current = ctx.scalar("SELECT coalesce(max(version), 0) FROM {table}", table="schema_version")
    if current > LATEST:
        raise RuntimeError(f"the store's schema is version {current}, newer than this nexus_kernel ({LATEST}): upgrade it")
    applied = []
    for migration in MIGRATIONS:
        if current < migration.version <= target:
            migration.apply(ctx)
            ctx.run("INSERT INTO {table} VALUES (%s, %s, now())", (migration.version, migration.description),
                    table="schema_version")
            applied.append(migration.version)
    return applied
