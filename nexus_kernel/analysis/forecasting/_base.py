"""What every forecaster shares: the protocol and a base class for the time grid, bad input, conformal
bands and background refits (the registry of names is :mod:`.registry`).

A forecaster follows ONE series. It learns points as they arrive (``learn(ts, y)``) and forecasts a
number of steps of its sampling interval ahead (``forecast(horizon, level)``, a frame with ``ts``,
``yhat``, ``lo``, ``hi``). Subclasses of :class:`BaseForecaster` write three pure functions — ``_fit``,
``_update`` and ``_predict`` — and inherit the behaviour below, which the conformance suite checks for
every registered member.

Defined behaviour on bad input
------------------------------
==========================  =======================================================================
NaN / infinite values        ignored: they are not points (a gap, if nothing else fills the slot)
duplicate timestamps         averaged into one point
irregular sampling           put on a regular grid: the step is ``freq`` when given, else the median
                             spacing of the first points; points are snapped to the nearest slot and
                             averaged per slot
gaps (missing slots)         filled with the model's own forecast (before the first fit: linearly
                             interpolated) — the state moves on as if the points had come as forecast
points at or behind the      dropped (the series only moves forward); they are counted in ``dropped``
last learned slot
a single point / no step     no forecast yet: an empty frame, until two distinct timestamps (or
                             ``freq``) give the step
too few points to fit        a naive forecast (last value) with a band from the spread of the changes
constant series              the constant, with a zero-width band
==========================  =======================================================================

Bands are split-conformal: the ``level`` quantile of recent absolute one-step errors (finite-sample
corrected), widened with the horizon by the model's own error growth. Refits run every ``refit_every``
points; with ``background=True`` on a worker thread (the caller never waits; the new model replaces the
old one at the first call after it is ready, replaying the points that came meanwhile), with
``background=False`` in the call that triggered them — use that, or :meth:`BaseForecaster.wait`, when a
run must be reproducible. Pickling waits for a pending refit, so a restored copy continues exactly as
the original. A refit that raises does not stop the stream: the forecaster keeps its current model (or
the naive forecast), counts it in ``refit_errors`` and keeps the message in ``last_error``.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd

__all__ = ["Forecaster", "BaseForecaster", "empty_forecast"]

_EXECUTOR: ThreadPoolExecutor | None = None
_EXECUTOR_LOCK = threading.Lock()


def _executor() -> ThreadPoolExecutor:
    global _EXECUTOR
    with _EXECUTOR_LOCK:
        if _EXECUTOR is None:
            _EXECUTOR = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nexus-refit")
        return _EXECUTOR


@runtime_checkable
class Forecaster(Protocol):
    """One series in, forecasts with a band out."""

    def learn(self, ts: Any, y: Any) -> Forecaster: ...

    def forecast(self, horizon: int, level: float = 0.9) -> pd.DataFrame: ...

    @property
    def step(self) -> pd.Timedelta | None: ...

    def wait(self, timeout: float | None = None) -> None: ...


def empty_forecast() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "ts": pd.Series([], dtype="datetime64[ns, UTC]"),
            "yhat": pd.Series([], dtype="float64"),
            "lo": pd.Series([], dtype="float64"),
            "hi": pd.Series([], dtype="float64"),
        }
    )


_NAT = np.iinfo(np.int64).min  # NaT as int64 nanoseconds


def _as_ns(ts: Any) -> np.ndarray:
    if isinstance(ts, np.ndarray) and ts.dtype.kind == "M":
        # a caller that split one batch into many series converts its times once and hands each series a
        # datetime64 slice: going through pandas again per series was most of a streaming batch's cost
        return ts.astype("datetime64[ns]").view(np.int64)
    index = pd.DatetimeIndex(pd.to_datetime(pd.Series(ts) if not isinstance(ts, pd.Series) else ts, utc=True))
    return index.as_unit("ns").asi8


class BaseForecaster:
    """Grid, bad input, bands and refits; subclasses supply the model.

    Parameters
    ----------
    freq
        Sampling interval (anything ``pd.Timedelta`` accepts). Default: inferred from the data.
    max_history
        Grid points kept for refits (bounded memory).
    refit_every
        Points learned between refits.
    background
        Refit on a worker thread (True) or in the calling thread (False).
    calibration
        Recent one-step errors kept for the conformal band.
    seed
        Seed of any randomness in the model.
    """

    #: points needed before the first fit
    min_fit_points: int = 8

    def __init__(
        self,
        freq: str | pd.Timedelta | None = None,
        max_history: int = 5000,
        refit_every: int = 1000,
        background: bool = True,
        calibration: int = 1000,
        seed: int = 0,
    ) -> None:
        self.freq = pd.Timedelta(freq) if freq is not None else None
        if self.freq is not None and self.freq <= pd.Timedelta(0):
            raise ValueError("freq must be a positive interval")
        self.max_history = int(max_history)
        self.refit_every = int(refit_every)
        self.background = bool(background)
        self.calibration = int(calibration)
        self.seed = int(seed)
        self._step: int | None = int(self.freq.value) if self.freq is not None else None
        self._anchor: int | None = None
        self._last_slot = -1
        self._pending_ts = np.empty(0, dtype=np.int64)
        self._pending_y = np.empty(0)
        self._hist = np.empty(0)
        self._state: Any = None
        self._since_fit = 0
        self._resid = np.empty(0)
        self._future: Future | None = None
        self._snapshot_slot = -1
        self.dropped = 0
        self.refits = 0
        self.refit_errors = 0
        self.last_error: str | None = None

    # -- model hooks (pure: no mutation of self) -----------------------------------------------

    def _fit(self, y: np.ndarray, start_slot: int) -> tuple[Any, np.ndarray]:
        """Fit on grid values ``y`` (slots start_slot..); return (state, in-sample one-step errors)."""
        raise NotImplementedError

    def _update(self, state: Any, y: np.ndarray, start_slot: int) -> tuple[Any, np.ndarray]:
        """Advance ``state`` over new grid values; return (state, their one-step errors)."""
        raise NotImplementedError

    def _predict(self, state: Any, horizon: int, start_slot: int) -> tuple[np.ndarray, np.ndarray]:
        """Point forecasts for the next ``horizon`` slots and the band's growth (1 at step one)."""
        raise NotImplementedError

    # -- public --------------------------------------------------------------------------------

    @property
    def step(self) -> pd.Timedelta | None:
        return pd.Timedelta(self._step, unit="ns") if self._step else None

    @property
    def fitted(self) -> bool:
        return self._state is not None

    @property
    def season_length(self) -> int | None:
        """Points per season of the fitted model (None: no season, or not fitted yet)."""
        return (getattr(self._state, "m", 0) or None) if self._state is not None else None

    @property
    def n_points(self) -> int:
        """Grid points learned so far."""
        return self._last_slot + 1

    def learn(self, ts: Any, y: Any) -> BaseForecaster:
        """Learn points (``ts`` datetimes, ``y`` numbers) of this series. Returns self."""
        self._poll()
        t = _as_ns(ts)
        v = np.asarray(y, dtype="float64").reshape(-1)
        if len(t) != len(v):
            raise ValueError(f"ts and y differ in length ({len(t)} != {len(v)})")
        ok = np.isfinite(v) & (t != _NAT)
        t, v = t[ok], v[ok]
        if self._step is None or self._anchor is None:
            t = np.r_[self._pending_ts, t]
            v = np.r_[self._pending_y, v]
            distinct = np.unique(t)
            if self._step is None and len(distinct) < 2:
                self._pending_ts, self._pending_y = t, v
                return self
            if self._step is None:
                self._step = int(np.median(np.diff(distinct)))
            if len(distinct) == 0:
                return self
            self._anchor = int(distinct[0])
            self._pending_ts, self._pending_y = np.empty(0, dtype=np.int64), np.empty(0)
        if not len(t):
            return self
        slots = np.floor((t - self._anchor) / self._step + 0.5).astype(np.int64)
        late = slots <= self._last_slot
        self.dropped += int(late.sum())
        slots, v = slots[~late], v[~late]
        if not len(slots):
            return self
        uniq, inverse = np.unique(slots, return_inverse=True)
        means = np.bincount(inverse, weights=v) / np.bincount(inverse)
        first = self._last_slot + 1
        grid = np.full(int(uniq[-1]) - first + 1, np.nan)
        grid[uniq - first] = means
        self._ingest(grid, first)
        return self

    def forecast(self, horizon: int, level: float = 0.9) -> pd.DataFrame:
        """The next ``horizon`` steps: ``ts``, ``yhat``, ``lo``, ``hi`` (band of coverage ``level``)."""
        if horizon < 0:
            raise ValueError("horizon must be >= 0")
        if not 0.0 < level < 1.0:
            raise ValueError("level must be in (0, 1)")
        self._poll()
        if self._step is None or self._anchor is None or self._last_slot < 0 or horizon == 0:
            return empty_forecast()
        start = self._last_slot + 1
        if self._state is not None:
            yhat, growth = self._predict(self._state, horizon, start)
            resid = self._resid
        else:
            yhat, growth, resid = self._naive(horizon)
        width = _conformal_quantile(resid, level) * np.asarray(growth, dtype="float64")
        slots = np.arange(start, start + horizon, dtype=np.int64)
        stamps = pd.DatetimeIndex(self._anchor + slots * self._step, tz="UTC")
        yhat = np.asarray(yhat, dtype="float64")
        return pd.DataFrame({"ts": stamps, "yhat": yhat, "lo": yhat - width, "hi": yhat + width})

    def wait(self, timeout: float | None = None) -> None:
        """Block until a pending background refit is done and in use."""
        if self._future is not None:
            futures_wait([self._future], timeout)
            self._poll()

    # -- internals -----------------------------------------------------------------------------

    def _naive(self, horizon: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        last = self._hist[-1]
        diffs = np.diff(self._hist)
        return np.full(horizon, last), np.sqrt(np.arange(1, horizon + 1)), diffs

    def _ingest(self, grid: np.ndarray, first: int) -> None:
        if self._state is None:
            grid = _interpolate(grid, self._hist[-1] if len(self._hist) else np.nan)
        else:
            grid = self._advance(grid, first)
        self._hist = np.concatenate((self._hist, grid))[-self.max_history:]
        self._last_slot = first + len(grid) - 1
        self._since_fit += len(grid)
        if self._state is None and len(self._hist) >= self.min_fit_points and self._future is None:
            self._refit()
        elif self._state is not None and self._since_fit >= self.refit_every and self._future is None:
            self._refit()

    def _advance(self, grid: np.ndarray, first: int) -> np.ndarray:
        """Run the model over new slots, filling gaps with its own forecast."""
        grid = grid.copy()
        missing = np.isnan(grid)
        errors = []
        pos = 0
        while pos < len(grid):
            run_missing = missing[pos]
            end = pos + 1
            while end < len(grid) and missing[end] == run_missing:
                end += 1
            if run_missing:
                grid[pos:end] = self._predict(self._state, end - pos, first + pos)[0]
                self._state, _ = self._update(self._state, grid[pos:end], first + pos)
            else:
                self._state, err = self._update(self._state, grid[pos:end], first + pos)
                errors.append(err)
            pos = end
        if errors:
            self._resid = np.concatenate((self._resid, *errors))[-self.calibration:]
        return grid

    def _refit(self) -> None:
        y = self._hist.copy()
        start = self._last_slot + 1 - len(y)
        self._snapshot_slot = self._last_slot
        self._since_fit = 0
        if self.background:
            self._future = _executor().submit(self._fit, y, start)
            return
        try:
            fitted = self._fit(y, start)
        except Exception as exc:  # noqa: BLE001 - a failed refit must not stop the stream
            self._failed(exc)
            return
        self._install(*fitted)

    def _poll(self) -> None:
        future = self._future
        if future is None or not future.done():
            return
        self._future = None
        try:
            fitted = future.result()
        except Exception as exc:  # noqa: BLE001 - a failed refit must not stop the stream
            self._failed(exc)
            return
        self._install(*fitted)

    def _failed(self, exc: Exception) -> None:
        """Keep the current model (or the naive fallback) and say why the refit failed."""
        self.refit_errors += 1
        self.last_error = f"{type(exc).__name__}: {exc}"

    def _install(self, state: Any, resid: np.ndarray) -> None:
        behind = self._last_slot - self._snapshot_slot  # points learned while the refit ran
        resid = np.asarray(resid, dtype="float64")
        if behind > 0:
            state, err = self._update(state, self._hist[-behind:], self._snapshot_slot + 1)
            resid = np.r_[resid, err]
        self._state = state
        self._resid = resid[np.isfinite(resid)][-self.calibration:]
        self.refits += 1

    def __getstate__(self) -> dict[str, Any]:
        self.wait()
        state = self.__dict__.copy()
        state["_future"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)


def _conformal_quantile(resid: np.ndarray, level: float) -> float:
    """Split-conformal quantile of absolute errors: the ceil((n+1)·level)-th smallest."""
    r = np.abs(np.asarray(resid, dtype="float64"))
    r = r[np.isfinite(r)]
    n = len(r)
    if n == 0:
        return 0.0
    k = int(np.ceil((n + 1) * level))
    if k > n:
        return float(r.max())
    return float(np.partition(r, k - 1)[k - 1])


def _interpolate(grid: np.ndarray, before: float) -> np.ndarray:
    """Fill NaN slots linearly between known neighbours (trailing holes: the last known value)."""
    if not np.isnan(grid).any():
        return grid
    values = np.r_[before, grid] if np.isfinite(before) else grid
    idx = np.arange(len(values))
    known = np.isfinite(values)
    filled = np.interp(idx, idx[known], values[known])
    return filled[-len(grid):]
