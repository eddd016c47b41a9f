"""``Analyzer``: the engine step that scores every micro-batch and emits store-ready frames.

``Analyzer(...).update(batch)`` takes a batch in the contract of :mod:`nexus_kernel.records` and returns
``{"anomalies": frame}`` in the ``anomalies`` table schema (stream, series, field, ts, detector, score,
is_anomaly, reason) — every scored point, or only the anomalous ones with ``only_anomalies=True`` — and,
with ``forecast=True``, ``{"forecasts": frame}`` in the ``forecasts`` table schema, from one
:class:`~nexus_kernel.analysis.forecasting.ForecastStep` per stream (the code notebooks and the model
pipeline use too). State is per (stream, field, series) inside one detector per (stream, field) and one
forecaster per (stream, series, field): bounded per series.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..records import field_columns
from .detectors import Detector, detectors
from .forecasting import AUTO_MODEL, ForecastStep, forecaster_name

__all__ = ["Analyzer", "ANOMALY_COLUMNS", "empty_anomalies"]

ANOMALY_COLUMNS = ("stream", "series", "field", "ts", "detector", "score", "is_anomaly", "reason")


def empty_anomalies() -> pd.DataFrame:
    """No anomalies, in the contract's columns and types (a copy: callers may add to it)."""
    # every analysis call starts from one: building the eight typed columns cost 0.8 ms, a copy 40 us
    return _empty_anomalies().copy()


@functools.cache
def _empty_anomalies() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "stream": pd.Series([], dtype="string"),
            "series": pd.Series([], dtype="string"),
            "field": pd.Series([], dtype="string"),
            "ts": pd.Series([], dtype="datetime64[ns, UTC]"),
            "detector": pd.Series([], dtype="string"),
            "score": pd.Series([], dtype="float64"),
            "is_anomaly": pd.Series([], dtype="bool"),
            "reason": pd.Series([], dtype="string"),
        }
    )


_WARMED: set[tuple[str, str]] = set()  # detector configurations whose kernels this process has loaded
_WARM_LOCK = threading.Lock()


def _synthetic(start: int, n: int, series: int = 2) -> pd.DataFrame:
    """A small seasonal, noisy batch in the records contract (for :meth:`Analyzer.warm`)."""
    steps = np.arange(start, start + n)
    noise = np.random.default_rng(start).normal(0.0, 0.1, n * series)
    return pd.DataFrame({
        "stream": pd.array(["warm"] * (n * series), dtype="string"),
        "series": pd.array([f"w{i}" for i in range(series)] * n, dtype="string"),
        "ts": pd.to_datetime(np.repeat(steps, series), unit="s", utc=True),
        "seq": np.arange(start * series, (start + n) * series, dtype=np.int64),
        "value": np.sin(np.repeat(steps, series) / 7.0) + noise,
    })


class Analyzer:
    """Score micro-batches with a registered detector, per stream and field.

    Parameters: ``detector`` (registry name), ``params`` for it, ``fields`` (default: every field column
    of the batch), ``only_anomalies`` (emit only flagged rows: what a store wants on a busy stream),
    ``forecast`` (also run the registered forecaster ``forecaster`` — default ``"auto"``, which picks
    Holt-Winters or seasonal naive per series by a backtest over its own last seasons — per series, emitting ``horizon`` steps with a band of coverage ``level``; refits run in
    the calling thread, the pipeline's, so a run is reproducible), ``forecast_every`` (emit a series'
    forecast once per this many of its grid points — sampling steps of the series, see
    :class:`~nexus_kernel.analysis.forecasting.ForecastStep`'s ``every`` — instead of after every batch:
    every point is still learned, but a live stream's forecast rows and their cost shrink by that factor;
    default 1, every batch that brings a point).
    Unknown detector or forecaster names raise ``LookupError`` naming the known ones; a
    ``forecast_every`` that is not a whole number >= 1 raises ``ValueError``.

    Example
    -------
    >>> import pandas as pd
    >>> from nexus_kernel.records import Schema, Validator
    >>> good, _ = Validator(Schema("pumps"))(pd.DataFrame({"series": ["a"] * 3, "value": [1.0, 2.0, 3.0],
    ...     "ts": pd.date_range("2024-01-01", periods=3, freq="s", tz="UTC")}))
    >>> list(Analyzer().update(good)["anomalies"].columns)
    ['stream', 'series', 'field', 'ts', 'detector', 'score', 'is_anomaly', 'reason']
    """

    def __init__(self, detector: str = "ensemble", params: dict[str, Any] | None = None,
                 fields: Sequence[str] | None = None, only_anomalies: bool = False, forecast: bool = False,
                 forecaster: str = AUTO_MODEL, horizon: int = 12, level: float = 0.9,
                 forecast_every: int = 1) -> None:
        detectors.get(detector)  # fail now, with the known names, on a typo
        forecaster_name(forecaster)  # likewise: a forecaster name never falls back to another member
        if isinstance(forecast_every, bool) or not isinstance(forecast_every, (int, np.integer)) or forecast_every < 1:
            raise ValueError(f"forecast_every must be a whole number of points >= 1, not {forecast_every!r}")
        self.forecast_every = int(forecast_every)
        self.detector, self.params = detector, dict(params or {})
        self.fields, self.only_anomalies = fields, only_anomalies
        self._detectors: dict[tuple[str, str], Detector] = {}
        self.forecast, self.forecaster, self.horizon, self.level = forecast, forecaster, horizon, level
        self._forecast_steps: dict[str, ForecastStep] = {}
        self._warmup = self.warmup_points

    def _forecasts(self, batch: pd.DataFrame, streams: np.ndarray) -> pd.DataFrame:
        """Learn every (stream, series, field) forecaster; emit the next ``horizon`` steps with a band for
        those due (``forecast_every``)."""
        parts = []
        for stream in pd.unique(streams):
            step = self._forecast_steps.get(str(stream))
            if step is None:
                step = self._forecast_steps[str(stream)] = ForecastStep(
                    self.forecaster, horizon=self.horizon, level=self.level, fields=self.fields,
                    every=self.forecast_every, background=False)
            rows = batch[streams == stream]
            parts.append(step(rows if "stream" in rows.columns else rows.assign(stream=str(stream))))
        return pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]

    def warm(self) -> None:
        """Load the detector's compiled kernels now, once per process and detector configuration.

        Why: the first batch a detector scores past its warm-up loads (or compiles) its numba kernels,
        about 0.4-1.2 s on a busy 2-core machine; a pipeline that calls this when it starts pays that
        before it takes records, not on its first busy batch, while every other stream of its thread
        waits. A throwaway detector scores a small synthetic batch (two series, 400 then 50 points); the
        analyzer's own detectors and state are untouched.

        >>> Analyzer(detector="ewma").warm()  # returns once the kernels are loaded
        """
        key = (self.detector, repr(sorted(self.params.items())))
        with _WARM_LOCK:
            if key in _WARMED:
                return
            det = detectors.get(self.detector)(**self.params)
            for start, n in ((0, 400), (400, 50)):
                det.update(_synthetic(start, n), field="value")
            _WARMED.add(key)

    def _for(self, stream: str, field: str) -> Detector:
        det = self._detectors.get((stream, field))
        if det is None:
            det = self._detectors[(stream, field)] = detectors.get(self.detector)(**self.params)
        return det

    @property
    def warmup_points(self) -> int:
        """Points of each series before the detector can score (earlier points score 0); also stated on
        every emitted anomalies frame as ``frame.attrs["warmup_points"]``."""
        return detectors.get(self.detector)(**self.params).warmup_points

    def update(self, batch: pd.DataFrame) -> dict[str, pd.DataFrame]:
        out: dict[str, pd.DataFrame] = {"anomalies": empty_anomalies()}
        if batch is None or batch.empty:
            return out
        fields = list(self.fields) if self.fields is not None else field_columns(batch)
        streams = batch["stream"].astype(str).to_numpy() if "stream" in batch.columns else np.full(len(batch), "default")
        parts = []
        for stream in pd.unique(streams):
            rows = batch[streams == stream]
            for field in fields:
                if field not in rows.columns:
                    continue
                det = self._for(str(stream), field)
                res = det.update(rows, field=field)
                if self.only_anomalies:
                    res = res[res["is_anomaly"]]
                    if res.empty:  # the usual case in a live stream: nothing to build
                        continue
                parts.append(pd.DataFrame({
                    "stream": pd.array(np.full(len(res), stream, dtype=object), dtype="string"),
                    "series": res["series"].astype("string").to_numpy(),
                    "field": pd.array(np.full(len(res), field, dtype=object), dtype="string"),
                    "ts": res["ts"].to_numpy(),
                    "detector": pd.array(np.full(len(res), det.name, dtype=object), dtype="string"),
                    "score": res["score"].to_numpy(dtype=np.float64),
                    "is_anomaly": res["is_anomaly"].to_numpy(dtype=bool),
                    "reason": res["reason"].astype("string").to_numpy(),
                }))
        if parts:
            frame = pd.concat(parts, ignore_index=True)
            frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
            out["anomalies"] = frame.astype({"stream": "string", "series": "string", "field": "string",
                                             "detector": "string", "reason": "string"})
        out["anomalies"].attrs["warmup_points"] = self._warmup
        if self.forecast:
            out["forecasts"] = self._forecasts(batch, streams)
        return out

    __call__ = update
