"""Model pipeline: train, evaluate, persist, load and serve the forecasters of a stream.

A :class:`StreamModel` is every (series, field) forecaster of one stream, trained together. It is
persisted as a joblib file plus a metadata record in the store's ``models`` table (``name, version,
stream, kind, created_at, train_start, train_end, metrics, features, params, artifact``): the table is
the model registry, versions count up per name, and the newest version is the one served.

``retrain(stream, store=..., settings=...)`` is the one call a scheduled notebook makes: read the
stream's recent history from the store, backtest the model on it (the metrics of the record), fit on
all of it, save a new version. ``serve(stream, store=...)`` loads the newest version, lets it learn the
points that arrived since its training, and appends fresh forecasts to the ``forecasts`` table.

Caveats
-------
* Artifacts are pickles (joblib): load only files this system wrote.
* The store keeps the record; the artifact lives on disk under ``settings.home/models`` (or the
  ``directory`` given). A record whose file is gone fails to load with :class:`ModelNotFound`.

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
>>> record = retrain("pumps", store=store, directory=tmp.name, lookback="7d")
>>> record.version, record.kind
(1, 'ets')
>>> len(serve("pumps", store=store, horizon=6))
6
>>> tmp.cleanup()
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd

from nexus_kernel.analysis._forecast import (
    _assemble,
    _model_name,
    _normalise,
    _rows,
    make_forecaster,
)
from nexus_kernel.analysis.backtest import backtest
from nexus_kernel.analysis.forecasters import BaseForecaster
from nexus_kernel.events import SERIES, STREAM, TIME

__all__ = ["StreamModel", "ModelRecord", "ModelNotFound", "train", "evaluate", "save_model",
           "load_model", "serve", "retrain", "MODEL_COLUMNS"]

MODEL_COLUMNS: tuple[str, ...] = ("name", "version", "stream", "kind", "created_at", "train_start",
                                  "train_end", "metrics", "features", "params", "artifact")


class ModelNotFound(LookupError):
    """No model record (or no artifact file) for that name / stream / version."""


@dataclass
class StreamModel:
    """The forecasters of one stream, one per (series, field)."""

    stream: str
    kind: str
    options: dict[str, Any] = field(default_factory=dict)
    forecasters: dict[tuple[str, str], BaseForecaster] = field(default_factory=dict)
    train_start: pd.Timestamp | None = None
    train_end: pd.Timestamp | None = None

    def update(self, df: pd.DataFrame) -> StreamModel:
        """Learn new points (series never seen get a new forecaster, trained from these points)."""
        frame, fields = _normalise(df, TIME, None)
        if frame.empty:
            return self
        if SERIES not in frame.columns:
            frame = frame.assign(**{SERIES: ""})
        for key, idx in frame.groupby(SERIES, sort=True, observed=True).indices.items():
            part = frame.iloc[idx]
            for name in fields:
                ident = (str(key), name)
                f = self.forecasters.get(ident)
                if f is None:
                    f = self.forecasters[ident] = make_forecaster(self.kind, **self.options)
                f.learn(part[TIME], part[name].to_numpy(dtype="float64", na_value=np.nan))
        stamps = pd.to_datetime(frame[TIME], utc=True)
        self.train_start = min(filter(None, [self.train_start, stamps.min()]))
        self.train_end = max(filter(None, [self.train_end, stamps.max()]))
        return self

    def forecast(self, horizon: int = 24, level: float = 0.9) -> pd.DataFrame:
        """Forecasts of every (series, field), in the ``forecasts`` table schema."""
        parts = []
        for (series, name), f in sorted(self.forecasters.items()):
            out = f.forecast(horizon, level)
            if len(out):
                parts.append(_rows(out, self.stream, series, name, self.kind, f, level))
        return _assemble(parts)

    def wait(self) -> None:
        for f in self.forecasters.values():
            f.wait()

    @property
    def features(self) -> dict[str, list[str]]:
        return {f"{s}/{n}": list(getattr(f, "features", [])) for (s, n), f in sorted(self.forecasters.items())}


@dataclass(frozen=True)
class ModelRecord:
    """One row of the ``models`` table, with its JSON columns decoded."""

    name: str
    version: int
    stream: str
    kind: str
    created_at: pd.Timestamp
    train_start: pd.Timestamp | None
    train_end: pd.Timestamp | None
    metrics: dict[str, Any]
    features: dict[str, Any]
    params: dict[str, Any]
    artifact: str

    def frame(self) -> pd.DataFrame:
        row = {c: getattr(self, c) for c in MODEL_COLUMNS}
        for c in ("metrics", "features", "params"):
            row[c] = json.dumps(row[c], sort_keys=True, default=_json_default)
        frame = pd.DataFrame([row])
        for c in ("name", "stream", "kind", "metrics", "features", "params", "artifact"):
            frame[c] = frame[c].astype("string")
        frame["version"] = frame["version"].astype("int64")
        for c in ("created_at", "train_start", "train_end"):
            frame[c] = pd.to_datetime(frame[c], utc=True).astype("datetime64[ns, UTC]")
        return frame

    @classmethod
    def from_row(cls, row: pd.Series) -> ModelRecord:
        def ts(value: Any) -> pd.Timestamp | None:
            return None if pd.isna(value) else pd.Timestamp(value)

        return cls(
            name=str(row["name"]), version=int(row["version"]), stream=str(row["stream"]), kind=str(row["kind"]),
            created_at=pd.Timestamp(row["created_at"]), train_start=ts(row["train_start"]),
            train_end=ts(row["train_end"]), metrics=json.loads(row["metrics"] or "{}"),
            features=json.loads(row["features"] or "{}"), params=json.loads(row["params"] or "{}"),
            artifact=str(row["artifact"]),
        )


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return None if not np.isfinite(value) else float(value)
    return str(value)


def train(df: pd.DataFrame, model: Any = "auto", stream: str | None = None, **options: Any) -> StreamModel:
    """Fit one forecaster per (series, field) of ``df`` on all of its points (refits in this thread
    unless ``background=True`` is passed)."""
    options.setdefault("background", False)
    if stream is None:
        stream = str(df[STREAM].iloc[0]) if STREAM in df.columns and len(df) else ""
    return StreamModel(stream=stream, kind=_model_name(model), options=dict(options)).update(df)


def evaluate(df: pd.DataFrame, model: Any = "auto", horizon: int = 24, folds: int = 3, level: float = 0.9,
             **options: Any) -> dict[str, Any]:
    """Rolling-origin backtest of ``model`` on ``df``: overall and per-series mean metrics."""
    frame, fields = _normalise(df, TIME, None)
    per_field = []
    for name in fields:
        res = backtest(frame, model=model, horizon=horizon, folds=folds, level=level, field=name, **options)
        per_field.append(res.assign(field=name))
    res = pd.concat(per_field, ignore_index=True) if per_field else pd.DataFrame()
    metrics: dict[str, Any] = {"horizon": int(horizon), "folds": int(folds), "level": float(level)}
    if res.empty:
        return metrics | {"evaluated": 0}
    cols = ["mae", "mase", "smape", "coverage"]
    metrics |= {c: _finite_mean(res[c]) for c in cols}
    metrics["evaluated"] = int(len(res))
    metrics["series"] = {
        f"{s}/{n}": {c: _finite_mean(g[c]) for c in cols} for (s, n), g in res.groupby(["series", "field"])
    }
    return metrics


def _finite_mean(values: pd.Series) -> float | None:
    v = pd.to_numeric(values, errors="coerce").to_numpy(dtype="float64")
    v = v[np.isfinite(v)]
    return float(v.mean()) if len(v) else None


def _versions(store: Any, name: str) -> pd.DataFrame:
    return store.read("models", name=name)


def save_model(store: Any, model: StreamModel, metrics: dict[str, Any] | None = None, name: str | None = None,
               directory: str | Path | None = None, settings: Any = None) -> ModelRecord:
    """Persist ``model``: joblib file + a new version in the ``models`` table. Returns its record."""
    name = name or f"{model.stream}:forecast"
    directory = Path(directory) if directory is not None else _model_dir(settings)
    directory.mkdir(parents=True, exist_ok=True)
    existing = _versions(store, name)
    version = int(existing["version"].max()) + 1 if len(existing) else 1
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
    path = directory / f"{safe}-v{version}.joblib"
    model.wait()
    joblib.dump(model, path)
    first = next(iter(model.forecasters.values()), None)
    params = {"model": model.kind, "options": model.options,
              "fitted": {f"{s}/{n}": getattr(f, "params", None) for (s, n), f in sorted(model.forecasters.items())}
              if first is not None and hasattr(first, "params") else {}}
    record = ModelRecord(
        name=name, version=version, stream=model.stream, kind=model.kind, created_at=pd.Timestamp.now(tz="UTC"),
        train_start=model.train_start, train_end=model.train_end, metrics=metrics or {},
        features=model.features, params=params, artifact=str(path),
    )
    store.append("models", record.frame())
    return record


def load_model(store: Any, name: str | None = None, stream: str | None = None,
               version: int | None = None) -> tuple[StreamModel, ModelRecord]:
    """The model of ``name`` (or the newest one of ``stream``) at ``version`` (default newest)."""
    if name is None and stream is None:
        raise ValueError("give a model name or a stream")
    rows = store.read("models", name=name) if name is not None else store.read("models", stream=stream)
    if version is not None and len(rows):
        rows = rows[rows["version"] == version]
    if rows.empty:
        raise ModelNotFound(f"no model for name={name!r} stream={stream!r} version={version!r}")
    row = rows.sort_values(["version", "created_at"]).iloc[-1]
    record = ModelRecord.from_row(row)
    if not Path(record.artifact).exists():
        raise ModelNotFound(f"model {record.name} v{record.version}: artifact {record.artifact} is missing")
    return joblib.load(record.artifact), record


def serve(stream: str, store: Any, horizon: int | None = None, level: float | None = None,
          name: str | None = None, settings: Any = None, append: bool = True) -> pd.DataFrame:
    """Forecast ``stream`` with its newest model after learning the points stored since its training;
    append the forecasts to the ``forecasts`` table (unless ``append=False``) and return them."""
    horizon = int(horizon or (settings.forecast_horizon if settings is not None else 24))
    level = float(level or (settings.forecast_level if settings is not None else 0.9))
    model, record = load_model(store, name=name, stream=None if name else stream)
    fresh = store.query(stream, start=model.train_end) if model.train_end is not None else store.query(stream)
    if len(fresh):
        model.update(fresh.drop(columns=["seq"], errors="ignore"))  # points already learned are dropped
    out = model.forecast(horizon, level)
    if append and len(out):
        store.append("forecasts", out)
    return out


def retrain(stream: str, store: Any = None, settings: Any = None, model: Any = None,
            lookback: str | None = "settings", horizon: int | None = None, folds: int = 3,
            name: str | None = None, directory: str | Path | None = None, **options: Any) -> ModelRecord:
    """Read ``stream``'s history, backtest, fit and save a new model version; return its record.

    ``lookback`` is how far back from the stream's newest point to read (a duration such as ``"14d"``;
    ``None`` reads everything; default ``settings.forecast_lookback``). ``model`` and ``horizon`` default to
    ``settings.forecast_model`` / ``settings.forecast_horizon``. ``store`` defaults to
    ``open_store(settings)``.
    """
    if settings is None:
        from nexus_kernel.config import load_settings

        settings = load_settings()
    if store is None:
        from nexus_kernel.storage import open_store

        store = open_store(settings)
    model = model or settings.forecast_model
    horizon = int(horizon or settings.forecast_horizon)
    lookback = settings.forecast_lookback if lookback == "settings" else lookback
    history = store.query(stream, start=_since(store, stream, lookback)) if lookback else store.query(stream)
    if history.empty:
        raise ValueError(f"stream {stream!r} has no stored points to train on")
    history = history.drop(columns=["seq"], errors="ignore")
    metrics = evaluate(history, model=model, horizon=horizon, folds=folds, level=settings.forecast_level, **options)
    fitted = train(history, model=model, stream=stream, **options)
    return save_model(store, fitted, metrics, name=name, directory=directory, settings=settings)


def _since(store: Any, stream: str, lookback: str) -> pd.Timestamp | None:
    """Start of the lookback, measured back from the stream's newest point (not the wall clock, so a
    replayed or paused stream still has its history)."""
    latest = store.latest(stream)
    if latest.empty:
        return None
    from nexus_kernel.storage import parse_span  # the store's own reading of "14d", "6h", ...

    return pd.to_datetime(latest[TIME], utc=True).max() - parse_span(lookback)


def _model_dir(settings: Any) -> Path:
    if settings is None:
        from nexus_kernel.config import load_settings

        settings = load_settings()
    return Path(settings.home) / "models"
