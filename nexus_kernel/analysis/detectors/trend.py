"""Trend: the EW slope of the recent level over ``horizon`` points, in robust deviations.

See :mod:`.level_shift` for the shared recursion. A slope of ``threshold`` deviations per ``horizon``
points is an anomaly: a ramp that is steep compared with the series' own noise.

Example
-------
>>> import numpy as np
>>> from nexus_kernel.analysis.detectors import Trend
>>> x = np.r_[np.random.default_rng(0).normal(size=300), np.arange(100) * 0.5]
>>> r = Trend().score_learn("s", x)
>>> bool(r.score[320:].max() > 0.999)
True
"""

from __future__ import annotations

import numpy as np

from ._base import Detector, Result, detectors
from .mean_shift import shift_kernel


@detectors.register("trend")
class Trend(Detector):
    name = "trend"
    feature = "slope"
    statistic = "slope_in_deviations_per_horizon"

    def __init__(self, *, fast: float = 0.1, slow: float = 0.01, horizon: int = 30, threshold: float = 5.0,
                 warmup: int = 30, seed: int = 0) -> None:
        super().__init__(seed=seed)
        self.fast, self.slow, self.horizon, self.threshold, self.warmup = fast, slow, horizon, threshold, warmup

    def new_state(self):
        return {"meta": np.zeros(5)}

    def _run(self, state, x):
        s, exp = shift_kernel(x, state["meta"], self.fast, self.slow, self.warmup, float(self.horizon), True)
        return Result(self._score_of(s), s, exp)
