"""``nexus up`` on the runtime: its terminal view reads the bus, and a core-only install runs it
headless with one line saying the monitor needs the ``dashboards`` extra.

The core-only case is a real ``nexus up`` process in which the extra's packages cannot be imported: a
``sitecustomize`` on its ``PYTHONPATH`` refuses them as an interpreter without them would
(``ModuleNotFoundError``), so the entry point's load fails exactly as on ``pip install -e .``.
"""

from __future__ import annotations

import asyncio
import io
import os
import re
import subprocess
import sys
import textwrap
import time
from importlib.metadata import EntryPoint
from pathlib import Path

import pandas as pd
from rich.console import Console

from nexus_kernel._up import UpView
from nexus_kernel.config import load_settings
from nexus_kernel.runtime import Runtime, topic
from nexus_kernel.runtime._hooks import EXTRA_MODULES, MONITORS, load_monitor

NEXUS = [sys.executable, "-m", "nexus_kernel.cli"]
SPEC = {"name": "pumps", "source": {"kind": "simulator", "params": {"series": 1, "stream": "pumps"}},
        "steps": [{"kind": "validate", "params": {}}]}


def points(series: list[str], values: list[float], seconds: list[int]) -> pd.DataFrame:
    return pd.DataFrame({"stream": "pumps", "series": series, "value": values,
                         "ts": pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(seconds, unit="s")})


async def until(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def test_the_view_shows_the_newest_values_and_anomalies_it_reads_on_the_bus(tmp_path):
    settings = load_settings(home=tmp_path / "home", store="memory")

    async def main() -> None:
        rt = Runtime.open(settings)
        rt.manager.create("pumps", spec=SPEC)  # saved, never started: every figure below came by the bus
        view = await UpView(rt, Console(file=io.StringIO()), headless=True).open()
        try:
            rt.bus.publish_nowait(topic("pumps", "points"), points(["a", "a", "b"], [2.0, 1.0, 5.0], [2, 1, 1]))
            rt.bus.publish_nowait(topic("pumps", "anomalies"), pd.DataFrame({
                "stream": "pumps", "series": ["a", "b"], "field": "value",
                "ts": [pd.Timestamp("2026-01-01", tz="UTC")] * 2,
                "detector": "zscore", "score": [9.5, 0.1], "is_anomaly": [True, False],
                "reason": ['{"detector": "zscore", "statistic": 9.5}', "{}"]}))
            await until(lambda: view.detected.get("pumps") == 1 and "b" in view.latest.get("pumps", {}))
            row = view.snapshot()[0]
            assert row["latest"] == {"a": 2.0, "b": 5.0}  # the newest by event time, not the last row
            assert row["anomalies_detected"] == 1  # only rows flagged is_anomaly
            assert row["recent_anomalies"] == [{"ts": "2026-01-01 00:00:00", "series": "a", "score": 9.5,
                                                "why": "detector=zscore, statistic=9.5"}]
            assert "pumps" in view.line([row]) and "a=2.00 b=5.00" in view.line([row])
        finally:
            await view.close()
            await rt.aclose()

    asyncio.run(asyncio.wait_for(main(), 30))


def test_a_view_cut_off_by_the_bus_subscribes_again_and_keeps_showing_values(tmp_path):
    settings = load_settings(home=tmp_path / "home", store="memory")

    async def main() -> None:
        rt = Runtime.open(settings)
        rt.manager.create("pumps", spec=SPEC)
        view = await UpView(rt, Console(file=io.StringIO()), headless=True, maxsize=2).open()
        try:
            for i in range(10):  # published without yielding: more than its queue holds
                rt.bus.publish_nowait(topic("pumps", "points"), points(["a"], [float(i)], [i]))
            await until(lambda: view.lagged >= 1)
            step = 100

            def caught_up() -> bool:
                nonlocal step
                step += 1
                rt.bus.publish_nowait(topic("pumps", "points"), points(["a"], [float(step)], [step]))
                return view.latest.get("pumps", {}).get("a", 0) > 100

            await until(caught_up)
        finally:
            await view.close()
            await rt.aclose()

    asyncio.run(asyncio.wait_for(main(), 30))


def test_the_monitor_hook_says_why_it_cannot_load():
    assert load_monitor(group="nexus_kernel.test-empty-group").needs_extra
    missing = load_monitor(found=[EntryPoint("monitor", "panel_is_not_here_either:serve", MONITORS)])
    assert missing.serve is None and not missing.needs_extra and "failed to load" in missing.problem
    broken = load_monitor(found=[EntryPoint("monitor", "json:no_such_function", MONITORS)])
    assert broken.serve is None and "AttributeError" in broken.problem
    found = load_monitor(found=[EntryPoint("other", "json:loads", MONITORS),
                                EntryPoint("monitor", "json:dumps", MONITORS)])
    import json

    assert found.serve is json.dumps and found.problem is None


def test_a_core_only_nexus_up_runs_headless_and_says_the_monitor_needs_the_extra(tmp_path: Path) -> None:
    blocker = tmp_path / "core_only"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(textwrap.dedent(f"""
        import sys
        from importlib.abc import MetaPathFinder

        BLOCKED = {sorted(EXTRA_MODULES - {"dashboards"})!r}

        class CoreOnly(MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
                return None

        sys.meta_path.insert(0, CoreOnly())
    """))
    env = {**os.environ, "NEXUS_HOME": str(tmp_path / "home"), "NEXUS_PORT": "0", "NEXUS_MONITOR_PORT": "0",
           "NEXUS_SIM_RATE": "200", "NEXUS_SIM_SERIES": "3", "NEXUS_STORE": "duckdb", "PYTHONPATH": str(blocker)}
    env.pop("NEXUS_REDIS_URL", None)
    ran = subprocess.run([*NEXUS, "up", "--headless", "--duration", "3"], capture_output=True, text=True,
                         timeout=120, env=env)
    assert ran.returncode == 0, ran.stderr
    notes = [ln for ln in ran.stdout.splitlines() if "dashboards extra" in ln]
    assert notes == ["nexus up: no monitor and no scheduled notebook jobs: they need the dashboards extra "
                     "(pip install 'nexus-stream[dashboards]')"], ran.stdout
    assert "monitor: http" not in ran.stdout and re.search(r"gateway: http://127\.0\.0\.1:\d+", ran.stdout)
    ticks = [ln for ln in ran.stdout.splitlines() if "stream=sensors" in ln]
    assert ticks and re.search(r"s0000=-?\d+\.\d+", ticks[-1]), ran.stdout  # values, read from the bus
    assert "stopped cleanly" in ran.stdout
    assert not (tmp_path / "home" / "runtime.json").exists()  # withdrawn on the clean stop


def test_the_terminal_table_keeps_names_whole_at_80_columns_and_names_counters_as_the_api() -> None:
    """At 80 columns a long stream name is not cut to "stre…" (the source column goes instead); the
    counters read as the API's records_in / records_out, in the table and the headless line."""
    rows = [dict(name=name, state="running", source="simulator", rate=200.0, lag=0.24, records_in=1234567,
                 records_out=2345, dead_letters=697, anomalies_injected=65, anomalies_detected=216,
                 latest={f"s{i:04d}": 60.0 + i for i in range(20)}, recent_anomalies=[], last_error=None)
             for name in ("sensors", "plant-north-7")]
    for width, with_source in ((80, False), (140, True)):
        out = io.StringIO()
        console = Console(file=out, width=width, force_terminal=False)
        console.print(UpView(None, console, headless=False).render(rows))  # type: ignore[arg-type]
        text = out.getvalue()
        assert "…" not in text, text
        assert re.search(r"plant-north-7 +running", text) or re.search(r"plant-north-7 +running +simulator", text)
        assert ("simulator" in text) is with_source
        assert "records" in text and "1,234,567" in text and "2,345" in text and "65 / 216" in text
        assert max(len(line) for line in text.splitlines()) <= width
        assert "more)" in text if width == 80 else True  # the series that do not fit are counted, not cut
    line = UpView(None, Console(file=io.StringIO()), headless=True).line(rows)  # type: ignore[arg-type]
    assert "records_in=1234567 records_out=2345" in line


HOLD_STORE = textwrap.dedent("""
    import sys, time
    from nexus_kernel.storage import DuckDBStore
    store = DuckDBStore(sys.argv[1])
    print("holding", flush=True)
    time.sleep(float(sys.argv[2]))
    store.close()
""")


def _holder(path: Path, seconds: float) -> subprocess.Popen:
    """Another process of the home that opened its store itself (a CLI command run while no runtime ran)."""
    held = subprocess.Popen([sys.executable, "-c", HOLD_STORE, str(path), str(seconds)], stdout=subprocess.PIPE,
                            text=True)
    assert held.stdout is not None and held.stdout.readline().strip() == "holding"
    return held


def test_nexus_up_waits_for_a_store_another_process_of_the_home_holds(tmp_path: Path) -> None:
    """A command that opened the DuckDB store while no runtime ran holds it until it ends: ``nexus up``
    started meanwhile waits for it, says so, then runs (it used to exit at once with StoreLockedError)."""
    home = tmp_path / "home"
    held = _holder(home / "nexus.duckdb", 3.0)
    env = {**os.environ, "NEXUS_HOME": str(home), "NEXUS_PORT": "0", "NEXUS_MONITOR_PORT": "0",
           "NEXUS_SIM_SERIES": "3", "NEXUS_STORE": "duckdb"}
    env.pop("NEXUS_REDIS_URL", None)
    try:
        ran = subprocess.run([*NEXUS, "up", "--headless", "--duration", "2"], capture_output=True, text=True,
                             timeout=120, env=env)
    finally:
        held.wait(30)
    assert ran.returncode == 0, ran.stderr
    waited = [ln for ln in ran.stdout.splitlines() if ln.startswith("nexus up: waiting up to 60 s for the store")]
    assert len(waited) == 1 and f"owned by process {held.pid}" in waited[0], ran.stdout
    assert "stopped cleanly" in ran.stdout


def test_nexus_up_gives_up_on_a_store_held_past_its_wait(tmp_path: Path) -> None:
    import pytest

    from nexus_kernel._up import run_up
    from nexus_kernel.storage import StoreLockedError

    settings = load_settings(home=tmp_path / "home", store="duckdb")
    held = _holder(settings.home / "nexus.duckdb", 8.0)
    try:
        started = time.monotonic()
        with pytest.raises(StoreLockedError, match=f"owned by process {held.pid}"):
            asyncio.run(run_up(settings, headless=True, duration=1, console=Console(file=io.StringIO()),
                               gateway=False, monitor=False, scheduler=False, store_wait=1.0))
        assert time.monotonic() - started < 6.0
        assert not (settings.home / "runtime.json").exists()  # nothing advertised by a start that gave up
    finally:
        held.kill()
        held.wait(30)
