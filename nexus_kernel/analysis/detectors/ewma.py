"""EWMA residual: distance of each value from an exponentially weighted mean, in EW standard deviations.

Parameters: ``alpha`` (weight of the newest value), ``warmup``, ``threshold`` (|z|), ``clip`` (values
further than ``clip`` deviations move the mean as if they were ``clip`` away, so one outlier does not
drag the baseline — a Huber-style update).

Caveats: assumes a locally constant level; on a strong season use ``holt_winters`` or ``seasonal``.

Example
-------
>>> import numpy as np
>>> from nexus_kernel.analysis.detectors import EWMA
>>> r = EWMA().score_learn("s", np.r_[np.random.default_rng(0).normal(size=200), 12.0])
>>> bool(r.score[-1] > 0.999)
True

Reference: J. S. Hunter, "The exponentially weighted moving average", J. Quality Technology, 1986.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ._base import Detector, Result, detectors
from ._kernels import EPS


@njit(cache=True, nogil=True)
def _ewma(x, meta, alpha, warmup, clip):
    # meta: count, mean, var
    n = x.shape[0]
    z = np.full(n, np.nan)
    exp = np.full(n, np.nan)
    c, m, v = meta[0], meta[1], meta[2]
    for i in range(n):
        xi = x[i]
        if c == 0:
            m, v = xi, 0.0
        else:
            sd = math.sqrt(v) + EPS + 1e-6 * abs(m)
            d = xi - m
            if c >= warmup:
                z[i] = d / sd
                exp[i] = m
            a = max(alpha, 1.0 / (c + 1.0))  # plain average during warm-up
            if c >= warmup and abs(d) > clip * sd:
                d = clip * sd if d > 0 else -clip * sd
            m += a * d
            v = (1.0 - a) * (v + a * d * d)
        c += 1.0
    meta[0], meta[1], meta[2] = c, m, v
    return z, exp


@detectors.register("ewma")
class EWMA(Detector):
    name = "ewma"
    feature = "value"
    statistic = "z"
    unit = "sigma"

    def __init__(self, *, alpha: float = 0.05, warmup: int = 20, threshold: float = 5.0, clip: float = 3.0,
                 seed: int = 0) -> None:
        super().__init__(seed=seed)
        if not 0 < alpha < 1:
            raise ValueError("ewma needs 0 < alpha < 1")
        self.alpha, self.warmup, self.threshold, self.clip = alpha, warmup, threshold, clip

    def new_state(self):
        return {"meta": np.zeros(3)}

    def _run(self, state, x):
        z, exp = _ewma(x, state["meta"], self.alpha, self.warmup, self.clip)
        return Result(self._score_of(z), z, exp)
