"""``detect(df)``: the notebook call — scores, flags and reasons in a plot-ready frame."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .detectors import Detector, detectors

__all__ = ["detect"]


def detect(
    df: pd.DataFrame,
    detector: str | Detector = "ensemble",
    *,
    field: str | None = None,
    time: str = "ts",
    series: str = "series",
    **params: Any,
) -> pd.DataFrame:
    """Run a detector online over ``df`` (oldest first, each point scored before it is learned).

    ``df`` may be a batch (``series``, ``ts``, field columns), a replayed NAB-style file
    (``timestamp``, ``value``) or any frame with a time column and one numeric column. Returns
    ``ts, series, value, score, is_anomaly, reason`` (plus ``expected`` and ``statistic``), one row per
    input row; ``reason`` is the JSON text of the structured facts on anomalous rows.

    >>> import numpy as np, pandas as pd
    >>> ts = pd.date_range("2024-01-01", periods=400, freq="min", tz="UTC")
    >>> x = np.random.default_rng(0).normal(size=400); x[300:] += 10
    >>> out = detect(pd.DataFrame({"ts": ts, "value": x}), "level_shift")
    >>> bool(out["is_anomaly"].iloc[300:305].any())
    True
    """
    if time not in df.columns and "timestamp" in df.columns:
        time = "timestamp"
    if time not in df.columns:
        raise KeyError(f"detect() needs a time column: '{time}' is not in {list(df.columns)}")
    if field is None:
        numeric = [c for c in df.columns if c not in (time, series, "seq", "stream") and pd.api.types.is_numeric_dtype(df[c])]
        if not numeric:
            raise ValueError("detect() found no numeric column to score; pass field=")
        field = "value" if "value" in numeric else numeric[0]
    det = detectors.get(detector)(**params) if isinstance(detector, str) else detector
    frame = pd.DataFrame(
        {
            "series": df[series].astype(str).to_numpy() if series in df.columns else np.full(len(df), field, dtype=object),
            "ts": pd.to_datetime(df[time], utc=True).to_numpy(),
            "value": pd.to_numeric(df[field], errors="coerce").to_numpy(dtype=np.float64),
        }
    )
    if "seq" in df.columns:
        frame["seq"] = df["seq"].to_numpy()
    out = det.update(frame, field="value")
    cols = ["ts", "series", "value", "score", "is_anomaly", "reason", "expected", "statistic"]
    return out[cols]
