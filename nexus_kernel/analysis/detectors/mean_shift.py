"""Mean shift: a fast EW mean against a slow one, in robust deviations (the ensemble's shift member).

``mean_shift`` scores ``(fast - slow) / scale``: the recent level has moved away from the long-run
level by that many robust deviations (``scale`` is the slow EW mean absolute deviation). ``trend``
(:mod:`.trend`) scores the EW slope of the fast mean over ``horizon`` points in the same units with the
same kernel, :func:`shift_kernel`: a steady climb that no single point gives away.

This was ``level_shift`` until the median-based :mod:`.level_shift` took that name (issue 13): it reacts
to a single spike as well as to a step, and its scale is the spread around the long-run mean, so a
season hides a step from it — as a detector of its own it missed an obvious step in a seasonal series,
but read through the ensemble's likelihood it is the shift member the NAB defaults were chosen with.

Parameters: ``fast``, ``slow`` (EW weights), ``threshold``, ``warmup``; ``horizon`` for trend.

Example
-------
>>> import numpy as np
>>> from nexus_kernel.analysis.detectors import MeanShift
>>> x = np.r_[np.random.default_rng(0).normal(size=300), np.random.default_rng(1).normal(size=50) + 6]
>>> r = MeanShift().score_learn("s", x)
>>> bool(r.score[300:310].max() > 0.999)
True

Reference: M. Basseville, I. Nikiforov, *Detection of Abrupt Changes*, 1993, ch. 2.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._base import Detector, Result, detectors
from ._kernels import EPS


@njit(cache=True, nogil=True)
def shift_kernel(x, meta, fast, slow, warmup, horizon, want_trend):
    # meta: count, fast mean, slow mean, slow mean |dev|, slope
    n = x.shape[0]
    stat = np.full(n, np.nan)
    exp = np.full(n, np.nan)
    c, f, s, d, b = meta[0], meta[1], meta[2], meta[3], meta[4]
    for i in range(n):
        xi = x[i]
        if c == 0:
            f, s, d, b = xi, xi, 0.0, 0.0
            c = 1.0
            continue
        af = max(fast, 1.0 / (c + 1.0))
        f_new = f + af * (xi - f)
        b = b + fast * ((f_new - f) - b)
        f = f_new
        scale = 1.2533 * d + EPS + 1e-6 * abs(s)
        if c >= warmup:
            stat[i] = (b * horizon / scale) if want_trend else (f - s) / scale
            exp[i] = s
        a = max(slow, 1.0 / (c + 1.0))
        dev = xi - s
        lim = 4.0 * scale
        if c >= warmup and abs(dev) > lim:
            dev = lim if dev > 0 else -lim
        s += a * dev
        d += a * (abs(xi - s) - d)
        c += 1.0
    meta[0], meta[1], meta[2], meta[3], meta[4] = c, f, s, d, b
    return stat, exp


@detectors.register("mean_shift")
class MeanShift(Detector):
    name = "mean_shift"
    feature = "level"
    statistic = "shift_in_deviations"
    unit = "deviations"

    def __init__(self, *, fast: float = 0.3, slow: float = 0.01, threshold: float = 5.0, warmup: int = 30,
                 seed: int = 0) -> None:
        super().__init__(seed=seed)
        self.fast, self.slow, self.threshold, self.warmup = fast, slow, threshold, warmup

    def new_state(self):
        return {"meta": np.zeros(5)}

    def _run(self, state, x):
        s, exp = shift_kernel(x, state["meta"], self.fast, self.slow, self.warmup, 1.0, False)
        return Result(self._score_of(s), s, exp)

    def describe(self, facts, observed):
        value, expected = facts.get("value"), facts.get("expected")
        if value is None or expected is None:
            return super().describe(facts, observed)
        side = "above" if value >= 0 else "below"
        return (f"value {observed:.6g}: the recent mean moved {abs(value):.1f} deviations {side} the expected level "
                f"{expected:.6g} (threshold {self.threshold:g}), {self.name}")
