"""Engine throughput: simulator → validate → 1-minute event-time windows (count, mean, min, max)
for 1,000 series, on one core — beside a plain per-record streamz pipeline computing the same
aggregates in the same run.

Ours is the real :class:`~nexus_kernel.engine.Pipeline` (micro-batches of 100,000 records, generation
included in the timing). The peer emits one record at a time through streamz nodes — a validation
``map`` and an aggregating ``sink`` that keeps per-(series, window) count/sum/min/max and closes
windows on the watermark — with its records generated *before* the clock starts, which favours it.
Both see the same records; the aggregates are compared, so the two do the same work.
Target: ≥ 1,000,000 events/s and ≥ 20× the per-record pipeline.
"""

from __future__ import annotations

import math
import os
import tempfile
import time

import numpy as np
import pandas as pd
import streamz

SERIES = 1_000
WINDOW_NS = 60 * 1_000_000_000
START = "2024-01-01T00:00:30Z"  # fixed, so that every run cuts the same windows


def _pin_one_core() -> str:
    try:
        core = sorted(os.sched_getaffinity(0))[0]
        os.sched_setaffinity(0, {core})
        return f"core {core}"
    except (AttributeError, OSError):
        return "unpinned"


def _ours(events: int) -> tuple[float, pd.DataFrame]:
    from nexus_kernel.config import load_settings
    from nexus_kernel.engine import Pipeline, sources

    settings = load_settings(home=tempfile.mkdtemp(prefix="nexus-bench-"), allowed_lateness=0,
                             batch_size=100_000)
    sim = sources.simulator(series=SERIES, freq="1s", rate=None, seed=1, limit=events, batch_size=100_000,
                            start=START)
    pipe = (Pipeline.from_source(sim, settings=settings).validate()
            .window("1min", agg=["count", "mean", "min", "max"]).collect())
    started = time.perf_counter()
    pipe.run()
    elapsed = time.perf_counter() - started
    status = pipe.status()
    assert status["records_in"] == events and status["dead_letters"] == 0, status
    return events / elapsed, pipe.results()


def _peer(events: int) -> tuple[float, pd.DataFrame]:
    from nexus_kernel.engine import sources

    sim = sources.simulator(series=SERIES, freq="1s", rate=None, seed=1, batch_size=100_000, start=START)
    ticks_per_batch = 100_000 // SERIES  # the same draws, in the same order, as the pipeline's source
    frame = pd.concat([sim.generate(ticks_per_batch) for _ in range(math.ceil(events / 100_000))],
                      ignore_index=True).iloc[:events]
    records = list(zip(frame["series"].astype(str), frame["ts"].astype("int64").to_numpy().tolist(),
                       frame["value"].to_numpy().tolist()))
    windows: dict[tuple[str, int], list[float]] = {}
    closed: list[tuple[str, int, int, float, float, float]] = []
    watermark = [-1]

    def validate(record):
        series, ts, value = record
        if not series or ts is None or not isinstance(value, float) or not math.isfinite(value):
            return None
        return record

    def aggregate(record):
        if record is None:
            return
        series, ts, value = record
        start = ts - ts % WINDOW_NS
        acc = windows.get((series, start))
        if acc is None:
            windows[(series, start)] = [1, value, value, value]
        else:
            acc[0] += 1
            acc[1] += value
            if value < acc[2]:
                acc[2] = value
            if value > acc[3]:
                acc[3] = value
        if ts > watermark[0]:
            watermark[0] = ts
            for key in [k for k in windows if k[1] + WINDOW_NS <= ts] if ts % WINDOW_NS == 0 else []:
                n, s, lo, hi = windows.pop(key)
                closed.append((key[0], key[1], n, s / n, lo, hi))

    source = streamz.Stream()
    source.map(validate).sink(aggregate)
    started = time.perf_counter()
    for record in records:
        source.emit(record)
    for key, (n, s, lo, hi) in list(windows.items()):
        closed.append((key[0], key[1], n, s / n, lo, hi))
    elapsed = time.perf_counter() - started
    out = pd.DataFrame(closed, columns=["series", "start", "value_count", "value_mean", "value_min", "value_max"])
    return events / elapsed, out


def _same_aggregates(ours: pd.DataFrame, peer: pd.DataFrame) -> bool:
    a = ours.assign(start=ours["window_start"].astype("int64"), series=ours["series"].astype(str))
    a = a.sort_values(["series", "start"]).reset_index(drop=True)
    b = peer.sort_values(["series", "start"]).reset_index(drop=True)
    if len(a) != len(b) or (a["value_count"].to_numpy() != b["value_count"].to_numpy()).any():
        return False
    return bool(np.allclose(a["value_mean"], b["value_mean"]) and np.allclose(a["value_max"], b["value_max"]))


def run(quick: bool = False) -> list[dict]:
    core = _pin_one_core()
    ours_events = 1_000_000 if quick else 10_000_000
    peer_events = 200_000 if quick else 1_000_000
    _ours(200_000)  # warm-up: imports, first allocations
    ours_rate, ours_out = _ours(ours_events)
    peer_rate, peer_out = _peer(peer_events)
    # correctness on the common prefix: both pipelines over the same first peer_events records
    _, check = _ours(peer_events)
    same = _same_aggregates(check, peer_out)
    params = {"series": SERIES, "window": "1min", "aggregates": ["count", "mean", "min", "max"],
              "ours_events": ours_events, "peer_events": peer_events, "batch": 100_000, "pinned": core,
              "same_aggregates": same}
    return [
        {"metric": "engine_events_per_s", "unit": "events/s", "ours": round(ours_rate), "peer": "streamz per-record",
         "peer_value": round(peer_rate), "ratio": round(ours_rate / peer_rate, 1), "params": params},
        {"metric": "engine_target", "unit": "events/s", "ours": round(ours_rate), "peer": "target",
         "peer_value": 1_000_000, "ratio": round(ours_rate / 1_000_000, 2), "params": {"also": "≥ 20× peer"}},
    ]
