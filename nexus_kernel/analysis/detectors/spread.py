"""Spread: the recent spread of the values against their long-run spread (a change of variance).

``spread`` scores ``short / long``: the fast EW mean absolute deviation from the long-run level over the
slow one, the factor by which the noise has grown (1 while it holds). A noise that grows fivefold reads
about 5 within a handful of points, while the level and every single value stay where they were — point
detectors adapt their own scale to it, and a regime model needs several points to tell it from a lone
outlier.

Parameters: ``fast``, ``slow`` (EW weights of the short and long spread; the level moves at ``slow``),
``threshold`` (the factor), ``clip`` (what the long-run level and spread learn from a point is clipped at
``clip`` long-run deviations, so a burst is not learned as the new normal at once), ``warmup``.

Caveats: a single far point moves the short spread too (a 12-sigma spike reads about 3 for a point or two);
a season that the level does not follow widens both spreads alike, so the factor stays near 1 but a stop
of the cycle reads as a *drop* (below 1, which never passes the threshold). A level shift reads as a spread
until the level catches up (``slow``); the ensemble reads it through its likelihood, next to members
that see shifts.

Not an ensemble member: offered to the NAB fold procedure (``bench/_nab_cv.py``) as one more member whose
weight it chooses, the cross-validated standard score fell from 73.37 to 72.75 (low-FP rose 46.14 ->
47.95, low-FN fell 80.64 -> 80.27), and as a direct member (first past its threshold, an alarm) it fell to
68.75 at a threshold of 3 and 61.27 at 4: real series change their spread often. On ``bench alarms`` at
weight 1 it added no false alarm and no recall (variance changes 0.8 of 15). Use it on its own where a
change of variance is what matters: ``nk.detect(frame, "spread")``.

Example
-------
>>> import numpy as np
>>> from nexus_kernel.analysis.detectors import Spread
>>> x = np.r_[np.random.default_rng(0).normal(size=400), np.random.default_rng(1).normal(size=60) * 5]
>>> r = Spread().score_learn("s", x)
>>> bool(np.nanmax(r.statistic[400:415]) > 3.0), bool(np.nanmax(r.statistic[100:400]) < 3.0)
(True, True)

Reference: M. Basseville, I. Nikiforov, *Detection of Abrupt Changes*, 1993, §2.2 (changes in variance).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._base import Detector, Result, detectors
from ._kernels import EPS


@njit(cache=True, nogil=True)
def _spread(x, meta, fast, slow, clip, warmup):
    # meta: count, level, long mean |dev|, short mean |dev|
    n = x.shape[0]
    stat = np.full(n, np.nan)
    exp = np.full(n, np.nan)
    c, lv, lg, sh = meta[0], meta[1], meta[2], meta[3]
    for i in range(n):
        xi = x[i]
        if c == 0:
            lv, lg, sh = xi, 0.0, 0.0
            c = 1.0
            continue
        dev = abs(xi - lv)
        sh += max(fast, 1.0 / (c + 1.0)) * (dev - sh)
        base = lg + EPS + 1e-6 * abs(lv)
        if c >= warmup:
            stat[i] = sh / base
            exp[i] = lv
        a = max(slow, 1.0 / (c + 1.0))
        e = xi - lv
        lim = clip * 1.2533 * base
        if c >= warmup and abs(e) > lim:
            e = lim if e > 0 else -lim
        lv += a * e
        lg += a * (min(dev, lim) - lg) if c >= warmup else a * (dev - lg)
        c += 1.0
    meta[0], meta[1], meta[2], meta[3] = c, lv, lg, sh
    return stat, exp


@detectors.register("spread")
class Spread(Detector):
    name = "spread"
    feature = "spread"
    statistic = "spread_factor"
    unit = "times"

    def __init__(self, *, fast: float = 0.2, slow: float = 0.01, threshold: float = 3.0, clip: float = 4.0,
                 warmup: int = 30, seed: int = 0) -> None:
        super().__init__(seed=seed)
        if not (0 < slow < fast <= 1 and threshold > 1 and clip > 0):
            raise ValueError("spread needs 0 < slow < fast <= 1, threshold > 1 and clip > 0")
        self.fast, self.slow, self.threshold, self.clip, self.warmup = fast, slow, threshold, clip, warmup

    def new_state(self):
        return {"meta": np.zeros(4)}

    def _score_of(self, statistic):
        s = np.asarray(statistic, dtype=np.float64)
        return super()._score_of(np.where(np.isfinite(s), np.maximum(s - 1.0, 0.0) * 5.0 / (self.threshold - 1.0),
                                          np.nan))

    def _run(self, state, x):
        s, exp = _spread(x, state["meta"], self.fast, self.slow, self.clip, self.warmup)
        return Result(self._score_of(s), s, exp)

    def describe(self, facts, observed):
        value = facts.get("value")
        if value is None:
            return super().describe(facts, observed)
        return (f"value {observed:.6g}: the recent spread is {value:.1f} times the series' usual spread "
                f"(threshold {self.threshold:g} times), {self.name}")
