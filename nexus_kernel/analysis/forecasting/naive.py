"""Seasonal naive: tomorrow looks like today — the baseline every forecaster must beat.

The forecast for ``h`` steps ahead is the value one season earlier (the last value when there is no
season). The season is detected on the fit window like :class:`~nexus_kernel.analysis.forecasting.ets.
HoltWinters` does, or given. MASE is measured against this forecaster's in-sample errors.

Parameters
----------
season
    ``"auto"``, an int (points per season) or ``None`` (plain naive: repeat the last value).
fit_window
    Last grid points used to detect the season.
**base
    :class:`~nexus_kernel.analysis.forecasting.BaseForecaster` options.

Example
-------
>>> import numpy as np, pandas as pd
>>> ts = pd.date_range("2024-01-01", periods=96, freq="1h", tz="UTC")
>>> f = SeasonalNaive(season=24, background=False).learn(ts, np.arange(96) % 24)
>>> f.forecast(3)["yhat"].tolist()
[0.0, 1.0, 2.0]

References
----------
Hyndman & Athanasopoulos, *Forecasting: Principles and Practice* (3rd ed.), §5.2 and §5.8 (MASE).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nexus_kernel.analysis.forecasting._base import BaseForecaster
from nexus_kernel.analysis.forecasting.registry import forecasters
from nexus_kernel.analysis.seasonality import calendar_periods, dominant_period

__all__ = ["SeasonalNaive"]


@dataclass
class _State:
    m: int
    tail: np.ndarray  # last max(m, 1) values


@forecasters.register("seasonal_naive")
class SeasonalNaive(BaseForecaster):
    __doc__ = __doc__

    min_fit_points = 2

    def __init__(self, season: int | str | None = "auto", fit_window: int = 2500, **base) -> None:
        super().__init__(**base)
        if season not in ("auto", None) and (not isinstance(season, int) or season < 1):
            raise ValueError("season must be 'auto', None or an int >= 1")
        self.season = season
        self.fit_window = int(fit_window)

    @property
    def season_length(self) -> int | None:
        return (self._state.m if self._state.m > 1 else None) if self._state is not None else None

    @property
    def features(self) -> list[str]:
        return [f"lag{self._state.m}"] if self._state is not None else []

    def _fit(self, y: np.ndarray, start_slot: int) -> tuple[_State, np.ndarray]:
        window = y[-self.fit_window:]
        if self.season == "auto":
            m = dominant_period(window, max_period=len(window) // 3, prefer=calendar_periods(self.step)) or 1
        else:
            m = int(self.season or 1)
        if len(y) <= m:
            m = 1
        resid = y[m:] - y[:-m]
        return _State(m, y[-m:].copy()), resid

    def _update(self, state: _State, y: np.ndarray, start_slot: int) -> tuple[_State, np.ndarray]:
        joined = np.r_[state.tail, y]
        resid = joined[state.m:] - joined[:-state.m]
        return _State(state.m, joined[-state.m:]), resid

    def _predict(self, state: _State, horizon: int, start_slot: int) -> tuple[np.ndarray, np.ndarray]:
        reps = -(-horizon // state.m)
        yhat = np.tile(state.tail, reps)[:horizon]
        growth = np.sqrt(np.arange(horizon) // state.m + 1.0)
        return yhat, growth
