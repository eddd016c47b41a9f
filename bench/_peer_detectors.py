"""Library anomaly detectors run the online way ours run, for ``bench detect-peers``.

Each adapter follows one stream (``score_learn(key, values)`` per micro-batch, as
:func:`nexus_kernel.analysis.nab.run_detector` calls it) and scores every point from what came before it
only: a point's score never depends on a later point. Scores are on one scale for every stream (one
NAB threshold is optimised over the whole corpus), stated per adapter.

* :class:`RiverHST` — river's ``HalfSpaceTrees`` behind its online ``MinMaxScaler`` (river's defaults),
  ``score_one`` before ``learn_one``.
* :class:`StumpyDiscord` — the discord distance of the newest subsequence from ``stumpy.stumpi``, the
  incremental matrix profile (STAMPI/STOMPI): the z-normalised distance of the subsequence of length ``m``
  ending at each point to its nearest *earlier* subsequence (the left matrix profile), over the last
  ``history`` points. Scale-free (z-normalised), divided by its maximum ``2·sqrt(m)`` so it is in [0, 1].
* :class:`PyodWindows` — PyOD's ``HBOS`` (histogram-based outlier score, PyOD defaults) on sliding windows
  of the last ``w`` values, fitted on the trailing ``train`` windows and refitted every ``refit`` points;
  the points between two refits are scored by the model fitted before them. HBOS is inductive (a new
  point's score uses the fitted histograms only; PyOD's ``ECOD`` was not used because its
  ``decision_function`` ranks new points together with each other). Its score, a sum of ``-log``
  densities, is on the same scale for every stream.

Points before a detector can score (warm-up) get score 0.

A raw score's scale can still differ from stream to stream (what counts as a large discord distance on
a noisy stream is ordinary on a quiet one), which a single corpus-wide threshold punishes. So each
peer is also evaluated with :func:`self_calibrated`: its raw score as a z-score against the stream's own
previous scores — causal, scale-free, no knob chosen on the data — and whether to use it is chosen by
the folds like any other option.

References: Yeh et al., "Matrix Profile I" (ICDM 2016) and Zhu et al., "Matrix Profile II" (STOMP,
ICDM 2016), stumpy docs (``stumpy.stumpi``); Goldstein & Dengel, "Histogram-based Outlier Score (HBOS)"
(KI 2012); Zhao, Nasrullah & Li, "PyOD" (JMLR 2019); Tan, Ting & Liu, "Fast anomaly detection for
streaming data" (IJCAI 2011, Half-Space Trees).
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np


def self_calibrated(score: np.ndarray, window: int = 1000, min_periods: int = 100) -> np.ndarray:
    """``(s_t - mean) / std`` of the previous ``window`` raw scores of the same stream (0 until
    ``min_periods`` of them exist; the std is floored at 1e-9 so a flat history does not divide by 0)."""
    import pandas as pd

    past = pd.Series(np.asarray(score, dtype=np.float64)).shift(1).rolling(window, min_periods=min_periods)
    mean, std = past.mean().to_numpy(), past.std().to_numpy()
    z = (score - mean) / np.maximum(np.nan_to_num(std, nan=1.0), 1e-9)
    return np.nan_to_num(z, nan=0.0, posinf=0.0, neginf=0.0)


class RiverHST:
    """river ``MinMaxScaler() | HalfSpaceTrees(seed=42)``, river's defaults otherwise."""

    name = "river HalfSpaceTrees"

    def __init__(self) -> None:
        from river import anomaly, preprocessing

        self.model = preprocessing.MinMaxScaler() | anomaly.HalfSpaceTrees(seed=42)

    def score_learn(self, key: str, values: np.ndarray) -> SimpleNamespace:
        out = np.empty(len(values))
        for i, v in enumerate(values):
            x = {"value": float(v)}
            out[i] = self.model.score_one(x)
            self.model.learn_one(x)
        return SimpleNamespace(score=out)


class StumpyDiscord:
    """Left matrix profile of the newest subsequence, from ``stumpy.stumpi``.

    The profile grows (``egress=False``) from the first ``4·m`` points until it holds ``history``
    points, then is rebuilt once on the last ``history`` points with ``egress=True`` (a fixed-length
    window: each update drops the oldest point), so the cost per point stays O(history).
    """

    name = "stumpy stumpi discord"

    def __init__(self, m: int = 64, history: int = 1000) -> None:
        self.m, self.history = int(m), int(history)
        self.warm = 4 * self.m
        self._buffer: list[float] = []
        self._mp = None
        self._egress = False

    def score_learn(self, key: str, values: np.ndarray) -> SimpleNamespace:
        import stumpy

        out = np.zeros(len(values))
        scale = 2.0 * np.sqrt(self.m)
        for i, v in enumerate(np.asarray(values, dtype=np.float64)):
            if self._mp is None:
                self._buffer.append(float(v))
                if len(self._buffer) >= self.warm:
                    self._mp = stumpy.stumpi(np.asarray(self._buffer), self.m, egress=False)
                continue
            self._mp.update(float(v))
            d = float(self._mp.left_P_[-1])
            out[i] = d / scale if np.isfinite(d) else 0.0
            if not self._egress and len(self._mp.T_) >= self.history:
                self._mp = stumpy.stumpi(self._mp.T_[-self.history:].copy(), self.m, egress=True)
                self._egress = True
        return SimpleNamespace(score=out)


class PyodWindows:
    """PyOD ``HBOS()`` on windows of the last ``w`` values, refitted every ``refit`` points on the
    trailing ``train`` windows (the first fit once ``min_train`` windows exist)."""

    name = "PyOD HBOS on windows"

    def __init__(self, w: int = 8, train: int = 1000, refit: int = 100, min_train: int = 100) -> None:
        self.w, self.train, self.refit, self.min_train = int(w), int(train), int(refit), int(min_train)
        self._values = np.empty(0)
        self._model = None
        self._since = 0

    def score_learn(self, key: str, values: np.ndarray) -> SimpleNamespace:
        from pyod.models.hbos import HBOS

        values = np.asarray(values, dtype=np.float64)
        out = np.zeros(len(values))
        pos = 0
        while pos < len(values):
            # score up to the next refit with the model fitted before these points
            take = len(values) - pos if self._model is None else min(len(values) - pos, self.refit - self._since)
            if self._model is None:
                take = min(take, max(1, self.min_train + self.w - 1 - len(self._values)))
            chunk = values[pos:pos + take]
            joined = np.r_[self._values[-(self.w - 1):] if self.w > 1 else np.empty(0), chunk]
            if self._model is not None and len(joined) >= self.w:
                windows = np.lib.stride_tricks.sliding_window_view(joined, self.w)
                scored = self._model.decision_function(windows)
                out[pos + take - len(scored):pos + take] = scored
            self._values = np.r_[self._values, chunk][-(self.train + self.w - 1):]
            self._since += take
            pos += take
            enough = len(self._values) - self.w + 1 >= self.min_train
            if enough and (self._model is None or self._since >= self.refit):
                windows = np.lib.stride_tricks.sliding_window_view(self._values, self.w)
                self._model = HBOS().fit(windows)
                self._since = 0
        return SimpleNamespace(score=out)
