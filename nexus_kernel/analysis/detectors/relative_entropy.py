"""Relative entropy: how far the histogram of the last ``window`` values is from the long-run one.

After Wang et al.: values are binned over the range seen in the first ``warmup`` points (``bins``
bins, plus one open bin below and one above); the short histogram counts the last ``window`` values
exactly (a ring buffer); the long-run histogram is the running average of one-hot bins of every value
so far, exponentially weighted (``decay`` per value) once ``1/decay`` values are in. The statistic is the Kullback-Leibler divergence ``KL(short || long)`` in nats — a change in
the *distribution* of values, which a point detector misses: spikes that come more often, a daily
cycle that loses its peaks, a noisy stretch with an unchanged mean.

Parameters: ``bins``, ``window``, ``decay`` (long-run forgetting per point), ``warmup``,
``threshold`` (nats; the ensemble reads the statistic through its likelihood).

Caveats: the long run includes the recent values (as in the NAB version tested; a reference disjoint
from the window scored 3 points lower in the ensemble), so a new regime is partly absorbed as it fills
the window: the statistic climbs over ``window`` points and a step from a flat line scores moderately
(about 0.4 after 30 points) rather than at once — pair it with a point detector, as the ensemble
does. A single spike barely moves it. The statistic needs ``window`` points after the warm-up before it scores; the range is
frozen after the warm-up, so a series drifting far beyond it piles up in the open bins (still a
change, and it is scored as one).

Example
-------
>>> import numpy as np
>>> from nexus_kernel.analysis.detectors import RelativeEntropy
>>> rng = np.random.default_rng(0)
>>> x = np.r_[rng.normal(size=1000), rng.normal(size=200) * 4]
>>> r = RelativeEntropy().score_learn("s", x)
>>> bool(np.nanmax(r.statistic[1000:1100]) > 3 * np.nanmax(r.statistic[400:1000]))
True

Reference: C. Wang, K. Viswanathan, L. Choudur, V. Talwar, W. Satterfield, K. Schwan, "Statistical
techniques for online anomaly detection in data centers", IFIP/IEEE IM 2011 (the Relative Entropy
detector of NAB, ``nab/detectors/relative_entropy``).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ._base import Detector, Result, detectors
from ._base import expected_phrase as _expected


@njit(cache=True, nogil=True)
def _relent(x, short, long, ring, meta, window, warmup, decay):
    # meta: count, lo, hi, points binned; short: counts of the ring; long: EW probabilities
    n = x.shape[0]
    nb = short.shape[0]
    bins = nb - 2
    stat = np.full(n, np.nan)
    c, lo, hi, k = meta[0], meta[1], meta[2], int(meta[3])
    for i in range(n):
        xi = x[i]
        if c < warmup:
            if c == 0 or xi < lo:
                lo = xi
            if c == 0 or xi > hi:
                hi = xi
            c += 1.0
            continue
        step = (hi - lo) / bins
        if step <= 0.0:
            step = 1e-9 + 1e-6 * abs(hi)
        q = (xi - lo) / step
        b = int(math.floor(q)) + 1 if q < nb else nb - 1
        if b < 0:
            b = 0
        if b > nb - 1:
            b = nb - 1
        if b == nb - 1 and xi <= hi:  # the maximum itself belongs to the last inner bin
            b = nb - 2
        if k >= window:
            short[ring[k % window]] -= 1.0
        ring[k % window] = b
        short[b] += 1.0
        k += 1
        if k >= window:
            kl = 0.0
            for j in range(nb):
                if short[j] > 0.0:
                    p = short[j] / window
                    kl += p * math.log(p / (long[j] + 1e-4))
            stat[i] = kl
        a = max(decay, 1.0 / k)  # a plain average until 1/decay values are in
        for j in range(nb):
            long[j] *= 1.0 - a
        long[b] += a
        c += 1.0
    meta[0], meta[1], meta[2], meta[3] = c, lo, hi, k
    return stat


@detectors.register("relative_entropy")
class RelativeEntropy(Detector):
    name = "relative_entropy"
    feature = "value_distribution"
    statistic = "kl_divergence"

    def __init__(self, *, bins: int = 10, window: int = 50, decay: float = 0.002, warmup: int = 150,
                 threshold: float = 1.0, seed: int = 0) -> None:
        super().__init__(seed=seed)
        if bins < 2 or window < 2 or warmup < 2 or not 0.0 < decay < 1.0:
            raise ValueError("relative_entropy needs bins >= 2, window >= 2, warmup >= 2, 0 < decay < 1")
        self.bins, self.window, self.decay, self.warmup, self.threshold = bins, window, decay, warmup, threshold

    def new_state(self):
        nb = self.bins + 2
        return {"short": np.zeros(nb), "long": np.zeros(nb), "ring": np.zeros(self.window, dtype=np.int64),
                "meta": np.zeros(4)}

    def _score_of(self, statistic):
        # a divergence of ``threshold`` nats maps to 0.5; 0 nats to 0
        s = np.maximum(np.asarray(statistic, dtype=np.float64), 0.0)
        s = np.where(np.isnan(s), 0.0, s)  # (np.nan_to_num cost more than the rest, per micro-batch)
        return 1.0 - np.exp(-s * math.log(2.0) / self.threshold)

    def _run(self, state, x):
        s = _relent(x, state["short"], state["long"], state["ring"], state["meta"], self.window, self.warmup,
                    self.decay)
        return Result(self._score_of(s), s, np.full(len(x), np.nan))

    @property
    def warmup_points(self) -> int:
        return self.warmup + self.window

    def describe(self, facts, observed):
        kl = facts.get("value") or 0.0
        return (f"value {observed:.6g}{_expected(facts)}: the distribution of the last {self.window} values "
                f"differs from this series' usual "
                f"by {kl:.2f} nats (threshold {self.threshold:g}), {self.name}")
