"""store-postgres: rows/s written through PostgresStore beside ``psql \\copy ... from stdin`` of the same rows.

All three paths load the same long rows into a ``points`` table of the same shape (range-partitioned by
time, primary key, BRIN index; partitions created beforehand), each in its own fresh schema of a
throwaway database on the local server, in the same run:

* ours — ``PostgresStore.write``: Arrow → binary COPY into a temp staging table → INSERT ... ON CONFLICT
  DO NOTHING (idempotent) + the rollup dirty-hour queue;
* peer — ``psql -c "\\copy ... from stdin (format csv)"`` fed the rows as CSV (not idempotent: a repeat
  fails on the key); the issue's target is ours ≥ 70 % of it;
* contrast — psycopg ``executemany`` of INSERT ... ON CONFLICT DO NOTHING (on a slice, rate scaled).

Also the latency of a 1-day 1-minute rollup query (rollup refresh timed separately); scaled down to
what loads in a minute here — see ``params``.
"""

from __future__ import annotations

import io
import os
import subprocess
import time
import uuid

import pandas as pd
import psycopg
from psycopg import sql

from nexus_kernel.storage import PostgresStore

from .store_duckdb import DAY, _batch

ADMIN = os.environ.get("NEXUS_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def run(quick: bool = False) -> list[dict]:
    name = f"nexus_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    dsn = ADMIN.rsplit("/", 1)[0] + "/" + name
    try:
        return _run(dsn, quick)
    finally:
        with psycopg.connect(ADMIN, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _run(dsn: str, quick: bool) -> list[dict]:
    rows_per_batch, batches, n_series = (50_000, 4, 100) if quick else (100_000, 20, 100)
    seconds = rows_per_batch // n_series
    frames = [_batch(i * seconds, seconds, n_series, i * rows_per_batch) for i in range(batches)]
    total = rows_per_batch * batches
    span = (DAY, DAY + pd.Timedelta(seconds=seconds * batches))

    ours_store = PostgresStore(dsn, schema="ours")
    ours_store._ensure_partitions(*span)
    start = time.perf_counter()
    for frame in frames:
        ours_store.write(frame)
    ours = total / (time.perf_counter() - start)

    peer_store = PostgresStore(dsn, schema="peer")
    peer_store._ensure_partitions(*span)
    csv = io.StringIO()
    for frame in frames:
        frame.assign(field="value", attrs="")[["stream", "series", "field", "ts", "seq", "value", "attrs"]] \
            .to_csv(csv, header=False, index=False, date_format="%Y-%m-%d %H:%M:%S%z")
    data = csv.getvalue().encode()
    start = time.perf_counter()
    subprocess.run(["psql", dsn, "-q", "-c", "\\copy peer.points from stdin with (format csv)"], input=data,
                   check=True, capture_output=True)
    peer = total / (time.perf_counter() - start)
    with peer_store._conn() as conn:
        assert conn.execute("SELECT count(*) FROM peer.points").fetchone()[0] == total

    slice_rows = 20_000 if quick else 100_000
    contrast_store = PostgresStore(dsn, schema="contrast")
    contrast_store._ensure_partitions(*span)
    records = [(r.stream, r.series, "value", r.ts.to_pydatetime(), int(r.seq), float(r.value), None)
               for r in frames[0].head(slice_rows).itertuples(index=False)]
    with psycopg.connect(dsn) as conn:
        start = time.perf_counter()
        conn.cursor().executemany("INSERT INTO contrast.points VALUES (%s, %s, %s, %s, %s, %s, %s) "
                                  "ON CONFLICT DO NOTHING", records)
        conn.commit()
        many = slice_rows / (time.perf_counter() - start)

    out = [
        {"metric": "write rate", "unit": "rows/s", "ours": round(ours), "peer": "psql \\copy from stdin (csv)",
         "peer_value": round(peer), "ratio": round(ours / peer, 3),
         "params": {"rows": total, "batch_rows": rows_per_batch, "target_ratio": 0.7, "quick": quick}},
        {"metric": "write rate vs executemany", "unit": "rows/s", "ours": round(ours), "peer": "psycopg executemany",
         "peer_value": round(many), "ratio": round(ours / many, 3),
         "params": {"executemany_rows": slice_rows, "quick": quick}},
    ]

    # rollup query: 1 day, 1-minute buckets, every series
    q_series, hours = (100, 2) if quick else (1000, 2)
    qstore = PostgresStore(dsn, schema="query")
    chunk = max(1, 100_000 // q_series)
    load = time.perf_counter()
    for first in range(0, hours * 3600, chunk):
        qstore.write(_batch(first, min(chunk, hours * 3600 - first), q_series, first * q_series))
    load = time.perf_counter() - load
    refresh = time.perf_counter()
    qstore.refresh_rollups()
    refresh = time.perf_counter() - refresh
    timings = []
    for _ in range(3):
        start = time.perf_counter()
        frame = qstore.query("bench", start=DAY, end=DAY + pd.Timedelta("1D"), every="1min")
        timings.append(time.perf_counter() - start)
    out.append({"metric": "1-day 1-min rollup query", "unit": "s", "ours": round(min(timings), 3), "peer": None,
                "peer_value": None, "ratio": None,
                "params": {"series": q_series, "stored": f"{hours} h of 1-second data (scaled down from 1 week)",
                           "rows_stored": hours * 3600 * q_series, "rows_out": len(frame), "load_s": round(load, 1),
                           "rollup_refresh_s": round(refresh, 2), "quick": quick}})
    for store in (ours_store, peer_store, contrast_store, qstore):
        store.close()
    return out


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run(quick="--quick" in sys.argv), indent=1))
