"""Gateway ingest: records/s through HTTP NDJSON batches of 1,000 into one gateway process — beside the
same records written straight to the store (``store.write`` of ready batches) in the same run.

The gateway runs alone in its own process (``python -m nexus_kernel.gateway``, memory store, in-process
bus); this process is the client (httpx, keep-alive, ``CONCURRENCY`` requests in flight — many
producers at once, which is what lets the gateway's group commit share one validation and one store
transaction among the requests that arrive while the previous one is being written; see
``nexus_kernel/gateway/_coalesce.py``). Every request is answered only after its rows are committed.
Bodies are built, and the ``bench`` stream created (by one warm-up record), before the clock starts.
Ours includes parsing, validation, the store write, auth and audit bookkeeping per request; the stream's
pipeline then caches, analyses, windows and publishes the records (its default steps) after each answer.
Target (issue 11): ≥ 150,000 records/s and ≥ 1.7× the direct writes. Both sides write through the same
``DuckDBStore``, so a faster store speeds the peer too: the ratio measures what the gateway adds (parsing,
auth, the pipeline's steps) against what group commit saves. The gateway's batches reach the store with
the validator's categorical keys (the store's Arrow path); the peer's frames carry text keys, as a user's do.

Allowed lateness is set to a day in the gateway: with 16 requests in flight, batches arrive out of order
by up to ~160 s of event time, and the bench measures throughput, not the lateness policy (every
request asserts that all 1,000 records were accepted).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid

import numpy as np
import pandas as pd

BATCH = 1_000
SERIES = 100
CONCURRENCY = 16


def _batches(n_batches: int) -> list[pd.DataFrame]:
    out = []
    t0 = pd.Timestamp("2024-01-01", tz="UTC")
    for b in range(n_batches):
        idx = np.arange(b * BATCH, (b + 1) * BATCH)
        out.append(pd.DataFrame({
            "stream": pd.array(["bench"] * BATCH, dtype="string"),
            "series": pd.array([f"s{i % SERIES}" for i in idx], dtype="string"),
            "ts": t0 + pd.to_timedelta(idx // SERIES, unit="s"),
            "seq": idx.astype("int64"),
            "value": np.sin(idx / 50.0),
        }))
    return out


def _body(frame: pd.DataFrame) -> bytes:
    out = frame.drop(columns="stream").copy()
    out["ts"] = np.datetime_as_string(out["ts"].dt.tz_localize(None).to_numpy("datetime64[ms]"), unit="ms",
                                      timezone="UTC")
    return out.to_json(orient="records", lines=True).encode()


async def _send(url: str, token: str, bodies: list[bytes], concurrency: int) -> float:
    import httpx

    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson"}
    queue = list(reversed(bodies))
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as client:
        await client.get("/healthz")
        # setup, before the clock: the first record sent to a new name creates its stream (a managed
        # pipeline with the default steps, whose first build imports the analysis package)
        warm = await client.post("/api/streams/bench/records", content=b'{"series": "warmup", "ts": '
                                 b'"2024-01-01T00:00:00Z", "seq": -1, "value": 0.0}')
        warm.raise_for_status()

        async def worker() -> None:
            while queue:
                body = queue.pop()
                r = await client.post("/api/streams/bench/records", content=body)
                r.raise_for_status()
                assert r.json()["accepted"] == BATCH

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - start


def run(quick: bool = False) -> list[dict]:
    from nexus_kernel.config import load_settings
    from nexus_kernel.gateway import mint_token
    from nexus_kernel.storage import open_store

    n_batches = 50 if quick else 300
    frames = _batches(n_batches)
    bodies = [_body(f) for f in frames]
    records = n_batches * BATCH

    # peer: the same records written straight to a store of the same kind
    store = open_store("memory")
    start = time.perf_counter()
    for frame in frames:
        store.write(frame)
    peer_s = time.perf_counter() - start
    store.close()

    home = tempfile.mkdtemp(prefix="nexus-bench-")
    secret = uuid.uuid4().hex
    env = {**os.environ, "NEXUS_HOME": home, "NEXUS_STORE": "memory", "NEXUS_PORT": "0",
           "NEXUS_JWT_SECRET": secret, "NEXUS_RATE_LIMIT": "10000000", "NEXUS_RATE_LIMIT_ADDRESS": "10000000",
           "NEXUS_ALLOWED_LATENESS": "86400"}
    env.pop("NEXUS_REDIS_URL", None)
    proc = subprocess.Popen([sys.executable, "-m", "nexus_kernel.gateway"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        url = proc.stdout.readline().split()[1]
        token = mint_token(load_settings(home=home, jwt_secret=secret), "bench", "analyst")
        ours_s = asyncio.run(_send(url, token, bodies, concurrency=CONCURRENCY))
    finally:
        proc.terminate()
        proc.wait(10)
    ours, peer = records / ours_s, records / peer_s
    return [{"metric": "gateway-ingest", "unit": "records/s", "ours": round(ours), "peer": "store.write direct",
             "peer_value": round(peer), "ratio": round(ours / peer, 3),
             "params": {"records": records, "batch": BATCH, "series": SERIES, "format": "ndjson",
                        "concurrency": CONCURRENCY, "store": "memory", "target": 150_000,
                        "target_ratio": 1.7}}]


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv):
        print(row)
