"""Leave-one-group-out cross-validation of the ensemble's defaults on the NAB subset (used by ``bench nab``).

The ensemble is members -> per-member likelihood z -> weighted max -> quiet period. Members do not
depend on the ensemble's knobs, so each member's excess ``a = min(|statistic| / threshold, cap)`` is
computed once per file and cached on disk (``~/.cache/nexus-bench/nab``, keyed by file content and
member parameters); every configuration the search
tries is then a cheap recombination of cached arrays, bit-for-bit what :class:`Ensemble` computes
(checked by :func:`check_cache`).

:func:`choose` is the choosing procedure: given training files it returns a configuration (weights per
member, 0 meaning "left out"; the quiet period; the alarm level) by coordinate ascent over a small grid,
maximising the training files' NAB score for one profile with NAB's threshold optimised on them too.
"""

from __future__ import annotations

import hashlib
import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

GROUPS = {"artificial": ("artificialNoAnomaly", "artificialWithAnomaly"),
          "realKnownCause": ("realKnownCause",), "realTweets": ("realTweets",)}

CACHE = Path.home() / ".cache" / "nexus-bench" / "nab"

# the candidate members and the parameters they run with (each a registered detector)
POOL: dict[str, dict[str, Any]] = {
    "mean_shift": {}, "seasonal": {"early_search": None}, "bocpd": {"max_run": 32, "hazard": 1 / 1000},
    "sequence": {}, "robust_z": {}, "relative_entropy": {}, "stuck": {}, "context_ose": {}, "level_shift": {},
    "season_change": {},
}
# members that may speak only directly — first past their own threshold, an alarm at once (the ensemble's
# ``direct``), never through the likelihood: their weight stays 0, and whether they speak at all is a knob
# (DIRECT_GRID). ``season_change`` is a filter over a whole season: its statistic moves slowly, and the
# likelihood (a 10-point mean against the spread of single points) read its 2-sigma excursions as alarms
# (52 false ones on ``bench alarms``; as a weighted member of the pool: 69.25 cross-validated standard)
DIRECT_ONLY: tuple[str, ...] = ("season_change",)
DIRECT_GRID: tuple[tuple[str, ...], ...] = (DIRECT_ONLY, ())
# other parameters a pool member may run with, chosen per fold like a weight: BOCPD on the values less the
# season_change profile (a clear, repeating cycle is not a change of regime; silent without one)
VARIANTS: dict[str, dict[str, dict[str, Any]]] = {
    "bocpd": {"deseasonalized": {**POOL["bocpd"], "deseasonalize": True}}}
WEIGHT_GRID = (0.0, 0.6, 0.8, 1.0)
REFRACTORY_GRID = (50, 150, 300)
THRESHOLD_GRID = (2.0, 2.5, 3.0, 3.5)
# per-member floors under the likelihood's deviation (the ensemble's ``min_sd`` per member): BOCPD's
# run-length statistic sits near 0 on steady data, so its likelihood reads a small blip as many sigmas
FLOOR_GRIDS: dict[str, tuple[float, ...]] = {"bocpd": (0.0, 0.02, 0.05, 0.1)}
# the ensemble's ``confirm`` (a member's likelihood counts only while its own excess reached this level within
# the last ``short`` points; 0: always) and ``confirms`` (per member) are fixed at the ensemble's defaults,
# not knobs: ``confirm`` as a knob over (0, 0.5, 0.75, 1) scored 69.88 cross-validated standard (fixed at
# 0.3: 73.37); BOCPD's own level scores the same from 0.3 to 0.75


@dataclass(frozen=True)
class Config:
    weights: tuple[tuple[str, float], ...]
    direct: tuple[str, ...] = ()
    refractory: int = 150
    threshold: float = 2.5
    along: float = 0.001
    short: int = 10
    warmup: int = 100
    cap: float = 3.0
    min_sd: float = 0.0
    floors: tuple[tuple[str, float], ...] = ()  # per-member min_sd, over min_sd
    variants: tuple[tuple[str, str], ...] = ()  # member -> a name of VARIANTS[member]
    confirm: float = 0.0
    confirms: tuple[tuple[str, float], ...] = ()  # per-member confirm, over confirm

    def source(self, member: str) -> str:
        """The cache's name for what ``member`` runs: the member, or ``member@variant``."""
        variant = dict(self.variants).get(member)
        return f"{member}@{variant}" if variant else member

    def floor(self, member: str) -> float:
        return max(self.min_sd, dict(self.floors).get(member, 0.0))  # as the ensemble takes them

    def members(self) -> dict[str, dict[str, Any]]:
        chosen = dict(self.variants)
        return {m: VARIANTS[m][chosen[m]] if m in chosen else POOL[m]
                for m, w in self.weights if w > 0 or m in self.direct}

    def weight_map(self) -> dict[str, float]:
        return {m: w for m, w in self.weights if w != 1.0 and (w > 0 or m in self.direct)}

    def ensemble_params(self) -> dict[str, Any]:
        return {"members": self.members(), "weights": self.weight_map(), "direct": self.direct,
                "refractory": self.refractory,
                "threshold": self.threshold, "along": self.along, "short": self.short, "warmup": self.warmup,
                "cap": self.cap, "min_sd": self.min_sd, "floors": dict(self.floors), "confirm": self.confirm,
                "confirms": dict(self.confirms)}

    def label(self) -> str:
        ws = ",".join(f"{m}:{w:g}" for m, w in self.weights if w > 0)
        direct = f" direct={','.join(self.direct)}" if self.direct else ""
        floors = "".join(f" floor[{m}]={v:g}" for m, v in self.floors)
        variants = "".join(f" {m}={v}" for m, v in self.variants)
        return (f"{{{ws}}}{direct} refractory={self.refractory} threshold={self.threshold:g} "
                f"min_sd={self.min_sd:g}{floors}{variants} confirm={self.confirm:g}"
                + "".join(f" confirm[{m}]={v:g}" for m, v in self.confirms))


def default_config() -> Config:
    """The ensemble's current defaults as a configuration (the baseline)."""
    from nexus_kernel.analysis.detectors.ensemble import (
        DEFAULT_CONFIRM,
        DEFAULT_CONFIRMS,
        DEFAULT_DIRECT,
        DEFAULT_FLOORS,
        DEFAULT_MEMBERS,
        DEFAULT_WEIGHTS,
    )

    variants = []
    for m, params in DEFAULT_MEMBERS.items():
        named = [v for v, p in VARIANTS.get(m, {}).items() if p == params]
        if named:
            variants.append((m, named[0]))
        elif POOL.get(m) != params:
            raise ValueError(f"the pool runs {m} with {POOL.get(m)}, the ensemble with {params}: keep them in step")
    weights = {m: DEFAULT_WEIGHTS.get(m, 1.0) for m in DEFAULT_MEMBERS}
    return Config(tuple((m, weights.get(m, 0.0)) for m in POOL), tuple(DEFAULT_DIRECT),
                  floors=tuple(sorted(DEFAULT_FLOORS.items())), variants=tuple(variants), confirm=DEFAULT_CONFIRM,
                  confirms=tuple(sorted(DEFAULT_CONFIRMS.items())))


def group_of(f) -> str:
    return next(g for g, cats in GROUPS.items() if f.category in cats)


@dataclass
class Cache:
    """Per file and member, the member's capped excess (one array per file)."""

    excess: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    z: dict[tuple[str, str, float, int, int, float, float], np.ndarray] = field(default_factory=dict)

    def member_z(self, key: str, member: str, cfg: Config) -> np.ndarray:
        from nexus_kernel.analysis.detectors.ensemble import _likelihood

        k = (key, cfg.source(member), cfg.along, cfg.short, cfg.warmup, cfg.cap, cfg.floor(member))
        z = self.z.get(k)
        if z is None:
            a = np.minimum(self.excess[key][cfg.source(member)], cfg.cap)
            z = self.z[k] = _likelihood(a, np.zeros(4), cfg.along, cfg.short, cfg.warmup, cfg.floor(member))
        return z

    def ensemble_z(self, key: str, cfg: Config) -> np.ndarray:
        from nexus_kernel.analysis.detectors.ensemble import _confirmed, _onsets, _refractory

        zs = []
        for m, w in cfg.weights:
            if w <= 0 and m not in cfg.direct:
                continue
            z = self.member_z(key, m, cfg) * w
            level = dict(cfg.confirms).get(m, cfg.confirm)
            if level > 0.0 and w > 0:
                a = np.minimum(self.excess[key][cfg.source(m)], cfg.cap)
                z = z * _confirmed(a, np.array([1e18]), level, float(cfg.short))
            if m in cfg.direct:
                onset = _onsets(np.minimum(self.excess[key][cfg.source(m)], cfg.cap), np.zeros(1))
                z = np.maximum(z, np.where(onset > 0.0, cfg.threshold * onset, 0.0))
            zs.append(z)
        return _refractory(np.vstack(zs).max(axis=0), np.array([1e18]), cfg.threshold, float(cfg.refractory),
                           math.inf)


def build_cache(files, members=None, progress: Callable[[str], None] | None = None) -> Cache:
    """Run every member (and variant) over every file once (fresh detector per file), reading/writing the
    disk cache."""
    from nexus_kernel.analysis.detectors import SeasonChange, detectors

    if members is None:
        members = {**POOL, **{f"{m}@{v}": p for m, vs in VARIANTS.items() for v, p in vs.items()}}
    CACHE.mkdir(parents=True, exist_ok=True)
    cache = Cache()
    # the code is read once, now: the process runs what it imported, even if the files change meanwhile;
    # a member that deseasonalizes runs season_change's code too
    codes = {m: _scoring_code(detectors.get(m.split("@")[0]))
             + (_scoring_code(SeasonChange) if p.get("deseasonalize") else "") for m, p in members.items()}
    for f in files:
        x = f.frame["value"].to_numpy(dtype=np.float64)
        cache.excess[f.key] = {}
        for m, params in members.items():
            # keyed by the file, the parameters and the member's scoring code: a changed member is re-run
            code = codes[m]
            tag = hashlib.sha1(repr((f.key, m, sorted(params.items()), len(x), float(x.sum()), code)).encode()
                               ).hexdigest()[:16]
            path = CACHE / f"{m}-{tag}.npy"
            if path.exists():
                cache.excess[f.key][m] = np.load(path)
                continue
            det = detectors.get(m.split("@")[0])(**params)
            stat = np.concatenate([det.score_learn(f.key, x[a:a + 1000]).statistic for a in range(0, len(x), 1000)])
            a = np.abs(stat) / det.threshold
            np.save(path, a)
            cache.excess[f.key][m] = a
            if progress:
                progress(f"{m} {f.key}")
    return cache


def _scoring_code(cls) -> str:
    """The source that decides a member's statistic: the modules of the class and of its bases (a helper
    function of the module, such as season_change's likeness check, changes the statistic too)."""
    modules = dict.fromkeys(inspect.getmodule(c) for c in cls.__mro__ if c.__module__.startswith("nexus_kernel"))
    return "\n".join(inspect.getsource(m) for m in modules)


def scores_of(cache: Cache, files, cfg: Config) -> dict[str, np.ndarray]:
    from nexus_kernel.analysis.detectors import z_to_score

    return {f.key: z_to_score(cache.ensemble_z(f.key, cfg)) for f in files}


def fit_score(files, scores, profile: str) -> tuple[float, float]:
    """NAB's threshold optimised on ``files`` and the normalised score there."""
    from nexus_kernel.analysis.nab import PROFILES, normalise, optimize_threshold, probation_length, sweep_parts

    prof = PROFILES[profile]
    pairs, n_windows = [], 0
    for f in files:
        p = probation_length(len(f.frame))
        parts = sweep_parts(f.ids, prof, p)
        pairs.append((scores[f.key][p:], parts))
        n_windows += parts.n_windows
    threshold, raw = optimize_threshold(pairs, prof)
    return threshold, normalise(raw, n_windows, prof)


def score_fixed(files, scores, profile: str, threshold: float) -> float:
    """The normalised NAB score of ``files`` at a threshold chosen elsewhere."""
    from nexus_kernel.analysis.nab import PROFILES, normalise, probation_length, score_at, sweep_parts

    prof = PROFILES[profile]
    raw, n_windows = 0.0, 0
    for f in files:
        p = probation_length(len(f.frame))
        parts = sweep_parts(f.ids, prof, p)
        raw += score_at(scores[f.key][p:], parts, threshold, prof)["score"]
        n_windows += parts.n_windows
    return normalise(raw, n_windows, prof)


def choose(train, cache: Cache, profile: str = "standard", start: Config | None = None,
           passes: int = 2) -> tuple[Config, float, float]:
    """The choosing procedure: (configuration, NAB threshold, training score) from the training files only.

    Coordinate ascent from ``start`` (default: every pool member at weight 1, those of :data:`DIRECT_ONLY`
    speaking directly): each member's weight over :data:`WEIGHT_GRID`, then the quiet period over
    :data:`REFRACTORY_GRID`, then the alarm level over :data:`THRESHOLD_GRID`, the floors, whether the
    direct-only members speak (:data:`DIRECT_GRID`), and each member's variant (:data:`VARIANTS`, or
    none); ``passes`` rounds. Ties keep the current setting.
    """
    from nexus_kernel.analysis.detectors.ensemble import DEFAULT_CONFIRM, DEFAULT_CONFIRMS

    cfg = start or Config(tuple((m, 0.0 if m in DIRECT_ONLY else 1.0) for m in POOL), DIRECT_ONLY,
                          confirm=DEFAULT_CONFIRM, confirms=tuple(sorted(DEFAULT_CONFIRMS.items())))
    seen: dict[Config, tuple[float, float]] = {}

    def value(c: Config) -> tuple[float, float]:
        if c not in seen:
            if not any(w > 0 for _, w in c.weights):
                seen[c] = (math.inf, -math.inf)
            else:
                seen[c] = fit_score(train, scores_of(cache, train, c), profile)
        return seen[c]

    def weight(i: int, m: str) -> Callable[[Config], list[Config]]:
        return lambda c: [replace(c, weights=c.weights[:i] + ((m, w),) + c.weights[i + 1:])
                          for w in (() if m in DIRECT_ONLY else WEIGHT_GRID)]

    def floor(member: str, grid: tuple[float, ...]) -> Callable[[Config], list[Config]]:
        return lambda c: [replace(c, floors=tuple((m, v) for m, v in c.floors if m != member)
                                  + (((member, f),) if f else ())) for f in grid]

    def variant(member: str, names: dict[str, Any]) -> Callable[[Config], list[Config]]:
        return lambda c: [replace(c, variants=tuple((m, v) for m, v in c.variants if m != member)
                                  + (((member, name),) if name else ())) for name in (None, *names)]

    # each knob in turn, as the configurations that differ from the current one in that knob only
    knobs = [*(weight(i, m) for i, (m, _w) in enumerate(cfg.weights)),
             lambda c: [replace(c, refractory=r) for r in REFRACTORY_GRID],
             lambda c: [replace(c, threshold=t) for t in THRESHOLD_GRID],
             *(floor(m, grid) for m, grid in FLOOR_GRIDS.items()),
             lambda c: [replace(c, direct=direct) for direct in DIRECT_GRID],
             *(variant(m, names) for m, names in VARIANTS.items())]
    best = value(cfg)[1]
    for _ in range(passes):
        improved = False
        for knob in knobs:
            for cand in knob(cfg):
                s = value(cand)[1]
                if s > best + 1e-9:
                    cfg, best, improved = cand, s, True
        if not improved:
            break
    return cfg, value(cfg)[0], best


MIN_SD_GRID = (0.0, 0.02, 0.05, 0.1)


def tune(start: Config, knobs: dict[str, tuple]) -> Callable[[list, Cache, str], tuple[Config, float, float]]:
    """A choosing procedure over few knobs: from ``start``, each knob in turn over its grid (coordinate
    ascent, two passes), on the training files' NAB score with NAB's threshold optimised on them."""
    def procedure(train, cache, profile):
        cfg = start
        seen: dict[Config, tuple[float, float]] = {}

        def value(c: Config) -> tuple[float, float]:
            if c not in seen:
                seen[c] = fit_score(train, scores_of(cache, train, c), profile)
            return seen[c]

        best = value(cfg)[1]
        for _ in range(2):
            for knob, grid in knobs.items():
                for v in grid:
                    cand = replace(cfg, **{knob: v})
                    if value(cand)[1] > best + 1e-9:
                        cfg, best = cand, value(cand)[1]
        return cfg, value(cfg)[0], best
    return procedure


def cross_validate(files, cache: Cache, profile: str,
                   procedure: Callable[[list, Cache, str], tuple[Config, float, float]]) -> dict[str, Any]:
    """Each group held out in turn: ``procedure`` chooses on the other two, the held-out group is scored."""
    folds = {}
    for g in GROUPS:
        train = [f for f in files if group_of(f) != g]
        test = [f for f in files if group_of(f) == g]
        cfg, threshold, train_score = procedure(train, cache, profile)
        folds[g] = {"score": score_fixed(test, scores_of(cache, test, cfg), profile, threshold),
                    "train": train_score, "threshold": threshold, "config": cfg.label()}
    return {"folds": folds, "mean": float(np.mean([v["score"] for v in folds.values()]))}


def fixed(cfg: Config) -> Callable[[list, Cache, str], tuple[Config, float, float]]:
    """A procedure that keeps ``cfg`` and chooses only NAB's threshold on the training files."""
    def procedure(train, cache, profile):
        threshold, score = fit_score(train, scores_of(cache, train, cfg), profile)
        return cfg, threshold, score
    return procedure


def check_cache(files, cache: Cache, cfg: Config) -> float:
    """Largest score difference between the cached recombination and a real :class:`Ensemble` run."""
    from nexus_kernel.analysis.detectors import Ensemble

    f = files[0]
    x = f.frame["value"].to_numpy(dtype=np.float64)
    det = Ensemble(**cfg.ensemble_params())
    real = np.concatenate([det.score_learn(f.key, x[a:a + 1000]).score for a in range(0, len(x), 1000)])
    return float(np.abs(real - scores_of(cache, [f], cfg)[f.key]).max())
