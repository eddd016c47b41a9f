"""Ensemble: member detectors turned into one calibrated anomaly likelihood in [0, 1].

For each member, the excess ``a = min(|statistic| / member.threshold, cap)`` is smoothed over the last
``short`` points and compared with its own long-run distribution (EW mean and deviation, weight
``along``) — Numenta's *anomaly likelihood* idea: a z of "how unusual is this member's recent
unusualness for this series". The ensemble statistic is the largest member z; the score is its
two-sided Gaussian calibration. After an alarm (statistic ≥ ``threshold``) the series is quiet for
``refractory`` points unless the statistic reaches ``reopen`` × threshold (default: never) — one
incident, one alarm. NAB charges every alarmed row outside a window and credits only the first inside
one, so a strict quiet period scored better than letting stronger evidence break through (62.8 vs 59.7
standard on the NAB subset with the same members).

The reason names the member that drove the alarm, its own statistic and expected value.

Parameters: ``members`` (``{name: params}`` from the detector registry), ``along``, ``short``,
``warmup``, ``cap``, ``threshold``, ``refractory``, ``reopen``, ``confirm``, ``confirms``, ``weights`` (``{name: factor}`` on a
member's likelihood z before the max; 1 when absent), ``calibration``: ``"ewm"`` (default, above)
or ``"numenta"`` — nupic's exact anomaly likelihood per member (mean of the last ``short`` raw
scores, ``a / cap``, against a Gaussian fitted every ``reestimate`` points to the averaged scores of
the last ``history`` points, the first ``learning`` left out, nothing scored before ``learning +
estimation``; mean and variance floors, reflected tail, red-zone filter), expressed as a z.

On the NAB subset the Numenta calibration scored well below the default with the same members:
54.8 standard at ``threshold=4.5`` (36.5 at 2.5; 55.7 with ``learning=100, estimation=50``; 55.0
with ``history=1000``) against 71.6 (71.5 since the seasonal member finds its period with
:func:`~nexus_kernel.analysis.seasonality.dominant_period`); its held-out halves were no better
(52.1 / 57.9 at 4.5) — a fixed-window Gaussian refitted every 100 points, reset-free, reacts later to a
member's drift than the exponentially weighted one, and its red-zone filter caps the second of two
extreme points.

``min_sd`` floors the deviation a member's likelihood divides by (default 0, none): a member whose
output is almost always 0 has a variance near 0, so a blip reads as a huge z (a 13% BOCPD blip on pure
noise alarmed); 0.02 removed that and scored higher on the NAB folds with the other defaults fixed
(75.53 vs 74.73 standard), but *chosen on the folds* (0/0.02/0.05/0.1 on two groups, scored on the
third) it scored 70.36, so it is not the default — and at 0.02 the stuck member at weight 0.2 no
longer flags a stuck value (it does through that near-zero variance).

``floors`` sets that floor per member, over ``min_sd``: by default BOCPD's is 0.02 (``DEFAULT_FLOORS``).
With a BOCPD floor among the knobs the procedure of ``bench/_nab_cv.py`` chooses (0/0.02/0.05/0.1 on two
groups, scored on the third), the cross-validated standard score rose from 70.65 to 73.09 (low-FP
45.81 to 46.12, low-FN 79.61 to 80.14), and every standard fold chose 0.02; the shipped members score
75.34 standard with the threshold held out (74.73 without). It removes the seed-1 noise alarm of
``tests/analysis_detect/test_obvious.py`` and, on the live stream (``bench alarms --quick``), lifts
alarm precision from 0.41 to 0.48 at the same recall. 0.05 would lift it to 0.60 and scores the same
on NAB, but then a 20-sigma spike is flagged a point late and a fivefold variance not at all on the
obvious suite: BOCPD's blip on such a point is what flags it.

``confirm`` (default 0.3) asks a member's own measure too: its likelihood counts only while its own
excess ``a`` reached ``confirm`` within the last ``short`` points. The likelihood alone reads a member's
small blip as unusual for the series when the member is usually near 0 (a BOCPD change probability of
20% on pure noise alarmed); with the member's own measure required as well, such a blip no longer
alarms, while a spike, a step or a stuck sensor reaches a third of its member's threshold at once (a
trend of 0.1 sigma a point in about 20 points). Chosen on the NAB folds (the procedure of
``bench/_nab_cv.py`` run with each value fixed; as one more knob of the procedure it scored 69.88):
cross-validated standard 73.31 (0) -> 73.37 (0.3), low-FP 44.65 -> 46.14, low-FN 80.60 -> 80.64; 0.25
and 0.4 scored 71.48 and 70.46 (the procedure's choices swing), 0.5 scored 73.88 but no longer flags the
obvious suite's stuck sensor and trend break in time. With the shipped members and only NAB's threshold
held out: 75.52 -> 75.59 standard, 59.91 -> 63.40 low-FP. On ``bench alarms``: precision 0.602 -> 0.656
at recall 0.984 (0.726 at 0.968 with 0.5; 0.885 at 0.912 with 1.0, which scores 74.69 on NAB with the
threshold held out); 0.690 with season_change's likeness check that came with it (one odd season in six
no longer hides a cycle).

``confirms`` sets that level per member, over ``confirm``: by default BOCPD's is 0.5
(``DEFAULT_CONFIRMS``). BOCPD's change probability jumps on a single point of 3.3 sigma to 0.22 (0.61 at
4 sigma), as its young runs absorb the point; those points, not changes, raised most of the remaining
false alarms of ``bench alarms``. On the NAB folds BOCPD's level scores the same anywhere from 0.3 to
0.75 (73.37 / 46.14 / 80.64 cross-validated; 1.0 costs 1.8 standard), so the live stream and the obvious
suite decide: precision 0.690 -> 0.767 at recall 0.984 -> 0.976 on ``bench alarms`` (0.816 / 0.960 at
0.6, 0.845 / 0.952 at 0.75), but from 0.6 on the obvious suite's fivefold variance (seed 0) is not
flagged within 15 points: BOCPD's 0.58 of its threshold is what flags it there.

``direct`` names members whose own statistic, when it first passes their own threshold, alarms at once,
as strong as its excess (``threshold * excess``), besides the likelihood path; it must fall back below
before it alarms that way again (one alarm per excursion, not one per quiet period). By default only
``season_change`` (weight 0: it speaks only this way). A season that stops leaves every value plausible,
so no point member sees it; the season filter's statistic moves slowly, which the likelihood (a 10-point
mean against the spread of single points) misreads. It is silent on a series without a clear, repeating
season (every NAB file but the artificial daily ones and nyc_taxi), flags the artificial daily anomalies
inside their windows, and with it the procedure of ``bench/_nab_cv.py`` (which may turn it off per fold;
no fold did) scored 73.09 -> 73.16 standard, 80.14 -> 80.19 low-FN and 46.12 -> 44.65 low-FP (the
realKnownCause fold's procedure took another path; the member is silent on that group after NAB's
probation); the shipped members with the threshold held out 75.34 / 59.58 / 82.05 -> 75.34 / 59.59 /
82.06. On ``bench alarms`` it lifted recall 0.872 -> 0.896 (broken seasons 9 -> 11 of 12) and precision
0.481 -> 0.490, and the obvious suite's "season stops" is flagged 7 points in. Other members that way
cost 1 (stuck) to 75 (robust_z) points of the cross-validated mean: real data crosses their fixed
thresholds often.

Caveats: the default members (the EW mean shift ``mean_shift`` — ``level_shift`` before issue 13 —,
seasonal residual, BOCPD with ``max_run=32``, ``hazard=1/1000`` on the values less their cycle
(``deseasonalize``: see :mod:`.bocpd`), sequence novelty, robust z, relative
entropy, ``stuck`` at weight 0.2, and ``season_change`` directly) and constants were chosen on the NAB subset (see
``bench/nab.py``: leave-one-group-out, the shipped default scores 74.73 standard with only NAB's
threshold held out, a choosing procedure run on the folds about 70), one set for all files — nearby settings move the NAB score by several
points (the weights and ``threshold`` interact through the quiet period), and a split check (weights
tuned on half the files, scored on the other half) lands near 62, so read the NAB figure as an upper
estimate of what unseen data gets;
the likelihood needs ``warmup`` points of each member's own output before it scores.

Example
-------
>>> import numpy as np
>>> from nexus_kernel.analysis.detectors import Ensemble
>>> x = np.r_[np.random.default_rng(0).normal(size=1500), np.random.default_rng(1).normal(size=200) + 8]
>>> r = Ensemble().score_learn("s", x)
>>> bool(r.score[1500:1520].max() > 0.99)
True

Reference: S. Ahmad et al., "Unsupervised real-time anomaly detection for streaming data",
Neurocomputing 262 (2017) — the anomaly likelihood.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import njit

from ._base import Detector, Result, detectors
from .season_change import without_cycle


# One point's step of each part of a member's z (a finite excess ``ai``), shared by the kernels that run a
# part over a batch (``_likelihood``, ``_confirmed``, ``_onsets``: the numenta path and bench/_nab_cv.py)
# and by ``_member_z``, which runs them all in one pass.
@njit(cache=True, nogil=True, inline="always")
def _likelihood_step(ai, c, m, v, s, along, short, warm, min_sd):
    # the short mean against the long one's deviation (0 before ``warm`` points), then the update
    s += (ai - s) / min(c + 1.0, short)
    z = (s - m) / max(math.sqrt(v), min_sd, 1e-6) if c >= warm else 0.0
    al = max(along, 1.0 / (c + 1.0))
    d = ai - m
    m += al * d
    v = (1.0 - al) * (v + al * d * d)
    return z, c + 1.0, m, v, s


@njit(cache=True, nogil=True, inline="always")
def _confirm_step(ai, since, level):
    # points since the member's own excess last reached ``level`` (``ai`` may be NaN)
    return 0.0 if math.isfinite(ai) and ai >= level else since + 1.0


@njit(cache=True, nogil=True, inline="always")
def _onset_step(ai, up):
    # (the excess where it first passes 1, else 0; whether this point is past 1), ``ai`` may be NaN
    if not math.isfinite(ai):
        return 0.0, up
    return (ai if ai >= 1.0 and up == 0.0 else 0.0), (1.0 if ai >= 1.0 else 0.0)


@njit(cache=True, nogil=True)
def _likelihood(a, meta, along, short, warm, min_sd):
    # meta: count, long mean, long var, short mean
    n = a.shape[0]
    out = np.zeros(n)
    c, m, v, s = meta[0], meta[1], meta[2], meta[3]
    for i in range(n):
        if math.isfinite(a[i]):
            out[i], c, m, v, s = _likelihood_step(a[i], c, m, v, s, along, short, warm, min_sd)
    meta[0], meta[1], meta[2], meta[3] = c, m, v, s
    return out


@njit(cache=True, nogil=True)
def _numenta(a, x, meta, raw, avgs, vals, short, window, learning, probation, every, z_yellow):
    """Numenta's anomaly likelihood (nupic ``anomaly_likelihood.py``) as a z, member by member.

    The mean of the last ``short`` raw scores is compared with a Gaussian fitted to the averaged scores
    of the last ``window`` points (those of the first ``learning`` points left out; mean floored at
    0.03, variance at 0.0003), re-fitted every ``every`` points once ``probation`` points are in; the
    tail is two-sided by reflection (an unusually *low* average counts too, as in nupic); a tail in the
    red zone (<= 1e-5) right after another is pulled back to the yellow one (1e-3); a metric flat over
    the window (variance < 1.5e-5) gets nupic's null distribution. Returned as the Gaussian z of the
    tail, so the ensemble's weights and threshold keep their meaning; -log10 of 1 - likelihood,
    Numenta's log score, is a monotone map of it.
    """
    # meta: iteration, moving-average total, mean, std, previous tail, fitted (0/1),
    #       sum, sum of squares of averaged scores kept, count kept, value sums (shifted), value ref
    n = a.shape[0]
    out = np.zeros(n)
    it = int(meta[0])
    for i in range(n):
        ai = a[i]
        if not math.isfinite(ai):
            continue
        r = min(max(ai, 0.0), 1.0)
        k = it % short
        if it >= short:
            meta[1] -= raw[k]
        raw[k] = r
        meta[1] += r
        avg = meta[1] / min(it + 1, short)
        if it >= probation:
            if meta[5] == 0.0 or it % every == 0:
                cnt = meta[8]
                mean, var = 0.5, 1e6
                if cnt > 0:
                    mean = meta[6] / cnt
                    var = max(meta[7] / cnt - mean * mean, 0.0)
                    vm = meta[9] / cnt
                    vvar = meta[10] / cnt - vm * vm
                    mean = max(mean, 0.03)
                    var = max(var, 0.0003)
                    if vvar < 1.5e-5:
                        mean, var = 0.5, 1e6
                meta[2], meta[3], meta[5] = mean, math.sqrt(var), 1.0
            d = abs(avg - meta[2]) / meta[3]
            tail = 0.5 * math.erfc(d / 1.4142)
            z = d
            if tail <= 1e-5 and meta[4] <= 1e-5:
                z = z_yellow
            meta[4] = tail
            out[i] = z
        # the history: a ring of ``window`` averaged scores and values; the first ``learning`` never count
        w = it % window
        if it >= window and it - window >= learning:
            meta[6] -= avgs[w]
            meta[7] -= avgs[w] * avgs[w]
            dv = vals[w] - meta[11]
            meta[9] -= dv
            meta[10] -= dv * dv
            meta[8] -= 1.0
        if it == 0:
            meta[11] = x[i]
        avgs[w] = avg
        vals[w] = x[i]
        if it >= learning:
            meta[6] += avg
            meta[7] += avg * avg
            dv = x[i] - meta[11]
            meta[9] += dv
            meta[10] += dv * dv
            meta[8] += 1.0
        it += 1
    meta[0] = it
    return out


@njit(cache=True, nogil=True)
def _onsets(a, meta):
    # meta: whether the last point was past the threshold; an onset is the first point past it
    n = a.shape[0]
    out = np.zeros(n)
    above = meta[0]
    for i in range(n):
        out[i], above = _onset_step(a[i], above)
    meta[0] = above
    return out


@njit(cache=True, nogil=True)
def _confirmed(a, meta, level, span):
    # meta: points since the member's own excess last reached ``level``; 1 while that is under ``span``
    n = a.shape[0]
    out = np.zeros(n)
    since = meta[0]
    for i in range(n):
        since = _confirm_step(a[i], since, level)
        if since < span:
            out[i] = 1.0
    meta[0] = since
    return out


@njit(cache=True, nogil=True)
def _member_z(stat, threshold, cap, lik, along, short, warm, min_sd, weight, level, confirmed, above, alarm):
    # one member's part of the ensemble z in one pass, the same numbers as its excess, then _likelihood,
    # the weight, _confirmed and _onsets in turn (weight 0: no likelihood; level 0: no confirmation;
    # ``above`` empty: not direct): a micro-batch holds a few points per series, and one call per member
    # costs less than the eight array operations and three calls it replaces
    n = stat.shape[0]
    out = np.zeros(n)
    c, m, v, s = lik[0], lik[1], lik[2], lik[3]
    since = confirmed[0]
    direct = above.shape[0] > 0
    up = above[0] if direct else 0.0
    for i in range(n):
        ai = abs(stat[i]) / threshold
        if ai > cap:  # NaN stays NaN, as with np.minimum
            ai = cap
        z = 0.0
        if weight != 0.0:
            if math.isfinite(ai):
                z, c, m, v, s = _likelihood_step(ai, c, m, v, s, along, short, warm, min_sd)
            z = z * weight
            if level > 0.0:
                since = _confirm_step(ai, since, level)
                z = z * (1.0 if since < short else 0.0)
        if direct:
            onset, up = _onset_step(ai, up)
            strong = alarm * onset if onset > 0.0 else 0.0
            z = z if z > strong else strong  # as np.maximum: a tie gives the second (0.0 over -0.0)
        out[i] = z
    if weight != 0.0:
        lik[0], lik[1], lik[2], lik[3] = c, m, v, s
        if level > 0.0:
            confirmed[0] = since
    if direct:
        above[0] = up
    return out


@njit(cache=True, nogil=True)
def _refractory(z, meta, level, span, reopen):
    # meta: points since the last alarm
    out = z.copy()
    since = meta[0]
    for i in range(z.shape[0]):
        if since < span and z[i] < reopen * level:
            out[i] = 0.0
        if out[i] >= level:
            since = 0.0
        since += 1.0
    meta[0] = since
    return out


_NOT_DIRECT = np.zeros(0)  # the ``above`` of a member that does not speak directly

# the z whose Gaussian tail (with nupic's 1.4142) is 1e-3, nupic's "yellow" likelihood
_Z_YELLOW = 1.4142 * float(__import__("scipy.special", fromlist=["erfcinv"]).erfcinv(2e-3))

DEFAULT_MEMBERS: dict[str, dict[str, Any]] = {
    "mean_shift": {}, "seasonal": {"early_search": None},
    "bocpd": {"max_run": 32, "hazard": 1 / 1000, "deseasonalize": True},
    "sequence": {}, "robust_z": {}, "relative_entropy": {}, "stuck": {}, "season_change": {}}
# the three members added last speak a little lower: at full weight they added false alarms on the
# NAB tweets (65.6 standard) that a shared 0.8 removes (71.6; 71.5 with the one period finder, issue 11);
# see the caveats on how far to trust that
# ``stuck`` (issue 13) speaks low: a stuck sensor's likelihood is huge on a series that never repeats, so
# 0.1 to 0.3 all flag it, and all cost the same 0.10 of the cross-validated NAB mean (74.83 -> 74.73: one
# realKnownCause file) — kept for the stuck sensors of live streams, which NAB does not have
# ``season_change`` speaks only directly (weight 0 on the likelihood path, see DEFAULT_DIRECT)
DEFAULT_WEIGHTS: dict[str, float] = {"sequence": 0.8, "robust_z": 0.8, "relative_entropy": 0.8, "stuck": 0.2,
                                     "season_change": 0.0}
# members whose own statistic, first past their own threshold, alarms at once (see ``direct``): on the NAB
# folds robust_z or stuck that way cost 1 (stuck) to 75 (robust_z) points of the cross-validated mean (real
# data crosses their fixed thresholds often); season_change (a stopped or grown season) that way is silent
# on every NAB file without a clear, repeating season and flags the artificial daily anomalies in their
# windows: 73.09 -> 73.16 standard (see the docstring)
DEFAULT_DIRECT: tuple[str, ...] = ("season_change",)
# per-member floors under the likelihood's deviation (``floors``), chosen on the NAB folds with the rest
# (bench/_nab_cv.py FLOOR_GRIDS): BOCPD's statistic sits near 0 on steady data, and without a floor its
# likelihood reads a small blip as many sigmas (most false alarms of `bench alarms`); see the docstring
DEFAULT_FLOORS: dict[str, float] = {"bocpd": 0.02}
# a member's likelihood counts only while its own excess reached 0.3 of its own threshold within the last
# ``short`` points (``confirm``): unusual for this series *and* not nothing by the member's own measure
DEFAULT_CONFIRM = 0.3
# per member, over ``confirm`` (``confirms``): BOCPD's change probability jumps on a single point of 3.3
# sigma (to 0.22; 0.61 at 4 sigma: its young runs absorb the point), so it must reach half its threshold
DEFAULT_CONFIRMS: dict[str, float] = {"bocpd": 0.5}


class _FedSeason:
    """Stands in for BOCPD's own season filter inside an ensemble that also runs the ``season_change``
    member with the same parameters: the ensemble runs that filter once per batch and hands BOCPD the
    values less its profile (the same filter, on the same values, would otherwise run twice)."""

    def __init__(self) -> None:
        self.values: np.ndarray | None = None

    def new_state(self) -> dict[str, Any]:
        return {}

    def deseasonalize(self, state: dict[str, Any], x: np.ndarray) -> np.ndarray:
        values, self.values = self.values, None
        if values is None or len(values) != len(x):
            raise RuntimeError("the ensemble feeds BOCPD the values less their cycle before each batch")
        return values


@detectors.register("ensemble")
class Ensemble(Detector):
    name = "ensemble"
    feature = "anomaly_likelihood"
    statistic = "z"

    def __init__(self, *, members: dict[str, dict[str, Any]] | None = None, along: float = 0.001, short: int = 10,
                 warmup: int = 100, cap: float = 3.0, threshold: float = 2.5, refractory: int = 150,
                 reopen: float = math.inf, weights: dict[str, float] | None = None, calibration: str = "ewm",
                 history: int = 8640, learning: int = 288, estimation: int = 100, reestimate: int = 100,
                 direct: tuple[str, ...] | list[str] | None = None, min_sd: float = 0.0,
                 floors: dict[str, float] | None = None, confirm: float = DEFAULT_CONFIRM,
                 confirms: dict[str, float] | None = None, seed: int = 0) -> None:
        super().__init__(seed=seed)
        self.members = dict(DEFAULT_MEMBERS if members is None else members)
        self.weights = dict(DEFAULT_WEIGHTS if weights is None else weights)
        self.direct = tuple(DEFAULT_DIRECT if direct is None and members is None else direct or ())
        unknown = set(self.direct) - set(self.members)
        if unknown:
            raise ValueError(f"direct names members: {sorted(unknown)} are not members {sorted(self.members)}")
        self.along, self.short, self.warmup, self.cap, self.min_sd = along, short, warmup, cap, min_sd
        self.floors = dict(DEFAULT_FLOORS if floors is None and members is None else floors or {})
        if any(not 0.0 <= f < math.inf for f in self.floors.values()):
            raise ValueError("floors are finite numbers >= 0")
        self.threshold, self.refractory, self.reopen = threshold, refractory, reopen
        self.confirms = dict(DEFAULT_CONFIRMS if confirms is None and members is None else confirms or {})
        if any(not 0.0 <= c < math.inf for c in (confirm, *self.confirms.values())):
            raise ValueError("confirm and confirms are finite numbers >= 0 (0: off)")
        self.confirm = confirm
        if calibration not in ("ewm", "numenta"):
            raise ValueError("calibration is 'ewm' or 'numenta'")
        if min(history, learning + 1, estimation, reestimate) < 1 or history < estimation:
            raise ValueError("numenta calibration needs history >= estimation >= 1, learning >= 0, reestimate >= 1")
        self.calibration, self.history, self.learning = calibration, history, learning
        self.estimation, self.reestimate = estimation, reestimate
        self._detectors = {name: detectors.get(name)(seed=seed, **p) for name, p in self.members.items()}
        self._fed: _FedSeason | None = None
        season, bocpd = self._detectors.get("season_change"), self._detectors.get("bocpd")
        own = getattr(bocpd, "_season", None)
        if season is not None and own is not None and own.params() == season.params():
            self._fed = bocpd._season = _FedSeason()  # type: ignore[union-attr]
        self._last: dict[int, dict[str, Any]] = {}

    def new_state(self):
        lik: dict[str, Any]  # per member: the numenta windows, or the four running moments
        if self.calibration == "numenta":
            lik = {m: (np.zeros(12), np.zeros(self.short), np.zeros(self.history), np.zeros(self.history))
                   for m in self.members}
        else:
            lik = {m: np.zeros(4) for m in self.members}
        return {"lik": lik, "ref": np.array([1e18]), "key": None, "above": {m: np.zeros(1) for m in self.direct},
                "confirmed": {m: np.array([1e18]) for m in self.members}}

    def score_learn(self, key, values):
        state = self._states.get(key)
        if state is None:
            state = self._states[key] = self.new_state()
        state["key"] = key
        return super().score_learn(key, values)

    def _run(self, state, x):
        key = state["key"]
        zs, results = [], []
        ran = {}
        if self._fed is not None:  # the season filter once, for its member and for BOCPD
            season = self._detectors["season_change"]
            season._states.get(key, {}).pop("offset", None)
            ran["season_change"] = season.score_learn(key, x)
            self._fed.values = without_cycle(season._states[key], x)
        for name, det in self._detectors.items():
            res = ran[name] if name in ran else det.score_learn(key, x)
            weight = self.weights.get(name, 1.0)
            if self.calibration == "ewm":  # the default: one pass per member
                zs.append(_member_z(res.statistic, float(det.threshold), float(self.cap), state["lik"][name],
                                    float(self.along), float(self.short), float(self.warmup),
                                    float(max(self.min_sd, self.floors.get(name, 0.0))), float(weight),
                                    float(self.confirms.get(name, self.confirm)), state["confirmed"][name],
                                    state["above"].get(name, _NOT_DIRECT), float(self.threshold)))
                results.append(res)
                continue
            a = np.minimum(np.abs(res.statistic) / det.threshold, self.cap)
            if not weight:  # a member that speaks only directly: no likelihood to keep
                z = np.zeros(len(x))
            elif self.calibration == "numenta":
                meta, raw, avgs, vals = state["lik"][name]
                z = _numenta(a / self.cap, x, meta, raw, avgs, vals, self.short, self.history, self.learning,
                             self.learning + self.estimation, self.reestimate, _Z_YELLOW)
            else:
                z = _likelihood(a, state["lik"][name], self.along, self.short, self.warmup,
                                max(self.min_sd, self.floors.get(name, 0.0)))
            z = z * weight
            level = self.confirms.get(name, self.confirm)
            if level > 0.0 and weight:
                z = z * _confirmed(a, state["confirmed"][name], level, float(self.short))
            if name in self.direct:  # first past its own threshold: an alarm at once, as strong as its excess
                onset = _onsets(a, state["above"][name])
                z = np.maximum(z, np.where(onset > 0.0, self.threshold * onset, 0.0))
            zs.append(z)
            results.append(res)
        stack = np.vstack(zs)
        z = _refractory(stack.max(axis=0), state["ref"], self.threshold, float(self.refractory), self.reopen)
        lead = stack.argmax(axis=0)
        names = list(self._detectors)
        self._explain = (names, results, lead)
        expected = np.choose(lead, [r.expected for r in results])
        return Result(self._score_of(z), z, expected)

    def facts(self, res, i, since):
        out = super().facts(res, i, since)
        names, results, lead = self._explain
        k = int(lead[i])
        det = self._detectors[names[k]]
        expected = float(results[k].expected[i])
        a = abs(float(np.nan_to_num(results[k].statistic[i]))) / det.threshold
        out["member"] = {"detector": names[k], "feature": det.feature, "statistic": det.statistic,
                         "value": float(np.nan_to_num(results[k].statistic[i])), "threshold": det.threshold,
                         "expected": expected if math.isfinite(expected) else None,
                         "past_own_threshold": bool(names[k] in self.direct and a >= 1.0)}
        return out

    @property
    def warmup_points(self) -> int:
        """The earliest member's warm-up plus the likelihood's own ``warmup`` of that member's output."""
        return min(d.warmup_points for d in self._detectors.values()) + self.warmup

    def describe(self, facts, observed):
        """The member that drove the alarm and its fact, then the ensemble's own: "value 27.8 is 20.3 sigma
        above the expected 20 (threshold 5 sigma), robust_z; unusual for this series: anomaly likelihood
        z 12.0 over the last 10 points (threshold 2.5), ensemble"."""
        member = facts.get("member") or {}
        det = self._detectors.get(member.get("detector", ""))
        if member.get("past_own_threshold"):
            own = f"past its own threshold, {self.name}"
        else:
            own = (f"unusual for this series: anomaly likelihood z {facts.get('value') or 0.0:.1f} over the last "
                   f"{self.short} points (threshold {self.threshold:g}), {self.name}")
        if det is None:
            return own
        return f"{det.describe(member, observed)}; {own}"

    def reset(self, key=None):
        super().reset(key)
        for det in self._detectors.values():
            det.reset(key)

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_explain", None)
        return state
