"""CAD OSE: Smirnov's Contextual Anomaly Detector (Open Source Edition), a faithful compiled port.

Each value is quantised to ``bits`` binary digits of its position in the range and becomes a set of
*facts* (digit ``s`` is 0 or 1). The detector remembers *contexts*: a left part (the facts of the
previous step plus the "neurons" — the contexts that fired then) and a right part (facts seen next).
Every step it (1) stores the zero-level context "last step's facts → these facts", (2) finds the
contexts whose left part fully matched last step and counts how many of them also fully matched now
(*active*), (3) when the zero-level context was new, grows new contexts from the partial overlaps
and (4) predicts the next facts from the most reliable fully matched contexts. The score of a value
is 0 when all its facts were predicted, else ``(1 - active share + new-context share) / 2``; after a
score ≥ ``base_threshold`` the output is held at 0 for ``rest_period`` points (the raw score is
still learned from).

This follows ``nab/detectors/context_ose`` (cad_ose.py, context_operator.py) step by step — the same
quirks included: the "no new context" id is Python's ``False``, which equals context 0, so context 0
is skipped on those steps; semi-contexts are keyed by CPython 2's tuple hash, which also breaks ties
between equally active contexts. One thing differs: where the original iterates a Python 2 dict of
a semi-context's contexts, this port goes in creation order, which can renumber new contexts.
See :mod:`._cad_kernel` for the data layout.

Range. NAB hands CAD the file's minimum and maximum (``lo``/``hi`` here), which an online detector
cannot know. With ``lo``/``hi`` unset the range is the one of the first ``warmup`` points (scored
0); those points are then replayed through the detector so it learns from them. Values outside the
range get more digits (above) or a "below" fact, i.e. facts never seen — novel, as they should be.

Parameters: ``lo``, ``hi``, ``warmup``, ``bits`` (3: eight levels), ``max_left`` (longest left part
a new context may have, 7), ``max_active`` (neurons per step, 15), ``rest_period`` (NAB passes its
probationary period / 5, i.e. 150 on files of 5,000+ rows), ``base_threshold`` (0.75),
``max_contexts`` (memory cap: past it nothing new is stored), ``threshold`` (on the score).

Caveats: memory grows with the number of distinct contexts (tens of thousands on a 20k-point NAB
file: a few MB); ``max_contexts`` bounds it. Scores come in few distinct values, which is why NAB
reads it raw but an ensemble reads it through a likelihood. The range is frozen after warm-up.

Example
-------
>>> import numpy as np
>>> from nexus_kernel.analysis.detectors import ContextOSE
>>> x = np.tile(np.r_[np.zeros(5), np.ones(5)], 80); x[705] = 0.5
>>> r = ContextOSE(lo=0.0, hi=1.0, rest_period=5).score_learn("s", x)
>>> bool(r.score[705] > 0.5 and r.score[600:700].max() == 0.0)
True

Reference: M. Smirnov, "Contextual Anomaly Detector", github.com/smirmik/CAD; its NAB detector
``nab/detectors/context_ose`` in github.com/numenta/NAB (CAD OSE, NAB 2016 winner). Numba port,
own implementation of the algorithm (the original is AGPL-3.0; no code copied).
"""

from __future__ import annotations

import math

import numpy as np

from . import _cad_kernel as k
from ._base import Detector, Result, detectors

_START = 256  # initial context capacity; tables double as needed


def _tables(cap: int, max_active: int) -> dict[str, np.ndarray]:
    bits = max(int(math.ceil(math.log2(cap))) + 1, 8)
    i64 = np.int64
    return {
        "lsc": np.zeros((cap, 7), i64), "rsc": np.zeros((cap, 4), i64), "ctx": np.zeros((cap, 7), i64),
        "pool": np.zeros(cap * 16, i64), "adjl": np.zeros((cap * 16, 2), i64), "adjr": np.zeros((cap * 8, 2), i64),
        "headl": np.full(k.KS + cap, -1, i64), "headr": np.full(k.KS, -1, i64),
        "hl": np.zeros(1 << bits, i64), "hr": np.zeros(1 << bits, i64), "hc": np.zeros(1 << bits, i64),
        "hbits": np.array([bits], i64),
        "lkeys": np.zeros(cap, i64), "rkeys": np.zeros(cap, i64), "ckeys": np.zeros(cap, i64),
        "crossl": np.zeros(cap, i64), "crossr": np.zeros(cap, i64), "group": np.zeros(k.KS + max_active, i64),
        "act": np.zeros(cap, i64), "potl": np.zeros(cap, i64), "potm": np.zeros(cap, i64),
        "poth": np.zeros(cap, i64), "stamp": np.zeros(k.KS + cap, i64), "tmp": np.zeros(cap + 1, i64),
    }


def _grow(st: dict, max_active: int) -> None:
    """Double every table, keeping what is stored, and re-hash."""
    cap = st["ctx"].shape[0] * 2
    new = _tables(cap, max_active)
    for name, arr in new.items():
        if name in ("hl", "hr", "hc", "hbits"):
            continue
        old = st[name]
        if name in ("headl", "stamp"):
            arr[: len(old)] = old
        elif name != "group":
            arr[: len(old)] = old
        else:
            arr[:] = old
    ic, bits = st["ic"], int(new["hbits"][0])
    k.rebuild(new["hl"], bits, new["lkeys"], ic[k.I_NL])
    k.rebuild(new["hr"], bits, new["rkeys"], ic[k.I_NR])
    k.rebuild(new["hc"], bits, new["ckeys"], ic[k.I_NC])
    st.update(new)


@detectors.register("context_ose")
class ContextOSE(Detector):
    name = "context_ose"
    feature = "value_context"
    statistic = "cad_score"

    def __init__(self, *, lo: float | None = None, hi: float | None = None, warmup: int = 150, bits: int = 3,
                 max_left: int = 7, max_active: int = 15, rest_period: int = 30, base_threshold: float = 0.75,
                 max_contexts: int = 1 << 20, clip: bool | None = None, threshold: float = 0.75,
                 seed: int = 0) -> None:
        super().__init__(seed=seed)
        if (lo is None) != (hi is None) or (lo is not None and hi is not None and not hi >= lo):
            raise ValueError("context_ose needs both lo and hi (lo <= hi) or neither")
        if warmup < 1 or not 1 <= bits <= 29 or max_left < 1 or max_active < 1 or rest_period < 0 or max_contexts < 16:
            raise ValueError("context_ose needs warmup >= 1, 1 <= bits <= 29, max_left, max_active >= 1, "
                             "rest_period >= 0, max_contexts >= 16")
        self.lo, self.hi, self.warmup, self.bits = lo, hi, warmup, bits
        self.max_left, self.max_active, self.rest_period = max_left, max_active, rest_period
        self.base_threshold, self.max_contexts, self.threshold = base_threshold, max_contexts, threshold
        # NAB's given range is never left; a guessed one is, so it is clipped unless told otherwise
        self.clip = (lo is None) if clip is None else bool(clip)

    def new_state(self):
        st = _tables(_START, self.max_active)
        st["ic"] = np.zeros(12, np.int64)
        known = self.lo is not None
        # meta: points seen, lo, hi, range fixed (1/0)
        st["meta"] = np.array([0.0, self.lo or 0.0, self.hi or 0.0, 1.0 if known else 0.0])
        st["wbuf"] = np.zeros(0 if known else self.warmup)
        return st

    def _score_of(self, statistic):
        score = np.clip(statistic, 0.0, 1.0)
        return np.where(np.isnan(score), 0.0, score)  # (np.nan_to_num cost more, per micro-batch)

    def _feed(self, st: dict, x: np.ndarray) -> np.ndarray:
        n = len(x)
        raw, ret = np.zeros(n), np.zeros(n)
        lo, hi = float(st["meta"][1]), float(st["meta"][2])
        done = 0
        while done < n:
            done += k.run(x[done:], raw[done:], ret[done:], st["ic"], st["lsc"], st["rsc"], st["ctx"], st["pool"],
                          st["adjl"], st["adjr"], st["headl"], st["headr"], st["hl"], st["hr"], st["hc"],
                          int(st["hbits"][0]), st["lkeys"], st["rkeys"], st["ckeys"], st["crossl"], st["crossr"],
                          st["group"], st["act"], st["potl"], st["potm"], st["poth"], st["stamp"], st["tmp"],
                          lo, hi, self.bits, self.max_left, self.max_active, self.rest_period,
                          self.base_threshold, self.max_contexts, self.clip)
            if done < n:
                _grow(st, self.max_active)
        return ret

    def _run(self, st, x):
        meta = st["meta"]
        stat = np.full(len(x), np.nan)
        start = 0
        if meta[3] == 0.0:  # still learning the range: buffer, then replay the warm-up once it is known
            take = min(len(x), self.warmup - int(meta[0]))
            st["wbuf"][int(meta[0]) : int(meta[0]) + take] = x[:take]
            meta[0] += take
            start = take
            if meta[0] >= self.warmup:
                meta[1], meta[2], meta[3] = st["wbuf"].min(), st["wbuf"].max(), 1.0
                self._feed(st, st["wbuf"])
                st["wbuf"] = np.zeros(0)
        if start < len(x):
            stat[start:] = self._feed(st, x[start:])
            meta[0] += len(x) - start
        return Result(self._score_of(stat), stat, np.full(len(x), np.nan))
