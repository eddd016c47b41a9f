"""``nexus up``: run the streams of a Nexus home on its :class:`~nexus_kernel.runtime.Runtime` and show them live.

One process owns the home while it runs: it holds the home's lock (``home/up.lock``, an exclusive
``flock`` the kernel drops when the process ends, SIGKILL included — see :mod:`._home_lock`), so a
second ``nexus up`` on the same home is refused and a restart after a crash starts. Its runtime restores
the saved streams (the built-in simulator stream, a saved spec, on first start) on the pipelines' own
thread, reconciles with changes the CLI makes to the registry, and ``nexus up`` writes ``status.json``
every second for other processes and stops cleanly on Ctrl-C or SIGTERM — saved states untouched, so
the next ``nexus up`` resumes where this one stopped.

It serves the gateway (advertised in ``home/runtime.json`` for the other processes of the home) and
the live monitor, mounted through the ``nexus_kernel.monitors`` entry point (see
:mod:`nexus_kernel.runtime._hooks`); without the ``dashboards`` extra it says so and serves none. The
monitor asks for the gateway's credentials, and the URL printed at start carries a login token
(``.../monitor?token=...``) as Jupyter's does. The terminal view reads the bus, never a pipeline.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich import box
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from ._home_lock import HomeBusyError, HomeLock, holder_pid
from .config import Settings
from .records import SERIES, TIME
from .runtime import Runtime, split_topic, topic_pattern

__all__ = ["run_up", "read_status", "up_pid", "HomeBusyError", "UpView"]

log = logging.getLogger("nexus_kernel.up")


def up_pid(settings: Settings) -> int | None:
    """PID of the ``nexus up`` holding this home's lock; None when no process holds it.

    The lock answers (not whether some PID is alive): after a crash this is None at once, whatever
    PID the lock file still names. 0: held, by a process that has not written its PID yet.
    """
    return holder_pid(settings.home)


def read_status(settings: Settings) -> dict[str, Any] | None:
    """The status the running ``nexus up`` last wrote, or None when none holds the home's lock.

    A ``status.json`` left behind by a killed process is ignored: the lock is free.
    """
    if up_pid(settings) is None:
        return None
    try:
        loaded = json.loads((settings.home / "status.json").read_text())
    except (FileNotFoundError, ValueError):
        return None
    return loaded if isinstance(loaded, dict) else None


class UpView:
    """What ``nexus up`` shows: a rich live table on a terminal, one line per stream otherwise.

    Its figures come from the runtime's live bus — the newest value per series from every stream's
    ``points``, the anomalies from ``anomalies`` frames (rows with ``is_anomaly``) — and its counts from
    :meth:`Runtime.status <nexus_kernel.runtime.Runtime.status>`; it never taps a pipeline.

    Parameters
    ----------
    runtime
        The runtime whose bus and streams are shown.
    console
        Where to draw.
    headless
        One line per stream per tick instead of a live table.
    maxsize
        Each subscription's queue; a view that falls behind is cut off by the bus
        (:class:`~nexus_kernel.storage.SubscriberLagged`) and subscribes again, losing only what it missed.

    Caveats: "anomalies detected" counts what the view saw since it opened (:meth:`open` before the
    streams start sees them all). Example::

        view = UpView(runtime, Console(), headless=True)
        await view.open()          # subscribed: frames published from now on are seen
        runtime.start()
        print(view.line(view.snapshot()))
        await view.close()
    """

    KINDS = ("points", "anomalies")

    def __init__(self, runtime: Runtime, console: Console, headless: bool, maxsize: int = 1000,
                 keep: int = 5) -> None:
        self.runtime = runtime
        self.console = console
        self.headless = headless
        self.maxsize = maxsize
        self.latest: dict[str, dict[str, float]] = {}
        self.detected: dict[str, int] = {}
        self.recent: dict[str, deque[dict[str, Any]]] = {}
        self.keep = keep
        self.lagged = 0
        self._tasks: list[asyncio.Task[None]] = []

    async def open(self) -> UpView:
        """Subscribe to every stream's points and anomalies; returns once both subscriptions listen."""
        for kind in self.KINDS:
            ready = asyncio.Event()
            self._tasks.append(asyncio.create_task(self._follow(kind, ready), name=f"nexus-up-view-{kind}"))
            waiting = asyncio.create_task(ready.wait())
            done, _ = await asyncio.wait({waiting, self._tasks[-1]}, return_when=asyncio.FIRST_COMPLETED)
            if waiting not in done:
                waiting.cancel()
                self._tasks[-1].result()  # the subscription failed at once: raise why
        return self

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()

    async def _follow(self, kind: str, ready: asyncio.Event) -> None:
        from .storage import BusError, SubscriberLagged

        handle = self._points if kind == "points" else self._anomalies
        while True:
            try:
                async with self.runtime.bus.subscribe(topic_pattern("*", kind), maxsize=self.maxsize) as sub:
                    ready.set()
                    async for message in sub:
                        stream, _ = split_topic(message.topic)
                        try:
                            handle(stream, message.frame)
                        except (KeyError, TypeError, ValueError) as exc:  # a frame of another shape: skip it
                            log.debug("up view: skipped a %s frame of %s: %s", kind, stream, exc)
                return  # the bus closed
            except SubscriberLagged:
                self.lagged += 1  # fell behind: what was dropped is gone from the view, not from the store
            except BusError as exc:
                if not ready.is_set():
                    raise
                log.warning("up view: %s subscription lost (%s); subscribing again", kind, exc)
                await asyncio.sleep(1.0)

    def _points(self, stream: str, frame: pd.DataFrame) -> None:
        if frame.empty or "value" not in frame.columns:
            return
        newest = frame.sort_values(TIME, kind="mergesort") if TIME in frame.columns else frame
        latest = self.latest.setdefault(stream, {})
        latest.update(zip(newest[SERIES].astype(str), newest["value"].astype(float)))  # later rows win

    def _anomalies(self, stream: str, frame: pd.DataFrame) -> None:
        flagged = frame[frame["is_anomaly"].astype(bool)] if "is_anomaly" in frame.columns else frame.iloc[:0]
        if flagged.empty:
            return
        self.detected[stream] = self.detected.get(stream, 0) + len(flagged)
        recent = self.recent.setdefault(stream, deque(maxlen=self.keep))
        recent.extend(_why({str(k): v for k, v in item.items()}) for item in flagged.tail(self.keep).to_dict("records"))

    def snapshot(self) -> list[dict[str, Any]]:
        """The runtime's status rows, with what the view read from the bus."""
        rows = self.runtime.status()
        for row in rows:
            name = row["name"]
            row["anomalies_detected"] = self.detected.get(name, 0 if name in self.runtime.pipelines else None)
            row["recent_anomalies"] = list(self.recent.get(name, ()))
            row["latest"] = {k: round(v, 3) for k, v in sorted(self.latest.get(name, {}).items())}
        return rows

    #: the table's columns: heading (two lines) and status field; ``records in`` / ``records out`` are
    #: the API's ``records_in`` / ``records_out``; ``anomalies`` reads "injected / detected"
    COLUMNS = (("stream", "name"), ("state", "state"), ("source", "source"), ("rate\n/s", "rate"),
               ("lag\ns", "lag"), ("records\nin", "records_in"), ("records\nout", "records_out"),
               ("dead\nletters", "dead_letters"), ("anomalies\ninj / det", "anomalies"))

    @staticmethod
    def _cell(key: str, r: dict[str, Any]) -> str:
        if key == "anomalies":
            return " / ".join("-" if r.get(k) is None else f"{r[k]:,}" for k in ("anomalies_injected", "anomalies_detected"))
        value = r.get(key)
        if value is None:
            return "-"
        if key == "rate":
            return f"{value:,.0f}"
        if key == "lag":
            return f"{value:.1f}"
        return f"{value:,}" if isinstance(value, int) else str(value)

    def render(self, rows: list[dict[str, Any]]) -> Group:
        """The streams table, each stream's newest values and its latest anomalies.

        Values are never cut: every column is at least as wide as its widest value, so a stream name
        stays whole at 80 columns; when the table would be wider than the terminal, the ``source``
        column is left out. The newest-values table shows as many series as fit (and says how many more).
        """
        width = self.console.width if getattr(self, "console", None) is not None else 80
        cells = [[self._cell(key, r) for _, key in self.COLUMNS] for r in rows]
        widths = [max([len(c[i]) for c in cells] + [len(w) for w in head.split("\n")])
                  for i, (head, _) in enumerate(self.COLUMNS)]
        shown = list(range(len(self.COLUMNS)))
        if sum(widths) + 2 * len(widths) - 2 > width:  # no box; one space each side of a column but the edges
            shown.remove(2)  # source: the least needed to read the stream's health
        table = Table(title="Nexus streams", expand=False, box=None, padding=(0, 1), pad_edge=False)
        for i in shown:
            head, key = self.COLUMNS[i]
            table.add_column(head, justify="left" if key in ("name", "state", "source") else "right", no_wrap=True,
                             min_width=widths[i])
        for row in cells:
            table.add_row(*(row[i] for i in shown))
        parts: list[Any] = [table]
        for r in rows:
            if not r["latest"]:
                continue
            items: list[tuple[str, float]] = []
            used = 0
            for key, v in r["latest"].items():
                cost = max(len(key), len(f"{v:.2f}")) + 3
                if used + cost > width - 2 or len(items) == 12:
                    break
                items.append((key, v))
                used += cost
            more = len(r["latest"]) - len(items)
            title = f"{r['name']}: last value per series" + (f" (first {len(items)}; {more} more)" if more else "")
            values = Table(title=title, expand=False, box=box.SIMPLE_HEAD)
            for key, _ in items:
                values.add_column(key, justify="right", no_wrap=True)
            values.add_row(*(f"{v:.2f}" for _, v in items))
            parts.append(values)
            if r.get("recent_anomalies"):
                feed = Table(title=f"{r['name']}: latest anomalies (why flagged)", expand=False)
                for col in ("time", "series", "score", "reason"):
                    feed.add_column(col)
                for a in r["recent_anomalies"][-self.keep:]:
                    feed.add_row(a["ts"], a["series"], f"{a['score']:.2f}", a["why"])
                parts.append(feed)
            if r.get("last_error"):
                parts.append(f"[red]last error:[/red] {r['last_error']}")
        return Group(*parts)

    def line(self, rows: list[dict[str, Any]]) -> str:
        out = []
        for r in rows:
            latest = " ".join(f"{k}={v:.2f}" for k, v in list(r["latest"].items())[:5])
            out.append(
                f"{time.strftime('%H:%M:%S')} stream={r['name']} state={r['state']} rate={r['rate']:.0f}/s "
                f"records_in={r['records_in']} records_out={r['records_out']} dead_letters={r['dead_letters']} "
                f"anomalies_injected={r['anomalies_injected']} anomalies_detected={r['anomalies_detected']} "
                f"{latest}".rstrip())
        return "\n".join(out)


#: how long ``nexus up`` waits for a store another process holds (a CLI command or a notebook of the same
#: home that opened it while no runtime ran) before it gives up
STORE_WAIT = 60.0


async def run_up(settings: Settings, headless: bool = False, duration: float | None = None,
                 console: Console | None = None, on_ready: Callable[[], None] | None = None,
                 gateway: bool = True, monitor: bool = True, scheduler: bool = True,
                 store_wait: float = STORE_WAIT) -> int:
    """Run until Ctrl-C / SIGTERM (or ``duration`` seconds). Returns the exit code.

    Raises :class:`HomeBusyError` (naming the holder's PID) when another process holds the home's lock;
    the lock is taken before anything is opened, so a refused start touches nothing. A store that another
    process of the home holds (a ``nexus query`` that opened it while no runtime ran) is waited for, up to
    ``store_wait`` seconds, saying so; then :class:`~nexus_kernel.storage.StoreLockedError`.
    """
    console = console or Console()
    lock = HomeLock(settings.home).acquire()
    try:
        return await _run_locked(settings, headless, duration, console, on_ready, gateway, monitor, scheduler,
                                 store_wait)
    finally:
        lock.release()


async def _open_runtime(settings: Settings, console: Console, wait: float) -> Runtime:
    """The home's runtime, once the store is free: a process that opened the store while no runtime ran
    (a CLI command, a kernel) holds it until it ends; from now on such processes go through this one."""
    from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_exponential

    from .storage import StoreLockedError

    def told(state: Any) -> None:
        if state.attempt_number == 1:
            console.print(f"nexus up: waiting up to {wait:g} s for the store: {state.outcome.exception()}",
                          markup=False, highlight=False, soft_wrap=True)

    async for attempt in AsyncRetrying(retry=retry_if_exception_type(StoreLockedError),
                                       stop=stop_after_delay(wait), wait=wait_exponential(min=0.1, max=1.0),
                                       before_sleep=told, reraise=True):
        with attempt:
            return Runtime.open(settings)
    raise AssertionError("unreachable: tenacity either returns or re-raises")


async def _run_locked(settings: Settings, headless: bool, duration: float | None, console: Console,
                      on_ready: Callable[[], None] | None, gateway: bool, monitor: bool, scheduler: bool,
                      store_wait: float = STORE_WAIT) -> int:
    from .runtime import _discovery

    # a PID file older versions wrote: its PID means nothing now (the lock file names the holder)
    with contextlib.suppress(FileNotFoundError):
        (settings.home / "up.pid").unlink()
    runtime = await _open_runtime(settings, console, store_wait)
    view = UpView(runtime, console, headless)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signals() -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)

    on_signals()
    served = monitor_server = jobs = None
    advertised = False
    try:
        await view.open()  # before the streams start: the view sees their first frames
        restored = runtime.start()
        from .gateway import first_admin_token

        admin_token = first_admin_token(settings) if gateway or monitor else ""
        authenticator = None
        if gateway:
            served = await _serve_gateway(settings, runtime, console, admin_token)
            authenticator = served.services.authenticator
            _discovery.advertise(settings, gateway=served.url)
        else:  # owned, with no gateway to reach it through: others say so at once instead of waiting
            _discovery.advertise(settings)
        advertised = True
        needs_extra: list[str] = []
        if monitor:
            monitor_server = await _serve_monitor(settings, runtime, console, admin_token, authenticator,
                                                  needs_extra)
            on_signals()  # Panel's server installs a SIGINT handler that stops the loop: ours again
        if scheduler:
            jobs = _start_scheduler(settings, runtime, console, needs_extra)
        if needs_extra:
            from .runtime._hooks import MONITOR_EXTRA_HINT

            verb = "it needs" if len(needs_extra) == 1 else "they need"
            console.print(f"nexus up: no {' and no '.join(needs_extra)}: {verb} the dashboards extra "
                          f"({MONITOR_EXTRA_HINT})", markup=False, highlight=False, soft_wrap=True)
        console.print(f"nexus up: home {settings.home.resolve()} · streams running: "
                      f"{', '.join(restored) or 'none'} · Ctrl-C to stop", markup=False, highlight=False,
                      soft_wrap=True)
        if on_ready:
            on_ready()
        deadline = None if duration is None else time.monotonic() + duration
        live = None if headless else Live(view.render(view.snapshot()), console=console, refresh_per_second=4)
        with live or contextlib.nullcontext():
            while not stop.is_set():
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=1.0)
                runtime.reconcile()
                rows = view.snapshot()
                _write_status(settings.home / "status.json", rows)
                if live is not None:
                    live.update(view.render(rows))
                else:
                    console.print(view.line(rows), markup=False, highlight=False, soft_wrap=True)
                    sys.stdout.flush()
                if deadline is not None and time.monotonic() >= deadline:
                    break
    finally:
        if advertised:
            _discovery.withdraw(settings)
        if jobs is not None:
            with contextlib.suppress(Exception):
                jobs.shutdown(wait=False)
        if monitor_server is not None:
            with contextlib.suppress(Exception):
                stopped = monitor_server.stop()
                if inspect.isawaitable(stopped):
                    await stopped
        if served is not None:
            with contextlib.suppress(Exception):
                await served.stop()
        await view.close()
        await runtime.aclose()
        with contextlib.suppress(FileNotFoundError):
            (settings.home / "status.json").unlink()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
    console.print("nexus up: stopped cleanly", highlight=False)
    return 0


async def _serve_gateway(settings: Settings, runtime: Runtime, console: Console, admin_token: str) -> Any:
    """The REST + WebSocket gateway over the runtime's streams, store and bus; prints how to reach it."""
    from .gateway import Services, start_gateway

    served = await start_gateway(settings, Services.create(settings, runtime=runtime))
    console.print(f"gateway: {served.url}  (API docs: {served.url}/openapi.json)", highlight=False, soft_wrap=True)
    console.print(f"admin token: {admin_token}", highlight=False, soft_wrap=True)
    console.print(f"try: curl -H 'Authorization: Bearer <token>' {served.url}/api/streams", highlight=False,
                  soft_wrap=True)
    return served


async def _serve_monitor(settings: Settings, runtime: Runtime, console: Console, admin_token: str,
                         authenticator: Any, needs_extra: list[str]) -> Any:
    """The live monitor, from the ``nexus_kernel.monitors`` entry point; None when none loads.

    It logs callers in with the gateway's credentials (``authenticator``: the gateway's own, so both
    answer alike; None when the gateway is not served). The printed URL carries the admin token: the
    first click logs in, and the token leaves the address bar at once.
    """
    from .runtime._hooks import load_monitor

    hook = load_monitor()
    if hook.serve is None:
        if hook.needs_extra:
            needs_extra.append("monitor")
        else:
            console.print(f"monitor: not served: {hook.problem}", markup=False, highlight=False, soft_wrap=True)
        return None
    server = await hook.serve(runtime, port=settings.monitor_port, authenticator=authenticator,
                              admin_token=admin_token)
    console.print(f"monitor: http://{settings.host}:{server.port}/monitor?token={admin_token}", highlight=False,
                  soft_wrap=True)
    return server


def _start_scheduler(settings: Settings, runtime: Runtime, console: Console, needs_extra: list[str]) -> Any:
    """Fire the home's notebook jobs on their cron schedules, history into the runtime's store."""
    from .runtime._hooks import missing_extra

    try:
        from .scheduler import NotebookScheduler

        return NotebookScheduler(settings, runtime=runtime).start()
    except ImportError as exc:
        if missing_extra(exc) is None:
            raise
        needs_extra.append("scheduled notebook jobs")
        return None


def _why(item: dict[str, Any]) -> dict[str, Any]:
    """A flagged point for the feed, with a one-line why from its reason facts."""
    try:
        facts = json.loads(item["reason"])
    except (TypeError, ValueError):
        facts = {}
    why = ", ".join(f"{k}={v}" for k, v in facts.items() if k in ("detector", "feature", "statistic", "threshold")
                    ) if isinstance(facts, dict) else ""
    return {"ts": str(item["ts"])[:19], "series": str(item["series"]), "score": float(item["score"]),
            "why": why or str(item.get("reason"))[:80]}


def _write_status(path: Path, rows: list[dict[str, Any]]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"time": time.time(), "streams": rows}, default=_plain))
    os.replace(tmp, path)


def _plain(value: Any) -> Any:
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    return str(value)
