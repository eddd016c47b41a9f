"""``nexus schedule add|list|run|remove|history`` — click commands the ``nexus`` CLI mounts.

``schedule_commands`` holds one click group, ``schedule``. Settings come from the parent command's
context object when it is a :class:`~nexus_kernel.config.Settings` (or a dict holding one under
``"settings"``), else from the environment.
"""

from __future__ import annotations

import json
from typing import Any

import click

from ..config import Settings

from .._clictx import parse_pairs, settings_for

__all__ = ["schedule", "schedule_commands"]


def _settings(ctx: click.Context) -> Settings:
    return settings_for(ctx)


def _jobs(ctx: click.Context) -> Any:
    from ._scheduler import NotebookScheduler

    jobs = NotebookScheduler(_settings(ctx))
    ctx.call_on_close(jobs.shutdown)
    return jobs


@click.group("schedule")
def schedule() -> None:
    """Notebook jobs run by papermill on a cron schedule (outputs under <home>/runs/)."""


@schedule.command("add")
@click.argument("name")
@click.option("--cron", required=True, help='Cron expression in UTC, e.g. "0 6 * * *".')
@click.option("-p", "--param", "params", multiple=True, help="NAME=VALUE notebook parameter (repeatable).")
@click.option("--notebook", type=click.Path(dir_okay=False), help="Notebook to run (default notebooks/NAME.ipynb).")
@click.option("--replace", is_flag=True, help="Replace an existing job of that name.")
@click.pass_context
def add(ctx: click.Context, name: str, cron: str, params: tuple[str, ...], notebook: str | None, replace: bool) -> None:
    """Define job NAME."""
    from ._scheduler import JobError

    try:
        job = _jobs(ctx).add(name, cron, parse_pairs(params, "-p"), notebook=notebook, replace=replace)
    except JobError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"job {job['name']}: {job['notebook']} on '{job['cron']}' (UTC) with {job['params']}; "
               f"next run {job['next_run'] or 'when the scheduler runs'}")


@schedule.command("list")
@click.pass_context
def list_(ctx: click.Context) -> None:
    """List the defined jobs."""
    jobs = _jobs(ctx).jobs()
    if not jobs:
        click.echo("no jobs")
    for job in jobs:
        click.echo(f"{job['name']}\t{job['cron']}\tnext={job['next_run']}\t{job['notebook']}\t"
                   f"{json.dumps(job['params'])}")


@schedule.command("run")
@click.argument("name")
@click.option("-p", "--param", "params", multiple=True, help="NAME=VALUE overriding a saved parameter.")
@click.pass_context
def run(ctx: click.Context, name: str, params: tuple[str, ...]) -> None:
    """Run job NAME now, in the foreground; exit status 1 when the run fails."""
    from ._scheduler import JobError

    try:
        row = _jobs(ctx).run(name, parse_pairs(params, "-p"))
    except JobError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{row['run_id']}: {row['status']} → {row['output'] or '(no output)'}")
    if row["status"] != "succeeded":
        click.echo(f"error: {row['error']}", err=True)
        ctx.exit(1)


@schedule.command("remove")
@click.argument("name")
@click.pass_context
def remove(ctx: click.Context, name: str) -> None:
    """Remove job NAME (its run history stays)."""
    from ._scheduler import JobError

    try:
        _jobs(ctx).remove(name)
    except JobError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"removed job {name}")


@schedule.command("history")
@click.argument("name", required=False)
@click.option("--limit", default=20, show_default=True, type=int, help="Show at most the newest N runs.")
@click.pass_context
def history(ctx: click.Context, name: str | None, limit: int) -> None:
    """Recorded runs, newest first (failed runs show the failing cell)."""
    rows = _jobs(ctx).history(name, limit)
    if rows.empty:
        click.echo("no runs")
    for r in rows.itertuples():
        took = (r.finished_at - r.started_at).total_seconds() if r.finished_at is not None else float("nan")
        click.echo(f"{r.started_at:%Y-%m-%d %H:%M:%S} {r.job} {r.status} {took:.1f}s {r.output or '-'}"
                   + (f"\n    {r.error}" if r.error else ""))


schedule_commands: list[click.Command] = [schedule]
