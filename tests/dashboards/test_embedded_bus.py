"""The embedded monitor over a real :class:`~nexus_kernel.runtime.Runtime`: its live buffer, anomaly feed
and forecasts are the bus messages (and store rows) the pipelines produced on the runtime's thread; it
finds nothing itself, renews a lagging subscription without a gap, and ``serve`` puts it behind the login."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pandas as pd

# spikes every few seconds (anomaly_rate is per series and hour of event time, which runs at wall speed)
SOURCE = {"kind": "simulator", "params": {"series": 4, "rate": 80.0, "seed": 3, "freq": "0.05s",
                                          "anomaly_rate": 2000.0, "bad_rate": 0.0}}
VALIDATE, STORE = {"kind": "validate", "params": {}}, {"kind": "store", "params": {}}
PUBLISH = {"kind": "publish", "params": {"topic": "points"}}


def _spec(name: str, *steps: dict[str, Any]) -> dict[str, Any]:
    source = {"kind": SOURCE["kind"], "params": {**SOURCE["params"], "stream": name}}
    return {"name": name, "source": source, "steps": list(steps), "batch": {"size": 10_000, "interval": 0.05}}


def _analyze(**params: Any) -> dict[str, Any]:
    return {"kind": "analyze", "params": {"detector": "robust_z", "only_anomalies": True, **params}}


def _rows(frame: pd.DataFrame, columns: list[str]) -> set[tuple[str, ...]]:
    frame = frame.assign(ts=pd.to_datetime(frame["ts"], utc=True))
    return set(map(tuple, frame[columns].astype(str).to_numpy()))


async def _until(predicate, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.05)
    return bool(predicate())


def _runtime(home: Path, **settings: Any) -> Any:
    from nexus_kernel.config import load_settings
    from nexus_kernel.runtime import Runtime
    from nexus_kernel.storage import open_store

    # a replay long enough to hold every message of a test: what was published is read back whole
    return Runtime.open(load_settings(home=home, store="memory", bus_replay=100_000, **settings),
                        store=open_store("memory"))


async def _quiesce(runtime: Any, name: str) -> None:
    """Pause ``name`` and let what its pipeline already published reach the subscribers."""
    runtime.manager.pause(name)
    await asyncio.sleep(0.6)


def _published(runtime: Any, name: str, kind: str) -> list[Any]:
    from nexus_kernel.runtime import topic

    return runtime.bus.replay(topic(name, kind))


def test_live_buffer_and_anomaly_feed_are_the_pipelines_bus_messages(home: Path) -> None:
    from dashboards import EmbeddedSource

    async def main() -> None:
        runtime = _runtime(home)
        source = EmbeddedSource(runtime)
        try:
            assert runtime.loop is not asyncio.get_running_loop()  # pipelines on the runtime's own thread
            assert await asyncio.to_thread(source.wait_subscribed, 10)
            runtime.manager.create("pumps", spec=_spec("pumps", VALIDATE, STORE, PUBLISH, _analyze()))
            runtime.manager.start("pumps")
            assert await _until(lambda: len(source._anomalies.get("pumps", ())) >= 2), "no anomalies came"
            await _quiesce(runtime, "pumps")

            points = _published(runtime, "pumps", "points")
            live, newest, received = source.updates("pumps", None, 0)
            assert newest == len(points) > 3 and received is not None  # one buffered batch per message
            sent = pd.concat([m.frame for m in points], ignore_index=True)
            assert _rows(live, ["ts", "series", "value"]) == _rows(sent, ["ts", "series", "value"])
            assert source.series("pumps") == sorted(set(sent["series"].astype(str)))

            key = ["series", "field", "ts", "detector"]
            flagged = pd.concat([m.frame for m in _published(runtime, "pumps", "anomalies")], ignore_index=True)
            from_bus = pd.concat(list(source._anomalies["pumps"]), ignore_index=True)
            assert _rows(from_bus, key) == _rows(flagged[flagged["is_anomaly"]], key)
            shown = source.anomalies("pumps", limit=10_000)
            stored = runtime.store.read("anomalies", stream="pumps")
            assert _rows(shown, key) == _rows(stored, key) == _rows(flagged, key)  # no duplicate, none made up
            assert len(shown) == len(stored)
            assert source.anomalies("pumps", limit=3)["ts"].is_monotonic_increasing
        finally:
            await source.aclose()
            await runtime.aclose()

    asyncio.run(main())


def test_a_stream_without_analysis_shows_no_anomalies_and_one_without_publish_no_live_points(home: Path) -> None:
    from dashboards import EmbeddedSource

    async def main() -> None:
        runtime = _runtime(home)
        source = EmbeddedSource(runtime)
        try:
            assert await asyncio.to_thread(source.wait_subscribed, 10)
            runtime.manager.create("raw", spec=_spec("raw", VALIDATE, STORE, PUBLISH))  # spiky, never analysed
            runtime.manager.create("quiet", spec=_spec("quiet", VALIDATE, STORE))       # stored, never published
            runtime.manager.start("raw")
            runtime.manager.start("quiet")
            assert await _until(lambda: source.cursor("raw") >= 20), "no live points for the published stream"
            assert await _until(lambda: len(runtime.store.latest("quiet")) > 0)
            for name in ("raw", "quiet"):
                assert source.anomalies(name).empty and source.forecasts(name, "s0000").empty
                assert runtime.store.read("anomalies", stream=name).empty  # the monitor stored none either
            assert source.cursor("quiet") == 0 and source.updates("quiet", None, 0)[0].empty
            assert source.series("quiet") == ["s0000", "s0001", "s0002", "s0003"]  # known from the store
            now = pd.Timestamp.now(tz="UTC")
            assert len(source.history("quiet", ["s0001"], now - pd.Timedelta("1h"), now + pd.Timedelta("1h")))
            assert set(source.streams()["name"]) == {"raw", "quiet"}
        finally:
            await source.aclose()
            await runtime.aclose()

    asyncio.run(main())


def test_forecasts_shown_are_the_pipelines_own_from_the_bus_then_the_store(home: Path) -> None:
    from dashboards import EmbeddedSource

    async def main() -> None:
        runtime = _runtime(home)
        source = EmbeddedSource(runtime)
        try:
            assert await asyncio.to_thread(source.wait_subscribed, 10)
            spec = _spec("fc", VALIDATE, STORE, PUBLISH, _analyze(forecast=True, horizon=12))
            runtime.manager.create("fc", spec=spec)
            runtime.manager.start("fc")
            assert await _until(lambda: len(source.forecasts("fc", "s0002")) > 0), "no forecast was published"
            await _quiesce(runtime, "fc")
            shown = source.forecasts("fc", "s0002")
            assert len(shown) == 12 and set(shown["series"].astype(str)) == {"s0002"}
            assert shown["made_at"].nunique() == 1 and shown["ts"].is_monotonic_increasing
            stored = runtime.store.read("forecasts", stream="fc", series="s0002")
            newest = stored[stored["made_at"] == stored["made_at"].max()]
            columns = ["ts", "made_at", "model", "yhat", "lo", "hi"]
            assert _rows(shown, columns) == _rows(newest, columns)  # the newest the pipeline made, as made
        finally:
            await source.aclose()
        # a monitor started after the stream stopped has no bus message: the store answers
        late = EmbeddedSource(runtime)
        try:
            assert _rows(late.forecasts("fc", "s0002"), columns) == _rows(newest, columns)
            assert late.forecasts("fc", "no-such-series").empty
        finally:
            await late.aclose()
            await runtime.aclose()

    asyncio.run(main())


def test_a_lagging_subscription_is_renewed_and_catches_up_without_a_gap(home: Path) -> None:
    from dashboards import EmbeddedSource

    async def main() -> None:
        runtime = _runtime(home)
        source = EmbeddedSource(runtime, maxsize=2)
        try:
            assert await asyncio.to_thread(source.wait_subscribed, 10)
            runtime.manager.create("pumps", spec=_spec("pumps", VALIDATE, STORE, PUBLISH))
            runtime.manager.start("pumps")
            assert await _until(lambda: source.cursor("pumps") >= 2)
            time.sleep(1.5)  # the serving loop is stuck: more than two messages wait, the bus cuts it off
            assert await _until(lambda: source.lagged >= 1, timeout=10), "the subscription never lagged"
            await asyncio.sleep(0.5)
            await _quiesce(runtime, "pumps")
            points = _published(runtime, "pumps", "points")
            live, newest, _ = source.updates("pumps", None, 0)
            assert newest == len(points)  # every message once: nothing lost in the cut, nothing twice
            sent = pd.concat([m.frame for m in points], ignore_index=True)
            assert _rows(live, ["ts", "series", "value"]) == _rows(sent, ["ts", "series", "value"])
            assert live["ts"].groupby(live["series"]).apply(lambda t: t.is_monotonic_increasing).all()
        finally:
            await source.aclose()
            await runtime.aclose()

    asyncio.run(main())


def test_serve_mounts_the_monitor_over_the_runtime_behind_the_gateways_login(home: Path) -> None:
    from dashboards._serve import serve
    from nexus_kernel.gateway import Services

    async def main() -> None:
        runtime = _runtime(home, batch_interval=0.1)
        runtime.start()  # the built-in stream
        services = Services.create(runtime.settings, runtime=runtime)
        admin_key, entry = services.keys.create("owner", "admin")
        served = await serve(runtime, port=0, authenticator=services.authenticator, admin_token=admin_key)
        try:
            assert served.login_url == f"{served.url}?token={admin_key}" and admin_key not in repr(served)
            assert served.source.runtime is runtime and served.auth.authenticator is services.authenticator
            async with httpx.AsyncClient(timeout=20) as client:
                bare = await client.get(served.url)
                assert bare.status_code == 302 and "login?next=%2Fmonitor" in bare.headers["location"]
                assert "docs_json" not in (await client.get(served.url, follow_redirects=True)).text
                page = await client.get(served.login_url, follow_redirects=True)
                assert page.status_code == 200 and "docs_json" in page.text and admin_key not in str(page.url)
            assert await _until(lambda: served.source.cursor("sensors") > 0), "no live points from the runtime"
            # the gateway's authenticator decides: a key revoked there no longer logs in here
            services.keys.revoke(entry["id"])
            async with httpx.AsyncClient(timeout=20) as client:
                refused = await client.get(served.login_url, follow_redirects=True)
                assert refused.status_code == 401 and "invalid or revoked API key" in refused.text
        finally:
            served.stop()
            await services.close()
            await runtime.aclose()
        assert served.source._closed and runtime.store is not None

    asyncio.run(main())


def test_serve_refuses_an_empty_admin_token_and_a_runtime_without_a_bus(home: Path) -> None:
    import pytest

    from dashboards import EmbeddedSource
    from dashboards._serve import serve

    runtime = _runtime(home)
    try:
        with pytest.raises(ValueError, match="admin_token"):
            asyncio.run(serve(runtime, port=0, authenticator=None, admin_token=""))
        runtime.services.bus = None
        with pytest.raises(ValueError, match="live bus"):
            EmbeddedSource(runtime)
    finally:
        runtime.close()
