"""Sequence novelty: the share of recent-value contexts whose continuation was never seen (CAD-style).

A contextual detector in the spirit of CAD OSE (Smirnov, NAB 2016) and HTM's sequence memory: each
value is quantised into one of ``bins`` levels of the range seen over the first ``warmup`` points
(values outside that range get their own levels, up to one range beyond either side); for every
order ``k = 1..order`` the context is the last ``k`` levels. The statistic is the fraction of the
contexts *already seen* whose continuation by the current level was *never* seen — 0 for a stream
that repeats its own patterns, 1 when the value leaves every known path (a level never seen before
scores 1). Contexts and continuations live in fixed-size direct-mapped hash tables (``2**table_bits``
slots each): memory per series is bounded, and a collision can only make a new pattern look known.

Parameters: ``bins`` (levels over the warm-up range), ``order`` (longest context), ``warmup`` (points
that fix the range; scoring starts after them), ``table_bits``, ``threshold`` (on the statistic).

Caveats: the range is frozen after the warm-up (as CAD's is fixed from the data's extremes), so a
series that drifts far beyond it is quantised coarsely at the edges; a noisy series makes many
contexts, so the statistic is rarely exactly 0 — it is meant to be read through the ensemble's
likelihood (how unusual is the recent novelty for this series), as NAB's CAD and HTM scores are.

Example
-------
>>> import numpy as np
>>> from nexus_kernel.analysis.detectors import SequenceNovelty
>>> x = np.tile(np.r_[np.zeros(5), np.ones(5)], 60); x[455] = 0.0
>>> r = SequenceNovelty(warmup=50).score_learn("s", x)
>>> float(r.statistic[455]) > 0.3 and float(np.nanmax(r.statistic[300:450])) == 0.0
True

Reference: M. Smirnov, "Contextual Anomaly Detector" (CAD OSE), github.com/smirmik/CAD, in
github.com/numenta/NAB ``nab/detectors/context_ose``; J. Hawkins, S. Ahmad, "Why neurons have
thousands of synapses", Front. Neural Circuits 2016 (sequence memory).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._base import Detector, Result, detectors
from ._base import expected_phrase as _expected

_MIX = np.uint64(0x9E3779B97F4A7C15)


@njit(cache=True, nogil=True)
def _slot(key, bits):
    return int((np.uint64(key) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(64 - bits))


@njit(cache=True, nogil=True)
def _sequence(x, hist, ctx, nxt, meta, bins, order, warmup, bits):
    # meta: count, lo, hi; hist: the last ``order`` levels (most recent last)
    n = x.shape[0]
    stat = np.full(n, np.nan)
    c, lo, hi = meta[0], meta[1], meta[2]
    for i in range(n):
        xi = x[i]
        if c < warmup:
            if c == 0 or xi < lo:
                lo = xi
            if c == 0 or xi > hi:
                hi = xi
            c += 1.0
            if c < warmup:
                continue
        step = (hi - lo) / bins
        if step <= 0.0:
            step = 1e-9 + 1e-6 * abs(hi)
        q = (xi - lo) / step
        lvl = int(np.floor(q)) if q < 2 * bins else 2 * bins
        if lvl == bins and xi <= hi:
            lvl = bins - 1
        if lvl < -bins:
            lvl = -bins
        sym = lvl + bins + 1  # 1..3*bins+1; 0 means "no level yet"
        if c > warmup:  # score: the first post-warm-up point only fills the history
            seen = 0
            novel = 0
            key = 0
            for k in range(1, order + 1):
                h = hist[order - k]
                if h == 0:
                    break
                key = key * 1000003 + h + 7919 * k
                s = _slot(key, bits)
                if ctx[s] == key + 1:
                    seen += 1
                    full = key * 1000003 + sym
                    if nxt[_slot(full, bits)] != full + 1:
                        novel += 1
            first = sym * 2654435761 + 17
            if nxt[_slot(first, bits)] != first + 1:
                stat[i] = 1.0
            elif seen > 0:
                stat[i] = novel / seen
            else:
                stat[i] = 0.0
        # learn: the level itself, then every context and its continuation
        first = sym * 2654435761 + 17
        nxt[_slot(first, bits)] = first + 1
        key = 0
        for k in range(1, order + 1):
            h = hist[order - k]
            if h == 0:
                break
            key = key * 1000003 + h + 7919 * k
            ctx[_slot(key, bits)] = key + 1
            full = key * 1000003 + sym
            nxt[_slot(full, bits)] = full + 1
        for k in range(order - 1):
            hist[k] = hist[k + 1]
        hist[order - 1] = sym
        c += 1.0
    meta[0], meta[1], meta[2] = c, lo, hi
    return stat


@detectors.register("sequence")
class SequenceNovelty(Detector):
    name = "sequence"
    feature = "value_sequence"
    statistic = "novel_context_fraction"

    def __init__(self, *, bins: int = 8, order: int = 6, warmup: int = 150, table_bits: int = 15,
                 threshold: float = 1.0, seed: int = 0) -> None:
        super().__init__(seed=seed)
        if bins < 2 or order < 1 or warmup < 2 or not 8 <= table_bits <= 24:
            raise ValueError("sequence needs bins >= 2, order >= 1, warmup >= 2, 8 <= table_bits <= 24")
        self.bins, self.order, self.warmup, self.table_bits, self.threshold = bins, order, warmup, table_bits, threshold

    def new_state(self):
        size = 1 << self.table_bits
        return {"hist": np.zeros(self.order, dtype=np.int64), "ctx": np.zeros(size, dtype=np.int64),
                "nxt": np.zeros(size, dtype=np.int64), "meta": np.zeros(3)}

    def _score_of(self, statistic):
        score = np.clip(statistic, 0.0, 1.0)
        return np.where(np.isnan(score), 0.0, score)  # (np.nan_to_num cost more, per micro-batch)

    def _run(self, state, x):
        s = _sequence(x, state["hist"], state["ctx"], state["nxt"], state["meta"], self.bins, self.order,
                      self.warmup, self.table_bits)
        return Result(self._score_of(s), s, np.full(len(x), np.nan))

    def describe(self, facts, observed):
        share = facts.get("value") or 0.0
        return (f"value {observed:.6g}{_expected(facts)}: {share:.0%} of the recent value patterns it continues "
                f"never went on "
                f"this way before (threshold {self.threshold:.0%}), {self.name}")
