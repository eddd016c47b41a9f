"""The NAB scorer, written from the rules of Lavin & Ahmad (2015) and NAB's README/wiki.

Rules implemented (NAB v1.1):

* Each labelled anomaly has a *window* (NAB ships them in ``labels/combined_windows.json``; when only
  point labels exist, a window of ``10% of the file length / number of labels`` rows is centred on each).
* The first ``min(floor(0.15 * rows), 0.15 * 5000)`` rows are a *probationary period*: not scored.
* A detection (``anomaly_score >= threshold``) inside a window earns a scaled sigmoid of its relative
  position, ``A_TP`` for the window's first row down to about 0 at its last; only the *earliest*
  detection in a window counts. A window with no detection costs ``-A_FN``.
* A detection outside every window costs ``A_FP`` times a scaled sigmoid of its distance past the end of
  the previous window (in window widths): almost nothing just after a window, the full ``-A_FP`` three
  widths later or before any window.
* One threshold per detector and profile is chosen to maximise the total over the whole corpus, then the
  total is normalised ``100 * (S - S_null) / (S_perfect - S_null)``: 0 for a detector that never fires,
  100 for one that fires on the first row of every window and nowhere else.

Caveats: like NAB, a window that lies wholly inside the probationary period is not scored (it counts
for neither the detector nor the null and perfect baselines).

References: A. Lavin, S. Ahmad, "Evaluating Real-time Anomaly Detection Algorithms — the Numenta
Anomaly Benchmark", ICMLA 2015; github.com/numenta/NAB (``nab/sweeper.py``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd

__all__ = [
    "PROFILES",
    "Profile",
    "FileParts",
    "probation_length",
    "window_ids",
    "sweep_parts",
    "scores_by_threshold",
    "optimize_threshold",
    "score_at",
    "normalise",
]


@dataclass(frozen=True)
class Profile:
    name: str
    tp: float
    fp: float
    fn: float
    tn: float = 1.0


PROFILES: dict[str, Profile] = {
    "standard": Profile("standard", tp=1.0, fp=0.11, fn=1.0),
    "reward_low_FP_rate": Profile("reward_low_FP_rate", tp=1.0, fp=0.22, fn=1.0),
    "reward_low_FN_rate": Profile("reward_low_FN_rate", tp=1.0, fp=0.11, fn=2.0),
}


def probation_length(rows: int, percent: float = 0.15) -> int:
    return int(min(math.floor(percent * rows), percent * 5000))


def scaled_sigmoid(position: np.ndarray) -> np.ndarray:
    position = np.asarray(position, dtype=np.float64)
    out = 2.0 / (1.0 + np.exp(5.0 * position)) - 1.0
    return np.where(position > 3.0, -1.0, out)


_MAX_TP = float(scaled_sigmoid(np.array([-1.0]))[0])

TimeBound = str | datetime  # a window bound as the labels file gives it, or a parsed timestamp


def window_ids(timestamps: pd.Series | np.ndarray, windows: Sequence[tuple[TimeBound, TimeBound]]) -> np.ndarray:
    """Index of the window each row falls in (inclusive bounds), -1 outside every window."""
    ts = pd.to_datetime(pd.Series(np.asarray(timestamps))).to_numpy(dtype="datetime64[ns]")
    ids = np.full(len(ts), -1, dtype=np.int64)
    for k, (start, end) in enumerate(windows):
        lo = pd.Timestamp(start).tz_localize(None).to_datetime64()
        hi = pd.Timestamp(end).tz_localize(None).to_datetime64()
        ids[(ts >= lo) & (ts <= hi)] = k
    return ids


@dataclass
class FileParts:
    """Per scored row of one file: its weighted sweep score and its window (-1 outside)."""

    sweep: np.ndarray
    window: np.ndarray
    n_windows: int


def sweep_parts(ids: np.ndarray, profile: Profile, probation: int) -> FileParts:
    """NAB's sweep: the score each row would earn if it were the detection that counts."""
    n = len(ids)
    sweep = np.empty(n, dtype=np.float64)
    idx = np.arange(n)
    inside = ids >= 0
    # window extents (row numbers) in file order
    labels = sorted(set(ids[inside].tolist()))
    left = {k: int(idx[ids == k].min()) for k in labels}
    right = {k: int(idx[ids == k].max()) for k in labels}
    for k in labels:
        rows = idx[ids == k]
        width = right[k] - left[k] + 1
        pos = -(right[k] - rows + 1) / width
        sweep[rows] = scaled_sigmoid(pos) * profile.tp / _MAX_TP
    # outside: distance past the end of the previous window, in that window's width
    prev_right = np.full(n, -1, dtype=np.int64)
    prev_width = np.zeros(n, dtype=np.float64)
    for k in sorted(labels, key=lambda k: right[k]):
        after = idx > right[k]
        prev_right[after] = right[k]
        prev_width[after] = right[k] - left[k] + 1
    out = ~inside
    none_before = out & (prev_right < 0)
    sweep[none_before] = -1.0 * profile.fp
    past = out & (prev_right >= 0)
    if past.any():
        denom = np.maximum(prev_width[past] - 1.0, 1.0)
        sweep[past] = scaled_sigmoid(np.abs(prev_right[past] - idx[past]) / denom) * profile.fp
    keep = idx >= probation
    window = ids[keep]
    return FileParts(sweep=sweep[keep], window=window, n_windows=len(set(window[window >= 0].tolist())))


def scores_by_threshold(
    scores: np.ndarray, sweep: np.ndarray, window: np.ndarray, n_windows: int, profile: Profile
) -> tuple[np.ndarray, np.ndarray]:
    """Total score for every distinct threshold (plus one above all scores), vectorized.

    ``window`` must hold corpus-unique window ids (-1 outside). Returns (thresholds, totals), with the
    thresholds in decreasing order; a row is a detection when ``score >= threshold``.
    """
    order = np.argsort(-scores, kind="stable")
    s, sw, w = scores[order], sweep[order], window[order]
    fp_gain = np.where(w < 0, sw, 0.0)
    # a window's value is the best sweep score among its detected rows, -fn while none is detected
    win_gain = np.zeros(len(s))
    inwin = w >= 0
    if inwin.any():
        frame = pd.DataFrame({"w": w[inwin], "v": sw[inwin]})
        best = frame.groupby("w")["v"].cummax().to_numpy()
        prev = frame.assign(b=best).groupby("w")["b"].shift(1).fillna(-profile.fn).to_numpy()
        first = ~frame.duplicated("w").to_numpy()
        prev = np.where(first, -profile.fn, prev)
        win_gain[inwin] = best - prev
    total = -profile.fn * n_windows + np.cumsum(fp_gain + win_gain)
    last_of_tie = np.r_[s[1:] != s[:-1], True]
    thresholds = np.r_[np.inf, s[last_of_tie]]
    totals = np.r_[-profile.fn * n_windows, total[last_of_tie]]
    return thresholds, totals


def optimize_threshold(files: list[tuple[np.ndarray, FileParts]], profile: Profile) -> tuple[float, float]:
    """The threshold that maximises the corpus total, and that total."""
    scores, sweeps, windows, offset, n_windows = [], [], [], 0, 0
    for score, parts in files:
        scores.append(score)
        sweeps.append(parts.sweep)
        windows.append(np.where(parts.window >= 0, parts.window + offset, -1))
        offset += int(parts.window.max(initial=-1)) + 1
        n_windows += parts.n_windows
    thresholds, totals = scores_by_threshold(
        np.concatenate(scores), np.concatenate(sweeps), np.concatenate(windows), n_windows, profile
    )
    best = int(np.argmax(totals))
    return float(thresholds[best]), float(totals[best])


def score_at(score: np.ndarray, parts: FileParts, threshold: float, profile: Profile) -> dict[str, float]:
    """One file's counts and raw score at a threshold."""
    detected = score >= threshold
    inwin = parts.window >= 0
    fp_rows = detected & ~inwin
    total = float(parts.sweep[fp_rows].sum())
    tp = fn = 0
    for k in np.unique(parts.window[inwin]):
        rows = (parts.window == k) & detected
        if rows.any():
            total += float(parts.sweep[rows].max())
            tp += 1
        else:
            total -= profile.fn
            fn += 1
    return {"tp": tp, "fp": int(fp_rows.sum()), "fn": fn, "tn": int((~detected & ~inwin).sum()), "score": total}


def normalise(raw: float, n_windows: int, profile: Profile) -> float:
    null = -profile.fn * n_windows
    perfect = profile.tp * n_windows
    return 100.0 * (raw - null) / (perfect - null) if perfect != null else 0.0
