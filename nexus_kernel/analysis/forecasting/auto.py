"""``"auto"``: the model each series forecast best over its own recent seasons, else seasonal naive.

At every fit the candidates (default :class:`~nexus_kernel.analysis.forecasting.ets.HoltWinters` and
:class:`~nexus_kernel.analysis.forecasting.naive.SeasonalNaive`) are compared on a rolling-origin
backtest over the last ``seasons`` seasons of the history the forecaster has learned:

1. The season ``m`` is detected once on the fit window (as ``"ets"`` does) and given to every candidate,
   so they all forecast with the same season.
2. Each candidate is fitted on the points before the first origin, ``n - seasons·m``, then rolled
   forward one season at a time: at each origin it forecasts the next season (horizon ``m``; without a
   season, ``horizon`` points), its mean absolute error is recorded, and the season's true points are
   fed to it (its filter state moves on; its parameters are not re-estimated, so no origin's fit sees
   the points it is scored on).
3. The candidate with the lowest mean error over the origins wins; on a tie the one listed last wins
   (seasonal naive: the simplest). The winner is then fitted on the whole window and forecasts.

Everything it looks at is the series' own past: what it was given through ``learn``. Refits repeat the
choice on the newer history (``refit_every``). What was chosen and why is in :attr:`chosen` and
:attr:`params` (``backtest_mae`` per candidate).

Caveats
-------
* A fit costs one fit of each candidate for the backtest and one of the winner: about twice an
  ``"ets"`` fit with the default candidates (seasonal naive costs nothing). Keeping the backtest's fit
  (parameters from the points before the first origin, state rolled to the end) instead of refitting the
  winner was tried: it forecast worse (``bench forecast``: MASE 0.62 instead of 0.17 on
  art_daily_flatmiddle, 1.41 instead of 1.13 on nyc_taxi).
* Too little history for even one origin (fewer than ``3·m + m`` points, or ``horizon + 20`` without a
  season): no backtest is run and the first candidate is used.
* The backtest's horizon is one season; a forecast much longer than that is chosen on a shorter one.

Parameters
----------
candidates
    Registered forecaster names, compared in this order (a tie goes to the last).
seasons
    Backtest origins: the last ``seasons`` seasons (at most), each forecast one season ahead.
horizon
    Backtest horizon in points when the series has no season.
season
    ``"auto"`` (detect), an int (points per season) or ``None`` (no season), given to every candidate.
fit_window
    Last grid points used to detect the season, backtest and fit.
max_season
    Longest season considered by detection.
candidate_options
    Extra options per candidate name, e.g. ``{"gbm": {"max_iter": 50}}``.
**base
    :class:`~nexus_kernel.analysis.forecasting.BaseForecaster` options (freq, refit_every, ...).

Example
-------
>>> import numpy as np, pandas as pd
>>> ts = pd.date_range("2024-01-01", periods=24 * 20, freq="1h", tz="UTC")
>>> y = 10 + np.sin(np.arange(len(ts)) * 2 * np.pi / 24)
>>> f = AutoForecaster(background=False).learn(ts, y)
>>> f.season_length, f.chosen in ("ets", "seasonal_naive"), sorted(f.params["backtest_mae"])
(24, True, ['ets', 'seasonal_naive'])
>>> bool(np.abs(f.forecast(24)["yhat"].to_numpy() - y[-24:]).max() < 0.05)
True

References
----------
Tashman, "Out-of-sample tests of forecasting accuracy: an analysis and review", IJF 16 (2000) (rolling
origins); Hyndman & Athanasopoulos, *Forecasting: Principles and Practice* (3rd ed.), §5.10 (time
series cross-validation) and §5.2 (seasonal naive as the benchmark).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nexus_kernel.analysis.forecasting._base import BaseForecaster
from nexus_kernel.analysis.forecasting.registry import forecasters
from nexus_kernel.analysis.seasonality import season_length

__all__ = ["AutoForecaster"]

#: points a seasonal candidate needs before the first origin (``"ets"`` checks its last season on 3)
_SEASONS_BEFORE = 3
#: points a non-seasonal candidate needs before the first origin
_POINTS_BEFORE = 20


@dataclass
class _State:
    chosen: str
    member: BaseForecaster  # the winner's instance: its pure hooks run on ``inner``
    inner: Any
    m: int
    backtest_mae: dict[str, float] = field(default_factory=dict)
    origins: int = 0


@forecasters.register("auto")
class AutoForecaster(BaseForecaster):
    __doc__ = __doc__

    min_fit_points = 10

    def __init__(
        self,
        candidates: Sequence[str] = ("ets", "seasonal_naive"),
        seasons: int = 3,
        horizon: int = 48,
        season: int | str | None = "auto",
        fit_window: int = 2500,
        max_season: int = 1000,
        candidate_options: Mapping[str, Mapping[str, Any]] | None = None,
        **base: Any,
    ) -> None:
        super().__init__(**base)
        names = [str(c) for c in candidates]
        if not names:
            raise ValueError("candidates must name at least one forecaster")
        unknown = [c for c in names if c == "auto" or c not in forecasters]
        if unknown:
            raise ValueError(f"unknown candidate forecasters {unknown} (known: "
                             f"{', '.join(n for n in forecasters.names() if n != 'auto')})")
        if season not in ("auto", None) and (not isinstance(season, int) or season < 2):
            raise ValueError("season must be 'auto', None or an int >= 2")
        if int(seasons) < 1 or int(horizon) < 1:
            raise ValueError("seasons and horizon must be >= 1")
        self.candidates = tuple(names)
        self.seasons = int(seasons)
        self.horizon = int(horizon)
        self.season = season
        self.fit_window = int(fit_window)
        self.max_season = int(max_season)
        self.candidate_options = {k: dict(v) for k, v in (candidate_options or {}).items()}

    # -- what was chosen ----------------------------------------------------------------------

    @property
    def chosen(self) -> str | None:
        """Name of the candidate in use (None before the first fit)."""
        return self._state.chosen if self._state is not None else None

    @property
    def season_length(self) -> int | None:
        return (self._state.m or None) if self._state is not None else None

    @property
    def features(self) -> list[str]:
        s = self._state
        return [f"chosen:{s.chosen}", *getattr(s.member, "features", [])] if s is not None else []

    @property
    def params(self) -> dict[str, Any] | None:
        s = self._state
        if s is None:
            return None
        return {"chosen": s.chosen, "m": s.m, "origins": s.origins, "backtest_mae": dict(s.backtest_mae),
                "chosen_params": getattr(s.member, "params", None)}

    # -- model hooks --------------------------------------------------------------------------

    def _member(self, name: str, m: int) -> BaseForecaster:
        options: dict[str, Any] = {"season": m or None, "fit_window": self.fit_window, "background": False,
                                   "seed": self.seed, "calibration": self.calibration,
                                   **self.candidate_options.get(name, {})}
        member = forecasters.get(name)(**options)
        # the grid is ours: a member that reads calendar features needs our step and anchor
        member._step, member._anchor = self._step, self._anchor
        return member

    def _season_for(self, y: np.ndarray) -> int:
        return season_length(y, self.season, self.max_season, self.step)

    def _fit(self, y: np.ndarray, start_slot: int) -> tuple[_State, np.ndarray]:
        start = start_slot + max(0, len(y) - self.fit_window)  # the slot of the kept window's first point
        y = y[-self.fit_window:]
        m = self._season_for(y)
        h = m if m else self.horizon
        before = _SEASONS_BEFORE * m if m else _POINTS_BEFORE
        origins = min(self.seasons, max(0, (len(y) - before) // h))
        scores: dict[str, float] = {}
        if origins and len(self.candidates) > 1:
            first = len(y) - origins * h
            for name in self.candidates:
                scores[name] = self._backtest(name, m, y, first, h, origins, start)
            best = min(scores.values())
            # the last candidate with the best score: a tie goes to the simpler model listed after
            chosen = [n for n in self.candidates if scores[n] == best][-1]
        else:
            chosen = self.candidates[0]
        member = self._member(chosen, m)
        inner, resid = member._fit(y, start)
        return _State(chosen, member, inner, m, scores, origins), resid

    def _backtest(self, name: str, m: int, y: np.ndarray, first: int, h: int, origins: int,
                  start: int) -> float:
        """Mean absolute error of ``name`` forecasting ``h`` ahead from ``origins`` origins ``h`` apart,
        fitted once on the points before the first and only updated after."""
        member = self._member(name, m)
        try:
            state, _ = member._fit(y[:first], start)
            errors = []
            for k in range(origins):
                lo = first + k * h
                actual = y[lo:lo + h]
                yhat, _ = member._predict(state, h, start + lo)
                errors.append(float(np.mean(np.abs(np.asarray(yhat, dtype="float64")[:len(actual)] - actual))))
                state, _ = member._update(state, actual, start + lo)
        except Exception:  # noqa: BLE001 - a candidate that cannot fit this history is not chosen
            return float("inf")
        value = float(np.mean(errors))
        return value if np.isfinite(value) else float("inf")

    def _update(self, state: _State, y: np.ndarray, start_slot: int) -> tuple[_State, np.ndarray]:
        inner, err = state.member._update(state.inner, y, start_slot)
        return _State(state.chosen, state.member, inner, state.m, state.backtest_mae, state.origins), err

    def _predict(self, state: _State, horizon: int, start_slot: int) -> tuple[np.ndarray, np.ndarray]:
        return state.member._predict(state.inner, horizon, start_slot)
