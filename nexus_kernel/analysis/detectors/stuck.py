"""Stuck value: a sensor that repeats its last reading far longer than this series ever does.

Each value is compared with the previous one. The detector keeps the share ``p`` of points that
repeated their predecessor (``(repeats + 1) / (points + 2)``, the series' own history, so it is
scale-free and knows that integer counts repeat often and a noisy float almost never). A run of ``L``
repeats in a row has probability ``p ** L`` if repeats were independent; the statistic is
``L * log10(1 / p)``, the number of *decades* of improbability, and a run reaching ``threshold``
decades (default 6: one in a million) is an anomaly. Any change of value ends the run.

Parameters: ``threshold`` (decades), ``warmup`` (points before scoring), ``tolerance`` (relative
difference under which two values count as equal; 0 means exactly equal).

Caveats: only repeats are seen — a spike or a shift to a new *moving* level scores 0 here (other
members see those). A series that is constant from its start is never stuck (every point repeats,
``p`` tends to 1). Because the share is learned, a value stuck for very long slowly becomes normal
(the statistic falls as ``p`` grows).

Example
-------
>>> import numpy as np
>>> from nexus_kernel.analysis.detectors import Stuck
>>> x = np.random.default_rng(0).normal(size=300); x[250:] = x[249]
>>> r = Stuck().score_learn("s", x)
>>> int(np.flatnonzero(r.score >= Stuck().score_threshold)[0])
253

Reference: the flat-line check of sensor data quality control, e.g. the U.S. IOOS QARTOD manuals
(flat line test), here with a threshold learned from the series itself.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import njit

from ._base import Detector, Result, detectors


@njit(cache=True, nogil=True)
def _stuck(x, meta, warmup, tolerance):
    # meta: points seen, last value, current run of repeats, repeats seen
    n = x.shape[0]
    stat = np.full(n, np.nan)
    exp = np.full(n, np.nan)
    c, last, run, reps = meta[0], meta[1], meta[2], meta[3]
    for i in range(n):
        xi = x[i]
        if c == 0:
            last, c = xi, 1.0
            continue
        same = abs(xi - last) <= tolerance * max(abs(xi), abs(last))
        run = run + 1.0 if same else 0.0
        if c >= warmup:
            p = (reps + 1.0) / (c + 1.0)  # c - 1 comparisons so far: (reps + 1) / ((c - 1) + 2)
            # a run as old as the series is a constant series, not a sensor that got stuck
            stat[i] = 0.0 if run >= c - 1.0 else run * math.log10(1.0 / p)
            exp[i] = last
        if same:
            reps += 1.0
        last = xi
        c += 1.0
    meta[0], meta[1], meta[2], meta[3] = c, last, run, reps
    return stat, exp


@detectors.register("stuck")
class Stuck(Detector):
    name = "stuck"
    feature = "repeats"
    statistic = "decades_of_improbability"

    def __init__(self, *, threshold: float = 6.0, warmup: int = 30, tolerance: float = 0.0, seed: int = 0) -> None:
        super().__init__(seed=seed)
        if threshold <= 0 or warmup < 2 or not 0.0 <= tolerance < 1.0:
            raise ValueError("stuck needs threshold > 0, warmup >= 2 and 0 <= tolerance < 1")
        self.threshold, self.warmup, self.tolerance = threshold, warmup, tolerance

    def new_state(self):
        return {"meta": np.zeros(4)}

    def _run(self, state, x):
        stat, exp = _stuck(x, state["meta"], self.warmup, self.tolerance)
        return Result(self._score_of(stat), stat, exp)

    def _score_of(self, statistic):
        # the threshold in decades maps to the score of a 4-sigma z, so score_threshold is that score
        return super()._score_of(np.asarray(statistic) / self.threshold * 4.0)

    def describe(self, facts: dict[str, Any], observed: float) -> str:
        decades = facts.get("value") or 0.0
        return (f"value {observed:.6g} has repeated unchanged where a change was expected: a run that long has odds "
                f"of 1 in 10^{decades:.1f} on this series (threshold 1 in 10^{self.threshold:g}), {self.name}")

    @property
    def warmup_points(self) -> int:
        return self.warmup
