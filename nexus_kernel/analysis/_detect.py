"""``detect(df)``: the notebook call — scores, flags and reasons in a plot-ready frame."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from .detectors import Detector, detectors
from .forecasting.frames import points_frame
from nexus_kernel.records import SERIES, TIME

__all__ = ["detect"]

# the first six as before (plot-ready, what callers index); ``field`` after them, as in ``forecasts``
_COLUMNS = ["ts", "series", "value", "score", "is_anomaly", "reason", "field", "expected", "statistic"]
# joins a series and a field into one detector key: a detector keeps its state per key, so each
# (series, field) is learned apart; a unit separator cannot clash with a real series name
_SEP = "\x1f"


def detect(
    df: pd.DataFrame | pd.Series,
    detector: str | Detector = "ensemble",
    *,
    field: str | None = None,
    fields: Sequence[str] | None = None,
    time: str = TIME,
    series: str = SERIES,
    **params: Any,
) -> pd.DataFrame:
    """Run a detector online over every value column of ``df`` (oldest first, each point scored before
    it is learned).

    Parameters
    ----------
    df
        The same shapes as :func:`~nexus_kernel.analysis.forecasting.forecast` takes (read by
        :func:`~nexus_kernel.analysis.forecasting.points_frame`): a Series with a DatetimeIndex, or a
        frame with a ``time`` column (a NAB-style ``timestamp`` column will do) or a DatetimeIndex, one
        or many numeric columns, with or without a ``series`` column.
    detector
        A registered detector name, or an instance (its state then carries over between calls).
    field, fields
        The value column(s) to score; default every numeric column that is not a key
        (``stream``, ``series``, ``ts``, ``seq``).
    time, series
        Names of the time and series columns in ``df``.
    **params
        Passed to the detector made from a name.

    Returns ``ts, series, value, score, is_anomaly, reason, field`` (plus ``expected`` and
    ``statistic``): one row per input row and field, ordered by field, series and time. ``field`` names
    the scored column; ``series`` is the frame's ``series`` column, else the field's name. ``reason`` is
    the JSON text of the structured facts on anomalous rows; its ``text`` says in words which detector
    (for the ensemble: which member) fired on what: value, expected value, threshold.
    ``out.attrs["warmup_points"]`` states the warm-up: the first that many points of each series and
    field are not scored (score 0, never an anomaly) — for the default ensemble, 116 points.

    Raises ``ValueError`` saying what is expected when ``df`` has no time or no numeric column.

    Caveats: each (series, field) is its own series to the detector, so fields never mix. When ``df``
    has several fields, a detector instance keeps their state under keys joining series and field.

    >>> import numpy as np, pandas as pd
    >>> ts = pd.date_range("2024-01-01", periods=400, freq="min", tz="UTC")
    >>> x = np.random.default_rng(0).normal(size=400); x[300:] += 10
    >>> out = detect(pd.DataFrame({"ts": ts, "value": x}), "level_shift")
    >>> bool(out["is_anomaly"].iloc[300:305].any())
    True
    >>> two = detect(pd.DataFrame({"load": x, "temp": -x}, index=ts), "level_shift")
    >>> sorted(two["field"].unique()), len(two)
    (['load', 'temp'], 800)
    >>> len(detect(pd.Series(x, index=ts, name="load"), "robust_z"))
    400
    """
    if field is not None and fields is not None:
        raise ValueError("pass field= or fields=, not both")
    if isinstance(df, pd.DataFrame) and series != SERIES and series in df.columns:
        df = df.rename(columns={series: SERIES})
    frame, chosen = points_frame(df, time, [field] if field is not None else fields)
    det = detectors.get(detector)(**params) if isinstance(detector, str) else detector
    n = len(frame)
    ts = pd.to_datetime(frame[TIME], utc=True).to_numpy()
    keys = frame[SERIES].astype(str).to_numpy(dtype=object) if SERIES in frame.columns else None
    parts = []
    for name in chosen:
        names = keys if keys is not None else np.full(n, name, dtype=object)
        # one field keeps the plain series key, so a detector instance's state reads as before
        key = names if len(chosen) == 1 else names + (_SEP + name)
        part = pd.DataFrame({
            "series": key, "ts": ts,
            "value": pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan),
        })
        if "seq" in frame.columns:
            part["seq"] = frame["seq"].to_numpy()
        out = det.update(part, field="value")
        if len(chosen) > 1:
            out["series"] = out["series"].str.rsplit(_SEP, n=1).str[0]
        out["field"] = pd.array(np.full(len(out), name, dtype=object), dtype="string")
        parts.append(out)
    out = pd.concat(parts, ignore_index=True)[_COLUMNS]
    # the stated warm-up: the first ``warmup_points`` points of each series are not scored (score 0)
    out.attrs["warmup_points"] = det.warmup_points
    return out
