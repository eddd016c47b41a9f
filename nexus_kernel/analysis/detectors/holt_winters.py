"""Holt-Winters residual: one-step-ahead error of additive Holt-Winters, in robust error scales.

The level, trend and seasonal profile update in error-correction form; the seasonal period is found
by :func:`~nexus_kernel.analysis.seasonality.find_period` after ``season_search`` points (``period`` fixes
it; no season is used when none is found). Errors beyond ``clip`` scales update the state as if they were
``clip`` away, so anomalies do not become the new normal at once.

Not the forecaster: :class:`HoltWintersResidual` (detector ``"holt_winters"``) runs the recursion with
*fixed* smoothing constants and clips what it learns from large errors — a detector must not adapt to the
anomaly it is scoring — in a compiled loop over every point. The forecaster
:class:`nexus_kernel.analysis.forecasting.HoltWinters` (forecaster ``"ets"``) *estimates* its smoothing by
least squares and chooses trend and season by AIC, refitting every so many points. Sharing the
forecaster's smoothing would refit an optimiser inside the scoring loop and let anomalies into the fit, so
they stay two classes with two names; the registry names (``"holt_winters"``, ``"ets"``) are unchanged
for saved specs.

Parameters: ``alpha``, ``beta``, ``gamma`` (smoothing of level, trend, season), ``period``,
``season_search`` (points buffered before the period is chosen — the bounded warm-up),
``threshold`` (|z| of the error), ``clip``.

Caveats: scores are 0 until ``season_search`` points have been seen.

Example
-------
>>> import numpy as np
>>> from nexus_kernel.analysis.detectors import HoltWintersResidual
>>> x = 10 + np.sin(2 * np.pi * np.arange(600) / 24); x[500] += 3
>>> r = HoltWintersResidual(season_search=200).score_learn("s", x)
>>> int(np.argmax(r.score))
500

Reference: C. C. Holt (1957), P. R. Winters (1960); Hyndman & Athanasopoulos, FPP §8.3.
"""

from __future__ import annotations


import numpy as np
from numba import njit

from ._base import Detector, Result, detectors
from ._kernels import EPS
from ..seasonality import find_period


@njit(cache=True, nogil=True)
def residual_kernel(x, season, meta, alpha, beta, gamma, clip, score):
    # meta: count, level, trend, scale(EW mean |e|), phase
    n = x.shape[0]
    p = season.shape[0]
    z = np.full(n, np.nan)
    exp = np.full(n, np.nan)
    c, lv, tr, sc, ph = meta[0], meta[1], meta[2], meta[3], int(meta[4])
    for i in range(n):
        xi = x[i]
        if c == 0:
            lv, tr, sc = xi, 0.0, 0.0
            c = 1.0
            continue
        yhat = lv + tr + season[ph]
        e = xi - yhat
        s = 1.2533 * sc + EPS + 1e-6 * abs(lv)
        if score and c > 2 * p + 10:
            z[i] = e / s
            exp[i] = yhat
        if c > 20 and abs(e) > clip * s:
            e = clip * s if e > 0 else -clip * s
        a = max(alpha, 1.0 / (c + 1.0))
        lv = lv + tr + a * e
        tr = tr + a * beta * e
        season[ph] += gamma * (1.0 - a) * e
        sc += max(0.01, 1.0 / c) * (abs(e) - sc)
        ph = (ph + 1) % p
        c += 1.0
    meta[0], meta[1], meta[2], meta[3], meta[4] = c, lv, tr, sc, ph
    return z, exp


class SeasonalWarmup(Detector):
    """Shared warm-up: buffer ``season_search`` points, find the period, replay the buffer.

    A short, clearly seasonal series need not wait that long: at ``early_search`` points (when set) a
    period of at most a third of them (three seasons seen) whose seasonal strength is at least
    ``EARLY_STRENGTH`` is taken at once; otherwise the search waits for ``season_search`` points.
    """

    season_search: int  # set by each subclass's __init__
    period: int | None  # a fixed period, or None to find one
    early_search: int | None = None
    EARLY_STRENGTH = 0.6

    @property
    def warmup_points(self) -> int:
        if self.period:
            return 2 * self.period + 11
        return min(self.early_search or self.season_search, self.season_search)

    def _early_period(self, buf: np.ndarray) -> int | None:
        if self.period or not self.early_search or len(buf) != self.early_search:
            return None
        p, strength = find_period(buf, max_period=len(buf) // 3)
        return p if p and strength >= self.EARLY_STRENGTH else None

    def new_state(self):
        return {"buf": np.zeros(0), "season": None, "meta": np.zeros(5)}

    def _kernel(self, x, state, score):  # pragma: no cover - abstract
        raise NotImplementedError

    def _run(self, state, x):
        n = len(x)
        z, exp = np.full(n, np.nan), np.full(n, np.nan)
        start = 0
        if state["season"] is None:
            early = (self.early_search if self.early_search and len(state["buf"]) < self.early_search < self.season_search
                     else None)
            take = min(n, (early or self.season_search) - len(state["buf"]))
            state["buf"] = np.r_[state["buf"], x[:take]]
            start = take
            found = self._early_period(state["buf"])
            if found is None and start < n and early:  # not seasonal enough yet: keep buffering
                more = min(n - start, self.season_search - len(state["buf"]))
                state["buf"] = np.r_[state["buf"], x[start:start + more]]
                start += more
            if found or len(state["buf"]) >= self.season_search:
                p = found or self.period or find_period(state["buf"])[0] or 1
                state["season"] = np.zeros(int(p))
                state["period"] = int(p)
                self._kernel(state["buf"], state, False)
                state["buf"] = np.zeros(0)
        if start < n and state["season"] is not None:
            z[start:], exp[start:] = self._kernel(x[start:], state, True)
        return Result(self._score_of(z), z, exp)

    def facts(self, res, i, since):
        out = super().facts(res, i, since)
        return out


@detectors.register("holt_winters")
class HoltWintersResidual(SeasonalWarmup):
    name = "holt_winters"
    feature = "holt_winters_residual"
    statistic = "z"
    unit = "sigma"

    def __init__(self, *, alpha: float = 0.1, beta: float = 0.01, gamma: float = 0.2, period: int | None = None,
                 season_search: int = 600, threshold: float = 5.0, clip: float = 3.0, seed: int = 0) -> None:
        super().__init__(seed=seed)
        self.alpha, self.beta, self.gamma, self.period = alpha, beta, gamma, period
        self.season_search, self.threshold, self.clip = season_search, threshold, clip

    def _kernel(self, x, state, score):
        return residual_kernel(x, state["season"], state["meta"], self.alpha, self.beta, self.gamma, self.clip, score)
