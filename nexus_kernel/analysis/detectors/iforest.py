"""IsolationForest on window features (scikit-learn), refitted on a bounded recent buffer.

Each point becomes a feature vector of its last ``lags`` values relative to their mean (shape), their
spread, and its step from the previous value; a forest fitted on the last ``buffer`` vectors scores
it. The raw isolation score is standardised against the training scores, so the statistic is a z.

Parameters: ``lags``, ``buffer`` (vectors kept: the bounded memory), ``refit`` (points between fits),
``n_estimators``, ``threshold`` (z), ``seed`` (the forest's random_state: deterministic).

Caveats: the slowest detector here (a forest pass per batch, a fit every ``refit`` points) — not part of
the default ensemble's hot path; scores 0 until the first fit.

Example
-------
>>> import numpy as np
>>> from nexus_kernel.analysis.detectors import IsolationForestDetector
>>> det = IsolationForestDetector(buffer=256, refit=256)
>>> _ = det.score_learn("s", np.sin(np.arange(800) / 5))  # one batch: scores 0, then the first fit
>>> bool(det.score_learn("s", np.array([8.0])).score[-1] > 0.99)
True

Reference: F. T. Liu, K. M. Ting, Z.-H. Zhou, "Isolation Forest", ICDM 2008.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ._base import Detector, Result, detectors


@detectors.register("iforest")
class IsolationForestDetector(Detector):
    name = "iforest"
    feature = "window_shape"
    statistic = "z"

    def __init__(self, *, lags: int = 8, buffer: int = 512, refit: int = 1024, n_estimators: int = 50,
                 threshold: float = 5.0, seed: int = 0) -> None:
        super().__init__(seed=seed)
        self.lags, self.buffer, self.refit, self.n_estimators = lags, buffer, refit, n_estimators
        self.threshold = threshold

    def new_state(self):
        return {"tail": np.zeros(0), "feats": np.zeros((0, 4)), "model": None, "mu": 0.0, "sd": 1.0, "since_fit": 0}

    def _features(self, tail: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, int]:
        joined = np.r_[tail, x]
        k = self.lags
        if len(joined) < k:
            return np.zeros((0, 4)), len(x)
        win = sliding_window_view(joined, k)
        mean, sd = win.mean(axis=1), win.std(axis=1)
        scale = np.maximum(np.median(sd) if len(sd) else 1.0, 1e-9)
        last = win[:, -1]
        feats = np.c_[(last - mean) / scale, sd / scale, (last - win[:, -2]) / scale, (win.max(1) - win.min(1)) / scale]
        skipped = len(x) - len(win) if len(win) < len(x) else 0
        return feats[-(len(x) - skipped):] if len(x) - skipped > 0 else np.zeros((0, 4)), skipped

    def _fit(self, state) -> None:
        from sklearn.ensemble import IsolationForest

        model = IsolationForest(n_estimators=self.n_estimators, random_state=self.seed, max_samples=min(256, len(state["feats"])))
        model.fit(state["feats"])
        train = -model.score_samples(state["feats"])
        state["model"], state["mu"], state["sd"] = model, float(np.median(train)), float(max(train.std(), 1e-6))
        state["since_fit"] = 0

    def _run(self, state, x):
        n = len(x)
        z = np.full(n, np.nan)
        feats, skipped = self._features(state["tail"], x)
        state["tail"] = np.r_[state["tail"], x][-(self.lags - 1):]
        if len(feats):
            if state["model"] is not None:
                z[skipped:] = (-state["model"].score_samples(feats) - state["mu"]) / state["sd"]
            state["feats"] = np.r_[state["feats"], feats][-self.buffer:]
            state["since_fit"] += len(feats)
            due = state["model"] is None and len(state["feats"]) >= min(self.buffer, 128)
            if due or state["since_fit"] >= self.refit:
                self._fit(state)
        return Result(self._score_of(np.maximum(z, 0.0)), z, np.full(n, np.nan))
