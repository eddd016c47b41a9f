"""Gradient boosting on lag and calendar features (scikit-learn ``HistGradientBoostingRegressor``).

The model predicts the change from the last value, ``y_t - y_{t-1}``, from the recent shape
(``y_{t-k} - y_{t-1}`` for the short lags), the same phase one season back (``y_{t-m} - y_{t-1}`` and
``y_{t-m-1} - y_{t-1}``: their difference is how the season moved at this point last time) and the
calendar (hour of day, day of week) of ``t``. Predicting the change keeps the trees level-free, so a
series that drifts above everything seen in training is still followed. Multi-step forecasts are
recursive: each step's forecast becomes the next step's lag.

The band is split-conformal: the model is trained on the first ``1 - calibration_share`` of the fit
window and its one-step errors on the rest calibrate the band, which widens as ``sqrt(h)`` (errors of
a recursive forecast of changes add up). The season is detected as for
:class:`~nexus_kernel.analysis.forecasting.ets.HoltWinters`, or given.

Caveats
-------
* Forecasting costs one ``predict`` call per step: fine for hundreds of steps, slow for many thousands.
* The trained model does not see the calibration tail; its lags do (lags always come from the newest
  data).
* Trees are trained and evaluated on one OpenMP thread: the models are small, the process runs one per
  series, and letting each spread over every core made a fit ~50x slower on a busy 2-core machine.

Parameters
----------
season
    ``"auto"``, an int (points per season) or ``None``.
lags
    Short lags in points.
max_iter, learning_rate, max_leaf_nodes
    Passed to ``HistGradientBoostingRegressor``.
fit_window
    Last grid points used to train and calibrate.
calibration_share
    Share of the fit window held out to calibrate the band.
**base
    :class:`~nexus_kernel.analysis.forecasting.BaseForecaster` options (``seed`` seeds the model).

Example
-------
>>> import numpy as np, pandas as pd
>>> ts = pd.date_range("2024-01-01", periods=24 * 20, freq="1h", tz="UTC")
>>> y = 5 + np.sin(np.arange(len(ts)) * 2 * np.pi / 24)
>>> f = GradientBoosting(background=False).learn(ts, y)
>>> out = f.forecast(24)
>>> bool(np.abs(out["yhat"].to_numpy() - y[-24:]).max() < 0.2)
True

References
----------
Ke et al., LightGBM (2017) for the histogram trees; Januschowski et al., "Forecasting with trees",
IJF 38 (2022); Vovk, Gammerman & Shafer, *Algorithmic Learning in a Random World* (conformal bands).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingRegressor
from threadpoolctl import threadpool_limits

from nexus_kernel.analysis.forecasting._base import BaseForecaster
from nexus_kernel.analysis.forecasting.registry import forecasters
from nexus_kernel.analysis.seasonality import calendar_periods, dominant_period

__all__ = ["GradientBoosting"]


@dataclass
class _State:
    model: Any  # a fitted HistGradientBoostingRegressor, or None for a constant series
    m: int
    lags: tuple[int, ...]
    anchor: int
    step: int
    tail: np.ndarray  # last `depth` values, oldest first

    @property
    def depth(self) -> int:
        return max(max(self.lags), self.m + 1 if self.m else 0) + 1


def _lag_columns(values: np.ndarray, positions: np.ndarray, s: _State) -> list[np.ndarray]:
    base = values[positions - 1]
    cols = [values[positions - k] - base for k in s.lags if k > 1]
    if s.m:
        cols += [values[positions - s.m] - base, values[positions - s.m - 1] - base]
    return cols


def _calendar(slots: np.ndarray, s: _State) -> np.ndarray:
    stamps = pd.DatetimeIndex(s.anchor + slots * s.step, tz="UTC")
    return np.column_stack([stamps.hour + stamps.minute / 60.0, stamps.day_of_week.astype("float64")])


def _features(values: np.ndarray, positions: np.ndarray, slots: np.ndarray, s: _State) -> np.ndarray:
    """Feature rows predicting values[p] for each p in positions (needs p >= depth - 1)."""
    lag = _lag_columns(values, positions, s)
    return np.column_stack([*lag, _calendar(slots, s)]) if lag else _calendar(slots, s)


@forecasters.register("gbm")
class GradientBoosting(BaseForecaster):
    __doc__ = __doc__

    min_fit_points = 40

    def __init__(
        self,
        season: int | str | None = "auto",
        lags: tuple[int, ...] = (1, 2, 3, 6),
        max_iter: int = 150,
        learning_rate: float = 0.1,
        max_leaf_nodes: int = 31,
        fit_window: int = 5000,
        calibration_share: float = 0.2,
        max_season: int = 1000,
        **base,
    ) -> None:
        super().__init__(**base)
        if season not in ("auto", None) and (not isinstance(season, int) or season < 2):
            raise ValueError("season must be 'auto', None or an int >= 2")
        if not lags or min(lags) < 1:
            raise ValueError("lags must be positive")
        if not 0.0 < calibration_share < 0.9:
            raise ValueError("calibration_share must be in (0, 0.9)")
        self.season = season
        self.lags = tuple(sorted({1, *(int(k) for k in lags)}))
        self.max_iter = int(max_iter)
        self.learning_rate = float(learning_rate)
        self.max_leaf_nodes = int(max_leaf_nodes)
        self.fit_window = int(fit_window)
        self.calibration_share = float(calibration_share)
        self.max_season = int(max_season)

    @property
    def features(self) -> list[str]:
        """Inputs of the fitted model, in column order."""
        s = self._state
        if s is None:
            return []
        names = [f"lag{k}-lag1" for k in s.lags if k > 1]
        names += [f"lag{s.m}-lag1", f"lag{s.m + 1}-lag1"] if s.m else []
        return names + ["hour", "dayofweek"]

    def _fit(self, y: np.ndarray, start_slot: int) -> tuple[_State, np.ndarray]:
        with threadpool_limits(limits=1, user_api="openmp"):
            return self._fit_trees(y, start_slot)

    def _fit_trees(self, y: np.ndarray, start_slot: int) -> tuple[_State, np.ndarray]:
        if self._anchor is None or self._step is None:  # the base class fits only once points set the grid
            raise RuntimeError("gbm cannot fit before its first points fix the time grid")
        start_slot += max(0, len(y) - self.fit_window)
        y = y[-self.fit_window:]
        if self.season == "auto":
            m = dominant_period(y, max_period=min(self.max_season, len(y) // 4),
                                prefer=calendar_periods(self.step)) or 0
        else:
            m = int(self.season or 0)
        state = _State(None, m, self.lags, int(self._anchor), int(self._step), np.empty(0))
        if len(y) < state.depth + 20:  # too short for its season: drop the season lags
            state.m = 0
        positions = np.arange(state.depth - 1, len(y))
        if len(positions) < 10 or np.ptp(y) == 0.0:
            state.tail = y[-state.depth:].copy()
            return state, np.zeros(max(len(y) - 1, 1))
        X = _features(y, positions, start_slot + positions, state)
        target = y[positions] - y[positions - 1]
        cut = max(5, int(len(positions) * (1.0 - self.calibration_share)))
        model = HistGradientBoostingRegressor(
            max_iter=self.max_iter,
            learning_rate=self.learning_rate,
            max_leaf_nodes=self.max_leaf_nodes,
            early_stopping=False,
            random_state=self.seed,
        )
        model.fit(X[:cut], target[:cut])
        state.model = model
        resid = target[cut:] - model.predict(X[cut:]) if cut < len(target) else target - model.predict(X)
        state.tail = y[-state.depth:].copy()
        return state, resid

    def _update(self, state: _State, y: np.ndarray, start_slot: int) -> tuple[_State, np.ndarray]:
        joined = np.r_[state.tail, y]
        positions = np.arange(len(state.tail), len(joined))
        slots = start_slot + np.arange(len(y))
        if state.model is None or len(state.tail) < state.depth:
            resid = y - joined[positions - 1]
        else:
            X = _features(joined, positions, slots, state)
            with threadpool_limits(limits=1, user_api="openmp"):
                resid = y - (joined[positions - 1] + state.model.predict(X))
        new = _State(state.model, state.m, state.lags, state.anchor, state.step, joined[-state.depth:].copy())
        return new, resid

    def _predict(self, state: _State, horizon: int, start_slot: int) -> tuple[np.ndarray, np.ndarray]:
        values = np.r_[state.tail, np.zeros(horizon)]
        n0 = len(state.tail)
        growth = np.sqrt(np.arange(1, horizon + 1, dtype="float64"))
        if state.model is None or n0 < state.depth:
            return np.full(horizon, state.tail[-1]), growth
        # the calendar columns are known up front; only the lag columns are recursive
        calendar = _calendar(start_slot + np.arange(horizon), state)
        row = np.empty((1, calendar.shape[1] + len(_lag_columns(values, np.array([n0]), state))))
        with threadpool_limits(limits=1, user_api="openmp"):
            self._recurse(state, values, n0, row, calendar, horizon)
        return values[n0:], growth

    @staticmethod
    def _recurse(state: _State, values: np.ndarray, n0: int, row: np.ndarray, calendar: np.ndarray,
                 horizon: int) -> None:
        for i in range(horizon):
            lag = _lag_columns(values, np.array([n0 + i]), state)
            row[0, : len(lag)] = np.ravel(lag)
            row[0, len(lag):] = calendar[i]
            values[n0 + i] = values[n0 + i - 1] + state.model.predict(row)[0]
