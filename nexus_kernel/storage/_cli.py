"""Command-line verbs of the store: ``nexus query``, ``nexus backup``, ``nexus restore``.

The lead mounts :data:`storage_commands` on the ``nexus`` group. Each command opens the store named by
``--store`` (default: the ``store`` setting) and closes it when done. Without ``--store``, ``nexus query``
reads the home's store through its live ``nexus up`` when one owns the home (see
:func:`nexus_kernel.client.home_store`); backup and restore need the store itself.

Example
-------
    nexus query sensors --last 1h --every 1min --agg mean --agg max
    nexus backup ./backup-2024-06-01
    nexus restore ./backup-2024-06-01 --store postgresql://postgres@127.0.0.1/nexus
"""

from __future__ import annotations

import json

import click

from ._backup import backup as _backup
from ._backup import restore as _restore
from ._known import check_stream
from ._protocol import AGGREGATES, StoreError, open_store

__all__ = ["storage_commands", "query", "backup", "restore"]

_store_option = click.option("--store", "store_spec", default=None,
                             help="'duckdb', 'memory', 'duckdb:///path.db' or postgresql://... (default: settings)")


def _open(spec: str | None, through_owner: bool = False):
    """The store ``spec`` names (default: the settings'); ``through_owner``: the home's own store is reached
    through its live ``nexus up`` when one owns the home."""
    from .._clictx import settings_for

    settings = settings_for()
    try:
        if spec is None and through_owner:
            from ..client import home_store

            return home_store(settings)
        return open_store(spec or settings.store, settings=settings)
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None


@click.command("query")
@click.argument("stream")
@click.option("--series", multiple=True, help="Series to include (repeatable); default all.")
@click.option("--start", default=None, help="Inclusive start time (ISO 8601, UTC if no zone).")
@click.option("--end", default=None, help="Exclusive end time.")
@click.option("--last", default=None, help="Window back from now, e.g. 1h, 30min, 7d.")
@click.option("--every", default=None, help="Bucket width, e.g. 1min.")
@click.option("--agg", multiple=True, type=click.Choice(AGGREGATES), help="Aggregate per bucket (repeatable).")
@click.option("--field", default=None, help="Only this field.")
@click.option("--limit", type=int, default=50, show_default=True, help="Print at most the newest N rows (0: all).")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True,
              help="How to print the rows: an aligned table, CSV or JSON records.")
@_store_option
def query(stream, series, start, end, last, every, agg, field, limit, fmt, store_spec):
    """Print the points of STREAM, raw or resampled (through the running `nexus up` when one owns the home)."""
    store = _open(store_spec, through_owner=True)
    try:
        frame = store.query(stream, series=list(series) or None, start=start, end=end, last=last, every=every,
                            agg=agg or ("mean",), field=field)
        if not len(frame):
            check_stream(store, stream)
    except (ValueError, LookupError, StoreError) as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
    total = len(frame)
    if limit:
        frame = frame.tail(limit)
    if fmt == "csv":
        click.echo(frame.to_csv(index=False), nl=False)
    elif fmt == "json":
        click.echo(frame.to_json(orient="records", date_format="iso"))
    else:
        click.echo(frame.to_string(index=False) if total else f"no points for {stream!r} in that range")
        if total > len(frame):
            click.echo(f"... {total - len(frame)} earlier rows not shown (--limit 0 shows all)")


@click.command("backup")
@click.argument("directory", type=click.Path(file_okay=False))
@_store_option
def backup(directory, store_spec):
    """Export every table of the store as Parquet files into DIRECTORY."""
    store = _open(store_spec)
    try:
        manifest = _backup(store, directory)
    finally:
        store.close()
    click.echo(json.dumps(manifest["counts"]))


@click.command("restore")
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
@_store_option
def restore(directory, store_spec):
    """Import a backup from DIRECTORY (idempotent: rows already there are kept)."""
    store = _open(store_spec)
    try:
        added = _restore(store, directory)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
    click.echo(json.dumps(added))


storage_commands: list[click.Command] = [query, backup, restore]
