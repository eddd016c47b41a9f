"""The monitor's sources and pieces without a browser: RemoteSource on a real gateway, the pipeline's own
anomalies in EmbeddedSource, LTTB downsampling, and the series picker with 1,000 series."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pandas as pd

from .dash_helpers import GatewayThread


def _wait(predicate, timeout: float = 20.0, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def test_remote_source_feeds_the_monitor_from_a_real_gateway(home: Path) -> None:
    from dashboards import RemoteSource, build_monitor, open_source
    from nexus_kernel.config import load_settings

    gateway = GatewayThread(home / "gw")
    source = None
    try:
        # a wrong token is refused: open_source falls back to an embedded page and says why
        bad = load_settings(home=home / "page", gateway_url=gateway.url, gateway_token="not-a-token")
        fallback = open_source(bad)
        try:
            assert fallback.mode == "embedded" and "not usable" in fallback.notice and "401" in fallback.notice
        finally:
            fallback.close()

        good = load_settings(home=home / "page", gateway_url=gateway.url, gateway_token=gateway.token)
        source = open_source(good)
        assert isinstance(source, RemoteSource) and source.mode == "remote"
        assert "sensors" in set(source.streams()["name"])
        assert source.wait_ready(timeout=20), "no live points over the WebSocket"
        series = source.series("sensors")
        assert len(series) == 20

        page = build_monitor(source, start=False)
        monitor = page.monitor
        assert monitor.chosen == series[:2]
        seen = []
        for _ in range(25):
            monitor.tick()
            seen.append(len(monitor.lines[0].data["x"]))
            time.sleep(0.1)
        assert seen[-1] > seen[0] > 0, f"live points did not grow: {seen}"
        assert "sensors" in monitor.overview.object and "running" in monitor.overview.object
        # the feed shows what the gateway's store holds (the pipeline's analyze step), same rows
        assert _wait(lambda: len(source.anomalies("sensors")) > 0, timeout=40), "no anomalies arrived"
        shown = source.anomalies("sensors", limit=50)
        stored = gateway.store.read("anomalies", stream="sensors")
        key = ["series", "ts", "detector"]
        assert set(map(tuple, shown[key].astype(str).values)) <= set(map(tuple, stored[key].astype(str).values))
        history = source.history("sensors", series[:1], pd.Timestamp.now(tz="UTC") - pd.Timedelta("1h"),
                                 pd.Timestamp.now(tz="UTC"))
        assert len(history) > 0 and set(history["series"]) == {series[0]}
        # control through the gateway (analyst role)
        assert source.control("sensors", "pause") == "paused"
        assert source.control("sensors", "start") == "running"  # a paused stream resumes
        monitor.stop()
    finally:
        if source is not None:
            source.close()
        gateway.stop()


def test_embedded_feed_shows_the_pipelines_own_anomalies(home: Path) -> None:
    """The feed reads the analyze step's output from the bus: the same rows the store holds, no re-detection
    (``EmbeddedSource.start``: a runtime of its own, pipelines on its thread, as a notebook runs it)."""
    import asyncio

    from dashboards import EmbeddedSource, build_monitor
    from nexus_kernel.config import load_settings
    from nexus_kernel.storage import open_store

    async def main() -> None:
        settings = load_settings(home=home, batch_interval=0.1, store="memory")
        store = open_store("memory")
        source = EmbeddedSource.start(settings, store=store)
        try:
            monitor = build_monitor(source, start=False).monitor
            for _ in range(400):
                await asyncio.sleep(0.1)
                monitor.tick()
                if source._anomalies.get("sensors"):  # arrived on the bus (the store may hold it first)
                    break
            shown = source.anomalies("sensors", limit=50)
            assert len(shown) > 0, "the pipeline flagged nothing within 40 s"
            assert source._anomalies.get("sensors"), "no anomaly came on the bus within 40 s"
            stored = store.read("anomalies", stream="sensors")
            key = ["series", "ts", "detector"]
            assert set(map(tuple, shown[key].astype(str).values)) <= set(map(tuple, stored[key].astype(str).values))
            # each feed entry carries its why (the reason facts), readable on click
            monitor._slow(force=True)
            assert "nexus-anomaly" in monitor.anomaly_feed.object and "nexus-why" in monitor.anomaly_feed.object
        finally:
            await source.aclose()

    asyncio.run(main())


def test_the_legend_reaches_no_data_that_changes(home: Path) -> None:
    """BokehJS rebuilds a legend's DOM on every change reachable from its items: a legend entry that held
    a streamed line re-rendered on each update (a sixth of a page's CPU in ``bench dashboard``). Each
    entry holds a swatch whose one missing point never changes, and a swatch stands for a renderer by name."""
    from bokeh.models import ColumnDataSource, GlyphRenderer, Legend

    from dashboards import EmbeddedSource, build_monitor
    from nexus_kernel.config import load_settings
    from nexus_kernel.storage import open_store

    settings = load_settings(home=home, batch_interval=0.1, store="memory")
    source = EmbeddedSource.start(settings, store=open_store("memory"))
    try:
        monitor = build_monitor(source, start=False).monitor
        legend = monitor.figure.select_one({"type": Legend})
        reached = legend.references()
        changing = {*monitor.lines, monitor.marks, monitor.changes, monitor.band, monitor.ends, monitor.clock}
        assert not reached & changing
        swatches = [r for item in legend.items for r in item.renderers]
        assert len(swatches) == len(legend.items) == len(monitor.lines) + 4
        drawn = {r.name: r for r in monitor.figure.renderers if isinstance(r, GlyphRenderer) and r.name}
        for swatch in swatches:
            # one missing point: BokehJS draws a legend glyph only for a renderer with data
            assert isinstance(swatch.data_source, ColumnDataSource)
            assert all(len(v) == 1 and math.isnan(v[0]) for v in swatch.data_source.data.values())
            (follow,) = swatch.js_property_callbacks["change:visible"]
            target = drawn[follow.args["name"]]  # the renderer it hides, found by name
            assert type(target.glyph) is type(swatch.glyph) and target.data_source in changing
        assert [drawn[f"nexus-series-{i}"].data_source for i in range(len(monitor.lines))] == monitor.lines
    finally:
        import asyncio

        asyncio.run(source.aclose())


def test_downsample_keeps_extremes_and_bounds_output() -> None:
    from dashboards import downsample

    rng = np.random.default_rng(7)
    n = 50_000
    ts = pd.date_range("2024-01-01", periods=n, freq="100ms", tz="UTC")
    frames = []
    for key, spike_at in (("a", 12_345), ("b", 40_000)):
        y = rng.normal(0, 1, n)
        y[spike_at] = 60.0
        y[spike_at + 5000] = -55.0
        frames.append(pd.DataFrame({"ts": ts, "series": key, "value": y}))
    frame = pd.concat(frames, ignore_index=True)
    out = downsample(frame, 500)
    for key in ("a", "b"):
        part = out[out["series"] == key]
        assert len(part) == 500
        src = frame[frame["series"] == key]
        assert part["value"].max() == src["value"].max() and part["value"].min() == src["value"].min()
        assert part["ts"].iloc[0] == src["ts"].iloc[0] and part["ts"].iloc[-1] == src["ts"].iloc[-1]
        assert part["ts"].is_monotonic_increasing
    small = frame.iloc[:100]
    assert downsample(small, 500) is small  # nothing to do: returned as is


def test_series_picker_with_1000_series(home: Path) -> None:
    import asyncio

    from dashboards import EmbeddedSource, build_monitor
    from nexus_kernel.config import load_settings

    async def main() -> None:
        settings = load_settings(home=home, batch_interval=0.1, store="memory", sim_series=1000, sim_rate=5000)
        source = EmbeddedSource.start(settings)
        try:
            for _ in range(100):
                await asyncio.sleep(0.1)
                if len(source.series("sensors")) == 1000:
                    break
            started = time.perf_counter()
            monitor = build_monitor(source, start=False).monitor
            built = time.perf_counter() - started
            picker = monitor.picker
            assert len(picker.options) == 1000
            # the browser lists at most option_limit matches, searched or not
            assert picker.option_limit == 50 and picker.search_option_limit == 50
            matches = [o for o in picker.options if "s099" in o]
            assert matches == [f"s{i:04d}" for i in range(990, 1000)]
            picker.value = ["s0999", "s0500"]
            for _ in range(5):
                await asyncio.sleep(0.15)
                monitor.tick()
            assert len(monitor.lines[0].data["x"]) > 0 and len(monitor.lines[1].data["x"]) > 0
            print(f"page with 1000 series built in {built * 1000:.0f} ms")
        finally:
            await source.aclose()

    asyncio.run(main())


def test_feed_pushes_each_arriving_batch_and_reads_only_when_something_is_new(home: Path) -> None:
    """The embedded source calls the feed as a batch enters its buffer; the feed wakes subscribed pages,
    and a poll with nothing new reads nothing (no empty ticks)."""
    import asyncio

    from dashboards import EmbeddedSource, feed_for
    from nexus_kernel.config import load_settings
    from nexus_kernel.storage import open_store

    async def main() -> None:
        settings = load_settings(home=home, batch_interval=0.1, store="memory")
        source = EmbeddedSource.start(settings, store=open_store("memory"))
        try:
            feed = feed_for(source)
            assert feed.pushes and feed is feed_for(source)
            woken: list[tuple[str, int]] = []
            feed.subscribe(lambda stream: woken.append((stream, source.cursor(stream))))
            for _ in range(100):
                await asyncio.sleep(0.05)
                if len(woken) >= 5:
                    break
            assert len(woken) >= 5 and {s for s, _ in woken} == {"sensors"}
            cursors = [c for _, c in woken]
            assert cursors == sorted(cursors) and len(set(cursors)) == len(cursors), cursors  # one wake per batch

            feed.poll("sensors")
            newest = feed.newest("sensors")
            polls = feed.polls
            feed.poll("sensors")  # nothing arrived in between: no read, no tick
            assert feed.polls == polls and feed.newest("sensors") == newest
            ticks, _, lost = feed.after("sensors", 0)
            assert ticks and not lost and ticks[-1].received is not None
            assert set(ticks[-1].points) <= set(source.series("sensors"))
        finally:
            await source.aclose()

    asyncio.run(main())


def test_live_buffer_keeps_arrays_bounded_and_times_in_any_unit() -> None:
    """The live buffer returns what arrived after a cursor, in order, drops the oldest past its cap, and
    the browser's epoch-ms axis values do not depend on the unit the times came in."""
    from dashboards._feed import to_ms
    from dashboards._source import _Live

    live = _Live(max_rows=50)
    t0 = pd.Timestamp("2026-01-01", tz="UTC")
    for b in range(10):
        ts = pd.date_range(t0 + pd.Timedelta(seconds=b), periods=10, freq="100ms", tz="UTC")
        live.add(pd.DataFrame({"ts": ts.as_unit("us" if b % 2 else "ns"), "series": ["a", "b"] * 5,
                               "value": np.arange(10.0) + 10 * b}))
    assert live.rows == 50 and live.series == {"a", "b"}
    frame, newest, received = live.after(7)
    assert newest == 10 and received is not None
    assert list(frame["value"]) == list(np.arange(70.0, 100.0))
    assert frame["ts"].is_monotonic_increasing and frame["ts"].iloc[0] == t0 + pd.Timedelta(seconds=7)
    assert live.after(10) == (None, 10, None)
    assert live.after(0)[0]["value"].iloc[0] == 50.0  # the five oldest batches were dropped

    stamp = pd.DatetimeIndex(["2026-01-01 00:00:00.100"], tz="UTC")
    expected = 1767225600100.0
    assert to_ms(stamp.as_unit("ns"))[0] == to_ms(stamp.as_unit("us"))[0] == to_ms(stamp.as_unit("ms"))[0] == expected
