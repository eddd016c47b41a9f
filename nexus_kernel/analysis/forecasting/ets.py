"""Holt-Winters exponential smoothing with the seasonal period found automatically.

Additive error, optional damped additive trend, optional additive season — ETS(A,N,N), (A,Ad,N),
(A,N,A), (A,Ad,A) — chosen by AIC. The season length comes from :func:`~nexus_kernel.analysis.seasonality.
dominant_period` on the fit window (or is given). Smoothing parameters are estimated by least squares of
one-step errors.

Why it is fast: with fixed parameters an additive ETS model is a linear time-invariant filter from the
observations to the one-step errors — ETS(A,Ad,A) is an ARIMA model whose AR polynomial is
``(1-B)(1-φB)(1-B^m)``. One pass of :func:`scipy.signal.lfilter` (C loop) gives every error, so
the optimiser evaluates the likelihood at C speed; online updates and forecasts are the same filter
continued from the last values (its state is rebuilt with :func:`scipy.signal.lfiltic`), so the model
keeps only the last ``m + 3`` observations and errors.

Caveats
-------
* Initial states are not estimated: they come from a classical decomposition of the first two seasons
  of the fit window (first points without a season), and the first season's errors are not counted in
  the least squares.
* Fitting costs O(fit_window · m) per likelihood evaluation; the fit window is bounded.
* Additive only: a multiplicative season is approximated additively.
* Not the anomaly detector ``"holt_winters"``
  (:class:`~nexus_kernel.analysis.detectors.HoltWintersResidual`): that one runs fixed smoothing
  constants and clips large errors so an anomaly does not become the norm; this one estimates them.

Parameters
----------
season
    ``"auto"`` (detect), an int (points per season) or ``None`` (no season).
trend
    ``"auto"`` (choose by AIC), ``True`` (damped trend) or ``False``.
fit_window
    Last grid points used to detect the season and estimate the parameters.
max_season
    Longest season considered by detection.
horizon_check
    Keep the seasonal-naive corner of the model (α=0, γ=1: repeat the last season) when it forecast the
    fit window's last season better than the least-squares parameters did (needs three seasons).
**base
    :class:`~nexus_kernel.analysis.forecasting.BaseForecaster` options (freq, refit_every, ...).

Example
-------
>>> import numpy as np, pandas as pd
>>> ts = pd.date_range("2024-01-01", periods=480, freq="1h", tz="UTC")
>>> y = 10 + np.sin(np.arange(480) * 2 * np.pi / 24)
>>> f = HoltWinters(background=False).learn(ts, y)
>>> f.season_length
24
>>> out = f.forecast(24)
>>> bool(np.abs(out["yhat"].to_numpy() - y[456:]).max() < 0.05)
True

References
----------
Hyndman, Koehler, Ord & Snyder, *Forecasting with Exponential Smoothing: The State Space Approach*
(2008), ch. 2-3 and 11 (ARIMA equivalence). Holt (1957); Winters (1960); Gardner & McKenzie (1985).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.signal import lfilter
from threadpoolctl import threadpool_limits

from nexus_kernel.analysis.forecasting._base import BaseForecaster
from nexus_kernel.analysis.forecasting.registry import forecasters
from nexus_kernel.analysis.seasonality import season_length

__all__ = ["HoltWinters", "ets_polynomials"]


def ets_polynomials(alpha: float, beta: float, gamma: float, phi: float, trend: bool, m: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(AR, MA) polynomials in B of additive ETS: ``AR(B) y_t = MA(B) e_t``; ``m = 0`` for no season."""
    one_minus_b = np.array([1.0, -1.0])
    damp = np.array([1.0, -phi]) if trend else np.array([1.0])
    season = np.r_[1.0, np.zeros(m - 1), -1.0] if m else np.array([1.0])
    ar = np.convolve(np.convolve(one_minus_b, damp), season)
    # level term: B (α(1-φB) + φβB) (1-B^m)
    level = np.convolve([0.0, alpha], damp) + (np.array([0.0, 0.0, phi * beta]) if trend else 0.0)
    ma = _add(ar, np.convolve(level, season))
    if trend:  # φβB (1-B)(1-B^m)
        ma = _add(ma, np.convolve(np.convolve([0.0, phi * beta], one_minus_b), season))
    if m:  # γ B^m (1-B)(1-φB)
        ma = _add(ma, np.convolve(np.r_[np.zeros(m), gamma], np.convolve(one_minus_b, damp)))
    return ar, ma


def lfiltic(b: np.ndarray, a: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``scipy.signal.lfiltic`` without its Python loop: the filter state after past outputs ``y`` and
    inputs ``x`` (most recent first), as two correlations — it is called once per likelihood evaluation."""
    n = max(len(a), len(b)) - 1
    bb, aa = _padded(b, n + 1)[1:] / a[0], _padded(a, n + 1)[1:] / a[0]
    xx, yy = _padded(x[:n], n), _padded(y[:n], n)
    return np.correlate(bb, xx, "full")[n - 1:] - np.correlate(aa, yy, "full")[n - 1:]


def _padded(v: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros(n)
    out[: len(v)] = v
    return out


def _add(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = _padded(a, max(len(a), len(b)))
    out[: len(b)] += b
    return out


@dataclass
class _State:
    alpha: float
    beta: float
    gamma: float
    phi: float
    trend: bool
    m: int
    ar: np.ndarray
    ma: np.ndarray
    y_tail: np.ndarray  # last observations, oldest first
    e_tail: np.ndarray  # their one-step errors

    @property
    def order(self) -> int:
        return max(len(self.ar), len(self.ma))


def _initial_past(y: np.ndarray, trend: bool, m: int, order: int) -> np.ndarray:
    """Pseudo-observations before ``y[0]`` that continue a decomposition of its start backwards."""
    k = np.arange(order, 0, -1)  # k steps before the start, oldest first
    if m:
        head = y[: 2 * m]
        first = head[:m].mean()
        slope = (head[m:2 * m].mean() - first) / m if trend and len(head) >= 2 * m else 0.0
        centre = first - slope * (m - 1) / 2
        pattern = head[:m] - (centre + slope * np.arange(m))
        pattern -= pattern.mean()
        return centre - slope * k + pattern[(-k) % m]
    head = y[: min(len(y), 10)]
    slope = np.polyfit(np.arange(len(head)), head, 1)[0] if trend and len(head) >= 3 else 0.0
    return y[0] - slope * k


def _errors(params: np.ndarray, y: np.ndarray, trend: bool, m: int, past: np.ndarray) -> np.ndarray:
    alpha, beta, gamma, phi = _unpack(params, trend, m)
    ar, ma = ets_polynomials(alpha, beta, gamma, phi, trend, m)
    order = max(len(ar), len(ma)) - 1
    zi = lfiltic(ar, ma, np.zeros(order), past[::-1][:order])
    return lfilter(ar, ma, y, zi=zi)[0]


def _errors_at(y: np.ndarray, alpha: float, beta: float, gamma: float, phi: float, trend: bool, m: int
               ) -> np.ndarray:
    ar, ma = ets_polynomials(alpha, beta, gamma, phi, trend, m)
    order = max(len(ar), len(ma)) - 1
    past = _initial_past(y, trend, m, order + 1)
    zi = lfiltic(ar, ma, np.zeros(order), past[::-1][:order])
    return lfilter(ar, ma, y, zi=zi)[0]


def _season_ahead_mae(y: np.ndarray, alpha: float, beta: float, gamma: float, phi: float, trend: bool,
                      m: int) -> float:
    """MAE of the forecast of the window's last season made from the point before it."""
    head = y[:-m]
    ar, ma = ets_polynomials(alpha, beta, gamma, phi, trend, m)
    order = max(len(ar), len(ma)) - 1
    e = _errors_at(head, alpha, beta, gamma, phi, trend, m)
    zi = lfiltic(ma, ar, head[::-1][:order], e[::-1][:order])
    forecast = lfilter(ma, ar, np.zeros(m), zi=zi)[0]
    value = float(np.mean(np.abs(forecast - y[-m:])))
    return value if np.isfinite(value) else np.inf


def _unpack(p: np.ndarray, trend: bool, m: int) -> tuple[float, float, float, float]:
    """Free parameters in [0, 1] → (α, β ≤ α, γ ≤ 1-α, φ in [0.8, 0.98]): the usual admissible box."""
    alpha = float(p[0])
    i = 1
    beta = phi = 0.0
    gamma = 0.0
    if trend:
        beta, phi = alpha * float(p[1]), 0.8 + 0.18 * float(p[2])
        i = 3
    if m:
        gamma = (1.0 - alpha) * float(p[i])
    return alpha, beta, gamma, phi if trend else 1.0


def _fit_one(y: np.ndarray, trend: bool, m: int) -> tuple[float, np.ndarray, np.ndarray]:
    order = 1 + int(trend) + m + 1
    past = _initial_past(y, trend, m, order)
    burn = m if m else 0
    scale = max(float(np.std(y)), 1e-12)

    def sse(p: np.ndarray) -> float:
        e = _errors(p, y, trend, m, past)[burn:] / scale
        value = float(e @ e)
        return value if np.isfinite(value) and value < 1e300 else 1e300

    x0 = [0.3] + ([0.1, 0.8] if trend else []) + ([0.1] if m else [])
    bounds = [(1e-4, 0.9999)] + ([(0.0, 1.0), (0.0, 1.0)] if trend else []) + ([(0.0, 1.0)] if m else [])
    result = minimize(sse, np.array(x0), method="L-BFGS-B", bounds=bounds, options={"maxiter": 50, "ftol": 1e-6})
    p = result.x
    e = _errors(p, y, trend, m, past)
    n = len(y) - burn
    k = len(p) + 1
    value = float(e[burn:] @ e[burn:])
    aic = n * np.log(max(value / max(n, 1), 1e-300)) + 2 * k
    return aic, p, e


@forecasters.register("ets")
class HoltWinters(BaseForecaster):
    __doc__ = __doc__

    min_fit_points = 10

    def __init__(
        self,
        season: int | str | None = "auto",
        trend: bool | str = "auto",
        fit_window: int = 2500,
        max_season: int = 1000,
        horizon_check: bool = True,
        **base,
    ) -> None:
        super().__init__(**base)
        if season not in ("auto", None) and (not isinstance(season, int) or season < 2):
            raise ValueError("season must be 'auto', None or an int >= 2")
        self.horizon_check = bool(horizon_check)
        if trend not in ("auto", True, False):
            raise ValueError("trend must be 'auto', True or False")
        self.season = season
        self.trend = trend
        self.fit_window = int(fit_window)
        self.max_season = int(max_season)

    @property
    def features(self) -> list[str]:
        """Inputs of the fitted model (its state components)."""
        s = self._state
        if s is None:
            return []
        return ["level"] + (["damped_trend"] if s.trend else []) + ([f"season_{s.m}"] if s.m else [])

    @property
    def params(self) -> dict[str, float | int | bool] | None:
        s = self._state
        if s is None:
            return None
        return {"alpha": s.alpha, "beta": s.beta, "gamma": s.gamma, "phi": s.phi, "trend": s.trend, "m": s.m}

    def _season_for(self, y: np.ndarray) -> int:
        return season_length(y, self.season, self.max_season, self.step)

    def _fit(self, y: np.ndarray, start_slot: int) -> tuple[_State, np.ndarray]:
        # one BLAS thread: the optimiser's vectors are tiny, and threads spinning on them made each
        # L-BFGS-B step ~10x slower on a busy 2-core machine
        with threadpool_limits(limits=1):
            return self._fit_single(y)

    def _fit_single(self, y: np.ndarray) -> tuple[_State, np.ndarray]:
        y = y[-self.fit_window:]
        m = self._season_for(y)
        trends = [False, True] if self.trend == "auto" else [bool(self.trend)]
        if len(y) < 20:
            trends = [False]
        best = None
        for trend in trends:
            aic, p, e = _fit_one(y, trend, m)
            if best is None or aic < best[0] - 1e-9:
                best = (aic, trend, p, e)
        if best is None:
            raise RuntimeError("no exponential smoothing model was fitted")  # trends is never empty
        _, trend, p, e = best
        alpha, beta, gamma, phi = _unpack(p, trend, m)
        if m and len(y) >= 3 * m and self.horizon_check:
            # one-step least squares can prefer smoothing that forecasts a whole season ahead worse
            # than repeating the last season; the seasonal-naive corner of the same model (α=0, γ=1)
            # is kept when it forecast the last season of the window better
            fitted = _season_ahead_mae(y, alpha, beta, gamma, phi, trend, m)
            corner = _season_ahead_mae(y, 0.0, 0.0, 1.0, 1.0, False, m)
            if corner < fitted:
                alpha, beta, gamma, phi, trend = 0.0, 0.0, 1.0, 1.0, False
                e = _errors_at(y, alpha, beta, gamma, phi, trend, m)
        ar, ma = ets_polynomials(alpha, beta, gamma, phi, trend, m)
        keep = max(len(ar), len(ma))
        state = _State(alpha, beta, gamma, phi, trend, m, ar, ma, y[-keep:].copy(), e[-keep:].copy())
        return state, e[m:] if m else e

    def _update(self, state: _State, y: np.ndarray, start_slot: int) -> tuple[_State, np.ndarray]:
        order = state.order - 1
        zi = lfiltic(state.ar, state.ma, state.e_tail[::-1][:order], state.y_tail[::-1][:order])
        e = lfilter(state.ar, state.ma, y, zi=zi)[0]
        keep = state.order
        state = _State(state.alpha, state.beta, state.gamma, state.phi, state.trend, state.m, state.ar,
                       state.ma, np.concatenate((state.y_tail, y))[-keep:], np.concatenate((state.e_tail, e))[-keep:])
        return state, e

    def _predict(self, state: _State, horizon: int, start_slot: int) -> tuple[np.ndarray, np.ndarray]:
        order = state.order - 1
        zi = lfiltic(state.ma, state.ar, state.y_tail[::-1][:order], state.e_tail[::-1][:order])
        yhat = lfilter(state.ma, state.ar, np.zeros(horizon), zi=zi)[0]
        impulse = np.zeros(horizon)
        impulse[0] = 1.0
        psi = lfilter(state.ma, state.ar, impulse)
        return yhat, np.sqrt(np.cumsum(psi * psi))
