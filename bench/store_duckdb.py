"""store-duckdb: rows/s appended through DuckDBStore, and the latency of a 1-day 1-minute rollup query.

Peer for appends: a bare ``INSERT INTO t SELECT * FROM arrow_table`` into a table of the same columns
with no idempotency check — the ceiling of what DuckDB itself does. The issue's target is
≥ 1,000,000 rows/s. The query is ``query(stream, start=day, end=day+1d, every="1min")`` over every
series; the issue asks for 1,000 series × a week of 1-second data (605 M rows), which does not fit this
2-core machine's time budget: full mode stores 1,000 series × one day of 1-second data (86.4 M rows —
the day queried; DuckDB's zone maps skip other days anyway), quick mode 100 series × 1 day. ``params``
says which.
"""

from __future__ import annotations

import time

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from nexus_kernel.storage import DuckDBStore

DAY = pd.Timestamp("2024-01-01T00:00:00Z")


def _batch(first_second: int, seconds: int, n_series: int, seq0: int = 0) -> pd.DataFrame:
    n = seconds * n_series
    t = np.repeat(np.arange(first_second, first_second + seconds, dtype="int64"), n_series)
    names = np.array([f"s{i:04d}" for i in range(n_series)], dtype=object)
    return pd.DataFrame({
        "stream": pd.array(np.full(n, "bench", dtype=object), dtype="string"),
        "series": pd.array(np.tile(names, seconds), dtype="string"),
        "ts": pd.to_datetime(DAY.value + t * 1_000_000_000, utc=True).as_unit("ns"),
        "seq": np.arange(seq0, seq0 + n, dtype="int64"),
        "value": np.random.default_rng(first_second).normal(size=n),
    })


def run(quick: bool = False) -> list[dict]:
    rows_per_batch, batches, n_series = (100_000, 10, 100) if quick else (200_000, 50, 100)
    seconds = rows_per_batch // n_series
    frames = [_batch(i * seconds, seconds, n_series, i * rows_per_batch) for i in range(batches)]
    store = DuckDBStore(":memory:")
    start = time.perf_counter()
    for frame in frames:
        store.write(frame)
    ours = rows_per_batch * batches / (time.perf_counter() - start)
    store.close()

    con = duckdb.connect()
    con.execute("SET TimeZone='UTC'")
    con.execute("CREATE TABLE t (stream VARCHAR, series VARCHAR, field VARCHAR, ts TIMESTAMPTZ, seq BIGINT, "
                "value DOUBLE, attrs VARCHAR)")
    start = time.perf_counter()
    for frame in frames:  # the peer also gets its long rows from the same pandas batch
        long = frame.assign(field="value", attrs=pd.array([None] * len(frame), dtype="string"))
        con.register("a", pa.Table.from_pandas(long[["stream", "series", "field", "ts", "seq", "value", "attrs"]],
                                               preserve_index=False))
        con.execute("INSERT INTO t SELECT * FROM a")
        con.unregister("a")
    peer = rows_per_batch * batches / (time.perf_counter() - start)
    con.close()
    rows = [{"metric": "append rate", "unit": "rows/s", "ours": round(ours), "peer": "duckdb bare INSERT from Arrow",
             "peer_value": round(peer), "ratio": round(ours / peer, 3),
             "params": {"rows": rows_per_batch * batches, "batch_rows": rows_per_batch, "fields": 1,
                        "target_rows_per_s": 1_000_000, "quick": quick}}]

    q_series = 100 if quick else 1000
    store = DuckDBStore(":memory:")
    chunk = max(1, 200_000 // q_series)
    load = time.perf_counter()
    for first in range(0, 86_400, chunk):
        store.write(_batch(first, min(chunk, 86_400 - first), q_series, first * q_series))
    load = time.perf_counter() - load
    timings = []
    for _ in range(3):
        start = time.perf_counter()
        out = store.query("bench", start=DAY, end=DAY + pd.Timedelta("1D"), every="1min")
        timings.append(time.perf_counter() - start)
    store.close()
    rows.append({"metric": "1-day 1-min rollup query", "unit": "s", "ours": round(min(timings), 3), "peer": None,
                 "peer_value": None, "ratio": None,
                 "params": {"series": q_series, "stored": "1 day of 1-second data (scaled down from 1 week)",
                            "rows_stored": 86_400 * q_series, "rows_out": len(out), "load_s": round(load, 1),
                            "quick": quick}})
    return rows


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run(quick="--quick" in sys.argv), indent=1))
