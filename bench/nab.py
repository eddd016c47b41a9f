"""NAB scores of the default ensemble on the NAB subset: leave-one-group-out cross-validation first.

Reads ``../shared/data/nab`` (or ``NEXUS_NAB_ROOT`` via the runner argument); skips cleanly when absent.
One configuration for all files, online, each point scored before it is learned.

Fold protocol (the headline). The 28 files form three groups: *artificial* (``artificialNoAnomaly``
and ``artificialWithAnomaly`` together: the no-anomaly files alone have no window to score),
*realKnownCause* and *realTweets*. Each group is held out in turn. On the other two groups the
choosing procedure (:func:`bench._nab_cv.choose`) picks every default — which candidate members take
part and at what weight (0, 0.6, 0.8, 1; candidates: mean_shift, seasonal, bocpd, sequence, robust_z,
relative_entropy, stuck, context_ose online, level_shift), the quiet period (50/150/300 points), the
alarm level (z 2 to 3.5), the floor under BOCPD's likelihood deviation (0/0.02/0.05/0.1), whether
``season_change`` speaks, BOCPD plain or on the values less their cycle — by coordinate ascent maximising that profile's NAB score on the training groups, and NAB's
score threshold is optimised on them as well. The held-out group is then scored with that
configuration *and* that threshold (nothing is re-optimised on it). Reported: each fold and the mean,
for the standard, low-FP and low-FN profiles. Probationary handling and windows are NAB's own, fixed.

Also reported, labelled: the shipped default with only NAB's threshold held out (its members and
weights were chosen by hand on all 28 files, so it is *not* a held-out figure: it is the baseline a
change must beat), and the in-sample score (threshold optimised on all 28 files, as NAB reports).
Member outputs are cached per file (``bench/_nab_cv.py``), so the folds cost seconds after the first run.

Baseline, recorded before issue 13 changed anything (commit 27e8a85), standard / low-FP / low-FN: the
choosing procedure cross-validated 70.65 / 40.08 / 79.72 (folds, standard: artificial 90.85,
realKnownCause 52.20, realTweets 68.90); the shipped default with the threshold held out 74.83 / 58.55 /
81.71; in-sample 71.53 / 54.05 / 79.87. Tried on the folds since and not adopted (see the ensemble's
docstring): a likelihood variance floor chosen per fold (70.36 standard), members that alarm directly
past their own threshold (1 to 75 points lower), the median-based level_shift as an extra member
(73.70), the seasonal member's early period search (74.34 vs 74.17 with a scale fix that itself cost
0.66, both reverted), the ``season_change`` detector (a matched filter over one season) as a weighted
member (69.25 standard), a *record* path (a member past its own threshold and above everything it said
before alarms at once, so a single-point spike is not diluted by the likelihood's 10-point mean) for
robust_z, chosen on or off per fold: 73.04 standard, 47.33 low-FP, 80.11 low-FN (with the BOCPD floor at
0.05 it lifted ``bench alarms`` precision to 0.58 at the same recall, and kept the obvious suite whole).
Adopted: a floor under BOCPD's likelihood deviation alone, chosen per fold (every standard fold chose
0.02): cross-validated 70.65 -> 73.09 standard, 45.81 -> 46.12 low-FP, 79.61 -> 80.14 low-FN; the shipped
default with it, threshold held out, 74.73 -> 75.34.
Adopted: ``season_change`` speaking directly, when it first passes its own threshold, with its profile
held while past it and only on a clear, repeating season (a knob of the procedure, which every fold kept):
73.09 -> 73.16 standard, 80.14 -> 80.19 low-FN, 46.12 -> 44.65 low-FP (the realKnownCause fold's procedure
took another path; the member is silent there after probation); the shipped default with the threshold
held out 75.34 -> 75.34, 59.58 -> 59.59, 82.05 -> 82.06. Earlier forms of it (every point past the
threshold alarming, no likeness check) scored 62.94 to 71.46.
Adopted: BOCPD on the values less the season_change profile, a variant of the member chosen per fold
(``_nab_cv.VARIANTS``; two standard folds and every low-FN fold took it): 73.16 -> 73.31 standard,
80.19 -> 80.60 low-FN, 44.65 -> 44.65 low-FP; shipped default, threshold held out, 75.34 -> 75.52,
59.59 -> 59.91, 82.06 -> 82.17. As the pool's only BOCPD (no choice per fold) it scored 72.77 standard:
on the realKnownCause fold the training groups then dropped the seasonal member.
Adopted: ``confirm`` 0.3 — a member's likelihood counts only while its own excess reached 0.3 of its own
threshold within the last 10 points — fixed in the procedure (as a knob of it, over 0/0.5/0.75/1, the
procedure scored 69.88): 73.31 -> 73.37 standard, 44.65 -> 46.14 low-FP, 80.60 -> 80.64 low-FN; shipped
default, threshold held out, 75.52 -> 75.59, 59.91 -> 63.40, 82.17 -> 82.22. Fixed at 0.25 / 0.4 / 0.5 the
procedure scored 71.48 / 70.46 / 73.88 standard; 0.5 misses the obvious suite's stuck sensor and trend
break (their members reach a third of their threshold first, not a half).
Adopted, NAB-neutral: BOCPD's own level at 0.5 (``confirms``; 0.3 to 0.75 all score 73.37 / 46.14 / 80.64,
1.0 scores 71.57 standard), chosen by the obvious suite (0.6 misses a fivefold variance) for the live
stream's precision (``bench alarms``).
Adopted at a cost: the stuck member at weight 0.2 (74.83 -> 74.73 threshold held out) for stuck sensors,
which NAB lacks.

Published on the same 28 files (in-sample, NAB's threshold): ARTime 76.24, Numenta HTM 65.78, CAD OSE
63.87 (standard). Also reported (unless ``quick``): CAD OSE, our port (``context_ose``), run the way NAB
runs it — the file's minimum and maximum and a rest period of NAB's probationary period / 5, i.e.
knowing the file — beside its published 63.87 / 60.81 / 67.29: it validates the port; and its online
form (range from the first 150 points).
"""

from __future__ import annotations

from pathlib import Path

NAB_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "nab"
PUBLISHED = {"standard": ("ARTime", 76.24), "reward_low_FP_rate": ("ARTime", 66.43),
             "reward_low_FN_rate": ("ARTime", 81.86)}


def run(quick: bool = False, root: Path = NAB_ROOT) -> list[dict]:
    if not (root / "data").exists():
        return [{"metric": "nab", "unit": "skipped", "ours": None, "peer": None, "peer_value": None, "ratio": None,
                 "params": {"reason": f"no NAB data at {root}"}}]
    from nexus_kernel.analysis.detectors import Ensemble
    from nexus_kernel.analysis.nab import load_corpus, run_detector

    import numpy as np

    from . import _nab_cv as cv

    files = load_corpus(root)
    cache = cv.build_cache(files)
    shipped = cv.default_config()
    rows = []
    for profile, (peer, value) in PUBLISHED.items():
        chosen = cv.cross_validate(files, cache, profile, cv.choose)
        baseline = cv.cross_validate(files, cache, profile, cv.fixed(shipped))
        _, in_sample = cv.fit_score(files, cv.scores_of(cache, files, shipped), profile)
        rows.append({"metric": f"nab_{profile}_cv_mean", "unit": "score", "ours": round(chosen["mean"], 2),
                     "peer": TARGET[profile][0], "peer_value": TARGET[profile][1],
                     "ratio": _ratio(chosen["mean"], TARGET[profile][1]),
                     "params": {"protocol": "leave-one-group-out, every default chosen on the other two groups",
                                "folds": {g: round(f["score"], 2) for g, f in chosen["folds"].items()}}})
        for group, fold in chosen["folds"].items():
            rows.append({"metric": f"nab_{profile}_cv_{group}", "unit": "score", "ours": round(fold["score"], 2),
                         "peer": None, "peer_value": None, "ratio": None,
                         "params": {"trained_on": "the other two groups", "train_score": round(fold["train"], 2),
                                    "config": fold["config"], "threshold": round(fold["threshold"], 6)}})
        rows.append({"metric": f"nab_{profile}_shipped_default_threshold_held_out", "unit": "score",
                     "ours": round(baseline["mean"], 2), "peer": TARGET[profile][0], "peer_value": TARGET[profile][1],
                     "ratio": _ratio(baseline["mean"], TARGET[profile][1]),
                     "params": {"note": "members and weights chosen on all 28 files: not held out",
                                "config": shipped.label(),
                                "folds": {g: round(f["score"], 2) for g, f in baseline["folds"].items()}}})
        rows.append({"metric": f"nab_{profile}_in_sample", "unit": "score", "ours": round(in_sample, 2), "peer": peer,
                     "peer_value": value, "ratio": _ratio(in_sample, value),
                     "params": {"note": "in-sample: defaults and threshold chosen on these 28 files"}})
    if not quick:
        rows += _cad_rows(files)
    # compile the numba kernels (or load them from the on-disk cache) before the clock starts:
    # throughput is the steady-state scoring rate, not a one-off JIT cost
    Ensemble().score_learn("warm-up", np.sin(np.arange(1500) / 7.0))
    _, rate = run_detector(Ensemble, files)
    rows.append({"metric": "nab_throughput", "unit": "points/s", "ours": round(rate), "peer": "target",
                 "peer_value": 200_000, "ratio": round(rate / 200_000, 3),
                 "params": {"points": sum(len(f.frame) for f in files), "batch": 1000, "detector": "ensemble"}})
    return rows


# the target for standard; for the other profiles ARTime's published (in-sample) figures
TARGET = {"standard": ("target", 77.0), "reward_low_FP_rate": ("ARTime (published)", 66.43),
          "reward_low_FN_rate": ("ARTime (published)", 81.86)}


def _ratio(ours: float, peer: float) -> float:
    return round(ours / peer, 3)


CAD_PUBLISHED = {"standard": 63.87, "reward_low_FP_rate": 60.81, "reward_low_FN_rate": 67.29}


def _cad_rows(files) -> list[dict]:
    from nexus_kernel.analysis.detectors import ContextOSE
    from nexus_kernel.analysis.nab import probation_length, run_detector, score_corpus

    import numpy as np

    ContextOSE(lo=0.0, hi=1.0).score_learn("warm-up", np.sin(np.arange(1500) / 7.0))
    scores, rates = {}, []
    for f in files:  # one detector per file, built from what NAB hands CAD: the file's range and length
        x = f.frame["value"].to_numpy(dtype=np.float64)
        rest = int(probation_length(len(x)) / 5.0)
        part, rate = run_detector(lambda: ContextOSE(lo=float(x.min()), hi=float(x.max()), rest_period=rest), [f])
        scores.update(part)
        rates.append((len(x), rate))
    online, online_rate = run_detector(ContextOSE, files)
    nab, free = score_corpus(files, scores), score_corpus(files, online)
    pts = sum(n for n, _ in rates)
    rows = []
    for profile, value in CAD_PUBLISHED.items():
        rows.append({"metric": f"nab_{profile}_context_ose_nab_protocol", "unit": "score",
                     "ours": round(nab[profile]["score"], 2), "peer": "CAD OSE (published)", "peer_value": value,
                     "ratio": round(nab[profile]["score"] / value, 3),
                     "params": {"range": "file min/max", "rest_period": "probation/5",
                                "points_per_s": round(pts / sum(n / r for n, r in rates))}})
    rows.append({"metric": "nab_standard_context_ose_online", "unit": "score", "ours": round(free["standard"]["score"], 2),
                 "peer": "CAD OSE (published)", "peer_value": CAD_PUBLISHED["standard"],
                 "ratio": round(free["standard"]["score"] / CAD_PUBLISHED["standard"], 3),
                 "params": {"range": "first 150 points, clipped", "points_per_s": round(online_rate)}})
    return rows


if __name__ == "__main__":
    for row in run():
        print(row)
