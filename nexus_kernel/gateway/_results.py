"""The write side of the results tables: a client of the runtime appends the models, forecasts and anomalies
it made (a scheduled ``retrain`` notebook, a papermill job) to the store the runtime owns.

``POST /api/streams/{name}/forecasts``, ``POST /api/streams/{name}/anomalies`` and ``POST /api/models``
join the read routes of the same resources (``GET``, in :mod:`._handlers`): one resource, one path.
Each needs the ``analyze`` permission and the stream's scope, and is idempotent on the table's key (a
resend stores nothing twice).

Security
--------
A model record's ``artifact`` names a file that :func:`nexus_kernel.analysis.load_model` later unpickles
(joblib). A client could otherwise make the runtime — or any process that loads the newest model —
unpickle a file of its choosing, so a record is accepted only when its artifact resolves (symlinks
resolved) to a regular file inside the home's model directory (``home/models``, the directory
``save_model`` writes to), and the resolved path is what the store keeps. Anything else is a 422 naming
that rule.

Example
-------
>>> client.record_model(record.frame().iloc[0].to_dict())         # doctest: +SKIP
{'name': 'sensors:forecast', 'version': 3, 'recorded': 1, 'artifact': '/home/.../models/...-v3.joblib'}
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from ..storage import TABLES
from . import _models as m
from ._base import ApiHandler, check_name, operation, routes
from ._errors import ApiError

__all__ = ["artifact_in_home", "model_directory"]

ARTIFACT_RULE = ("a model's artifact must be an absolute path that resolves (symlinks resolved) to a regular "
                 "file inside the home's model directory (home/models)")


def model_directory(settings: Any) -> Path:
    """Where ``save_model`` puts the artifacts of ``settings.home`` (the one place records may point)."""
    from ..analysis.models import _artifact_dir

    return _artifact_dir(None, settings)


def artifact_in_home(artifact: str, settings: Any) -> str:
    """``artifact`` resolved, when it is a regular file inside the home's model directory.

    Raises :class:`ApiError` 422 (field ``artifact``) naming the rule otherwise: a relative path, a
    missing file, a directory, a path whose ``..`` or symlinks lead out of the directory.
    """
    path = Path(artifact)
    if not path.is_absolute():
        raise ApiError(422, f"{ARTIFACT_RULE}: got a relative path", field="artifact")
    try:
        root = model_directory(settings).resolve(strict=True)
        real = path.resolve(strict=True)
    except (OSError, RuntimeError):  # missing, unreadable, or a symlink loop (RuntimeError before 3.13)
        raise ApiError(422, f"{ARTIFACT_RULE}: no such file", field="artifact") from None
    if not real.is_relative_to(root):
        raise ApiError(422, f"{ARTIFACT_RULE}: it leads out of that directory", field="artifact")
    if not real.is_file():
        raise ApiError(422, f"{ARTIFACT_RULE}: not a regular file", field="artifact")
    return str(real)


def _rows_frame(table: str, stream: str, rows: list[Any]) -> pd.DataFrame:
    """Validated rows as the table's frame: the path's stream, times parsed, repeated keys kept once."""
    spec = TABLES[table]
    frame = pd.DataFrame([r.model_dump() for r in rows], columns=[c for c in spec.names if c != "stream"])
    frame.insert(0, "stream", stream)
    for name, kind in spec.columns:
        if kind == "time":
            frame[name] = pd.to_datetime(frame[name], utc=True, format="ISO8601")
    return frame.drop_duplicates(subset=list(spec.key), keep="last")


def _append_rows(table: str) -> Callable[..., Any]:
    async def post(self: ApiHandler, name: str) -> None:
        check_name(name)
        rows = self.body.rows
        recorded = 0
        if rows:
            recorded = await self.blocking(self.services.store.append, table, _rows_frame(table, name, rows))
        self.send({"rows": len(rows), "recorded": int(recorded)})

    return post


async def _record_model(self: ApiHandler) -> None:
    body = self.body
    if not self.principal.may("analyze", body.stream):
        raise ApiError(403, f"this credential is not scoped to stream '{body.stream}'")
    artifact = await self.blocking(artifact_in_home, body.artifact, self.services.settings)
    row = pd.DataFrame([{**body.model_dump(), "artifact": artifact}])
    for name in ("created_at", "train_start", "train_end"):
        row[name] = pd.to_datetime(row[name], utc=True, format="ISO8601")
    recorded = await self.blocking(self.services.store.append, "models", row)
    self.send({"name": body.name, "version": body.version, "recorded": int(recorded), "artifact": artifact})


def _add(path: str, method: str, func: Callable[..., Any]) -> None:
    # The GET of each resource is registered in _handlers; a second route on the same path would be
    # refused by the route table, so the POST joins that route's handler class.
    handler = routes.get(path).handler
    if hasattr(getattr(handler, method, None), "_op"):
        raise RuntimeError(f"{path} already has a {method.upper()} handler")
    setattr(handler, method, func)


_add("/api/streams/{name}/forecasts", "post", operation(
    "analyze", "Append forecasts made for a stream (a row whose key is stored already changes nothing)",
    body=m.ForecastRows, response=m.RowsRecorded, status=201)(_append_rows("forecasts")))
_add("/api/streams/{name}/anomalies", "post", operation(
    "analyze", "Append anomalies found in a stream (a row whose key is stored already changes nothing)",
    body=m.AnomalyRows, response=m.RowsRecorded, status=201)(_append_rows("anomalies")))
_add("/api/models", "post", operation(
    "analyze", "Record a trained model version whose artifact is a file of the home's model directory "
    "(a resend of one name and version changes nothing)",
    body=m.ModelRecordIn, response=m.ModelRecorded, status=201, stream_param=None)(_record_model))
