"""Robust z-score against a rolling median and MAD.

``z = (x - median) / (1.4826 * MAD)`` over the last ``window`` values, before ``x`` joins the window.
Insensitive to the outliers it looks for (unlike a mean/std), so a spike does not hide the next one.

Parameters: ``window`` (points kept, the bounded memory), ``warmup`` (points before scoring),
``threshold`` (|z| that makes an anomaly).

Caveats: with a MAD of 0 (quantised or flat data) the scale falls back to the mean absolute deviation,
then to a floor of ``1e-9 + 1e-6 * |median|``, so the first departure from a flat line scores near 1.

Example
-------
>>> import numpy as np
>>> from nexus_kernel.analysis.detectors import RobustZ
>>> d = RobustZ(window=50, warmup=10)
>>> x = np.r_[np.sin(np.arange(100) / 5), 9.0]
>>> round(float(d.score_learn("s", x).score[-1]), 3)
1.0

Reference: P. J. Rousseeuw, C. Croux, "Alternatives to the median absolute deviation", JASA 1993.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._base import Detector, Result, detectors
from ._kernels import EPS, median_mad, sorted_insert, sorted_remove


@njit(cache=True, nogil=True)
def _robust_z(x, ring, srt, meta, warmup):
    n = x.shape[0]
    w = ring.shape[0]
    z = np.full(n, np.nan)
    exp = np.full(n, np.nan)
    c = int(meta[0])
    pos = int(meta[1])
    for i in range(n):
        v = x[i]
        if c >= warmup:
            med, mad = median_mad(srt, c)
            scale = 1.4826 * mad
            if scale <= 0.0:
                acc = 0.0
                for j in range(c):
                    acc += abs(srt[j] - med)
                scale = 1.2533 * acc / c
            scale = max(scale, EPS + 1e-6 * abs(med))
            z[i] = (v - med) / scale
            exp[i] = med
        if c == w:
            sorted_remove(srt, c, ring[pos])
            c -= 1
        ring[pos] = v
        pos = (pos + 1) % w
        sorted_insert(srt, c, v)
        c += 1
    meta[0] = c
    meta[1] = pos
    return z, exp


@detectors.register("robust_z")
class RobustZ(Detector):
    name = "robust_z"
    feature = "value"
    statistic = "z"
    unit = "sigma"

    def __init__(self, *, window: int = 128, warmup: int = 16, threshold: float = 5.0, seed: int = 0) -> None:
        super().__init__(seed=seed)
        if window < 3 or warmup < 1 or warmup > window:
            raise ValueError("robust_z needs window >= 3 and 1 <= warmup <= window")
        self.window, self.warmup, self.threshold = window, warmup, threshold

    def new_state(self) -> dict[str, np.ndarray]:
        return {"ring": np.zeros(self.window), "srt": np.zeros(self.window), "meta": np.zeros(2)}

    def _run(self, state, x):
        z, exp = _robust_z(x, state["ring"], state["srt"], state["meta"], self.warmup)
        return Result(self._score_of(z), z, exp)
