"""CUSUM change detection: Page's two-sided cumulative sum of standardised deviations.

Each value is standardised against a slow EW mean and deviation; ``S+ = max(0, S+ + z - drift)`` and
``S- = max(0, S- - z - drift)`` accumulate small persistent shifts that a per-point z-score misses. The
statistic is ``max(S+, S-)``; past ``threshold`` it is an alarm, the sums restart and the baseline jumps
to the new level (so one shift raises one alarm, not a stream of them).

Parameters: ``alpha`` (baseline speed), ``drift`` (k, in deviations), ``threshold`` (h), ``warmup``.

Example
-------
>>> import numpy as np
>>> from nexus_kernel.analysis.detectors import Cusum
>>> x = np.r_[np.random.default_rng(1).normal(size=300), np.random.default_rng(2).normal(size=100) + 1.5]
>>> r = Cusum().score_learn("s", x)
>>> bool((r.statistic[300:340] > 8).any())
True

Reference: E. S. Page, "Continuous inspection schemes", Biometrika 41 (1954).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ._base import Detector, Result, detectors, z_to_score
from ._kernels import EPS


@njit(cache=True, nogil=True)
def _cusum(x, meta, alpha, drift, h, warmup):
    # meta: count, mean, var, S+, S-
    n = x.shape[0]
    stat = np.full(n, np.nan)
    exp = np.full(n, np.nan)
    c, m, v, sp, sn = meta[0], meta[1], meta[2], meta[3], meta[4]
    for i in range(n):
        xi = x[i]
        if c == 0:
            m, v = xi, 0.0
            c = 1.0
            continue
        sd = math.sqrt(v) + EPS + 1e-6 * abs(m)
        z = (xi - m) / sd
        zc = min(max(z, -4.0), 4.0)
        if c >= warmup:
            sp = max(0.0, sp + zc - drift)
            sn = max(0.0, sn - zc - drift)
            stat[i] = max(sp, sn)
            exp[i] = m
        a = max(alpha, 1.0 / (c + 1.0))
        d = zc * sd
        if c >= warmup and (sp > h or sn > h):
            m, sp, sn = xi, 0.0, 0.0  # re-anchor on the new level
        else:
            m += a * d
            v = (1.0 - a) * (v + a * d * d)
        c += 1.0
    meta[0], meta[1], meta[2], meta[3], meta[4] = c, m, v, sp, sn
    return stat, exp


@detectors.register("cusum")
class Cusum(Detector):
    name = "cusum"
    feature = "mean_shift"
    statistic = "cusum"

    def __init__(self, *, alpha: float = 0.01, drift: float = 0.5, threshold: float = 8.0, warmup: int = 30,
                 seed: int = 0) -> None:
        super().__init__(seed=seed)
        self.alpha, self.drift, self.threshold, self.warmup = alpha, drift, threshold, warmup

    def new_state(self):
        return {"meta": np.zeros(5)}

    def _score_of(self, statistic):
        return z_to_score(np.asarray(statistic) * (5.0 / self.threshold))

    def _run(self, state, x):
        s, exp = _cusum(x, state["meta"], self.alpha, self.drift, self.threshold, self.warmup)
        return Result(self._score_of(s), s, exp)
