"""The fluent pipeline: steps, dead letters, lifecycle, micro-batching, backpressure."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pandas as pd
import pytest

from nexus_kernel.engine import Pipeline, PipelineStateError, rebatch, sources
from nexus_kernel.engine.sources import BoundedBuffer, Source


def frame(n: int, start: int = 0, series: str = "a") -> pd.DataFrame:
    return pd.DataFrame({
        "series": series,
        "ts": pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(np.arange(start, start + n), unit="s"),
        "value": np.arange(start, start + n, dtype="float64"),
    })


def test_fluent_pipeline_validates_windows_and_collects(settings):
    raw = frame(180).astype({"value": object})
    raw.loc[5, "value"] = "oops"
    pipe = (Pipeline.from_source(sources.iterable(raw, batch_size=50), settings=settings)
            .validate().window("1min", agg=["count", "mean"]).collect())
    pipe.run(timeout=30)
    out = pipe.results()
    assert list(out["value_count"]) == [59, 60, 60]
    status = pipe.status()
    assert status["state"] == "stopped" and status["records_in"] == 180
    assert status["dead_letters"] == 1 and status["dead_letter_reasons"] == {"non_numeric": 1}
    assert "series=" not in repr(pipe) and "iterable → validate → window" in repr(pipe)


def test_a_failing_step_dead_letters_its_batch_and_the_stream_goes_on(settings):
    calls = {"n": 0}

    def flaky(batch):
        calls["n"] += 1
        if calls["n"] == 2:
            raise ZeroDivisionError("boom")
        return batch

    pipe = (Pipeline.from_source(sources.iterable(frame(30), batch_size=10), settings=settings)
            .batch(size=10).validate().apply(flaky).collect())
    pipe.run(timeout=30)
    assert len(pipe.results()) == 20
    status = pipe.status()
    assert status["errors"] == 1 and "ZeroDivisionError: boom" in status["last_error"]
    dead = pipe.dead_letters.recent()
    assert len(dead) == 10 and set(dead["reason"]) == {"processing_error"}
    assert "boom" in dead["detail"].iat[0]


class _Exploding(Source):
    kind = "exploding"

    async def batches(self):
        yield frame(3)
        raise ConnectionError("feed went away")


def test_a_failing_source_marks_the_pipeline_failed(settings):
    pipe = Pipeline.from_source(_Exploding(), settings=settings).validate().collect()
    pipe.run(timeout=10)
    assert pipe.state == "failed" and "feed went away" in pipe.last_error
    assert len(pipe.results()) == 3


def test_lifecycle_start_pause_resume_stop_and_refusals(settings):
    sim = sources.simulator(series=3, freq="1s", rate=2_000, seed=1)
    pipe = Pipeline.from_source(sim, settings=settings).validate()
    with pytest.raises(PipelineStateError):
        pipe.pause()
    pipe.start()
    with pytest.raises(PipelineStateError, match="already running"):
        pipe.start()
    time.sleep(0.3)
    pipe.pause()
    time.sleep(0.2)  # let a batch in flight land
    paused_at = pipe.records_in
    time.sleep(0.4)
    assert pipe.records_in == paused_at, "a paused pipeline must not take records"
    assert pipe.status()["state"] == "paused"
    pipe.resume()
    deadline = time.monotonic() + 10
    while pipe.records_in == paused_at and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pipe.records_in > paused_at
    pipe.stop()
    assert pipe.state == "stopped"
    pipe.stop()  # idempotent: a second stop does nothing
    assert pipe.state == "stopped"
    with pytest.raises(PipelineStateError, match="cannot stop"):
        Pipeline.from_source(sources.simulator(series=1), settings=settings).stop()  # never started
    with pytest.raises(PipelineStateError, match="before the pipeline starts"):
        pipe.validate()


def test_stop_flushes_open_windows(settings):
    sim = sources.simulator(series=2, freq="1s", rate=None, seed=3, limit=None)
    pipe = Pipeline.from_source(sim, settings=settings).validate().window("1h").collect()
    pipe.start()
    time.sleep(0.3)
    pipe.stop()
    out = pipe.results()
    assert len(out) >= 2 and out["value_count"].sum() == pipe.records_in


def test_spec_round_trip(settings):
    sim = sources.simulator(series=2, rate=None, seed=5, limit=100)
    pipe = (Pipeline.from_source(sim, name="plant", settings=settings).validate()
            .apply("scale", factor=2.0).filter("series_in", series=["s0000"]).window("30s", agg=["max"]))
    spec = pipe.spec()
    assert spec["steps"][1] == {"kind": "apply", "params": {"transform": "scale", "fields": ["value"],
                                                            "factor": 2.0, "offset": 0.0}}
    assert spec["steps"][2] == {"kind": "filter", "params": {"predicate": "series_in", "series": ["s0000"]}}
    again = Pipeline.from_spec(spec, settings)
    assert again.spec() == spec and again.name == "plant"
    with pytest.raises(TypeError, match="cannot be saved"):
        Pipeline.from_source(sim, settings=settings).apply(lambda b: b).spec()
    with pytest.raises(TypeError, match="cannot be saved"):
        Pipeline.from_source(sim, settings=settings).filter(lambda b: b["value"] > 0).spec()


def test_rebatch_by_size_and_by_time():
    async def scenario():
        async def trickle():
            for i in range(5):
                yield frame(3, start=i * 3)
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)
            yield frame(25, start=100)

        buffer = BoundedBuffer(trickle(), 4)
        sizes, stamps = [], []
        t0 = time.monotonic()
        async for b in rebatch(buffer, size=10, interval=0.12):
            sizes.append(len(b))
            stamps.append(time.monotonic() - t0)
        return sizes

    sizes = asyncio.run(scenario())
    assert sum(sizes) == 40
    assert sizes[-1] == 25  # a big frame passes whole: the pipeline cuts it and commits once
    assert len(sizes) >= 3 and all(s < 10 for s in sizes[:-1])  # the trickle was flushed by time


def test_big_frames_are_cut_to_the_batch_size_and_committed_once(settings):
    class Counting(Source):
        kind = "counting"

        def __init__(self):
            super().__init__()
            self.commits_after: list[int] = []
            self.seen = 0

        async def batches(self):
            yield frame(25)
            yield frame(5, start=25)

        async def commit(self):
            self.commits_after.append(self.seen)

    source = Counting()
    sizes = []

    def observe(batch):
        source.seen += len(batch)
        sizes.append(len(batch))
        return batch

    Pipeline.from_source(source, settings=settings).batch(size=10, interval=0.01).apply(observe).run(timeout=10)
    assert sizes[:3] == [10, 10, 5] and sum(sizes) == 30
    assert source.commits_after[0] == 25, "commit only after every piece of the joined frame was handled"


def test_bounded_buffer_applies_backpressure():
    produced = []

    async def scenario():
        async def endless():
            i = 0
            while True:
                produced.append(i)
                yield frame(1, start=i)
                i += 1

        buffer = BoundedBuffer(endless(), 3)
        it = buffer.__aiter__()
        await it.__anext__()
        await asyncio.sleep(0.2)  # consumer stalls: the producer must stop at the bound
        await buffer.aclose()

    asyncio.run(scenario())
    assert len(produced) <= 3 + 2


def test_stop_after_the_source_ran_out_is_a_no_op(settings):
    sim = sources.simulator(series=2, freq="1s", rate=None, seed=1, limit=10)
    pipe = Pipeline.from_source(sim, settings=settings).validate().collect()
    pipe.start()
    deadline = time.monotonic() + 10
    while pipe.state == "running" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert pipe.state == "stopped" and len(pipe.results()) == 10
    pipe.stop()
    assert pipe.state == "stopped" and len(pipe.results()) == 10
