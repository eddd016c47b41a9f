"""``Feed``: the one producer shared by every page on a source, so a viewer costs O(new points) per tick.

Without it each browser session read the source, filtered, grouped and downsampled the same new points,
and re-rendered the status table, the anomaly feed and the job runs — ten viewers did the work ten times.
The feed does each of those once and keeps the results; a session only concatenates the arrays of *its*
series and hands them to ``ColumnDataSource.stream``.

* :meth:`Feed.poll` reads ``source.updates`` for all series (whichever session asks first does it; the
  others reuse it) and appends a :class:`Tick`: per series, epoch-ms ``x`` and ``y`` arrays (at most
  ``chunk_points`` per series, LTTB), and the newest value. A source that tells its ``cursor`` is read
  only when it holds something new; one that does not is read at most every ``min_interval`` seconds.
* **Push**: a source with ``add_listener`` (the embedded one) calls the feed as each batch arrives, and
  the feed wakes every page subscribed to that stream (:meth:`Feed.subscribe`) — a page is sent a batch
  when it arrives, not when its next poll comes round. Pages still poll, slowly, for the slow panels.
* :meth:`Feed.slow` refreshes the panels that change slowly (status table, anomaly feed, job runs,
  forecasts) once per ``slow_every`` seconds, rendered once to HTML, with a ``version`` that sessions
  compare so an unchanged panel is never re-sent.

Caveats: ticks are kept for ``keep`` polls (10 s at 0.05 s); a session that falls further behind redraws
from the live snapshot. Not thread-safe: every session of a Panel server, and a Voila kernel, run on one
event loop, which is the only caller. The source's listener (``_arrived``) runs where the source takes
its batches off the bus (the serving loop, or the runtime's pipeline thread for a synchronous caller) and
only calls the pages' wakers, which schedule work on the server's loop.
"""

from __future__ import annotations

import contextlib
import html
import json
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from nexus_kernel.analysis._reasons import describe_reason  # the module alone: the package loads every detector

from ._source import MonitorSource, explain

__all__ = ["Feed", "Tick", "feed_for", "downsample", "to_ms"]


def downsample(frame: pd.DataFrame, n_out: int) -> pd.DataFrame:
    """At most ``n_out`` points per series, chosen by LTTB (keeps peaks and shape); input sorted by ts.

    LTTB always keeps a series' first and last point and, per bucket, the point spanning the largest
    triangle — so spikes survive. ``n_out < 3`` falls back to striding (LTTB needs 3 buckets).
    """
    from tsdownsample import LTTBDownsampler

    if len(frame) <= n_out:
        return frame
    parts = []
    for _, rows in frame.groupby("series", sort=False):
        if len(rows) <= n_out or n_out < 3:
            parts.append(rows if len(rows) <= n_out else rows.iloc[:: int(np.ceil(len(rows) / max(n_out, 1)))])
            continue
        x = pd.DatetimeIndex(rows["ts"]).tz_localize(None).asi8
        y = rows["value"].to_numpy(dtype=np.float64)
        idx = LTTBDownsampler().downsample(x, y, n_out=n_out)
        parts.append(rows.iloc[np.asarray(idx)])
    return pd.concat(parts, ignore_index=True) if parts else frame.iloc[:0]


def to_ms(ts: Any) -> np.ndarray:
    """Datetimes as epoch milliseconds (what Bokeh's datetime axis plots), whatever their unit.

    (``asi8`` counts in the index's own unit: microsecond times divided as if nanoseconds landed in 1970.)
    """
    values = pd.to_datetime(ts, utc=True)
    return pd.DatetimeIndex(values).tz_localize(None).as_unit("ns").asi8 / 1e6


@dataclass
class Tick:
    id: int
    received: float | None                     # epoch s the newest batch entered the source's buffer
    points: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)   # series → (x ms, y)
    latest: dict[str, tuple[float, float]] = field(default_factory=dict)             # series → (x ms, y)


@dataclass
class Slow:
    version: int = 0
    streams: pd.DataFrame | None = None
    overview_html: str = ""
    anomalies: pd.DataFrame | None = None
    anomalies_version: int = 0
    feed_html: str = "<i>No anomalies yet.</i>"
    runs_html: str = "<i>No job runs recorded.</i>"


class _StreamFeed:
    def __init__(self, keep: int) -> None:
        self.cursor = 0
        self.last_poll = 0.0
        self.next_id = 1
        self.ticks: deque[Tick] = deque(maxlen=keep)
        self.slow = Slow()
        self.last_slow = 0.0
        self.forecasts: dict[str, tuple[float, pd.DataFrame]] = {}


class Feed:
    """The shared producer of one source (get it with :func:`feed_for`)."""

    def __init__(self, source: MonitorSource, min_interval: float = 0.05, chunk_points: int = 50,
                 slow_every: float = 1.0, keep: int = 200) -> None:
        self.source = source
        self.min_interval = min_interval
        self.chunk_points = chunk_points
        self.slow_every = slow_every
        self.keep = keep
        self.polls = 0
        self._streams: dict[str, _StreamFeed] = {}
        self._wakers: list[Callable[[str], None]] = []
        self.pushes = hasattr(source, "add_listener")
        if self.pushes:
            source.add_listener(self._arrived)

    def subscribe(self, waker: Callable[[str], None]) -> None:
        """Call ``waker(stream)`` when a batch of ``stream`` arrives (on the source's loop: schedule
        the work, return at once). Only for a source that pushes (``self.pushes``)."""
        self._wakers.append(waker)

    def unsubscribe(self, waker: Callable[[str], None]) -> None:
        with contextlib.suppress(ValueError):
            self._wakers.remove(waker)

    def _arrived(self, stream: str) -> None:
        for waker in list(self._wakers):
            waker(stream)

    def _state(self, stream: str) -> _StreamFeed:
        state = self._streams.get(stream)
        if state is None:
            state = self._streams[stream] = _StreamFeed(self.keep)
        return state

    def poll(self, stream: str) -> None:
        """Read what arrived since the last poll into a :class:`Tick` (see the module docstring for when)."""
        state = self._state(stream)
        newest = getattr(self.source, "cursor", None)
        if newest is not None:
            if newest(stream) == state.cursor:
                return
        else:
            now = time.monotonic()
            if now - state.last_poll < self.min_interval:
                return
            state.last_poll = now
        frame, state.cursor, received = self.source.updates(stream, None, state.cursor)
        self.polls += 1
        if not len(frame):
            return
        frame = frame.sort_values(["series", "ts"], kind="mergesort")
        if len(frame) > self.chunk_points:
            frame = downsample(frame, self.chunk_points)
        keys = frame["series"].to_numpy()
        x, y = to_ms(frame["ts"]), frame["value"].to_numpy(dtype=np.float64)
        # rows are grouped by series: split the arrays at the boundaries, no per-row Python
        starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
        ends = np.r_[starts[1:], len(keys)]
        tick = Tick(state.next_id, received)
        for a, b in zip(starts, ends):
            key = str(keys[a])
            tick.points[key] = (x[a:b], y[a:b])
            tick.latest[key] = (float(x[b - 1]), float(y[b - 1]))
        state.next_id += 1
        state.ticks.append(tick)

    def after(self, stream: str, cursor: int) -> tuple[list[Tick], int, bool]:
        """Ticks after ``cursor``, the newest id, and whether some were already dropped (redraw then)."""
        state = self._state(stream)
        ticks = state.ticks
        newest = state.next_id - 1
        if not ticks or cursor >= newest:
            return [], newest, False
        lost = cursor < ticks[0].id - 1
        return [t for t in ticks if t.id > cursor], newest, lost

    def newest(self, stream: str) -> int:
        return self._state(stream).next_id - 1

    def slow(self, stream: str, force: bool = False) -> Slow:
        """The slow panels of ``stream``, refreshed at most once per ``slow_every`` seconds."""
        state = self._state(stream)
        now = time.monotonic()
        if not force and now - state.last_slow < self.slow_every:
            return state.slow
        state.last_slow = now
        old = state.slow
        streams = self.source.streams()
        anomalies = self.source.anomalies(stream, limit=50)
        feed_html = _feed_html(anomalies)
        runs_html = _runs_html(self.source.job_runs(limit=8))
        overview = _overview_html(streams)
        changed_anomalies = feed_html != old.feed_html
        state.slow = Slow(version=old.version + 1, streams=streams, overview_html=overview, anomalies=anomalies,
                          anomalies_version=old.anomalies_version + int(changed_anomalies), feed_html=feed_html,
                          runs_html=runs_html)
        return state.slow

    def forecast(self, stream: str, series: str, every: float = 2.0) -> pd.DataFrame:
        """The source's newest forecast of one series, asked at most every ``every`` seconds."""
        state = self._state(stream)
        made, frame = state.forecasts.get(series, (0.0, pd.DataFrame()))
        if time.monotonic() - made >= every:
            frame = self.source.forecasts(stream, series)
            state.forecasts[series] = (time.monotonic(), frame)
        return frame


def feed_for(source: MonitorSource, **options: Any) -> Feed:
    """The one :class:`Feed` of ``source`` (made on first use, then shared by every page)."""
    feed = getattr(source, "_monitor_feed", None)
    if feed is None:
        feed = Feed(source, **options)
        try:
            source._monitor_feed = feed  # type: ignore[attr-defined]
        except AttributeError:  # a source with __slots__: one feed per page, still correct
            pass
    return feed


#: the overview's columns: (status column, heading with its unit, how a value reads)
_OVERVIEW: tuple[tuple[str, str, Any], ...] = (
    ("name", "stream", str),
    ("state", "state", str),
    ("source", "source", str),
    ("rate", "rate (records/s)", lambda v: f"{float(v):,.0f}"),
    ("lag", "lag (s)", lambda v: f"{float(v):,.1f}"),
    ("records_in", "records in", lambda v: f"{int(v):,}"),
    ("records_out", "records out", lambda v: f"{int(v):,}"),
    ("dead_letters", "dead letters", lambda v: f"{int(v):,}"),
    ("errors", "errors", lambda v: f"{int(v):,}"),
    ("last_error", "last error", str),
)


def _cell(value: Any, fmt: Any) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "-"
    try:
        return html.escape(fmt(value))
    except (TypeError, ValueError):
        return html.escape(str(value))


def _overview_html(streams: pd.DataFrame) -> str:
    """The streams table: a heading with its unit on every figure, thousands separated, '-' for nothing.

    ``records out`` is the API's ``records_out`` (what the stream's last step emitted: windows, for a
    windowed stream), the same counter ``nexus up``'s terminal view shows.
    """
    if streams is None or not len(streams):
        return "<i>No streams.</i>"
    shown = [(col, head, fmt) for col, head, fmt in _OVERVIEW if col in streams.columns]
    head = "".join(f"<th style='text-align:{'left' if fmt is str else 'right'};padding:2px 10px'>{html.escape(h)}</th>"
                   for _, h, fmt in shown)
    rows = "".join(
        "<tr>" + "".join(f"<td style='text-align:{'left' if fmt is str else 'right'};padding:2px 10px'>"
                         f"{_cell(row[col], fmt)}</td>" for col, _, fmt in shown) + "</tr>"
        for row in streams.to_dict("records"))
    return f"<table class='nexus-streams' style='border-collapse:collapse;font-size:13px'><thead><tr>{head}</tr></thead>" \
           f"<tbody>{rows}</tbody></table>"


def _feed_html(anomalies: pd.DataFrame) -> str:
    """Newest first: series, time, score and the reason as a sentence; opening one shows its facts."""
    if anomalies is None or not len(anomalies):
        return "<i>No anomalies yet.</i>"
    items = []
    for row in anomalies.iloc[::-1].itertuples():
        facts = explain(row.reason)
        unparsed = set(facts) == {"text"}  # a reason that was not JSON: shown as it is
        sentence = describe_reason(facts) if facts and not unparsed else str(row.reason or "")
        field = getattr(row, "field", None)
        what = f" ({html.escape(str(field))})" if isinstance(field, str) and field and field != "value" else ""
        detail = "".join(f"<tr><td style='color:#666;padding-right:8px'>{html.escape(k)}</td><td>{html.escape(_fmt(v))}</td></tr>"
                         for k, v in _flat(facts))
        items.append(
            f"<details class='nexus-anomaly'><summary><b>{html.escape(str(row.series))}</b>{what} "
            f"{_clock(row.ts)} · score {float(row.score):.2f} · {html.escape(str(row.detector))}</summary>"
            f"<p class='nexus-reason' style='margin:4px 0 4px 16px'>{html.escape(sentence)}</p>"
            f"<table class='nexus-why' style='font-size:12px;margin-left:16px'>{detail}</table></details>")
    return "".join(items)


def _flat(facts: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """``member.detector``-style pairs: a nested fact is a row of its own, never a JSON blob."""
    out: list[tuple[str, Any]] = []
    for key, value in facts.items():
        name = f"{prefix}{key}".replace("_", " ")
        if isinstance(value, dict):
            out += _flat(value, f"{prefix}{key} · ")
        else:
            out.append((name, _clock(value, seconds=True) if key == "since" else value))
    return out


def _clock(value: Any, seconds: bool = False) -> str:
    """``2026-12-07 03:10:05 UTC`` for a time (whole seconds: no ``.900000``); anything else as it is."""
    try:
        ts = pd.Timestamp(value)
    except (TypeError, ValueError):
        return str(value)
    if ts is pd.NaT:
        return "-"
    ts = ts.tz_convert("UTC") if ts.tzinfo else ts.tz_localize("UTC")
    return f"{ts:%Y-%m-%d %H:%M:%S} UTC" if seconds else f"{ts:%H:%M:%S}"


def _runs_html(runs: pd.DataFrame) -> str:
    if runs is None or not len(runs):
        return "<i>No job runs recorded.</i>"
    out = []
    for r in runs.itertuples():
        color = {"succeeded": "green", "failed": "crimson"}.get(str(r.status), "#777")
        err = f"<br><small>{html.escape(str(r.error))}</small>" if isinstance(r.error, str) and r.error else ""
        out.append(f"<div><span style='color:{color}'>●</span> {html.escape(str(r.job))} "
                   f"{pd.Timestamp(r.started_at):%Y-%m-%d %H:%M} UTC {html.escape(str(r.status))}{err}</div>")
    return "".join(out)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return json.dumps(value, default=str)
    return str(value)
