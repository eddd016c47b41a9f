"""The ingest inlet: records from outside enter a running pipeline, on its loop, with per-request answers.

Pipelines run where a runtime runs them (its ``nexus-pipelines`` thread) and the callers submit from their
own loop, as the gateway does; no part is mocked.
"""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pandas as pd
import pytest

from nexus_kernel.engine import Pipeline, sources
from nexus_kernel.engine.sources import IngestRefused
from nexus_kernel.runtime import Runtime
from nexus_kernel.storage import open_store

T0 = pd.Timestamp("2024-01-01", tz="UTC")


def _records(start: int, n: int, series: str = "a") -> pd.DataFrame:
    return pd.DataFrame({"series": [series] * n,
                         "ts": [(T0 + pd.Timedelta(seconds=i)).isoformat() for i in range(start, start + n)],
                         "seq": np.arange(start, start + n), "value": np.arange(start, start + n, dtype=float)})


@pytest.fixture
def runtime(settings):
    rt = Runtime.open(settings.model_copy(update={"allowed_lateness": 86400.0, "store": "memory"}))
    yield rt
    rt.close()


def _start(rt: Runtime, pipe: Pipeline) -> Pipeline:
    pipe.services.update(rt.services.as_dict())
    return pipe.start(loop=rt.loop)


def test_records_submitted_from_another_loop_are_handled_on_the_pipeline_thread(runtime):
    threads: list[str] = []

    def where(batch: pd.DataFrame) -> pd.DataFrame:
        threads.append(threading.current_thread().name)
        return batch

    pipe = _start(runtime, Pipeline(sources.make("ingest"), name="pumps", settings=runtime.settings)
                  .validate().store().then(where))
    bad = _records(0, 3)
    bad.loc[1, "ts"] = "never"
    answer = asyncio.run(pipe.inlet.submit(bad, index=[10, 11, 12]))
    assert (answer["accepted"], answer["rejected"], answer["written"]) == (2, 1, 2)
    assert [(e["index"], e["error"]) for e in answer["errors"]] == [(11, "bad_time")]
    assert sorted(runtime.store.query("pumps")["seq"]) == [0, 2]
    dead = runtime.store.read("dead_letters", stream="pumps")
    assert dead["reason"].tolist() == ["bad_time"] and '"never"' in dead["payload"].iat[0]
    deadline = asyncio.run(_until(lambda: threads))
    assert deadline and set(threads) == {"nexus-pipelines"}


async def _until(check, timeout: float = 10.0) -> bool:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not check():
        if loop.time() > end:
            return False
        await asyncio.sleep(0.02)
    return True


def test_concurrent_requests_share_one_round_and_each_gets_its_own_counts(runtime):
    pipe = _start(runtime, Pipeline(sources.make("ingest"), name="pumps", settings=runtime.settings)
                  .validate().store())
    bodies = [_records(0, 100), _records(50, 100), _records(0, 100), _records(300, 10, series="b")]
    bodies[1]["value"] = bodies[1]["value"].astype(object)
    bodies[1].loc[60, "value"] = "lots"  # body index 60 of the second request (seq 110, a new one)

    async def together():
        return await asyncio.gather(*(pipe.inlet.submit(b) for b in bodies))

    answers = asyncio.run(together())
    assert pipe.inlet.rounds == 1 and pipe.inlet.requests == 4
    assert [(a["accepted"], a["rejected"], a["written"]) for a in answers] == \
        [(100, 0, 100), (99, 1, 49), (100, 0, 0), (10, 0, 10)]
    assert [(e["index"], e["error"]) for e in answers[1]["errors"]] == [(60, "non_numeric")]
    assert len(runtime.store.query("pumps")) == 159


def test_the_answer_comes_after_the_commit_not_after_the_steps_that_follow(runtime):
    release = threading.Event()
    reached = threading.Event()

    def slow_analysis(batch: pd.DataFrame) -> pd.DataFrame:
        reached.set()
        release.wait(20)
        return batch

    store = open_store("memory")
    pipe = Pipeline(sources.make("ingest"), name="pumps", settings=runtime.settings).validate().store()
    pipe.then(slow_analysis)
    pipe.services["store"] = store
    pipe.start(loop=runtime.loop)
    try:
        answer = asyncio.run(asyncio.wait_for(pipe.inlet.submit(_records(0, 5)), 10))
        assert answer["written"] == 5 and len(store.query("pumps")) == 5
        assert reached.wait(10) and not release.is_set()  # the step after store runs; the answer came first
    finally:
        release.set()
        store.close()


def test_a_pipeline_of_another_source_takes_ingested_records_beside_its_own(runtime):
    feed = sources.make("simulator", series=2, rate=200, seed=3, stream="sim")
    pipe = _start(runtime, Pipeline(feed, name="sim", settings=runtime.settings).validate().store())
    assert asyncio.run(_until(lambda: pipe.records_out > 0)), pipe.status()
    now = pd.Timestamp.now(tz="UTC")
    posted = pd.DataFrame({"series": ["posted"] * 3, "ts": [(now - pd.Timedelta(seconds=3 - i)).isoformat()
                                                            for i in range(3)], "value": [1.0, 2.0, 3.0]})
    answer = asyncio.run(pipe.inlet.submit(posted))
    assert answer["accepted"] == 3 and answer["written"] == 3
    stored = runtime.store.query("sim")
    assert set(stored["series"].astype(str)) > {"posted"}  # the simulator's series too
    assert stored[stored["series"].astype(str) == "posted"]["value"].tolist() == [1.0, 2.0, 3.0]


def test_ingest_is_refused_when_paused_stopped_or_unvalidated(runtime):
    pipe = _start(runtime, Pipeline(sources.make("ingest"), name="pumps", settings=runtime.settings)
                  .validate().store())
    asyncio.run(pipe.inlet.submit(_records(0, 1)))
    pipe.pause()
    with pytest.raises(IngestRefused, match="paused") as refused:
        asyncio.run(pipe.inlet.submit(_records(1, 1)))
    assert refused.value.state == "paused"
    pipe.resume()
    pipe.stop()
    with pytest.raises(IngestRefused, match="stopped"):
        asyncio.run(pipe.inlet.submit(_records(2, 1)))
    raw = _start(runtime, Pipeline(sources.make("ingest"), name="raw", settings=runtime.settings).store())
    with pytest.raises(IngestRefused, match="no validate step"):
        asyncio.run(raw.inlet.submit(_records(0, 1)))
    assert runtime.store.query("raw").empty


def test_the_ingest_source_takes_no_parameters():
    with pytest.raises(TypeError, match="no parameters"):
        sources.make("ingest", path="/etc/passwd")
