"""Seasonality detection: the dominant period of a series and how strong it is.

:func:`find_period` looks for the highest autocorrelation peak (computed with an FFT) between
``min_period`` and ``len(x) // 2`` lags of the detrended series; the peak's autocorrelation is the
strength. The seasonal detectors call it once, after their ``season_search`` warm-up points.

Caveats: needs two full periods; a period that drifts or several competing periods give a weak peak.

Example
-------
>>> import numpy as np
>>> from nexus_kernel.analysis.detectors.seasonality import find_period
>>> find_period(np.sin(2 * np.pi * np.arange(400) / 24))[0]
24

Reference: R. J. Hyndman, G. Athanasopoulos, *Forecasting: principles and practice*, §2.8 (ACF).
"""

from __future__ import annotations

import numpy as np

__all__ = ["find_period", "autocorrelation"]


def autocorrelation(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    n = len(x)
    if n < 4:
        return np.ones(1)
    t = np.arange(n)
    x = x - np.polyval(np.polyfit(t, x, 1), t)  # a trend would look like every period
    size = 1 << int(np.ceil(np.log2(2 * n)))
    f = np.fft.rfft(x, size)
    acf = np.fft.irfft(f * np.conj(f), size)[:n]
    return acf / acf[0] if acf[0] > 0 else np.zeros(n)


def find_period(x: np.ndarray, min_period: int = 4, min_strength: float = 0.3) -> tuple[int | None, float]:
    """(period in points, strength in [0, 1]); ``(None, strength)`` when no peak reaches ``min_strength``."""
    acf = autocorrelation(x)
    n = len(acf)
    hi = n // 2
    if hi <= min_period + 1:
        return None, 0.0
    seg = acf[min_period : hi + 1]
    peaks = np.flatnonzero((seg[1:-1] > seg[:-2]) & (seg[1:-1] >= seg[2:])) + 1
    if len(peaks) == 0:
        return None, 0.0
    best = peaks[np.argmax(seg[peaks])]
    strength = float(max(seg[best], 0.0))
    return (int(best + min_period), strength) if strength >= min_strength else (None, strength)
