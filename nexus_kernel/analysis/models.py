"""Model pipeline: persist, load, serve and retrain the forecasters of a stream, in the store it is handed.

A model is a :class:`~nexus_kernel.analysis.forecasting.StreamModel` (every (series, field) forecaster of
one stream, trained together), persisted as a joblib file plus a metadata record in the store's ``models``
table (:class:`~nexus_kernel.analysis.forecasting.ModelRecord`): the table is the model registry, versions
count up per name, and the newest version is the one served. Training and evaluation are pure and live in
:mod:`nexus_kernel.analysis.forecasting`; this module adds what touches the store and the artifact files.

Analysis opens nothing: every function takes the :class:`~nexus_kernel.storage.Store` its caller opened
(a scheduled notebook, the CLI, a test), and the artifact directory comes from ``directory`` or
``settings.home/models``.

``retrain(stream, store, settings=...)`` is the one call a scheduled notebook makes: read the stream's
recent history from the store, backtest the model on it (the metrics of the record), fit on all of it,
save a new version. ``serve(stream, store)`` loads the newest version, lets it learn the points that
arrived since its training, and appends fresh forecasts to the ``forecasts`` table.

Caveats
-------
* Artifacts are pickles (joblib): load only files this system wrote.
* The store keeps the record; the artifact lives on disk. A record whose file is gone fails to load with
  :class:`ModelNotFound`.
* Artifacts written before the forecasters moved to :mod:`nexus_kernel.analysis.forecasting` name the
  old module paths; :func:`load_model` maps them to the new modules (:data:`MOVED_MODULES`).

Example
-------
>>> from nexus_kernel.storage import open_store
>>> import numpy as np, pandas as pd, tempfile
>>> store = open_store("memory")
>>> ts = pd.date_range("2024-01-01", periods=24 * 10, freq="1h", tz="UTC")
>>> store.write(pd.DataFrame({"stream": "pumps", "series": "p1", "ts": ts, "seq": np.arange(len(ts)),
...                          "value": np.sin(np.arange(len(ts)) * 2 * np.pi / 24)}))
240
>>> tmp = tempfile.TemporaryDirectory()
>>> record = retrain("pumps", store, directory=tmp.name, lookback="7d")
>>> record.version, record.kind
(1, 'auto')
>>> len(serve("pumps", store, horizon=6))
6
>>> tmp.cleanup()
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import joblib
import pandas as pd

from nexus_kernel.analysis.forecasting import (
    MODEL_COLUMNS,
    ModelLike,
    ModelRecord,
    StreamModel,
    artifact_filename,
    evaluate,
    history_start,
    newest_record,
    next_version,
    train,
)
from nexus_kernel.config import Settings
from nexus_kernel.records import TIME

if TYPE_CHECKING:
    from nexus_kernel.storage import Store

__all__ = ["StreamModel", "ModelRecord", "ModelNotFound", "train", "evaluate", "save_model",
           "load_model", "serve", "retrain", "MODEL_COLUMNS", "MOVED_MODULES"]

#: module paths of artifacts written before issue 11 -> where those classes live now
MOVED_MODULES: dict[str, str] = {
    "nexus_kernel.analysis.forecasters": "nexus_kernel.analysis.forecasting",
    "nexus_kernel.analysis.forecasters._base": "nexus_kernel.analysis.forecasting._base",
    "nexus_kernel.analysis.forecasters.ets": "nexus_kernel.analysis.forecasting.ets",
    "nexus_kernel.analysis.forecasters.gbm": "nexus_kernel.analysis.forecasting.gbm",
    "nexus_kernel.analysis.forecasters.naive": "nexus_kernel.analysis.forecasting.naive",
}


class ModelNotFound(LookupError):
    """No model record (or no artifact file) for that name / stream / version."""


def save_model(store: Store, model: StreamModel, metrics: dict[str, Any] | None = None, name: str | None = None,
               directory: str | Path | None = None, settings: Settings | None = None) -> ModelRecord:
    """Persist ``model``: a joblib file in ``directory`` (default ``settings.home/models``) and a new version
    in the ``models`` table of ``store``. Returns its record."""
    _require(store, "save_model")
    name = name or f"{model.stream}:forecast"
    folder = _artifact_dir(directory, settings)
    folder.mkdir(parents=True, exist_ok=True)
    version = next_version(store.read("models", name=name))
    path = folder / artifact_filename(name, version)
    model.wait()  # the record describes the fitted forecasters, not the ones a pending refit replaces
    joblib.dump(model, path)
    record = ModelRecord.of(model, name, version, metrics, str(path), created_at=pd.Timestamp.now(tz="UTC"))
    store.append("models", record.frame())
    return record


def load_model(store: Store, name: str | None = None, stream: str | None = None,
               version: int | None = None) -> tuple[StreamModel, ModelRecord]:
    """The model of ``name`` (or the newest one of ``stream``) at ``version`` (default newest)."""
    _require(store, "load_model")
    if name is None and stream is None:
        raise ValueError("give a model name or a stream")
    rows = store.read("models", name=name) if name is not None else store.read("models", stream=stream)
    record = newest_record(rows, version)
    if record is None:
        raise ModelNotFound(f"no model for name={name!r} stream={stream!r} version={version!r}")
    if not Path(record.artifact).exists():
        raise ModelNotFound(f"model {record.name} v{record.version}: artifact {record.artifact} is missing")
    _resolve_moved_modules()
    return joblib.load(record.artifact), record


def serve(stream: str, store: Store, horizon: int | None = None, level: float | None = None,
          name: str | None = None, settings: Settings | None = None, append: bool = True) -> pd.DataFrame:
    """Forecast ``stream`` with its newest model after learning the points stored since its training;
    append the forecasts to the ``forecasts`` table of ``store`` (unless ``append=False``) and return them.

    ``horizon`` and ``level`` default to ``settings.forecast_horizon`` / ``settings.forecast_level`` (the
    settings' defaults without ``settings``)."""
    _require(store, "serve")
    horizon = int(horizon or _setting(settings, "forecast_horizon"))
    level = float(level or _setting(settings, "forecast_level"))
    model, _ = load_model(store, name=name, stream=None if name else stream)
    fresh = store.query(stream, start=model.train_end) if model.train_end is not None else store.query(stream)
    if len(fresh):
        model.update(fresh.drop(columns=["seq"], errors="ignore"))  # points already learned are dropped
    out = model.forecast(horizon, level)
    if append and len(out):
        store.append("forecasts", out)
    return out


def retrain(stream: str, store: Store, settings: Settings | None = None, model: ModelLike | None = None,
            lookback: str | None = "settings", horizon: int | None = None, folds: int = 3,
            name: str | None = None, directory: str | Path | None = None, **options: Any) -> ModelRecord:
    """Read ``stream``'s history from ``store``, backtest, fit and save a new model version; return its record.

    ``lookback`` is how far back from the stream's newest point to read (a duration such as ``"14d"``;
    ``None`` reads everything; default ``settings.forecast_lookback``). ``model`` and ``horizon`` default to
    ``settings.forecast_model`` / ``settings.forecast_horizon``; without ``settings``, to the settings'
    defaults, and the artifact goes to ``directory`` (one of the two is needed).
    """
    _require(store, "retrain")
    model = model or _setting(settings, "forecast_model")
    horizon = int(horizon or _setting(settings, "forecast_horizon"))
    lookback = _setting(settings, "forecast_lookback") if lookback == "settings" else lookback
    if lookback:
        latest = store.latest(stream)
        newest = pd.to_datetime(latest[TIME], utc=True).max() if len(latest) else None
        history = store.query(stream, start=history_start(newest, lookback))
    else:
        history = store.query(stream)
    if history.empty:
        raise ValueError(f"stream {stream!r} has no stored points to train on")
    history = history.drop(columns=["seq"], errors="ignore")
    metrics = evaluate(history, model=model, horizon=horizon, folds=folds,
                       level=_setting(settings, "forecast_level"), **options)
    fitted = train(history, model=model, stream=stream, **options)
    return save_model(store, fitted, metrics, name=name, directory=directory, settings=settings)


def _require(store: Any, caller: str) -> None:
    # the old signatures opened a store when none was given; say what to do instead of failing later
    if store is None:
        raise TypeError(f"{caller}() needs the store to use: pass the Store the caller opened "
                        "(e.g. nexus_kernel.storage.open_store(settings)); analysis opens none itself")


def _setting(settings: Settings | None, field: str) -> Any:
    """A forecasting setting of ``settings``, else its declared default (no environment or file is read)."""
    return getattr(settings, field) if settings is not None else Settings.model_fields[field].default


def _artifact_dir(directory: str | Path | None, settings: Settings | None) -> Path:
    if directory is not None:
        return Path(directory)
    if settings is None:
        raise ValueError("where should the model artifact go? pass directory= or settings= (settings.home/models)")
    return Path(settings.home) / "models"


def _resolve_moved_modules() -> None:
    """Let the unpickler find classes under the module paths an older artifact names."""
    for old, new in MOVED_MODULES.items():
        if old not in sys.modules:
            sys.modules[old] = importlib.import_module(new)
