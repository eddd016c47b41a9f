"""Level shift: the median of the last ``window`` points against the median of the ``window`` before.

``level_shift`` scores how far ``median(recent) - median(before)`` is from its usual value, in its own
standard deviations on this series (EW mean and variance, weight ``slow``; a shift beyond 5 of them is
learned as if it were 5, so a step does not become normal at once). Calibrating the shift on its own
history makes the detector scale-free: a smooth season or trend moves the two medians apart a little
all the time, which widens the usual spread, and only a move well beyond it scores; a single spike
moves neither median. A step scores from about ``window / 2`` to ``window`` points after it, then the
two windows agree again: one short run of flags per shift.

The older fast-against-slow EW mean detector is :mod:`.mean_shift` (``mean_shift``), the ensemble's member.

Parameters: ``window`` (points in each median), ``slow`` (EW weight of the calibration),
``threshold`` (sigma of the shift), ``warmup`` (shifts seen before scoring; the first score comes
after ``2 * window - 1 + warmup`` points).

Caveats: on a strongly seasonal series whose cycle moves the level by much more than the step within
``window`` points, the step is hidden in the usual spread (the ``seasonal`` member sees it); a change
of the noise's spread also moves the medians apart, more often, and can score.

Example
-------
>>> import numpy as np
>>> from nexus_kernel.analysis.detectors import LevelShift
>>> x = np.r_[np.random.default_rng(0).normal(size=300), np.random.default_rng(1).normal(size=50) + 6]
>>> r = LevelShift().score_learn("s", x)
>>> bool(r.score[300:310].max() > 0.999), bool(r.score[:300].max() < LevelShift().score_threshold)
(True, True)

Reference: M. Basseville, I. Nikiforov, *Detection of Abrupt Changes*, 1993, ch. 2; the difference-based
noise scale: J. von Neumann, "Distribution of the ratio of the mean square successive difference to the
variance", Ann. Math. Stat. 12 (1941).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ._base import Detector, Result, detectors
from ._kernels import EPS


@njit(cache=True, nogil=True)
def median_shift_kernel(x, ring, meta, slow, warmup):
    # ring: the last 2 * window values; meta: values seen, ring position, shifts seen, EW mean and
    # variance of the shift, last value
    n = x.shape[0]
    w2 = ring.shape[0]
    w = w2 // 2
    stat = np.full(n, np.nan)
    exp = np.full(n, np.nan)
    c, pos, k, m, v, last = meta[0], int(meta[1]), meta[2], meta[3], meta[4], meta[5]
    recent = np.empty(w)
    before = np.empty(w)
    for i in range(n):
        xi = x[i]
        if c >= w2 - 1:
            # recent: the newest w - 1 stored values and this one; before: the w values ahead of them
            for j in range(w - 1):
                recent[j] = ring[(pos - (w - 1) + j) % w2]
            recent[w - 1] = xi
            for j in range(w):
                before[j] = ring[(pos - (2 * w - 1) + j) % w2]
            mb = np.median(before)
            r = np.median(recent) - mb
            sd = math.sqrt(v) + EPS + 1e-6 * abs(mb)
            if k >= warmup:
                stat[i] = (r - m) / sd
                exp[i] = mb + m
                if abs(r - m) > 5.0 * sd:  # an anomaly must not become the new normal at once
                    r = m + (5.0 * sd if r > m else -5.0 * sd)
            a = max(slow, 1.0 / (k + 1.0))
            d = r - m
            m += a * d
            v = (1.0 - a) * (v + a * d * d)
            k += 1.0
        ring[pos] = xi
        pos = (pos + 1) % w2
        last = xi
        c += 1.0
    meta[0], meta[1], meta[2], meta[3], meta[4], meta[5] = c, pos, k, m, v, last
    return stat, exp


@detectors.register("level_shift")
class LevelShift(Detector):
    name = "level_shift"
    feature = "level"
    statistic = "shift_in_sigma"
    unit = "sigma"

    def __init__(self, *, window: int = 8, slow: float = 0.01, threshold: float = 5.0, warmup: int = 30,
                 seed: int = 0) -> None:
        super().__init__(seed=seed)
        if window < 2 or not 0 < slow <= 1 or warmup < 2:
            raise ValueError("level_shift needs window >= 2, 0 < slow <= 1 and warmup >= 2")
        self.window, self.slow, self.threshold, self.warmup = window, slow, threshold, warmup

    def new_state(self):
        return {"ring": np.zeros(2 * self.window), "meta": np.zeros(6)}

    def _run(self, state, x):
        s, exp = median_shift_kernel(x, state["ring"], state["meta"], self.slow, self.warmup)
        return Result(self._score_of(s), s, exp)

    def _score_of(self, statistic):
        # the threshold maps to the score of a 5-sigma z, as for the other members
        return super()._score_of(np.asarray(statistic) / self.threshold * 5.0)

    @property
    def warmup_points(self) -> int:
        return 2 * self.window - 1 + self.warmup

    def describe(self, facts, observed):
        value, expected = facts.get("value"), facts.get("expected")
        if value is None or expected is None:
            return super().describe(facts, observed)
        side = "above" if value >= 0 else "below"
        return (f"value {observed:.6g}: the median of the last {self.window} points moved {abs(value):.1f} sigma "
                f"{side} the expected level {expected:.6g} (threshold {self.threshold:g} sigma), {self.name}")
