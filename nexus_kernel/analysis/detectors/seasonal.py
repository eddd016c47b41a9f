"""Seasonal residual: distance of each value from its phase of the seasonal profile plus the level.

Like :mod:`.holt_winters` with no trend and a faster seasonal profile (``gamma``): it asks "is this
value normal *for this time of the cycle*?" — it sees a missing daily peak, a flat stretch where the
cycle should move, or a night-time spike that a plain z-score would call normal.

Parameters: ``alpha`` (level), ``gamma`` (profile), ``period`` (``None`` = found after
``season_search`` points, or already after ``early_search`` when three clear seasons fit in them: a
short notebook series gets its seasonal member), ``threshold`` (|z|), ``clip``.

Example
-------
>>> import numpy as np
>>> from nexus_kernel.analysis.detectors import Seasonal
>>> x = np.tile(np.r_[np.zeros(12), np.ones(12)], 30); x[650] = 1.0 - x[650] + 0.0
>>> r = Seasonal(season_search=300).score_learn("s", x)
>>> int(np.argmax(r.score))
650

Reference: Hyndman & Athanasopoulos, FPP §3 (classical decomposition), §8.3.
"""

from __future__ import annotations

from ._base import detectors
from .holt_winters import SeasonalWarmup, residual_kernel


@detectors.register("seasonal")
class Seasonal(SeasonalWarmup):
    name = "seasonal"
    feature = "seasonal_residual"
    statistic = "z"
    unit = "sigma"

    def __init__(self, *, alpha: float = 0.02, gamma: float = 0.5, period: int | None = None,
                 season_search: int = 600, early_search: int | None = 150, threshold: float = 5.0, clip: float = 3.0,
                 seed: int = 0) -> None:
        super().__init__(seed=seed)
        self.alpha, self.gamma, self.period = alpha, gamma, period
        self.season_search, self.early_search, self.threshold, self.clip = season_search, early_search, threshold, clip

    def _kernel(self, x, state, score):
        return residual_kernel(x, state["season"], state["meta"], self.alpha, 0.0, self.gamma, self.clip, score)
