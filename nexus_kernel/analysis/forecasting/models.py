"""The model registry's pure parts: a stream's forecasters trained together, and their record.

A :class:`StreamModel` is every (series, field) forecaster of one stream. A :class:`ModelRecord` is its
row in the store's ``models`` table (``name, version, stream, kind, created_at, train_start, train_end,
metrics, features, params, artifact``): the table is the model registry, versions count up per name, and
the newest version is the one served. Nothing here reads or writes a store or a file: the store-facing
half — ``save_model``, ``load_model``, ``serve``, ``retrain`` — is :mod:`nexus_kernel.analysis.models`,
and it is handed its store by its caller.

Example
-------
>>> import numpy as np, pandas as pd
>>> ts = pd.date_range("2024-01-01", periods=24 * 10, freq="1h", tz="UTC")
>>> df = pd.DataFrame({"stream": "pumps", "series": "p1", "ts": ts,
...                    "value": np.sin(np.arange(len(ts)) * 2 * np.pi / 24)})
>>> model = train(df, model="seasonal_naive")
>>> model.kind, sorted(model.forecasters), len(model.forecast(6))
('seasonal_naive', [('p1', 'value')], 6)
>>> evaluate(df, model="seasonal_naive", horizon=12, folds=2)["evaluated"]
2
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from nexus_kernel.analysis.forecasting._base import BaseForecaster
from nexus_kernel.analysis.forecasting.backtest import backtest
from nexus_kernel.analysis.forecasting.frames import forecast_rows, forecasts_frame, points_frame
from nexus_kernel.analysis.forecasting.registry import ModelLike, forecaster_name, make_forecaster
from nexus_kernel.records import SERIES, STREAM, TIME

__all__ = ["StreamModel", "ModelRecord", "MODEL_COLUMNS", "train", "evaluate", "next_version",
           "newest_record", "artifact_filename", "history_start"]

MODEL_COLUMNS: tuple[str, ...] = ("name", "version", "stream", "kind", "created_at", "train_start",
                                  "train_end", "metrics", "features", "params", "artifact")


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
        frame, fields = points_frame(df, TIME, None)
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
                parts.append(forecast_rows(out, self.stream, series, name, self.kind, f, level))
        return forecasts_frame(parts)

    def wait(self) -> None:
        for f in self.forecasters.values():
            f.wait()

    @property
    def features(self) -> dict[str, list[str]]:
        return {f"{s}/{n}": list(getattr(f, "features", [])) for (s, n), f in sorted(self.forecasters.items())}

    @property
    def params(self) -> dict[str, Any]:
        """What the record keeps of the model: its kind, options and each forecaster's fitted parameters."""
        first = next(iter(self.forecasters.values()), None)
        fitted = ({f"{s}/{n}": getattr(f, "params", None) for (s, n), f in sorted(self.forecasters.items())}
                  if first is not None and hasattr(first, "params") else {})
        return {"model": self.kind, "options": self.options, "fitted": fitted}


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

    @classmethod
    def of(cls, model: StreamModel, name: str, version: int, metrics: dict[str, Any] | None, artifact: str,
           created_at: pd.Timestamp) -> ModelRecord:
        """The record of ``model`` saved as ``name`` v``version`` in the file ``artifact``."""
        return cls(name=name, version=version, stream=model.stream, kind=model.kind, created_at=created_at,
                   train_start=model.train_start, train_end=model.train_end, metrics=metrics or {},
                   features=model.features, params=model.params, artifact=artifact)

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


def train(df: pd.DataFrame, model: ModelLike = "auto", stream: str | None = None, **options: Any) -> StreamModel:
    """Fit one forecaster per (series, field) of ``df`` on all of its points (refits in this thread
    unless ``background=True`` is passed)."""
    options.setdefault("background", False)
    if stream is None:
        stream = str(df[STREAM].iloc[0]) if STREAM in df.columns and len(df) else ""
    return StreamModel(stream=stream, kind=forecaster_name(model), options=dict(options)).update(df)


def evaluate(df: pd.DataFrame, model: ModelLike = "auto", horizon: int = 24, folds: int = 3, level: float = 0.9,
             **options: Any) -> dict[str, Any]:
    """Rolling-origin backtest of ``model`` on ``df``: overall and per-series mean metrics."""
    frame, fields = points_frame(df, TIME, None)
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


def next_version(existing: pd.DataFrame) -> int:
    """The version a new model of a name gets, from the ``models`` rows of that name."""
    return int(existing["version"].max()) + 1 if len(existing) else 1


def newest_record(rows: pd.DataFrame, version: int | None = None) -> ModelRecord | None:
    """The record of ``version`` (default the newest) among ``models`` rows, or None when there is none."""
    if version is not None and len(rows):
        rows = rows[rows["version"] == version]
    if rows.empty:
        return None
    return ModelRecord.from_row(rows.sort_values(["version", "created_at"]).iloc[-1])


def artifact_filename(name: str, version: int) -> str:
    """The file name of a model's artifact: the name made safe for any file system, and its version."""
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
    return f"{safe}-v{version}.joblib"


def history_start(newest: pd.Timestamp | None, lookback: str | pd.Timedelta) -> pd.Timestamp | None:
    """Start of a lookback measured back from a stream's newest point (not the wall clock, so a replayed
    or paused stream still has its history); None when the stream has no point.

    ``lookback`` is a positive duration (``"14d"``, ``"6h"``, a Timedelta); a wrong one raises ``ValueError``.
    """
    span = _duration(lookback)
    return None if newest is None or pd.isna(newest) else pd.Timestamp(newest) - span


def _duration(value: str | pd.Timedelta) -> pd.Timedelta:
    try:
        # "7d" is what people write; pandas reads the day unit in either case
        span = pd.Timedelta(value.strip() if isinstance(value, str) else value)
    except (ValueError, TypeError):
        raise ValueError(f"lookback is not a duration: {value!r} (try '14d', '6h')") from None
    if pd.isna(span) or span <= pd.Timedelta(0):
        raise ValueError(f"lookback must be a positive duration: {value!r}")
    return span
