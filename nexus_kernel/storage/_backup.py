"""Backup and restore of a whole store as Parquet files — the same format for every backend.

A backup folder holds ``points.parquet`` (long rows, see ``_tables``), one ``<table>.parquet`` per
auxiliary table, ``retention.parquet`` and ``manifest.json`` (format, schema version, row counts, source
backend, time). Points are streamed in chunks, so a backup does not need the store in memory. Restore
is idempotent: restoring twice, or into a store that already has some of the rows, adds only what is
missing, so a backup of DuckDB restores into PostgreSQL and back.

Caveat: a backup is not a snapshot under concurrent writes — rows written while it runs may or may not
be in it (each table is read once, in its own transaction).

Example
-------
>>> import tempfile
>>> from nexus_kernel.storage import open_store
>>> folder = tempfile.mkdtemp()
>>> backup(open_store("memory"), folder)["counts"]["points"]
0
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ._migrations import LATEST
from ._protocol import points_frame
from ._tables import TABLES

__all__ = ["backup", "restore"]

FORMAT = "nexus-backup"


def backup(store: Any, directory: str | Path) -> dict[str, Any]:
    """Write every table of ``store`` under ``directory``; returns the manifest."""
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    writer: pq.ParquetWriter | None = None
    schema = pa.Schema.from_pandas(points_frame(pd.DataFrame()), preserve_index=False)
    counts["points"] = 0
    try:
        writer = pq.ParquetWriter(folder / "points.parquet", schema)
        for chunk in store.dump("points"):
            writer.write_table(pa.Table.from_pandas(chunk, schema=schema, preserve_index=False))
            counts["points"] += len(chunk)
    finally:
        if writer is not None:
            writer.close()
    for name in [*TABLES, "retention"]:
        frame = pd.concat(list(store.dump(name)), ignore_index=True)
        frame.to_parquet(folder / f"{name}.parquet", index=False)
        counts[name] = len(frame)
    manifest = {"format": FORMAT, "schema_version": int(store.schema_version()), "backend": store.dialect,
                "created_at": pd.Timestamp.now(tz="UTC").isoformat(), "counts": counts}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest


def restore(store: Any, directory: str | Path, chunk_rows: int = 500_000) -> dict[str, int]:
    """Import a backup folder into ``store``; returns the rows newly stored per table."""
    folder = Path(directory)
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
    except FileNotFoundError:
        raise ValueError(f"{folder} is not a nexus backup (no manifest.json)") from None
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{folder} is not a nexus backup (format {manifest.get('format')!r})")
    if manifest["schema_version"] > LATEST:
        raise ValueError(f"backup has schema version {manifest['schema_version']}, newer than this nexus_kernel ({LATEST})")
    added: dict[str, int] = {"points": 0}
    for batch in pq.ParquetFile(folder / "points.parquet").iter_batches(batch_size=chunk_rows):
        added["points"] += store.load("points", batch.to_pandas())
    for name in [*TABLES, "retention"]:
        path = folder / f"{name}.parquet"
        if path.exists():
            frame = pd.read_parquet(path)
            added[name] = store.load(name, frame) if len(frame) else 0
    return added
