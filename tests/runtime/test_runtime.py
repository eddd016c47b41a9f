"""The runtime: it opens, shares and closes the services of a process, seeds the default stream once,
runs the pipelines on its own thread, and the gateway and scheduler are built on it.

Real parts throughout: DuckDB files, the memory bus, the simulator source, a gateway on loopback.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import httpx
import pandas as pd
import pytest

from nexus_kernel.config import load_settings
from nexus_kernel.engine import BaseStep, steps
from nexus_kernel.gateway import Services, mint_token, start_gateway
from nexus_kernel.runtime import DEFAULT_STREAM, Runtime, default_spec, topic
from nexus_kernel.storage import BusError, open_store

SEEN_THREADS: list[str] = []


@steps.register("test_thread_probe")
class ThreadProbe(BaseStep):
    """Notes the name of the thread each batch is processed on (what the runtime promises)."""

    kind = "test_thread_probe"

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        SEEN_THREADS.append(threading.current_thread().name)
        return batch

    def spec(self) -> dict[str, Any]:
        return {"kind": self.kind, "params": {}}


def probe_spec(name: str) -> dict[str, Any]:
    return {"name": name,
            "source": {"kind": "simulator", "params": {"series": 2, "rate": 200.0, "seed": 1, "stream": name}},
            "steps": [{"kind": "validate", "params": {}}, {"kind": "test_thread_probe", "params": {}},
                      {"kind": "store", "params": {}}, {"kind": "publish", "params": {"topic": "points"}}],
            "batch": {"size": 1000, "interval": 0.05}}


def wait_for(predicate: Any, timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_the_runtime_shares_what_it_is_given_and_closes_only_what_it_opened(tmp_path):
    settings = load_settings(home=tmp_path / "home", store="duckdb")
    given = open_store(f"duckdb://{tmp_path / 'given.duckdb'}")
    rt = Runtime.open(settings, store=given)
    assert rt.store is given
    bus = rt.bus
    opened_here = Runtime.open(load_settings(home=tmp_path / "other", store="duckdb"))
    own_store = opened_here.store
    rt.manager.create("probe", spec=probe_spec("probe"))
    rt.manager.start("probe")
    pipe = rt.pipelines["probe"]
    assert pipe.services["store"] is given and pipe.services["bus"] is bus  # the pipelines share them
    wait_for(lambda: "probe" in given.streams(), what="records in the given store")
    rt.close()
    opened_here.close()
    assert pipe.state == "stopped"
    assert len(given.query("probe")) > 0  # still open: the runtime was only lent it
    with pytest.raises(BusError, match="closed"):
        bus.publish_nowait(topic("probe", "points"), pd.DataFrame({"value": [1.0]}))  # the one it opened
    with pytest.raises(Exception, match="(?i)closed"):
        own_store.streams()
    given.close()


def test_the_default_stream_is_saved_once_as_data_and_then_is_a_stream_like_any_other(tmp_path):
    settings = load_settings(home=tmp_path / "home", store="memory", sim_series=3, sim_rate=60)
    with Runtime.open(settings) as first:
        assert first.start() == [DEFAULT_STREAM]
        entry = first.manager.streams()[DEFAULT_STREAM]
        assert entry["spec"] == {**default_spec(settings), "name": DEFAULT_STREAM}
        assert entry["spec"]["source"]["params"]["series"] == 3  # "$sim_series" filled from the settings
        first.manager.stop(DEFAULT_STREAM)
    with Runtime.open(settings) as second:
        assert second.start() == []  # stopped stays stopped: no second seeding, no restart
        assert list(second.manager.streams()) == [DEFAULT_STREAM]
        assert second.manager.streams()[DEFAULT_STREAM]["state"] == "stopped"
        assert second.status()[0]["anomalies_injected"] is None  # not running here


def test_pipelines_run_on_the_runtime_thread_not_on_the_loop_that_starts_them(tmp_path):
    settings = load_settings(home=tmp_path / "home", store="memory")
    SEEN_THREADS.clear()

    async def serve() -> str:
        # started from a running loop, as nexus up and the gateway do: still the runtime's thread
        rt = Runtime.open(settings)
        try:
            rt.manager.create("probe", spec=probe_spec("probe"))
            rt.start()
            rt.manager.start("probe")
            while len(SEEN_THREADS) < 3:
                await asyncio.sleep(0.05)
            return threading.current_thread().name
        finally:
            await rt.aclose()

    caller = asyncio.run(asyncio.wait_for(serve(), 30))
    assert set(SEEN_THREADS) == {"nexus-pipelines"} and caller != "nexus-pipelines"


def test_the_gateway_is_built_on_the_runtime_and_controls_its_pipelines_from_the_serving_loop(tmp_path):
    settings = load_settings(home=tmp_path / "home", store="memory", port=0)
    SEEN_THREADS.clear()

    async def main() -> None:
        rt = Runtime.open(settings)
        try:
            rt.manager.create("probe", spec=probe_spec("probe"))
            services = Services.create(settings, runtime=rt)
            assert (services.store, services.bus, services.manager) == (rt.store, rt.bus, rt.manager)
            gateway = await start_gateway(settings, services)
            headers = {"Authorization": f"Bearer {mint_token(settings, 'test', 'admin')}"}
            async with httpx.AsyncClient(base_url=gateway.url, headers=headers, timeout=20) as client:
                for action, state in (("start", "running"), ("pause", "paused"), ("resume", "running")):
                    answer = await client.post(f"/api/streams/probe/{action}")
                    assert answer.status_code == 200, answer.text
                    assert rt.manager.streams()["probe"]["state"] == state
                while not SEEN_THREADS:
                    await asyncio.sleep(0.05)
                assert (await client.post("/api/streams/probe/stop")).status_code == 200
            assert rt.pipelines["probe"].state == "stopped"
            await gateway.stop()
            assert rt.store.streams() == ["probe"]  # the gateway did not close the runtime's store
        finally:
            await rt.aclose()

    asyncio.run(asyncio.wait_for(main(), 60))
    assert set(SEEN_THREADS) == {"nexus-pipelines"}


def test_a_gateway_given_no_runtime_opens_one_and_closes_it(tmp_path):
    settings = load_settings(home=tmp_path / "home", store="memory", port=0)

    async def main() -> Any:
        gateway = await start_gateway(settings)
        rt = gateway.services.runtime
        assert isinstance(rt, Runtime) and gateway.services.owns_runtime
        await gateway.stop()
        return rt

    rt = asyncio.run(main())
    with pytest.raises(BusError, match="closed"):
        rt.bus.publish_nowait(topic("x", "points"), pd.DataFrame({"value": [1.0]}))


def test_the_scheduler_given_a_runtime_records_and_reads_its_runs_in_the_runtime_store(tmp_path):
    pytest.importorskip("apscheduler")
    nbformat = pytest.importorskip("nbformat")
    from nexus_kernel.scheduler import NotebookScheduler

    book = nbformat.v4.new_notebook()
    book.metadata["kernelspec"] = {"name": "nexus", "display_name": "Python (nexus)", "language": "python"}
    params = nbformat.v4.new_code_cell("value = 1")
    params.metadata["tags"] = ["parameters"]
    book.cells = [params, nbformat.v4.new_code_cell("assert value == 2")]
    nbformat.write(book, tmp_path / "twice.ipynb")
    settings = load_settings(home=tmp_path / "home", store="memory")  # a second open would see no run
    with Runtime.open(settings) as rt:
        jobs = NotebookScheduler(settings, runtime=rt)
        try:
            jobs.add("twice", cron="0 6 * * *", params={"value": 2}, notebook=tmp_path / "twice.ipynb")
            run = jobs.run("twice")
            assert run["status"] == "succeeded", run["error"]
            assert rt.store.read("job_runs", job="twice")["run_id"].tolist() == [run["run_id"]]
            assert jobs.history("twice")["run_id"].tolist() == [run["run_id"]]
        finally:
            jobs.shutdown()
