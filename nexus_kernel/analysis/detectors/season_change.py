"""Season change: the recent values move *with* or *against* the series' seasonal cycle, a matched filter.

A season that stops (a machine's duty cycle halts, a daily pattern flattens) leaves every single value
plausible — each sits inside the range the series always had — so point detectors see nothing. What
changed is the *shape*: over the last season the residuals from the seasonal profile correlate with the
profile itself. With ``e`` the error of ``level + profile[phase]`` and ``s`` the profile at that phase,
the statistic over the last ``period`` points is

    z = Σ e·s / (σ · sqrt(Σ s²))

which is a standard normal while the cycle holds (each error is fresh noise, independent of the
profile), about ``-sqrt(Σ s²) / σ`` when the cycle stops (``-17.7`` for a cycle of amplitude 5σ over 25
points, ``-12`` already half a season in) and positive when it grows. A level shift that spans the
whole season does not move it (the profile sums to zero over a season).

The period is found as the seasonal detectors find it (:class:`~.holt_winters.SeasonalWarmup`: at
``early_search`` points when three clear seasons fit, else at ``season_search``), then refined to the
nearby period whose seasons are most alike (:func:`refined_period`: the finder can land a point or two
off a long period, and the phase then drifts through the profile). A period found early is refined once
more when ``season_search`` points are in: three seasons place a period of 40 to 50 a point or two off on
most noise draws (44 for 46), and the profile then chases the cycle through every season, leaving part of it
in the residual; on ``bench alarms`` BOCPD read that residual as changes of regime (precision 0.767 -> 0.806
at the same recall 0.976, seed 7; NAB unchanged: its only early period, nyc_taxi's 48, stands). The
detector speaks only when the
buffer holds at least three whole seasons that make a clear cycle (seasonal strength at least
``min_strength``) and repeat it (every season but one in six correlates with their median profile at
least ``min_likeness``, :func:`season_likeness`: a stuck stretch inside one season of the buffer left the
cycle of a simulator series unseen, and BOCPD read that cycle as changes of regime: 15 false alarms of
``bench alarms`` on one series); on any other series there is no cycle to stop and the statistic stays 0. The profile, level and error scale start from a classical decomposition of the
buffered seasons (a profile learned from zeros leaves the scale inflated by the cycle's own swing), then
learn online from errors clipped at ``clip`` scales, the profile at ``gamma`` (0.5, as the seasonal
member's: a slower profile could not follow a small phase drift).

While the statistic is past ``threshold`` the profile is *held* (not learned) for up to ``hold``
seasons, so a stopped cycle is not learned as the new one and its return does not read as a change
too; after that it learns again (a cycle that really changed becomes the new normal). The statistic is
divided by the square root of its own mean square (``along``, at least 1, each point's share clipped at
``clip`` squared), so a series whose seasons vary more than noise does (a daily cycle that differs at
weekends) needs a larger departure.

Parameters: ``alpha`` (level), ``gamma`` (profile), ``period`` (``None`` = found), ``season_search``,
``early_search``, ``min_strength``, ``min_likeness``, ``threshold`` (|z|), ``clip``, ``hold`` (seasons),
``along``.

Caveats: it scores from the point its period is found (``warmup_points``), and never on a series whose
buffer shows no clear, repeating season, even if one appears later; a stop shows within one season, the
sooner the larger the cycle against the noise.

In the default ensemble it speaks directly, when it first passes its threshold (see
:class:`~.ensemble.Ensemble`, ``direct``): there, on the NAB folds, it scored 73.09 -> 73.16
cross-validated standard and on ``bench alarms`` caught 11 of 12 broken seasons (9 before).

Example
-------
>>> import numpy as np
>>> from nexus_kernel.analysis.detectors import SeasonChange
>>> i = np.arange(450); x = 20 + 5 * np.sin(2 * np.pi * i / 25) + np.random.default_rng(0).normal(size=450)
>>> x[300:] = 20 + np.random.default_rng(1).normal(size=150)   # the cycle stops at 300
>>> r = SeasonChange().score_learn("s", x)
>>> int(np.flatnonzero(np.abs(r.statistic) >= 5.0)[0]) - 300 < 25   # within one season
True
>>> bool(np.nanmax(np.abs(r.statistic[150:300])) < 5.0)
True

Reference: the matched filter (D. O. North, 1943) applied to the seasonal component of a classical
decomposition (Hyndman & Athanasopoulos, FPP §3.4).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import njit

from ..seasonality import seasonal_strength
from ._base import detectors
from ._kernels import EPS
from .holt_winters import SeasonalWarmup


@njit(cache=True, nogil=True)
def _season_change(x, season, meta, ring_es, ring_ss, alpha, gamma, clip, threshold, hold, along, score):
    # meta: count, level, scale (EW mean |e|), phase, ring position, Σ e·s, Σ s², points in the ring,
    #       mean square of the filter (its own spread, >= 1), points the profile has been held
    n = x.shape[0]
    p = season.shape[0]
    stat = np.full(n, np.nan)
    exp = np.full(n, np.nan)
    offset = np.zeros(n)  # the profile's value at each point: what the cycle adds to the level
    c, lv, sc, ph = meta[0], meta[1], meta[2], int(meta[3])
    pos, ses, sss, filled = int(meta[4]), meta[5], meta[6], meta[7]
    ms, held = meta[8], meta[9]
    for i in range(n):
        s = season[ph]
        offset[i] = s
        yhat = lv + s
        e = x[i] - yhat
        sd = 1.2533 * sc + EPS + 1e-6 * abs(lv)
        ses += e * s - ring_es[pos]
        sss += s * s - ring_ss[pos]
        ring_es[pos] = e * s
        ring_ss[pos] = s * s
        pos = (pos + 1) % p
        if pos == 0:  # the running sums drift; once a season, sum the ring afresh
            ses, sss = ring_es.sum(), ring_ss.sum()
        filled = min(filled + 1.0, float(p))
        z = 0.0
        if filled >= p and sss > 0.0:
            raw = ses / (sd * math.sqrt(sss))
            z = raw / math.sqrt(ms)
            ms = max(1.0, ms + along * (min(raw * raw, clip * clip) - ms))
            if score:
                stat[i] = z
                exp[i] = yhat
        if abs(e) > clip * sd:
            e = clip * sd if e > 0 else -clip * sd
        lv += alpha * e
        # while the filter says the cycle changed, the profile is held (an anomaly is not learned as the
        # new cycle, so its end does not alarm again) — for at most ``hold`` points, then it learns again
        held = held + 1.0 if abs(z) >= threshold else 0.0
        if held == 0.0 or held > hold:
            season[ph] += gamma * (1.0 - alpha) * e
            sc += max(0.01, 1.0 / c) * (abs(e) - sc)
        ph = (ph + 1) % p
        c += 1.0
    meta[0], meta[1], meta[2], meta[3] = c, lv, sc, ph
    meta[4], meta[5], meta[6], meta[7], meta[8], meta[9] = pos, ses, sss, filled, ms, held
    return stat, exp, offset


def decomposed_start(buf: np.ndarray, period: int) -> tuple[np.ndarray, float, float]:
    """Profile (zero mean), level and mean absolute remainder of ``buf`` by a classical decomposition
    over its whole seasons (phase 0 at ``buf[0]``); medians, so one odd season does not set them."""
    full = (len(buf) // period) * period
    cycles = buf[:full].reshape(-1, period)
    means = cycles.mean(axis=1, keepdims=True)
    profile = np.median(cycles - means, axis=0)
    profile -= profile.mean()
    remainder = cycles - means - profile
    return profile, float(np.median(means)), float(np.mean(np.abs(remainder)))


def season_likeness(buf: np.ndarray, period: int) -> float:
    """How alike the whole seasons of ``buf`` are: the lowest correlation of one season (less its mean)
    with their median profile, the lowest one in six seasons left out. A cycle that holds repeats in every season; a pattern that only averages
    out to one (a strength found in a few seasons of a noisy or wandering series) does not."""
    full = (len(buf) // period) * period
    cycles = buf[:full].reshape(-1, period)
    cycles = cycles - cycles.mean(axis=1, keepdims=True)
    profile = np.median(cycles, axis=0)
    norms = np.linalg.norm(cycles, axis=1) * np.linalg.norm(profile)
    if len(cycles) < 2 or norms.min() <= 0.0:
        return 0.0
    # one season in six may be odd (an anomaly inside the buffer: a stuck stretch, a shift) without
    # hiding a cycle that every other season repeats
    return float(np.sort((cycles @ profile) / norms)[len(cycles) // 6])


def without_cycle(state: dict[str, Any], x: np.ndarray) -> np.ndarray:
    """``x`` less the cycle's part that the filter's run on ``x`` left in ``state`` (taken out of it); ``x``
    as it is where the filter found no cycle or has not found its period yet."""
    offset = state.pop("offset", None)
    out = x.copy()
    if offset is not None:
        out[len(x) - len(offset):] -= offset
    return out


def refined_period(buf: np.ndarray, period: int, spread: int = 3) -> int:
    """The period within ``spread`` points of ``period`` (and at most half of ``buf``) whose seasons are
    the most alike (highest seasonal strength). The period finder can land a point or three off a long
    period; the seasonal member's fast profile follows the phase drift that causes, a slow profile and a
    filter over one season cannot."""
    candidates = [q for q in range(max(2, period - spread), period + spread + 1) if 2 * q <= len(buf)]
    if not candidates:
        return period
    return max(candidates, key=lambda q: (seasonal_strength(buf, q), -abs(q - period)))


@detectors.register("season_change")
class SeasonChange(SeasonalWarmup):
    name = "season_change"
    feature = "seasonal_cycle"
    statistic = "z"
    unit = "sigma"

    def __init__(self, *, alpha: float = 0.02, gamma: float = 0.5, period: int | None = None,
                 season_search: int = 900, early_search: int | None = 150, min_strength: float = 0.6,
                 min_likeness: float = 0.8,
                 threshold: float = 5.0, clip: float = 3.0, hold: float = 3.0, along: float = 0.002,
                 seed: int = 0) -> None:
        super().__init__(seed=seed)
        if not (0 < alpha < 1 and 0 < gamma < 1 and threshold > 0 and clip > 0 and 0 <= min_strength <= 1):
            raise ValueError("season_change needs 0 < alpha, gamma < 1, threshold > 0, clip > 0, 0 <= min_strength <= 1")
        self.alpha, self.gamma, self.period = alpha, gamma, period
        self.season_search, self.early_search = season_search, early_search
        self.min_strength, self.threshold, self.clip = min_strength, threshold, clip
        self.hold, self.along, self.min_likeness = hold, along, min_likeness

    def _kernel(self, x, state, score):
        if "ring_es" not in state:  # the replay of the buffer: start from its decomposition, or stay silent
            p = len(state["season"])
            if p >= 2 and not self.period:
                p = refined_period(x, p)
                state["season"], state["period"] = np.zeros(p), p
            clear = (p >= 2 and len(x) >= 3 * p and seasonal_strength(x, p) >= self.min_strength
                     and season_likeness(x, p) >= self.min_likeness)
            self._start(x, state, clear)
            if clear and not self.period and len(x) < self.season_search:
                state["recheck"] = x.copy()
        recheck = state.get("recheck")
        if not score or recheck is None:
            return self._filter(x, state, score)
        # a period found early (from ``early_search`` points) is refined once more on ``season_search``
        # points: three seasons place a period of 40 to 50 a point or two off on most noise draws, and the
        # filter's profile then chases the cycle through every season (the residual keeps part of it, which
        # BOCPD read as changes of regime); whether the buffer shows a cycle was decided early and stands
        need = self.season_search - len(recheck)
        state["recheck"] = np.r_[recheck, x[:need]]
        if len(state["recheck"]) < self.season_search:
            return self._filter(x, state, score)
        buf = state.pop("recheck")
        p = refined_period(buf, state["period"])
        if p == state["period"]:
            return self._filter(x, state, score)
        head_stat, head_exp = self._filter(x[:need], state, score)
        head_offset = state.pop("offset")  # a filter that looks twice found a cycle: it always leaves offsets
        state["season"], state["period"] = np.zeros(p), p
        self._start(buf, state, state["active"])
        self._filter(buf, state, False)
        tail_stat, tail_exp = self._filter(x[need:], state, score)
        state["offset"] = np.r_[head_offset, state.pop("offset")]
        return np.r_[head_stat, tail_stat], np.r_[head_exp, tail_exp]

    @staticmethod
    def _start(x, state, clear):
        """The filter's start from the decomposition of the buffer ``x`` (silent when it shows no ``clear``
        cycle)."""
        p = len(state["season"])
        state["ring_es"], state["ring_ss"] = np.zeros(max(p, 1)), np.zeros(max(p, 1))
        state["active"] = clear
        if clear:
            profile, level, spread = decomposed_start(x, p)
            state["season"][:] = profile
            state["meta"] = np.array([1.0, level, spread, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0])

    def _filter(self, x, state, score):
        if not state["active"]:
            n = len(x)
            return (np.zeros(n) if score else np.full(n, np.nan)), np.full(n, np.nan)
        stat, exp, offset = _season_change(x, state["season"], state["meta"], state["ring_es"], state["ring_ss"],
                                           self.alpha, self.gamma, self.clip, self.threshold,
                                           self.hold * len(state["season"]), self.along, score)
        if score:
            state["offset"] = offset
        return stat, exp

    def deseasonalize(self, state: dict[str, Any], x: np.ndarray) -> np.ndarray:
        """Run on the finite values ``x`` (``state`` from :meth:`new_state`, kept by the caller) and return
        them less the cycle's part — what the profile adds to the level at each point; nothing while the
        period is being found or when the series has no clear, repeating season. For a detector that
        assumes a level without a cycle (BOCPD): the cycle is not a change."""
        state.pop("offset", None)
        self._run(state, x)
        return without_cycle(state, x)

    def describe(self, facts: dict[str, Any], observed: float) -> str:
        z = facts.get("value") or 0.0
        how = "against" if z < 0 else "with"
        what = "the cycle weakened or stopped" if z < 0 else "the cycle grew"
        expected = facts.get("expected")
        exp = "" if expected is None else f", the cycle expected {expected:.6g} here"
        return (f"value {observed:.6g}: over the last season the values moved {how} the seasonal cycle by "
                f"{abs(z):.1f} sigma, {what} (threshold {self.threshold:g} sigma){exp}, {self.name}")
