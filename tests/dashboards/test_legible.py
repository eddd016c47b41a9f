"""The monitor a stranger can read, checked in headless Chromium on the page ``nexus up`` serves.

What the browser holds (BokehJS models, not server-side state): the legend names the chosen series and
the forecast; each drawn line carries its series' name at its newest point; the forecast band starts at
the first chosen line's newest point (band of zero width there) and covers only later times; the data
source line is plain text (no warning box); the overview's figures carry units; the anomaly feed reads
as sentences, with the facts as rows (no JSON) and times without microseconds; each legend entry shows
its line's colour, and a click on it hides its line.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from .dash_helpers import CHROMIUM_ARGS, MonitorThread

# BokehJS: legend labels, line-end labels, first line and forecast band as the browser holds them.
STATE_JS = """() => {
  const doc = Bokeh.documents[0];
  const legend = doc.get_model_by_name('nexus-legend');
  const labels = legend.items.filter(i => i.visible).map(i => i.label.value);
  const line = doc.get_model_by_name('nexus-line-0').data;
  const band = doc.get_model_by_name('nexus-forecast').data;
  const ends = doc.get_model_by_name('nexus-labels').data;
  return {labels, ends: Array.from(ends.text),
          line_x: Array.from(line.x), line_y: Array.from(line.y),
          band_x: Array.from(band.x), band_lo: Array.from(band.lo), band_hi: Array.from(band.hi),
          band_yhat: Array.from(band.yhat)};
}"""

VISIBLE_JS = """(shown) => Bokeh.documents[0].get_model_by_name('nexus-series-0').visible === shown"""

# the colours drawn on a legend entry's own canvas (its swatch), as "r,g,b" of the opaque pixels
SWATCH_JS = """(entry) => {
  const canvas = entry.querySelector('canvas');
  const {data} = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height);
  const seen = new Set();
  for (let i = 0; i < data.length; i += 4) { if (data[i + 3] === 255) seen.add(`${data[i]},${data[i + 1]},${data[i + 2]}`); }
  return Array.from(seen);
}"""


def test_monitor_names_series_draws_the_forecast_ahead_and_reads_as_text(chromium: str, artifacts: Path,
                                                                         tmp_path: Path) -> None:
    from playwright.async_api import async_playwright

    from dashboards.monitor import SERIES_COLORS
    from nexus_kernel.gateway import mint_token

    served = MonitorThread(tmp_path / "home")

    async def main() -> None:
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            try:
                page = await browser.new_page(viewport={"width": 1400, "height": 1200})
                token = mint_token(served.settings, "legible-test", "analyst")
                await page.goto(f"{served.url}?token={token}")
                await page.wait_for_selector("canvas", timeout=60_000)
                state: dict = {}
                for _ in range(240):  # the default stream forecasts every 100 points per series (~10 s)
                    state = await page.evaluate(STATE_JS)
                    if len(state["band_x"]) > 1 and len(state["ends"]) == 2:
                        break
                    await asyncio.sleep(0.5)
                chosen = ["s0000", "s0001"]
                assert state["labels"][:3] == [*chosen, "forecast of s0000"], state["labels"]
                assert "90% band" in state["labels"]
                assert state["ends"] == chosen  # each line's name at its newest point
                band_x, line_x = state["band_x"], state["line_x"]
                assert len(band_x) > 1, "no forecast drawn within 120 s"
                # the band starts at a point of the first line (the newest when it was drawn), zero wide there
                start = line_x.index(band_x[0])
                assert state["band_lo"][0] == state["band_hi"][0] == state["band_yhat"][0] == state["line_y"][start]
                assert all(x > band_x[0] for x in band_x[1:]), "the forecast reaches back into the past"
                assert state["band_lo"][1] <= state["band_yhat"][1] <= state["band_hi"][1]
                # the data-source line is plain text, not a warning box
                assert await page.locator(".nexus-source").count() == 1
                assert await page.locator(".alert-warning, .bk-alert-warning").count() == 0
                overview = await page.locator(".nexus-streams").first.inner_text()
                assert "rate (records/s)" in overview and "lag (s)" in overview and "records out" in overview
                await page.wait_for_selector("details.nexus-anomaly", timeout=60_000)
                await page.locator("details.nexus-anomaly summary").first.click()
                reason = await page.locator("details.nexus-anomaly .nexus-reason").first.inner_text()
                assert " flagged it" in reason and "threshold" in reason and "{" not in reason, reason
                feed = await page.locator("details.nexus-anomaly").first.inner_text()
                assert "{" not in feed and not re.search(r"\d\d:\d\d:\d\d\.\d{6}", feed), feed
                latest = await page.locator("text=latest").first.inner_text()
                assert not re.search(r"\.\d{6}", latest), latest
                await page.screenshot(path=str(artifacts / "monitor-legible.png"), full_page=True)
                # the legend's entries are swatches (BokehJS re-renders a legend on any change it can reach,
                # so it must not reach the streamed lines): a click on one still hides its line, and a
                # second click shows it again
                entry = page.locator(".bk-item", has_text="s0000").first
                # the entry shows its line's colour (BokehJS draws no legend glyph for a renderer without data)
                first_colour = ",".join(str(int(SERIES_COLORS[0][k:k + 2], 16)) for k in (1, 3, 5))
                assert first_colour in await entry.evaluate(SWATCH_JS)
                await entry.click()
                await page.wait_for_function(VISIBLE_JS, arg=False, timeout=5_000)
                await entry.click()
                await page.wait_for_function(VISIBLE_JS, arg=True, timeout=5_000)
            finally:
                await browser.close()

    try:
        asyncio.run(main())
    finally:
        served.stop()
