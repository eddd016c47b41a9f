"""Event time from the future: one far-future record must not make a series refuse every real record.

The finding: ``{"series": "w", "ts": "2200-01-01T00:00:00Z"}`` was accepted, the validator's newest time
for ``w`` jumped to 2200, and every later real record of ``w`` was refused as ``late``. Now a record more
than ``max_future`` seconds ahead of the stream's clock is dead-lettered as ``future`` and moves no
watermark — neither the validator's nor a window's — while sources that run ahead of real time on their
own timeline (the simulator) keep every record.
"""

from __future__ import annotations

import asyncio

import httpx
import numpy as np
import pandas as pd

from nexus_kernel.config import load_settings
from nexus_kernel.engine import Pipeline, sources
from nexus_kernel.storage import open_store

FAR = "2200-01-01T00:00:00Z"


def _post(gw, records: list[dict]) -> dict:
    r = httpx.post(f"{gw.url}/api/streams/pumps/records", json=records,
                   headers={"Authorization": f"Bearer {gw.token('analyst')}"})
    assert r.status_code == 200, r.text
    return r.json()


def _recent(n: int, series: str = "w", seq0: int = 0) -> list[dict]:
    """``n`` real records of one series, one second apart, ending a second ago."""
    end = pd.Timestamp.now(tz="UTC").floor("s") - pd.Timedelta("1s")
    times = pd.date_range(end=end, periods=n, freq="s")
    return [{"series": series, "ts": t.isoformat(), "seq": seq0 + i, "value": float(i)} for i, t in enumerate(times)]


def test_a_far_future_record_over_rest_is_dead_lettered_and_blocks_nothing(gw):
    poison = _post(gw, [{"series": "w", "ts": FAR, "seq": 999, "value": 1.0}])
    assert poison["accepted"] == 0
    assert [(e["index"], e["error"]) for e in poison["errors"]] == [(0, "future")]
    assert "ahead of the stream's clock" in poison["errors"][0]["detail"]

    real = _post(gw, _recent(5))
    assert (real["accepted"], real["written"], real["errors"]) == (5, 5, [])
    stored = gw.services.store.query("pumps")
    assert sorted(stored["value"].tolist()) == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert stored["ts"].max() < pd.Timestamp.now(tz="UTC")
    dead = gw.services.store.read("dead_letters", stream="pumps")
    assert dead["reason"].tolist() == ["future"] and "2200" in dead["payload"].iat[0]
    newest = gw.services.ingest.validator("pumps").newest()
    assert newest["w"] < pd.Timestamp.now(tz="UTC")  # the watermark never saw 2200


def test_records_within_max_future_are_accepted_and_zero_means_no_slack(gw, serve_with):
    ahead = pd.Timestamp.now(tz="UTC") + pd.Timedelta("60s")  # a sender whose clock runs a minute fast
    record = {"series": "w", "ts": ahead.isoformat(), "value": 1.0}
    assert _post(gw, [record])["accepted"] == 1  # default max_future: 300 s
    with serve_with(max_future=0) as strict:
        refused = _post(strict, [record] + _recent(2, seq0=10))
        assert refused["accepted"] == 2 and [e["error"] for e in refused["errors"]] == ["future"]


def _frame(rows: list[tuple[str, pd.Timestamp, float]], seq0: int = 0) -> pd.DataFrame:
    """Rows in the batch contract's dtypes (what a window step expects without a validator before it)."""
    return pd.DataFrame({
        "stream": pd.array(["pumps"] * len(rows), dtype="string"),
        "series": pd.array([r[0] for r in rows], dtype="string"),
        "ts": pd.DatetimeIndex([r[1] for r in rows]).as_unit("ns"),
        "seq": np.arange(seq0, seq0 + len(rows), dtype=np.int64),
        "value": np.array([r[2] for r in rows], dtype="float64"),
    })


def _real_rows(n: int) -> list[tuple[str, pd.Timestamp, float]]:
    end = pd.Timestamp.now(tz="UTC").floor("min") - pd.Timedelta("1s")
    return [("w", t, float(i)) for i, t in enumerate(pd.date_range(end=end, periods=n, freq="10s"))]


def test_pipeline_validate_then_window_refuses_the_future_record_and_keeps_the_watermark():
    settings = load_settings(allowed_lateness=0)
    store = open_store("memory")
    far = [("w", pd.Timestamp(FAR), 1.0)]
    real = _real_rows(12)
    source = sources.iterable([pd.DataFrame([{"series": s, "ts": t.isoformat(), "value": v} for s, t, v in rows])
                               for rows in (far, real)])
    pipe = (Pipeline.from_source(source, name="pumps", settings=settings)
            .validate().sink(store).window("1min", agg=["count"]).collect())
    asyncio.run(pipe.run_async())

    assert pipe.dead_letters.counts() == {"future": 1}
    assert len(store.query("pumps")) == 12  # every real record stored, none refused as late
    window = pipe.steps[-1]
    assert window.watermark is not None and window.watermark <= real[-1][1].value  # never near 2200
    windows = pipe.results()
    assert windows["value_count"].sum() == 12 and windows["window_start"].max() < pd.Timestamp.now(tz="UTC")


def test_window_without_a_validator_before_it_is_not_poisoned():
    settings = load_settings(allowed_lateness=0)
    far, real = _frame([("w", pd.Timestamp(FAR), 1.0)]), _frame(_real_rows(12), seq0=1)
    pipe = (Pipeline.from_source(sources.iterable([far, real]), name="pumps", settings=settings)
            .window("1min", agg=["count"]).collect())
    asyncio.run(pipe.run_async())

    window = pipe.steps[-1]
    assert pipe.dead_letters.counts() == {"future": 1} and window.future == 1 and window.late == 0
    assert window.watermark is not None and window.watermark <= real["ts"].max().value
    assert pipe.results()["value_count"].sum() == 12


def test_a_simulator_running_ahead_of_the_wall_clock_keeps_every_record():
    # 20 series at 1 s as fast as consumed: event time runs about 2,000 s past now within the run
    settings = load_settings(allowed_lateness=0)
    sim = sources.simulator(series=20, freq="1s", rate=None, seed=3, limit=40_000)
    pipe = Pipeline.from_source(sim, name="sensors", settings=settings).validate().collect()
    asyncio.run(pipe.run_async())

    out = pipe.results()
    assert out["ts"].max() > pd.Timestamp.now(tz="UTC") + pd.Timedelta(settings.max_future, unit="s")
    assert len(out) == 40_000 and pipe.dead_letters.counts() == {}


def test_a_fast_replay_of_recorded_history_keeps_every_record(tmp_path):
    # speed: one hour of data per millisecond; the file's times are in the past, so the wall clock judges
    path = tmp_path / "pumps.csv"
    times = pd.date_range("2024-01-01", periods=5_000, freq="1s", tz="UTC")
    pd.DataFrame({"ts": times.strftime("%Y-%m-%dT%H:%M:%SZ"), "value": np.arange(5_000.0)}).to_csv(path, index=False)
    replay = sources.replay(path, time="ts", speed=3_600_000, batch_size=500)
    pipe = Pipeline.from_source(replay, settings=load_settings()).validate().collect()
    asyncio.run(pipe.run_async())
    assert len(pipe.results()) == 5_000 and pipe.dead_letters.counts() == {}
