"""Headless Chromium (Debian's) on the monitor: served by Panel (what `nexus up` serves) and by Voila.

The Panel-served page asks for the gateway's credentials: these tests log in as an analyst through the
``?token=`` URL (tests/security/test_monitor_auth.py covers the login and the roles themselves).
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil

from .dash_helpers import CHROMIUM_ARGS, DRAWN_JS, MAX_GAP_JS, PICKER_JS, ROOT, GatewayThread


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _values(page, n: int = 1) -> list[str]:
    return [await page.locator(".nexus-value").nth(i).text_content() for i in range(n)]


async def _assert_drawn_and_growing(page, wait: float = 2.0) -> dict:
    """The plot's line sources *in the browser* hold points, and more of them after ``wait`` seconds.

    (An empty plot with updating 'latest' values once passed a test that only read the text.)
    """
    first = await page.evaluate(DRAWN_JS)
    await asyncio.sleep(wait)
    second = await page.evaluate(DRAWN_JS)
    for name in ("nexus-line-0", "nexus-line-1"):
        assert first.get(name, 0) > 5, f"{name} is empty in the browser: {first}"
        assert second[name] > first[name], f"{name} did not grow in the browser: {first} → {second}"
    return second


def test_panel_served_monitor_renders_and_updates(chromium: str, artifacts: Path, home: Path) -> None:
    from playwright.async_api import async_playwright

    from dashboards import EmbeddedSource, start_monitor
    from nexus_kernel.config import load_settings
    from nexus_kernel.gateway import mint_token
    from nexus_kernel.storage import open_store

    async def main() -> None:
        settings = load_settings(home=home, batch_interval=0.1, store="memory")
        source = EmbeddedSource.start(settings, store=open_store("memory"))
        port = _free_port()
        server = await start_monitor(settings, source, port=port)
        try:
            async with async_playwright() as p:
                browser = await p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
                page = await browser.new_page(viewport={"width": 1280, "height": 1000})
                errors: list[str] = []
                page.on("pageerror", lambda e: errors.append(str(e)))
                started = time.monotonic()
                token = mint_token(settings, "browser-test", "analyst")
                await page.goto(f"http://127.0.0.1:{port}/monitor?token={token}")
                await page.wait_for_selector("canvas", timeout=30_000)
                await page.wait_for_selector(".nexus-value", timeout=30_000)
                first_plot = time.monotonic() - started
                before = await _values(page, 2)
                await asyncio.sleep(1.5)
                after = await _values(page, 2)
                assert before != after, "live values did not change"
                await _assert_drawn_and_growing(page)
                # batches are pushed to the page (subscribed once the browser reported ready) and none
                # is lost on the way: the simulator's points are 0.1 s apart, the drawn line has no hole
                feed = source._monitor_feed
                assert len(feed._wakers) == 1, "the page did not subscribe to pushed batches"
                gap = await page.evaluate(MAX_GAP_JS)
                assert 0 < gap < 1000, f"a {gap} ms hole in the drawn line: updates were lost"
                received = await page.evaluate(
                    "() => Bokeh.documents[0].get_model_by_name('nexus-clock').data.received[0]")
                assert received > 0  # the timing source the dashboard benchmark reads is in the page
                await page.screenshot(path=str(artifacts / "monitor-panel.png"), full_page=True)
                # stop the stream from the page, as an analyst would
                await page.get_by_role("button", name="stop").click()
                for _ in range(50):
                    if source.manager.streams()["sensors"]["state"] == "stopped":
                        break
                    await asyncio.sleep(0.2)
                assert source.manager.streams()["sensors"]["state"] == "stopped"
                assert not errors, errors
                print(f"first plot after {first_plot:.2f}s")
                await browser.close()
                # the closed page's session ends and stops listening (nothing keeps waking a dead page)
                for _ in range(100):
                    if not feed._wakers:
                        break
                    await asyncio.sleep(0.2)
                assert not feed._wakers, "a closed page is still subscribed"
        finally:
            server.stop()
            await source.aclose()

    asyncio.run(main())


def _kernels(voila: psutil.Process) -> int:
    """Live kernel processes under the Voila server (exited ones, even if not yet reaped, do not count)."""
    count = 0
    for child in voila.children(recursive=True):
        try:
            if child.status() != psutil.STATUS_ZOMBIE and any("ipykernel_launcher" in p for p in child.cmdline()):
                count += 1
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    return count


def test_voila_monitor_renders_updates_and_closed_pages_free_their_kernels(chromium: str, artifacts: Path,
                                                                           home: Path) -> None:
    from playwright.async_api import async_playwright

    port = _free_port()
    env = {**os.environ, "NEXUS_HOME": str(home), "JUPYTER_CONFIG_PATH": str(ROOT / "deploy" / "voila"),
           "PYTHONPATH": str(ROOT), "NEXUS_BATCH_INTERVAL": "0.2"}
    env.pop("PANEL_INLINE", None)  # the repo's Voila config must set it by itself
    proc = subprocess.Popen([sys.executable, "-m", "voila", str(ROOT / "dashboards" / "monitor.ipynb"), "--no-browser",
                             f"--port={port}", "--Voila.ip=127.0.0.1"], env=env, cwd=home,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    voila = psutil.Process(proc.pid)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.2)
        baseline = _kernels(voila)

        async def main() -> list[int]:
            counts = []
            async with async_playwright() as p:
                browser = await p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
                for visit in range(5):
                    page = await browser.new_page(viewport={"width": 1280, "height": 1000})
                    await page.goto(f"http://127.0.0.1:{port}/", timeout=60_000)
                    await page.wait_for_selector("canvas", timeout=60_000)
                    if visit == 0:
                        await page.wait_for_selector(".nexus-value", timeout=30_000)
                        before = await _values(page, 2)
                        await asyncio.sleep(2.0)
                        after = await _values(page, 2)
                        assert before != after, "live values did not change in Voila"
                        await _assert_drawn_and_growing(page)
                        # the picker shows the drawn series (it once stayed empty in Voila: its options were
                        # sent before the browser attached)
                        pickers: list = []
                        for _ in range(50):
                            pickers = await page.evaluate(PICKER_JS)
                            if any(p["options"] == 20 and len(p["value"]) == 2 for p in pickers):
                                break
                            await asyncio.sleep(0.2)
                        assert any(p["options"] == 20 and len(p["value"]) == 2 for p in pickers), pickers
                        # no gateway: the page says so (in Panel's shadow DOM, which text locators pierce)
                        assert await page.get_by_text("No gateway:").count() > 0
                        await page.screenshot(path=str(artifacts / "monitor-voila.png"), full_page=True)
                    assert _kernels(voila) == baseline + 1
                    await page.goto("about:blank")  # fires beforeunload → shutdown beacon
                    await page.close()
                    for _ in range(50):
                        if _kernels(voila) == baseline:
                            break
                        await asyncio.sleep(0.2)
                    counts.append(_kernels(voila))
                await browser.close()
            return counts

        counts = asyncio.run(main())
        assert counts == [baseline] * 5, f"kernels after each closed page: {counts} (baseline {baseline})"
    finally:
        proc.terminate()
        try:
            out, _ = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        (artifacts / "voila.log").write_text(out or "")
    import re

    refused = re.findall(r"\b403 (?:GET|POST|DELETE) \S+", out or "")
    assert not refused, f"requests refused: {refused} (see test-artifacts/dashboards/voila.log)"


def test_voila_monitor_talks_to_a_running_gateway_with_a_token(chromium: str, artifacts: Path, home: Path) -> None:
    """NEXUS_GATEWAY_URL + NEXUS_GATEWAY_TOKEN: the Voila page reads a real gateway through the SDK."""
    from playwright.async_api import async_playwright

    gateway = GatewayThread(home / "gw")
    port = _free_port()
    env = {**os.environ, "NEXUS_HOME": str(home), "JUPYTER_CONFIG_PATH": str(ROOT / "deploy" / "voila"),
           "PYTHONPATH": str(ROOT), "NEXUS_GATEWAY_URL": gateway.url, "NEXUS_GATEWAY_TOKEN": gateway.token}
    proc = subprocess.Popen([sys.executable, "-m", "voila", str(ROOT / "dashboards" / "monitor.ipynb"), "--no-browser",
                             f"--port={port}", "--Voila.ip=127.0.0.1"], env=env, cwd=home,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.2)

        async def main() -> None:
            async with async_playwright() as p:
                browser = await p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
                page = await browser.new_page(viewport={"width": 1280, "height": 1000})
                await page.goto(f"http://127.0.0.1:{port}/", timeout=60_000)
                await page.wait_for_selector(".nexus-value", timeout=60_000)
                # Panel renders in shadow DOM (innerText misses it); Playwright's text locators pierce it
                assert await page.get_by_text(f"Connected to the gateway at {gateway.url}").count() > 0
                assert await page.get_by_text("No gateway:").count() == 0
                before = await _values(page, 2)
                await _assert_drawn_and_growing(page)
                assert await _values(page, 2) != before, "live values did not change"
                await page.screenshot(path=str(artifacts / "monitor-voila-gateway.png"), full_page=True)
                await page.goto("about:blank")
                await browser.close()

        asyncio.run(main())
    finally:
        proc.terminate()
        try:
            out, _ = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        (artifacts / "voila-gateway.log").write_text(out or "")
        gateway.stop()
