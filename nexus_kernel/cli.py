"""The ``nexus`` command.

Every error is one line on stderr with a non-zero exit (1 for a failure, 2 for a usage error);
``--debug`` adds the traceback. Commands of other parts of the package (storage, analysis) are mounted
from their own modules so that this file stays the entry point, not the owner of their logic.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
import traceback
from pathlib import Path
from typing import Any

import click

from ._version import __version__
from ._clictx import parse_pairs, settings_for
from .config import Settings

__all__ = ["main", "cli"]


class _Group(click.Group):
    """Turns any exception into one line and an exit code, unless --debug."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)
        except Exception as exc:  # noqa: BLE001 - the one place errors become exit codes
            if ctx.find_root().params.get("debug"):
                traceback.print_exc()
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            click.echo(f"error: {message}", err=True)
            ctx.exit(1)


def _settings(ctx: click.Context, **overrides: Any) -> Settings:
    return settings_for(ctx, **overrides)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="nexus")
@click.option("--home", type=click.Path(path_type=Path), help="Nexus home directory (default .nexus).")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.pass_context
def cli(ctx: click.Context, home: Path | None, debug: bool) -> None:
    """Nexus Stream: ingest, analyse, store and watch live data streams."""
    ctx.obj = {"home": home} if home else {}
    if debug:
        ctx.obj["log_level"] = "debug"


@cli.command()
@click.option("--store", help="'duckdb', 'memory', 'duckdb:///path.db' or a postgresql:// DSN.")
@click.option("--headless", is_flag=True, help="Print one status line per second instead of a live table.")
@click.option("--duration", type=float, help="Stop by itself after this many seconds.")
@click.option("--series", "sim_series", type=int, help="Series of the built-in simulator (first start).")
@click.option("--rate", "sim_rate", type=float, help="Records/s of the built-in simulator (first start).")
@click.option("--port", type=int, help="Gateway port (0: any free port).")
@click.option("--monitor-port", type=int, help="Monitor (Panel) port (0: any free port).")
@click.option("--no-gateway", is_flag=True, help="Do not serve the REST + WebSocket gateway.")
@click.option("--no-monitor", is_flag=True, help="Do not serve the live monitor page.")
@click.pass_context
def up(ctx: click.Context, store: str | None, headless: bool, duration: float | None,
       sim_series: int | None, sim_rate: float | None, port: int | None, monitor_port: int | None,
       no_gateway: bool, no_monitor: bool) -> None:
    """Run the streams on embedded defaults; serve the gateway, the monitor and scheduled jobs (Ctrl-C stops)."""
    from ._up import run_up

    settings = _settings(ctx, store=store, sim_series=sim_series, sim_rate=sim_rate, port=port,
                         monitor_port=monitor_port)
    headless = headless or not sys.stdout.isatty()
    ctx.exit(asyncio.run(run_up(settings, headless=headless, duration=duration, gateway=not no_gateway,
                                monitor=not no_monitor)))


# -- streams ------------------------------------------------------------------------------------


@cli.group(cls=_Group)
def streams() -> None:
    """Create and control named streams (applied by the running `nexus up`)."""


def _manager(ctx: click.Context):
    from .engine import StreamManager

    return StreamManager(_settings(ctx), run=False)


def _applied_by(ctx: click.Context) -> str:
    from ._up import up_pid

    pid = up_pid(_settings(ctx))
    return f"applied by nexus up (pid {pid})" if pid else "takes effect when `nexus up` runs"


@streams.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def streams_list(ctx: click.Context, as_json: bool) -> None:
    """List streams and their states."""
    rows = _status_rows(ctx)
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    if not rows:
        click.echo("no streams (nexus up creates the built-in 'sensors' stream)")
        return
    click.echo(f"{'NAME':<20} {'STATE':<9} {'SOURCE':<10} {'RATE/S':>9} {'IN':>12} {'DEAD':>8}")
    for r in rows:
        click.echo(f"{r['name']:<20} {r['state']:<9} {r['source']:<10} {r.get('rate', 0):>9.0f} "
                   f"{r.get('records_in', 0):>12} {r.get('dead_letters', 0):>8}")


def _status_rows(ctx: click.Context) -> list[dict[str, Any]]:
    from ._up import read_status

    live = read_status(_settings(ctx))
    manager = _manager(ctx)
    saved = manager.status()
    assert isinstance(saved, list)
    if live:
        by_name = {r["name"]: r for r in live.get("streams", [])}
        return [{**r, **{k: v for k, v in by_name.get(r["name"], {}).items() if k != "state"}} for r in saved]
    return saved


@streams.command("create")
@click.argument("name")
@click.option("--source", "kind", default="simulator", show_default=True,
              help="Registered source: simulator, replay, redis, websocket.")
@click.option("--param", "-p", "params", multiple=True, help="Source parameter KEY=VALUE (JSON values).")
@click.option("--window", default="1min", show_default=True, help="Window size ('' for none).")
@click.option("--agg", default="count,mean,min,max", show_default=True, help="Window aggregates.")
@click.option("--start", "start_now", is_flag=True, help="Start it right away.")
@click.pass_context
def streams_create(ctx: click.Context, name: str, kind: str, params: tuple[str, ...], window: str, agg: str,
                   start_now: bool) -> None:
    """Create a stream: SOURCE → validate → window."""
    spec: dict[str, Any] = {
        "name": name,
        "source": {"kind": kind, "params": {"stream": name, **parse_pairs(params)} if kind == "simulator"
                   else parse_pairs(params)},
        "steps": [{"kind": "validate", "params": {}}],
    }
    if window:
        spec["steps"].append({"kind": "window", "params": {"size": window, "agg": agg.split(",")}})
    manager = _manager(ctx)
    manager.create(name, spec=spec)
    click.echo(f"created stream '{name}' ({kind})")
    if start_now:
        manager.start(name)
        click.echo(f"stream '{name}' → running ({_applied_by(ctx)})")


def _transition(action: str):
    @click.argument("name")
    @click.pass_context
    def command(ctx: click.Context, name: str) -> None:
        manager = _manager(ctx)
        if action == "delete":
            manager.delete(name)
            click.echo(f"deleted stream '{name}'")
            return
        state = getattr(manager, action)(name)
        click.echo(f"stream '{name}' → {state} ({_applied_by(ctx)})")

    command.__name__ = f"streams_{action}"
    command.__doc__ = f"{action.capitalize()} a stream."
    return command


for _action in ("start", "pause", "resume", "stop", "delete"):
    streams.command(_action)(_transition(_action))


@streams.command("status")
@click.argument("name", required=False)
@click.pass_context
def streams_status(ctx: click.Context, name: str | None) -> None:
    """Status of one stream or all (state, rate, lag, counts, dead letters, last error)."""
    rows = _status_rows(ctx)
    if name is not None:
        rows = [r for r in rows if r["name"] == name]
        if not rows:
            raise click.ClickException(f"no stream named '{name}'")
    click.echo(json.dumps(rows[0] if name else rows, indent=2, default=str))


# -- replay -------------------------------------------------------------------------------------


@cli.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--time", "time_column", default="timestamp", show_default=True, help="Time column.")
@click.option("--series", "series_column", help="Series-key column (default: the file name).")
@click.option("--speed", type=float, help="Event-time seconds per second (default: as fast as possible).")
@click.option("--max-gap", type=float, default=10.0, show_default=True,
              help="Longest pause in seconds between rows at --speed; longer gaps in the file are shortened "
                   "(0: keep every gap).")
@click.option("--stream", help="Stream name (default: the file name).")
@click.option("--window", help="Also aggregate into windows of this size, e.g. 1min.")
@click.option("--store", help="Write the records to this store ('duckdb', 'memory' or a DSN).")
@click.option("--progress/--no-progress", default=True, help="Show a progress bar.")
@click.pass_context
def replay(ctx: click.Context, path: Path, time_column: str, series_column: str | None, speed: float | None,
           max_gap: float, stream: str | None, window: str | None, store: str | None, progress: bool) -> None:
    """Replay a CSV or Parquet file through validation (and a store, when given)."""
    from .engine import Pipeline, sources

    settings = _settings(ctx, store=store)
    name = stream or path.name.split(".")[0]
    source = sources.replay(path, time=time_column, series=series_column, speed=speed, progress=progress,
                            max_gap=max_gap if max_gap > 0 else None)
    pipe = Pipeline.from_source(source, name=name, settings=settings).validate()
    opened = None
    if store:
        opened = _open_store(settings)
        pipe.sink(opened)
    if window:
        pipe.window(window)
    try:
        pipe.run()
    finally:
        if opened is not None:
            opened.close()
    status = pipe.status()
    click.echo(f"replayed {status['records_in']} records from {path.name} into stream '{name}': "
               f"{status['records_in'] - status['dead_letters']} valid, {status['dead_letters']} dead letters"
               + (f" {status['dead_letter_reasons']}" if status["dead_letters"] else ""))
    if status["state"] == "failed":
        raise click.ClickException(status["last_error"] or "replay failed")


def _open_store(settings: Settings):
    storage = importlib.import_module("nexus_kernel.storage")
    return storage.open_store(settings)


# -- commands owned by other parts --------------------------------------------------------------

# Imported only when used, so that `nexus --help` and the engine commands stay fast and a heavy
# optional part never breaks the others.
_MOUNTED = {
    "backup": ("nexus_kernel.storage._cli", "storage_commands"),
    "restore": ("nexus_kernel.storage._cli", "storage_commands"),
    "query": ("nexus_kernel.storage._cli", "storage_commands"),
    "evaluate": ("nexus_kernel.analysis._cli", "analysis_commands"),
    "keys": ("nexus_kernel.gateway._cli", "gateway_commands"),
    "token": ("nexus_kernel.gateway._cli", "gateway_commands"),
    "schedule": ("nexus_kernel.scheduler._cli", "schedule_commands"),
    "anchor": ("nexus_kernel.anchoring.evm._cli", "chain_commands"),
    "verify": ("nexus_kernel.anchoring._cli", "anchoring_commands"),
}


def _mounted(name: str) -> click.Command | None:
    module, attr = _MOUNTED[name]
    for command in getattr(importlib.import_module(module), attr):
        if command.name == name:
            return command
    return None


class _Root(_Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *_MOUNTED})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None and cmd_name in _MOUNTED:
            command = _mounted(cmd_name)
        return command


cli.__class__ = _Root


def main(argv: list[str] | None = None) -> None:
    try:
        cli.main(args=argv, prog_name="nexus", standalone_mode=True)
    except SystemExit as exit_:
        raise SystemExit(exit_.code) from None


if __name__ == "__main__":
    main()
