"""The live monitor: one Panel app for Voila (``dashboards/monitor.ipynb``) and for ``nexus up``.

``build_monitor(source)`` returns the page for one viewer. Its data comes only from a
:class:`~dashboards._source.MonitorSource` (a runtime's bus and store, or a gateway through the SDK):

* **streams overview** — state, rate, lag, dead letters, errors; start / pause / stop when ``can_control``
  (otherwise the buttons are absent, not disabled), each action first passed to ``authorize``;
* **live plot** of the chosen series with anomaly markers (red), change points (dashed), and the forecast
  line with its 90% band for the first chosen series;
* **anomaly feed** — newest first; each entry opens on click to show *why* it was flagged (the facts of
  its ``reason``);
* **series picker** that stays fast with thousands of series (a searchable ``MultiChoice`` that shows at
  most ``option_limit`` matches), and a **time range** selector: live, or history read from the store;
* **job runs** (failed ones show the failing cell), the **Anchoring** panel (recent anchors; verify any
  anomaly of the feed on a click, through the gateway: ``dashboards/_anchoring_panel.py``) and placeholders
  for alerts and narrative.

Points are downsampled with LTTB (``tsdownsample``) before they reach the browser: at most
``max_points`` per series in history mode, and at most ``chunk_points`` new points per series per tick in
live mode, so a fast stream never floods the page.

Every page on one source shares a single producer (:class:`~dashboards._feed.Feed`): it reads the source
once per poll, splits the new points per series (LTTB-bounded) and renders the slow panels once a
second. Each session's update — pushed as a batch arrives when the page is served by Panel over the
embedded source (at most every ``push_interval``), else a guarded periodic callback every ``period_ms`` —
then does O(its new points) work:
``ColumnDataSource.stream(rows, rollover=max_points)`` per chosen series, a small patch of the timing
source, and — only when the shared version changed — the status table, anomaly feed and markers. An
exception is caught, logged and counted (shown on the page): an unguarded one can stop a Panel periodic
callback silently (holoviz/panel#5540).

Served by :func:`start_monitor` (what ``nexus up`` does), the page asks for the gateway's credentials
(:class:`~dashboards._auth.MonitorAuth`: a token or API key, then a signed session cookie); its controls
follow the caller's role, re-checked in the callback that performs an action.

A snapshot of the live buffer is drawn when the session starts. In Voila (ipywidgets comms) the page's
kernel runs the cell — and the callback — *before* the browser attaches, and whatever it sends meanwhile
is lost (property changes and streamed rows alike): the page once showed an empty plot and picker while
"latest" updated, because the series appeared a moment after the cell ran and the "make the line
visible" change never reached the browser. So renderers are never hidden (an empty source draws
nothing), the notebook waits for the first points before building the page, and ``resync_for`` seconds
of full line redraws (data replaced, which always reaches the browser) cover the attach.

Example
-------
>>> import panel as pn
>>> from dashboards import EmbeddedSource, build_monitor
>>> page = build_monitor(EmbeddedSource.start(load_settings()))   # doctest: +SKIP
>>> pn.serve(page)                                                # doctest: +SKIP
"""

from __future__ import annotations

import html
import logging
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import panel as pn
from bokeh.core.properties import value as literal
from bokeh.models import ColumnDataSource, CustomJS, DataRange1d, DatetimeTickFormatter, GlyphRenderer, Legend, LegendItem
from bokeh.palettes import Category10_10
from bokeh.plotting import figure

from ._anchoring_panel import AnchoringPanel, anchoring_api
from ._auth import COOKIE, MonitorAuth, MonitorSession, current_session, log_request
from ._feed import Feed, Tick, downsample, feed_for, to_ms
from ._source import MonitorSource, explain, is_change_point

__all__ = ["build_monitor", "start_monitor", "page_for", "downsample", "Monitor"]

log = logging.getLogger(__name__)

RANGES = {"live": None, "1h": "1h", "6h": "6h", "24h": "24h", "7d": "7d"}
SLOTS = 8  # series drawn at once
#: series colours: Category10 without its red (anomaly markers) and purple (change points), so that no
#: series is mistaken for either; the forecast is black (dashed), a colour no series uses
SERIES_COLORS = [c for c in Category10_10 if c not in ("#d62728", "#9467bd")]
FORECAST_COLOR = "#111111"
#: the forecast drawn spans at most this share of the observed span shown, so a long horizon never
#: squeezes the data into a corner of the plot
FORECAST_SHARE = 0.25


def _neutral(text: str) -> pn.pane.HTML:
    """The data-source line: information, styled as such (grey, small), not as a warning."""
    return pn.pane.HTML(f"<span class='nexus-source'>{html.escape(text)}</span>", name="nexus-source",
                        styles={"color": "#555", "font-size": "12px"})


def _job_runs_panel(monitor: "Monitor") -> pn.viewable.Viewable:
    return monitor.runs


def _anchoring_panel(monitor: "Monitor") -> pn.viewable.Viewable:
    return monitor.anchoring.layout


def _placeholder(text: str) -> Callable[["Monitor"], pn.viewable.Viewable]:
    return lambda monitor: pn.pane.Markdown(f"_{text}_", sizing_mode="stretch_width", styles={"color": "#777"})


#: The panels of the page's right-hand column, in order: title → a function of the page's
#: :class:`Monitor` returning the panel. Another module adds or replaces one by name before pages are
#: built (``SIDE_PANELS["Anchoring"] = anchoring_panel``); each page calls it once.
SIDE_PANELS: dict[str, Callable[["Monitor"], pn.viewable.Viewable]] = {
    "Job runs": _job_runs_panel,
    "Alerts": _placeholder("Alert rules appear here."),
    "Anchoring": _anchoring_panel,
    "Narrative": _placeholder("The plain-language summary appears here."),
}


_ms = to_ms


#: the swatch's visibility, copied to the renderer it stands for, found by name: a reference to it (as
#: ``js_link`` holds) would make the renderer's data reachable from the legend again
_FOLLOW_SWATCH = """
const drawn = cb_obj.document.get_model_by_name(name);
if (drawn != null) { drawn.visible = cb_obj.visible; }
"""


def _swatch(fig: Any, drawn: GlyphRenderer) -> GlyphRenderer:
    """A renderer drawn like ``drawn`` (which must be named) for its legend entry, whose one point is
    missing (NaN: nothing on the plot, nothing in the ranges); hiding the swatch hides ``drawn``. BokehJS
    draws no legend glyph for a renderer without data, so an empty source left the entry without its colour."""
    source = ColumnDataSource({column: [math.nan] for column in drawn.data_source.column_names})
    swatch = fig.add_glyph(source, drawn.glyph.clone())
    swatch.js_on_change("visible", CustomJS(args={"name": drawn.name}, code=_FOLLOW_SWATCH))
    return swatch


class Monitor:
    """One viewer's page and its update loop (use :func:`build_monitor`).

    ``can_control`` False leaves the start / pause / stop buttons out of the page (no widget, so nothing
    a browser could send); ``authorize(action, stream)`` runs before each control action and refuses it
    by raising (``PermissionError``): the server-side check a forged event cannot skip.
    """

    def __init__(self, source: MonitorSource, stream: str | None = None, can_control: bool = True,
                 period_ms: int = 100, max_points: int = 2000, chunk_points: int = 50, option_limit: int = 50,
                 resync_for: float = 0.0, feed: Feed | None = None, push_interval: float = 0.15,
                 text_every: float = 0.5, authorize: Callable[[str, str], object] | None = None) -> None:
        self.source = source
        self.authorize = authorize
        self.feed = feed or feed_for(source, chunk_points=chunk_points)
        self.period_ms = period_ms
        # A browser re-renders the plot on every update: ten pages at the stream's full batch rate cost
        # the browsers more CPU than the server. Pushes are at most every ``push_interval`` s (batches
        # arriving meanwhile join the next one) and the latest-values text changes at most every
        # ``text_every`` s (faster than anyone reads it).
        self.push_interval = push_interval
        self.text_every = text_every
        self._text_at = 0.0
        self.max_points = max_points
        self.resync_until = time.monotonic() + resync_for
        self.errors = 0
        self.ticks = 0
        self.cursor = 0
        self._slow_seen = -1
        self._marks_seen = (-1, ())
        self._latest_html = ""
        self._callbacks: list[Any] = []
        self._doc: Any = None
        self._wake_pending = False
        self._last_push = 0.0
        self._ready = True  # until start(): a page driven by hand (tests, notebooks) ticks at once
        streams = source.streams()
        names = list(streams["name"]) if len(streams) else []
        running = [n for n, st in zip(names, streams["state"] if len(streams) else []) if st == "running"]
        first = stream or (running[0] if running else names[0] if names else "")  # a running stream, not a paused one
        self.stream = pn.widgets.Select(name="Stream", options=names or [""], value=first, width=180)
        known = source.series(self.stream.value) if self.stream.value else []
        self.picker = pn.widgets.MultiChoice(name="Series (type to search)", options=known, value=known[:2],
                                             max_items=SLOTS, option_limit=option_limit,
                                             search_option_limit=option_limit, width=420)
        self.range = pn.widgets.RadioButtonGroup(name="Time range", options=list(RANGES), value="live",
                                                 button_type="default")
        self.control = pn.widgets.RadioButtonGroup(options=["start", "pause", "stop"], value=None,
                                                   button_type="primary") if can_control else None
        if self.control is not None:
            # Panel selects the first option of a group made with value=None: "start" then looked chosen
            # and clicking it sent nothing. No choice, so that every button is an action.
            self.control.value = None
        self.control_msg = pn.pane.Str("", styles={"color": "#555"})
        self.overview = pn.pane.HTML("", sizing_mode="stretch_width", name="nexus-overview")
        self.anomaly_feed = pn.pane.HTML("", sizing_mode="stretch_width", max_height=420, styles={"overflow-y": "auto"})
        self.runs = pn.pane.HTML("", sizing_mode="stretch_width")
        self.latest = pn.pane.HTML("", name="nexus-latest", sizing_mode="stretch_width")
        self.health = pn.pane.Str("", styles={"color": "#888", "font-size": "11px"})
        mode = getattr(source, "mode", "embedded")
        notice = getattr(source, "notice", "")
        # A fallback (no gateway found: a private simulated stream) is a warning; the normal source is a plain line.
        self.banner = pn.pane.Alert(notice, alert_type="warning") if notice else _neutral(
            f"Data source: {mode} ({'this process' if mode == 'embedded' else 'a gateway'})")

        # Plot: one line source per slot; markers, change points, forecast line and band.
        self.lines = [ColumnDataSource({"x": [], "y": []}, name=f"nexus-line-{i}") for i in range(SLOTS)]
        self.marks = ColumnDataSource({"x": [], "y": [], "series": [], "score": []}, name="nexus-anomalies")
        self.changes = ColumnDataSource({"x0": [], "y0": [], "x1": [], "y1": []}, name="nexus-changes")
        self.band = ColumnDataSource({"x": [], "yhat": [], "lo": [], "hi": []}, name="nexus-forecast")
        self.ends = ColumnDataSource({"x": [], "y": [], "text": [], "color": []}, name="nexus-labels")
        self.clock = ColumnDataSource({"received": [0.0], "sent": [0.0], "tick": [0]}, name="nexus-clock")
        fig = figure(x_axis_type="datetime", height=380, sizing_mode="stretch_width", tools="pan,wheel_zoom,box_zoom,reset",
                     output_backend="canvas", title="live", name="nexus-plot", x_axis_label="time (UTC)")
        fig.xaxis.formatter = DatetimeTickFormatter(seconds="%H:%M:%S", minsec="%H:%M:%S", minutes="%H:%M",
                                                    hourmin="%H:%M", hours="%H:%M", days="%Y-%m-%d")
        band = fig.varea(x="x", y1="lo", y2="hi", source=self.band, fill_color=FORECAST_COLOR, fill_alpha=0.1,
                         name="nexus-band-area")
        forecast = fig.line(x="x", y="yhat", source=self.band, color=FORECAST_COLOR, line_width=2, line_dash="dashed",
                            name="nexus-forecast-line")
        self.renderers = [fig.line(x="x", y="y", source=src, color=SERIES_COLORS[i % len(SERIES_COLORS)], line_width=1.3,
                                   name=f"nexus-series-{i}") for i, src in enumerate(self.lines)]
        changes = fig.segment(x0="x0", y0="y0", x1="x1", y1="y1", source=self.changes, color="#9467bd",
                              line_dash="dotted", line_width=1.5, name="nexus-change-lines")
        marks = fig.scatter(x="x", y="y", source=self.marks, color="#d62728", size=8, name="nexus-marks")
        # each line carries its series' name at its newest point, and the legend names it too
        # (right-aligned just above the point: a label to the right of it was cut off by the plot's edge)
        fig.text(x="x", y="y", text="text", source=self.ends, text_color="color", text_font_size="12px",
                 text_font_style="bold", x_offset=-4, y_offset=-6, text_align="right", text_baseline="bottom",
                 name="nexus-line-labels")
        # the x-axis fits the lines and the forecast only (not markers or change-point segments)
        fig.x_range = DataRange1d(renderers=[*self.renderers, forecast], range_padding=0.03, only_visible=True)
        # BokehJS rebuilds a legend's whole DOM (a canvas per entry) on any change reachable from its items,
        # data included: every streamed point re-rendered it (a sixth of a page's CPU per update). So each
        # entry names a swatch - a renderer drawn like its line, on one missing point that never changes - and
        # clicking the entry hides the swatch, which hides the line with it.
        self.series_items = [LegendItem(label=literal(""), renderers=[_swatch(fig, r)], visible=False)
                             for r in self.renderers]
        self.forecast_item = LegendItem(label=literal("forecast"), renderers=[_swatch(fig, forecast)], visible=False)
        self.band_item = LegendItem(label=literal("90% band"), renderers=[_swatch(fig, band)], visible=False)
        legend = Legend(items=[*self.series_items, self.forecast_item, self.band_item,
                               LegendItem(label=literal("anomaly"), renderers=[_swatch(fig, marks)]),
                               LegendItem(label=literal("change point"), renderers=[_swatch(fig, changes)])],
                        location="top_left", click_policy="hide", name="nexus-legend")
        fig.add_layout(legend, "right")
        fig.tags = [self.clock]  # part of the document (no glyph): the browser reads update timing from it
        self.figure = fig
        self.plot = pn.pane.Bokeh(fig, sizing_mode="stretch_width")

        self.stream.param.watch(self._on_stream, "value")
        self.picker.param.watch(self._on_pick, "value")
        self.range.param.watch(self._on_pick, "value")
        if self.control is not None:
            self.control.param.watch(self._on_control, "value")

        self.anchoring = AnchoringPanel(anchoring_api(source))  # dashboards/_anchoring_panel.py
        self.layout = pn.Column(
            pn.pane.Markdown("## Nexus Stream · live monitor"),
            self.banner,
            pn.Row(*(w for w in (self.stream, self.control, self.control_msg) if w is not None)),
            self.overview,
            pn.Row(self.picker, self.range),
            self.latest,
            self.plot,
            pn.Row(
                pn.Column(pn.pane.Markdown("### Anomalies (click one to see why)"), self.anomaly_feed, sizing_mode="stretch_width"),
                self.side_column(),
                sizing_mode="stretch_width",
            ),
            self.health,
            sizing_mode="stretch_width",
        )
        self.redraw()  # the snapshot a new viewer sees at once

    def side_column(self) -> pn.Column:
        """The right-hand column: every entry of :data:`SIDE_PANELS`, in order, under its title."""
        parts: list[Any] = []
        for title, make in SIDE_PANELS.items():
            parts += [pn.pane.Markdown(f"### {title}"), make(self)]
        return pn.Column(*parts, sizing_mode="stretch_width")

    # -- events ----------------------------------------------------------------------------------

    def _on_stream(self, event: Any) -> None:
        known = self.source.series(event.new)
        self.picker.options = known
        self.picker.value = known[:2]

    def _on_pick(self, event: Any) -> None:
        self.redraw()

    def _on_control(self, event: Any) -> None:
        if event.new is None:
            return
        try:
            if self.authorize is not None:
                self.authorize(event.new, self.stream.value)  # again now: the role, a revoked key, expiry
            state = self.source.control(self.stream.value, event.new)
            self.control_msg.object = f"{self.stream.value}: {event.new} → {state}"
        except Exception as exc:  # noqa: BLE001 - refusals are shown, not raised into Bokeh
            self.control_msg.object = f"refused: {exc}"
        finally:
            if self.control is not None:
                self.control.value = None
            self._slow(force=True)

    # -- drawing ---------------------------------------------------------------------------------

    @property
    def chosen(self) -> list[str]:
        return list(self.picker.value)[:SLOTS]

    def redraw(self) -> None:
        """Full redraw: the live snapshot, or the chosen history range from the store."""
        chosen, stream = self.chosen, self.stream.value
        if self.range.value == "live":
            self.cursor = self.feed.newest(stream)
            frame, _ = self.source.snapshot(stream, chosen)
            frame = downsample(frame.sort_values("ts", kind="mergesort"), self.max_points)
            self.figure.title.text = f"{stream}: live"
        else:
            end = pd.Timestamp.now(tz="UTC")
            start = end - pd.Timedelta(RANGES[self.range.value])
            frame = downsample(self.source.history(stream, chosen, start, end).sort_values("ts", kind="mergesort"),
                               self.max_points)
            self.figure.title.text = f"{stream}: history {self.range.value} (store, ≤{self.max_points} points/series)"
        for i, src in enumerate(self.lines):
            rows = frame[frame["series"] == chosen[i]] if i < len(chosen) else frame.iloc[:0]
            src.data = {"x": _ms(rows["ts"]), "y": rows["value"].to_numpy(dtype=np.float64)}
        for i, item in enumerate(self.series_items):
            item.label = literal(chosen[i] if i < len(chosen) else "")
            item.visible = i < len(chosen)
        if self.range.value != "live":
            self.band.data = {"x": [], "yhat": [], "lo": [], "hi": []}
        self._marks_seen = (-1, ())
        self._slow(force=True)

    def tick(self) -> None:
        """One poll: stream this page's new points (shared work done once in the feed); slow panels at 1 Hz.

        Every change of one tick leaves in ONE websocket message (``pn.io.hold``): unheld, each streamed
        line, the latest-values text and the clock patch were a message (and a browser-side update) each.
        A poll that finds nothing new (most of them, when batches are pushed) returns before taking the
        hold.
        """
        if not self._ready:
            return
        stream = self.stream.value
        if stream and self.range.value == "live" and time.monotonic() >= self.resync_until:
            self.feed.poll(stream)
            if self.feed.newest(stream) == self.cursor and self.feed.slow(stream).version == self._slow_seen:
                self.ticks += 1
                return
        with pn.io.hold():
            self._tick()

    def _tick(self) -> None:
        self.ticks += 1
        stream = self.stream.value
        if self.range.value == "live" and stream:
            self.feed.poll(stream)
            ticks, newest, lost = self.feed.after(stream, self.cursor)
            if lost:
                self.redraw()
            elif ticks:
                self.cursor = newest
                self._stream_ticks(ticks)
        self._slow()

    def _stream_ticks(self, ticks: list[Tick]) -> None:
        chosen = self.chosen
        for i, key in enumerate(chosen):
            parts = [t.points[key] for t in ticks if key in t.points]
            if parts:
                x = parts[0][0] if len(parts) == 1 else np.concatenate([p[0] for p in parts])
                y = parts[0][1] if len(parts) == 1 else np.concatenate([p[1] for p in parts])
                drawn = self.lines[i].data["x"]
                if len(drawn):  # a snapshot taken between two polls already holds the first of these
                    keep = x > drawn[-1]
                    x, y = x[keep], y[keep]
                if len(x):
                    self.lines[i].stream({"x": x, "y": y}, rollover=self.max_points)
        last = ticks[-1]
        shown = [(k, last.latest[k]) for k in chosen if k in last.latest]
        if shown and time.monotonic() - self._text_at >= self.text_every:
            self._text_at = time.monotonic()
            newest = max(v[0] for _, v in shown)
            text = ("<b>latest</b> " + " · ".join(
                f"{html.escape(k)}=<span class='nexus-value'>{v[1]:.3f}</span>" for k, v in shown)
                + f" <small>at {pd.Timestamp(newest, unit='ms'):%H:%M:%S} UTC</small>")
            if text != self._latest_html:
                self._latest_html = self.latest.object = text
        if last.received is not None:  # ``tick`` is the feed's tick id: a viewer can count the ones it missed
            self.clock.patch({"received": [(0, last.received * 1000.0)], "sent": [(0, time.time() * 1000.0)],
                              "tick": [(0, last.id)]})

    def _slow(self, force: bool = False) -> None:
        stream = self.stream.value
        if not stream:
            return
        slow = self.feed.slow(stream, force=force)
        if slow.version == self._slow_seen and not force:
            return
        self._slow_seen = slow.version
        if self.overview.object != slow.overview_html:
            self.overview.object = slow.overview_html
        streams = slow.streams
        if streams is not None and len(streams) and list(streams["name"]) != list(self.stream.options):
            self.stream.options = list(streams["name"])
        if not self.picker.options:  # a page opened before the first batch: fill the picker when series appear
            known = self.source.series(stream)
            if known:
                self.picker.options = known
                self.picker.value = known[:2]
        if self.anomaly_feed.object != slow.feed_html:
            self.anomaly_feed.object = slow.feed_html
        if self.runs.object != slow.runs_html:
            self.runs.object = slow.runs_html
        self.anchoring.tick(slow.anomalies)
        if time.monotonic() < self.resync_until and self.range.value == "live":
            self._resync()
        if self._marks_seen != (slow.anomalies_version, tuple(self.chosen)):
            self._marks_seen = (slow.anomalies_version, tuple(self.chosen))
            self._draw_marks(slow.anomalies)
        chosen = self.chosen
        fc = self.feed.forecast(stream, chosen[0]) if chosen and self.range.value == "live" else pd.DataFrame()
        if len(fc) and {"yhat", "lo", "hi"} <= set(fc.columns):
            self._draw_forecast(fc)
        elif self.range.value != "live":
            self.band.data = {"x": [], "yhat": [], "lo": [], "hi": []}
        self.forecast_item.visible = self.band_item.visible = bool(len(self.band.data["x"]))
        if chosen:
            self.forecast_item.label = literal(f"forecast of {chosen[0]}")
        self._label_lines()
        self.health.object = (f"source: {getattr(self.source, 'mode', '?')} · ticks {self.ticks} · "
                              f"callback errors {self.errors} · source errors {getattr(self.source, 'errors', 0)}")

    def _draw_forecast(self, fc: pd.DataFrame) -> None:
        """The first chosen series' forecast, over the future only: it starts at the line's newest point
        (band of zero width there) and keeps the steps after it, at most ``FORECAST_SHARE`` of the span shown."""
        line = self.lines[0].data
        if not len(line["x"]):
            return
        x_last, y_last = float(line["x"][-1]), float(line["y"][-1])
        x = _ms(fc["ts"]).astype(np.float64)
        span = x_last - float(line["x"][0])
        keep = (x > x_last) & (x <= x_last + max(span * FORECAST_SHARE, 1000.0))
        if not keep.any():  # a forecast made before the newest point only covers the past: none drawn
            if len(self.band.data["x"]):
                self.band.data = {"x": [], "yhat": [], "lo": [], "hi": []}
            return
        new = {"x": np.concatenate([[x_last], x[keep]]),
               "yhat": np.concatenate([[y_last], fc["yhat"].to_numpy(dtype=np.float64)[keep]]),
               "lo": np.concatenate([[y_last], fc["lo"].to_numpy(dtype=np.float64)[keep]]),
               "hi": np.concatenate([[y_last], fc["hi"].to_numpy(dtype=np.float64)[keep]])}
        old = self.band.data["x"]
        if len(old) != len(new["x"]) or not len(old) or old[0] != new["x"][0] or old[-1] != new["x"][-1]:
            self.band.data = new

    def _label_lines(self) -> None:
        """Each drawn line's name at its newest point (in the line's colour)."""
        xs, ys, texts, colors = [], [], [], []
        for i, key in enumerate(self.chosen):
            data = self.lines[i].data
            if len(data["x"]):
                xs.append(float(data["x"][-1]))
                ys.append(float(data["y"][-1]))
                texts.append(key)
                colors.append(SERIES_COLORS[i % len(SERIES_COLORS)])
        if texts != list(self.ends.data["text"]) or xs != list(self.ends.data["x"]):
            self.ends.data = {"x": xs, "y": ys, "text": texts, "color": colors}

    def _resync(self) -> None:
        """Replace the lines' data with the live snapshot: reaches a browser that attached late (Voila)."""
        chosen = self.chosen
        frame, _ = self.source.snapshot(self.stream.value, chosen)
        frame = downsample(frame.sort_values("ts", kind="mergesort"), self.max_points)
        self.cursor = self.feed.newest(self.stream.value)
        for i, src in enumerate(self.lines):
            rows = frame[frame["series"] == chosen[i]] if i < len(chosen) else frame.iloc[:0]
            src.data = {"x": _ms(rows["ts"]), "y": rows["value"].to_numpy(dtype=np.float64)}
        # The picker was seen empty in Voila while its series were drawn: its options and choice were
        # set before the browser attached (lost), and setting equal values again sends nothing. So the
        # picker's Bokeh models announce their current values once more. (Clearing and restoring them
        # instead made the browser echo the empty choice back, and the lines were cleared with it.)
        for model, _parent in list(getattr(self.picker, "_models", {}).values()):  # Panel's rendered models
            for attr in ("options", "value"):
                current = getattr(model, attr)
                model.trigger(attr, current, current)

    def _draw_marks(self, anomalies: pd.DataFrame | None) -> None:
        """Anomaly markers (at the plotted value of their series) and change-point lines for chosen series."""
        chosen = self.chosen
        if anomalies is None or not len(anomalies):
            shown = pd.DataFrame({"ts": [], "series": [], "score": [], "reason": []})
        else:
            shown = anomalies[anomalies["series"].astype(str).isin(chosen)]
        facts = [explain(r) for r in shown["reason"]] if len(shown) else []
        change = np.array([is_change_point(f) for f in facts], dtype=bool)
        y = self._values_at(shown)
        self.marks.data = {"x": _ms(shown["ts"]) if len(shown) else np.array([]), "y": y,
                           "series": shown["series"].astype(str).to_numpy() if len(shown) else np.array([]),
                           "score": shown["score"].to_numpy(dtype=np.float64) if len(shown) else np.array([])}
        lo, hi = self._y_extent()
        cx = _ms(shown["ts"][change]) if change.any() else np.array([])
        self.changes.data = {"x0": cx, "y0": np.full(len(cx), lo), "x1": cx, "y1": np.full(len(cx), hi)}

    def _values_at(self, shown: pd.DataFrame) -> np.ndarray:
        """The plotted value at each anomaly's time (nearest point of its series line)."""
        if not len(shown):
            return np.array([])
        out = np.full(len(shown), np.nan)
        xs = _ms(shown["ts"])
        for i, key in enumerate(self.chosen):
            data = self.lines[i].data
            x = np.asarray(data["x"], dtype=float)
            if not len(x):
                continue
            sel = (shown["series"].astype(str) == key).to_numpy()
            at = xs[sel]
            pos = np.clip(np.searchsorted(x, at), 0, len(x) - 1)
            # an anomaly older than the drawn window has no point to sit on: not drawn (NaN)
            out[sel] = np.where((at >= x[0]) & (at <= x[-1]), np.asarray(data["y"], dtype=float)[pos], np.nan)
        return out

    def _y_extent(self) -> tuple[float, float]:
        ys = [np.asarray(src.data["y"], dtype=float) for src in self.lines if len(src.data["y"])]
        if not ys:
            return 0.0, 1.0
        allv = np.concatenate(ys)
        return float(np.nanmin(allv)), float(np.nanmax(allv))

    # -- running ---------------------------------------------------------------------------------

    def guarded(self, fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                fn()
            except Exception:  # noqa: BLE001 - an escaping error can silently stop the callback (panel #5540)
                self.errors += 1
                log.exception("monitor update failed (%d so far)", self.errors)
        return run

    def start(self) -> "Monitor":
        """Start updating (call inside the session that shows the page).

        On a Bokeh/Panel server session over a source that pushes, each arriving batch wakes the page at
        once (at most every ``push_interval`` s) and the periodic callback only refreshes the slow
        panels; otherwise (Voila, a remote source) the periodic callback polls every ``period_ms``.
        """
        self._ready = False
        doc = pn.state.curdoc
        push = self.feed.pushes and doc is not None and getattr(doc, "session_context", None) is not None
        period = max(self.period_ms, 250) if push else self.period_ms
        if push:
            self._doc = doc
            doc.on_session_destroyed(lambda _context: self.stop())
        # Nothing is sent until the browser has rendered the page: Panel drops the changes a server
        # session makes between sending the document and the browser's "ready" (it expects to resend
        # the whole document, which has already happened), and the page showed a hole in its lines where
        # those updates went. The first update after it sends everything since the snapshot.
        pn.state.onload(self._on_ready)
        cb = pn.state.add_periodic_callback(self.guarded(self.tick), period=period, start=False)
        # a "background" callback skips Panel's global busy counter: otherwise every tick of every viewer
        # sets ``pn.state.busy`` twice and runs its watchers — measurable work at 10 viewers x 10 ticks/s
        cb._background = True
        cb.start()
        self._callbacks.append(cb)
        return self

    def _on_ready(self) -> None:
        self._ready = True
        if self._doc is not None:
            self.feed.subscribe(self._wake)

    def _wake(self, stream: str) -> None:
        """A batch of ``stream`` arrived (on the source's loop): schedule a push on this page's session."""
        if self._wake_pending or self._doc is None or stream != self.stream.value:
            return
        self._wake_pending = True
        try:
            self._doc.add_next_tick_callback(self._push)  # the one thread-safe Document method
        except Exception:  # noqa: BLE001 - the session is gone: stop listening
            self._wake_pending = False
            self.stop()

    def _push(self) -> None:
        if self._doc is None:  # stopped meanwhile
            return
        wait = self._last_push + self.push_interval - time.monotonic()
        if wait > 0:  # at most one push per push_interval: batches arriving meanwhile join the next one
            self._doc.add_timeout_callback(self._push, wait * 1000.0)
            return
        self._wake_pending = False
        self._last_push = time.monotonic()
        from panel.io.state import set_curdoc

        with set_curdoc(self._doc):
            self.guarded(self.tick)()

    def stop(self) -> None:
        self.feed.unsubscribe(self._wake)
        self._doc = None
        for cb in self._callbacks:
            cb.stop()
        self._callbacks.clear()


def build_monitor(source: MonitorSource, stream: str | None = None, can_control: bool = True,
                  start: bool = True, **options: Any) -> pn.viewable.Viewable:
    """The monitor page for one viewer, fed by ``source`` (polling starts at once unless ``start=False``).

    ``can_control`` and ``authorize`` (in ``options``) as :class:`Monitor` takes them. In a notebook or
    Voila the caller already runs code in that kernel; a :class:`~dashboards.RemoteSource` is held to
    its token's role by the gateway itself.
    """
    monitor = Monitor(source, stream=stream, can_control=can_control, **options)
    if start:
        monitor.start()
    layout = monitor.layout
    layout.monitor = monitor  # type: ignore[attr-defined]  # tests and notebooks reach the state through it
    return layout


def page_for(session: MonitorSession, auth: MonitorAuth, source: MonitorSource, can_control: bool = True,
             **options: Any) -> pn.viewable.Viewable:
    """The page of one logged-in caller (what :func:`start_monitor` serves after login).

    The start / pause / stop buttons exist only when ``can_control`` and ``session``'s principal has the
    ``control`` permission; each action checks the credential and the role again (``auth.require``).
    Once the page runs (``start``, the default), its credential is checked again every
    ``settings.ws_recheck`` seconds: revoked or expired, the page is replaced by a notice and stops
    updating. ``options`` go to :func:`build_monitor`.
    """
    principal = session.principal
    layout = build_monitor(source, can_control=can_control and principal.may("control"),
                           authorize=lambda action, stream: auth.require(session, "control", stream), **options)
    monitor: Monitor = layout.monitor  # type: ignore[attr-defined]
    layout.insert(1, pn.pane.HTML(
        f"signed in as <b>{html.escape(str(principal.id))}</b> (<span class='nexus-role'>{html.escape(principal.role)}"
        f"</span>) · <a href='/logout'>log out</a>", name="nexus-whoami", styles={"font-size": "12px"}))

    def recheck() -> None:
        try:
            auth.refresh(session)
        except PermissionError as exc:
            callback.stop()
            monitor.stop()
            layout[:] = [pn.pane.Alert(f"Session ended: {exc}. Reload the page to log in again.", alert_type="danger")]

    if options.get("start", True):
        callback = pn.state.add_periodic_callback(recheck, period=int(auth.settings.ws_recheck * 1000))
    return layout


async def start_monitor(settings: Any, source: MonitorSource, port: int | None = None, address: str | None = None,
                        can_control: bool = True, auth: MonitorAuth | None = None, login: bool = True,
                        **options: Any) -> Any:
    """Serve the monitor with Panel's (Bokeh) server on the running event loop; returns the server.

    One ``source`` (one runtime's bus and store) feeds every viewer; each browser session gets its own page.
    The page is at ``http://<address>:<port>/monitor``; callers log in with the gateway's credentials
    (``auth``, default ``MonitorAuth(settings)``): ``/monitor?token=<token or key>`` logs in and drops
    the token from the address, ``/login`` asks for one, ``/logout`` forgets it. The page's controls
    follow the caller's role. Stop it with ``server.stop()``.

    ``login=False`` serves the page to whoever reaches the port, with controls per ``can_control``: for
    in-process tests and benchmarks on loopback only (``nexus up`` always logs callers in).
    """
    from tornado.ioloop import IOLoop

    address = address or settings.host
    if not port:
        import socket

        with socket.socket() as sock:  # a free port, so that the allowed websocket origin can name it
            sock.bind((address, 0))
            port = sock.getsockname()[1]
    auth = (auth or MonitorAuth(settings)) if login else None

    def page() -> pn.viewable.Viewable:
        if auth is None:
            return build_monitor(source, can_control=can_control, **options)
        session = current_session()
        if session is None:  # not reached through the login (Bokeh checked it): no page, never a default role
            return pn.pane.Alert("Not logged in: reload the page to log in.", alert_type="danger")
        return page_for(session, auth, source, can_control=can_control, **options)

    origins = [f"{address}:{port}", f"localhost:{port}", f"127.0.0.1:{port}"]
    secured: dict[str, Any] = {} if auth is None else {
        "auth_provider": auth,
        # the session cookie stays out of Bokeh's session token, which the page embeds (scripts read it):
        # as a cookie, and as the raw Cookie header Bokeh keeps when it has no cookie left to carry
        "exclude_cookies": [COOKIE], "exclude_headers": ["Cookie", "Authorization"],
        "sign_sessions": True, "secret_key": auth.session_key,
        "log_function": log_request,  # the login URL carries a token: never in the access log
    }
    # A closed page's session (and its subscription to pushed batches) ends ~5 s after its socket closes.
    # The keyword names are Bokeh's: the shorter CLI spellings were once passed here and silently ignored.
    server = pn.serve({"monitor": page}, port=port, address=address, websocket_origin=origins, show=False,
                      start=False, threaded=False, loop=IOLoop.current(), title="Nexus monitor",
                      check_unused_sessions_milliseconds=1000, unused_session_lifetime_milliseconds=5000,
                      **secured)
    server.start()
    return server
