"""``nexus up``: run the streams of a Nexus home on embedded defaults and show them live.

One process owns the home while it runs: it holds the home's lock (``home/up.lock``, an exclusive
``flock`` the kernel drops when the process ends, SIGKILL included — see :mod:`._home_lock`), so a
second ``nexus up`` on the same home is refused and a restart after a crash starts. It restores the
saved streams, creates the built-in simulator stream on first start, reconciles with changes the CLI
makes to the registry, writes ``status.json`` every second for other processes, and stops cleanly on
Ctrl-C or SIGTERM — saved states untouched, so the next ``nexus up`` resumes where this one stopped.

It serves the gateway and the live monitor; the monitor asks for the gateway's credentials, and the
URL printed at start carries a login token (``.../monitor?token=...``) as Jupyter's does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from ._home_lock import HomeBusyError, HomeLock, holder_pid
from .config import Settings
from .engine import Pipeline, StreamManager, sources
from .records import SERIES, TIME

__all__ = ["run_up", "default_pipeline", "read_status", "up_pid", "HomeBusyError"]

DEFAULT_STREAM = "sensors"


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
        return json.loads((settings.home / "status.json").read_text())
    except (FileNotFoundError, ValueError):
        return None


def default_pipeline(settings: Settings) -> Pipeline:
    """The built-in stream: simulated sensors, validated, stored, published, scored, aggregated per minute.

    Event time advances with the wall clock: the tick spacing is ``series / rate`` seconds.
    """
    freq = pd.Timedelta(seconds=settings.sim_series / settings.sim_rate)
    source = sources.simulator(
        series=settings.sim_series, freq=str(freq), rate=settings.sim_rate, seed=settings.sim_seed,
        anomaly_rate=6.0, bad_rate=0.002, stream=DEFAULT_STREAM,
    )
    # A live view wants several small batches a second rather than one large one. The simulator emits a
    # frame every 0.1 s; a joining interval of the same length waits just long enough for the next frame
    # and paired every two (5 batches/s, measured), so it is half the emission period.
    return (Pipeline.from_source(source, name=DEFAULT_STREAM, settings=settings)
            .batch(interval=min(settings.batch_interval, 0.05))
            .validate()
            .store()
            .cache()
            .publish("points")
            .analyze()
            .window("1min", agg=["count", "mean", "min", "max"])
            .publish("windows"))


def open_services(settings: Settings) -> dict[str, Any]:
    """The store, cache and live bus every stream of this process shares (embedded by default)."""
    from .storage import open_bus, open_cache, open_store

    return {"store": open_store(settings), "cache": open_cache(settings), "bus": open_bus(settings)}


def close_services(services: dict[str, Any]) -> None:
    for name in ("bus", "cache", "store"):
        service = services.get(name)
        if service is not None:
            with contextlib.suppress(Exception):
                service.close()


class LatestValues:
    """Newest value per series of the records a pipeline accepted (vectorized per batch)."""

    def __init__(self) -> None:
        self.values: dict[str, tuple[pd.Timestamp, float]] = {}

    def __call__(self, batch: pd.DataFrame) -> None:
        if batch is None or batch.empty or "value" not in batch.columns:
            return
        newest = batch.sort_values(TIME, kind="mergesort").groupby(SERIES, observed=True).tail(1)
        for series, ts, value in zip(newest[SERIES], newest[TIME], newest["value"]):
            self.values[str(series)] = (ts, float(value))


class UpView:
    """What ``nexus up`` shows: a rich live table on a terminal, one line per stream otherwise."""

    def __init__(self, manager: StreamManager, console: Console, headless: bool) -> None:
        self.manager = manager
        self.console = console
        self.headless = headless
        self.latest: dict[str, LatestValues] = {}

    def watch(self, name: str, pipe: Pipeline) -> None:
        if name in self.latest:
            return
        tracker = LatestValues()
        node = pipe.node_after("validate")
        if node is not None:
            node.sink(tracker)
            self.latest[name] = tracker

    def snapshot(self) -> list[dict[str, Any]]:
        rows = self.manager.status()
        assert isinstance(rows, list)
        for row in rows:
            pipe = self.manager.pipelines.get(row["name"])
            info = getattr(pipe.source, "info", None) if pipe else None
            row["anomalies_injected"] = info()["anomalies_injected"] if callable(info) else None
            analyze = next((s for s in pipe.steps if getattr(s, "kind", None) == "analyze"), None) if pipe else None
            row["anomalies_detected"] = analyze.anomalies if analyze is not None else None
            row["recent_anomalies"] = _recent(analyze)
            tracker = self.latest.get(row["name"])
            row["latest"] = {k: round(v[1], 3) for k, v in sorted(tracker.values.items())} if tracker else {}
        return rows

    def render(self, rows: list[dict[str, Any]]) -> Group:
        table = Table(title="Nexus streams", expand=False)
        for col in ("stream", "state", "source", "rate/s", "lag s", "in", "out", "dead letters",
                    "anomalies injected", "anomalies detected"):
            table.add_column(col, justify="right" if col not in ("stream", "state", "source") else "left")
        for r in rows:
            table.add_row(r["name"], r["state"], r["source"], f"{r['rate']:.0f}",
                          "-" if r["lag"] is None else f"{r['lag']:.1f}", f"{r['records_in']:,}",
                          f"{r['records_out']:,}", f"{r['dead_letters']:,}",
                          "-" if r["anomalies_injected"] is None else str(r["anomalies_injected"]),
                          "-" if r["anomalies_detected"] is None else str(r["anomalies_detected"]))
        parts: list[Any] = [table]
        for r in rows:
            if not r["latest"]:
                continue
            values = Table(title=f"{r['name']}: last value per series", expand=False)
            items = list(r["latest"].items())[:12]
            for key, _ in items:
                values.add_column(key, justify="right")
            values.add_row(*(f"{v:.2f}" for _, v in items))
            parts.append(values)
            if r.get("recent_anomalies"):
                feed = Table(title=f"{r['name']}: latest anomalies (why flagged)", expand=False)
                for col in ("time", "series", "score", "reason"):
                    feed.add_column(col)
                for a in r["recent_anomalies"][-5:]:
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
                f"in={r['records_in']} out={r['records_out']} dead_letters={r['dead_letters']} "
                f"anomalies_injected={r['anomalies_injected']} anomalies_detected={r['anomalies_detected']} "
                f"{latest}".rstrip())
        return "\n".join(out)


async def run_up(settings: Settings, headless: bool = False, duration: float | None = None,
                 console: Console | None = None, on_ready: Callable[[], None] | None = None,
                 gateway: bool = True, monitor: bool = True, scheduler: bool = True) -> int:
    """Run until Ctrl-C / SIGTERM (or ``duration`` seconds). Returns the exit code.

    Raises :class:`HomeBusyError` (naming the holder's PID) when another process holds the home's lock;
    the lock is taken before anything is opened, so a refused start touches nothing.
    """
    console = console or Console()
    lock = HomeLock(settings.home).acquire()
    try:
        return await _run_locked(settings, headless, duration, console, on_ready, gateway, monitor, scheduler)
    finally:
        lock.release()


async def _run_locked(settings: Settings, headless: bool, duration: float | None, console: Console,
                      on_ready: Callable[[], None] | None, gateway: bool, monitor: bool, scheduler: bool) -> int:
    # a PID file older versions wrote: its PID means nothing now (the lock file names the holder)
    with contextlib.suppress(FileNotFoundError):
        (settings.home / "up.pid").unlink()
    services = open_services(settings)
    manager = StreamManager(settings, services=services, run=True)
    view = UpView(manager, console, headless)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signals() -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)

    on_signals()
    served = monitor_server = jobs = None
    try:
        if not manager.streams():
            manager.create(DEFAULT_STREAM, default_pipeline(settings))
            manager.start(DEFAULT_STREAM)
        restored = manager.restore()
        from .gateway import first_admin_token

        admin_token = first_admin_token(settings) if gateway or monitor else ""
        authenticator = None
        if gateway:
            served = await _serve_gateway(settings, services, manager, console, admin_token)
            authenticator = served.services.authenticator
        if monitor:
            monitor_server = await _serve_monitor(settings, services, manager, console, admin_token, authenticator)
            on_signals()  # Panel's server installs a SIGINT handler that stops the loop: ours again
        if scheduler:
            from .scheduler import NotebookScheduler

            jobs = NotebookScheduler(settings).start()
        for name in manager.pipelines:
            view.watch(name, manager.pipelines[name])
        console.print(f"nexus up: home {settings.home.resolve()} · streams running: "
                      f"{', '.join(restored) or 'none'} · Ctrl-C to stop", highlight=False, soft_wrap=True)
        if on_ready:
            on_ready()
        deadline = None if duration is None else time.monotonic() + duration
        live = None if headless else Live(view.render(view.snapshot()), console=console, refresh_per_second=4)
        with live or contextlib.nullcontext():
            while not stop.is_set():
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=1.0)
                manager.reconcile()
                for name, pipe in manager.pipelines.items():
                    view.watch(name, pipe)
                rows = view.snapshot()
                _write_status(settings.home / "status.json", rows)
                if live is not None:
                    live.update(view.render(rows))
                else:
                    console.print(view.line(rows), highlight=False, soft_wrap=True)
                    sys.stdout.flush()
                if deadline is not None and time.monotonic() >= deadline:
                    break
    finally:
        if jobs is not None:
            with contextlib.suppress(Exception):
                jobs.shutdown(wait=False)
        if monitor_server is not None:
            with contextlib.suppress(Exception):
                monitor_server.stop()
        if served is not None:
            with contextlib.suppress(Exception):
                await served.stop()
        await manager.shutdown_async()
        close_services(services)
        with contextlib.suppress(FileNotFoundError):
            (settings.home / "status.json").unlink()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
    console.print("nexus up: stopped cleanly", highlight=False)
    return 0


async def _serve_gateway(settings: Settings, services: dict[str, Any], manager: StreamManager,
                         console: Console, admin_token: str) -> Any:
    """The REST + WebSocket gateway over this process's streams, store and bus; prints how to reach it."""
    from .gateway import Services, start_gateway

    shared = Services.create(settings, store=services["store"], bus=services["bus"], manager=manager)
    served = await start_gateway(settings, shared)
    console.print(f"gateway: {served.url}  (API docs: {served.url}/openapi.json)", highlight=False, soft_wrap=True)
    console.print(f"admin token: {admin_token}", highlight=False, soft_wrap=True)
    console.print(f"try: curl -H 'Authorization: Bearer <token>' {served.url}/api/streams", highlight=False,
                  soft_wrap=True)
    return served


async def _serve_monitor(settings: Settings, services: dict[str, Any], manager: StreamManager,
                         console: Console, admin_token: str, authenticator: Any = None) -> Any:
    """The live monitor (Panel server): one set of pipelines feeds every viewer.

    It logs callers in with the gateway's credentials (``authenticator``: the gateway's own, so both
    answer alike; a new one over the home's keys when the gateway is not served). The printed URL
    carries the admin token: the first click logs in, and the token leaves the address bar at once.
    """
    from dashboards import EmbeddedSource, MonitorAuth, start_monitor

    auth = MonitorAuth(settings, authenticator=authenticator)
    server = await start_monitor(settings, EmbeddedSource(manager, store=services["store"]),
                                 port=settings.monitor_port, auth=auth)
    console.print(f"monitor: http://{settings.host}:{server.port}/monitor?token={admin_token}", highlight=False,
                  soft_wrap=True)
    return server


def _recent(analyze: Any) -> list[dict[str, Any]]:
    """The newest flagged points of an analyze step, with a one-line why from their reason facts."""
    recent = getattr(analyze, "recent", None)
    if recent is None or recent.empty:
        return []
    rows = []
    for item in recent.tail(5).to_dict("records"):
        try:
            facts = json.loads(item["reason"])
        except (TypeError, ValueError):
            facts = {}
        why = ", ".join(f"{k}={v}" for k, v in facts.items() if k in ("detector", "feature", "statistic", "threshold")
                        ) or str(item["reason"])[:80]
        rows.append({"ts": str(item["ts"])[:19], "series": str(item["series"]), "score": float(item["score"]),
                     "why": why})
    return rows


def _write_status(path: Path, rows: list[dict[str, Any]]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"time": time.time(), "streams": rows}, default=_plain))
    os.replace(tmp, path)


def _plain(value: Any) -> Any:
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    return str(value)
