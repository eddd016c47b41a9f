"""A seeded simulator of many sensor-like series with injected, labelled anomalies.

Each series is ``level + trend·t + daily + weekly + cycle + noise`` where the daily and weekly terms are
sinusoids of random amplitude and phase, and ``cycle`` is a short sinusoid (a period of 30 to 120
ticks, amplitude 3 to 6 σ) on a share ``cycles`` of the series — a season visible within minutes of a
live run. Anomalies are injected at random (a Poisson process per series in event time, ``duration``
30 to 600 ticks; one at a time per series — none starts while another is on) and recorded with their
ground truth in :attr:`Simulator.anomalies`:

================  ==================================================================================
``spike``         one point far out (``magnitude`` = 6 to 12 noise standard deviations σ)
``level_shift``   the level moves by ``magnitude`` = 4 to 8 σ for ``duration``
``variance``      the noise is multiplied by ``magnitude`` = 3 to 6 for ``duration``
``drift``         a ramp reaching ``magnitude`` = 5 to 10 σ at the end of ``duration``
``stuck``         a stuck sensor: the last value repeats exactly for ``duration`` (``magnitude`` 0)
``season_break``  the series' short cycle stops for ``duration`` (``magnitude``: its amplitude in σ);
                  drawn only for a series that has a cycle (another kind is drawn otherwise)
================  ==================================================================================

A small fraction of records can be corrupted on purpose (``bad_rate``): an unparseable time, a
non-numeric or infinite value, or a record far behind the watermark — so that dead-letter handling is
exercised by the same stream.

Caveats: event time advances by ``freq`` per tick for every series together; with ``rate`` set, the
simulator paces itself against the wall clock, otherwise it produces as fast as it is consumed.

Example
-------
>>> import asyncio
>>> sim = Simulator(series=3, freq="1s", rate=None, seed=1, limit=6)
>>> async def take():
...     return [batch async for batch in sim.batches()]
>>> batches = asyncio.run(take())
>>> sum(len(b) for b in batches)
6
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ._base import Source, sources

__all__ = ["Simulator", "InjectedAnomaly"]

_DAY = 86_400.0
_WEEK = 7 * _DAY
KINDS = ("spike", "level_shift", "variance", "drift", "stuck", "season_break")


@dataclass(frozen=True)
class InjectedAnomaly:
    """Ground truth of one injected anomaly."""

    series: str
    kind: str
    start: pd.Timestamp
    end: pd.Timestamp
    magnitude: float


@sources.register("simulator")
class Simulator(Source):
    """Synthetic multi-series source.

    Parameters
    ----------
    series
        Number of series (``s0000``, ``s0001``, ...).
    freq
        Event-time spacing between points of one series.
    rate
        Records per second of wall time across all series, or ``None`` for as fast as consumed.
    batch_size
        Records per micro-batch (rounded to whole ticks of all series).
    seed
        Seed of every random draw: the same seed gives the same records and anomalies.
    anomaly_rate
        Expected anomalies per series per hour of event time.
    bad_rate
        Fraction of records corrupted on purpose (see module docs).
    start
        Event time of the first tick (default: now, rounded down to ``freq``).
    limit
        Stop after this many records (``None``: never).
    stream
        Stream name written into the source's spec (the pipeline's name wins).
    pace
        With ``rate`` set, seconds of wall time between batches (smaller: smoother, more batches).
    cycles
        Share of the series with a short cycle (see module docs), the ones a ``season_break`` can hit.
    """

    kind = "simulator"

    def __init__(
        self,
        series: int = 20,
        freq: str = "1s",
        rate: float | None = 200.0,
        batch_size: int = 10_000,
        seed: int = 7,
        anomaly_rate: float = 0.5,
        bad_rate: float = 0.0,
        start: str | pd.Timestamp | None = None,
        limit: int | None = None,
        stream: str = "sensors",
        pace: float = 0.1,
        cycles: float = 0.5,
    ) -> None:
        super().__init__(
            series=series, freq=freq, rate=rate, batch_size=batch_size, seed=seed,
            anomaly_rate=anomaly_rate, bad_rate=bad_rate,
            start=None if start is None else str(start), limit=limit, stream=stream, pace=pace, cycles=cycles,
        )
        if not 0.0 <= cycles <= 1.0:
            raise ValueError("cycles is a share of the series, from 0 to 1")
        if pace <= 0:
            raise ValueError("pace must be positive")
        self.pace = float(pace)
        if series <= 0:
            raise ValueError("series must be positive")
        self.n = int(series)
        self.step = pd.Timedelta(freq)
        if self.step <= pd.Timedelta(0):
            raise ValueError("freq must be positive")
        self.rate = rate
        self.ticks_per_batch = max(1, int(batch_size) // self.n)
        self.limit = limit
        self.anomaly_rate = anomaly_rate
        self.bad_rate = bad_rate
        self.rng = np.random.default_rng(seed)
        now = pd.Timestamp.now(tz="UTC").floor(self.step) if start is None else pd.Timestamp(start)
        self.t0 = now if now.tzinfo else now.tz_localize("UTC")
        self.names = np.array([f"s{i:04d}" for i in range(self.n)], dtype=object)
        self._categories = pd.Index(self.names, dtype=object)
        rng = self.rng
        self.level = rng.uniform(10, 100, self.n)
        self.sigma = self.level * rng.uniform(0.01, 0.05, self.n)
        self.trend = rng.normal(0, 0.02, self.n) * self.sigma / 3600.0  # per second
        self.daily = rng.uniform(0, 8, self.n) * self.sigma
        self.weekly = rng.uniform(0, 4, self.n) * self.sigma
        self.phase_d = rng.uniform(0, 2 * np.pi, self.n)
        self.phase_w = rng.uniform(0, 2 * np.pi, self.n)
        # drawn from their own generator, so the draws above and every anomaly schedule are unchanged
        cyc = np.random.default_rng([int(seed), 1])
        self.cycle_amp = np.where(cyc.random(self.n) < cycles, cyc.uniform(3, 6, self.n), 0.0) * self.sigma
        self.cycle_len = cyc.integers(30, 121, self.n)
        self.cycle_phase = cyc.uniform(0, 2 * np.pi, self.n)
        self.tick = 0
        self.anomalies: list[InjectedAnomaly] = []
        self._busy_until = np.full(self.n, -1)
        self._stuck_from = np.zeros(self.n, dtype=np.int64)
        self._stuck_until = np.full(self.n, -1)
        self._stuck_value = np.zeros(self.n)
        self._cycle_off_until = np.full(self.n, -1)
        self._last = np.full(self.n, np.nan)
        # active effects: arrays over series
        self._shift = np.zeros(self.n)
        self._shift_until = np.full(self.n, -1)
        self._var = np.ones(self.n)
        self._var_until = np.full(self.n, -1)
        self._drift_slope = np.zeros(self.n)
        self._drift_start = np.zeros(self.n, dtype=np.int64)
        self._drift_until = np.full(self.n, -1)

    # -- generation ----------------------------------------------------------------------------

    def generate(self, ticks: int) -> pd.DataFrame:
        """The next ``ticks`` ticks of every series as one raw batch (synchronous)."""
        n, rng = self.n, self.rng
        k = np.arange(self.tick, self.tick + ticks)
        secs = k * self.step.total_seconds()
        grid_secs = secs[:, None]
        values = (
            self.level
            + self.trend * grid_secs
            + self.daily * np.sin(2 * np.pi * grid_secs / _DAY + self.phase_d)
            + self.weekly * np.sin(2 * np.pi * grid_secs / _WEEK + self.phase_w)
        )
        noise = rng.standard_normal((ticks, n)) * self.sigma
        values += self._inject(k, noise, values)
        stamps = self.t0.value + k * self.step.value  # ns since the epoch
        frame = pd.DataFrame(
            {
                "series": pd.Categorical.from_codes(np.tile(np.arange(n, dtype=np.int32), ticks), self._categories),
                "ts": pd.DatetimeIndex(np.repeat(stamps, n).view("datetime64[ns]")).tz_localize("UTC"),
                "value": values.ravel(),
                "seq": np.arange(self.tick * n, (self.tick + ticks) * n, dtype=np.int64),
            }
        )
        self.tick += ticks
        if self.bad_rate > 0:
            frame = self._corrupt(frame)
        return frame

    def _inject(self, k: np.ndarray, noise: np.ndarray, base: np.ndarray) -> np.ndarray:
        """Schedule new anomalies for these ticks; return what to add to ``base``: noise, the short cycle and
        every active effect (a stuck sensor's rows come out at the value it sent just before it stuck).

        The batch is worked in segments between anomaly starts, so an anomaly that starts and ends inside
        one batch is not overwritten by the next one of its series scheduled in the same batch.
        """
        ticks, n = noise.shape
        dt = self.step.total_seconds()
        p = min(1.0, self.anomaly_rate * dt / 3600.0)
        starts = self.rng.random((ticks, n)) < p
        kinds = self.rng.integers(0, len(KINDS), size=(ticks, n))
        kk = k[:, None]
        cycle = self.cycle_amp * np.sin(2 * np.pi * kk / self.cycle_len + self.cycle_phase)
        effect = np.zeros_like(noise)
        rows, cols = np.nonzero(starts)
        bounds = np.unique(np.r_[0, rows, ticks])
        for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
            for col in cols[rows == a].tolist():
                if k[a] <= self._busy_until[col]:  # one anomaly at a time per series: clean ground truth
                    continue
                kind = KINDS[kinds[a, col]]
                if kind == "season_break" and self.cycle_amp[col] == 0.0:
                    kind = KINDS[int(k[a] + col) % 4]  # no cycle to break: one of the four other kinds
                effect[a, col] += self._start_anomaly(int(k[a]), int(col), kind)
            seg = kk[a:b]
            part = effect[a:b]
            part += noise[a:b] * np.where(seg <= self._var_until, self._var, 1.0)
            part += np.where(seg <= self._shift_until, self._shift, 0.0)
            drift_on = (seg >= self._drift_start) & (seg <= self._drift_until)
            part += np.where(drift_on, self._drift_slope * (seg - self._drift_start), 0.0)
            part += np.where(seg <= self._cycle_off_until, 0.0, cycle[a:b])
            stuck = (seg >= self._stuck_from) & (seg <= self._stuck_until)
            for col in np.flatnonzero(stuck.any(axis=0)).tolist():
                if self._stuck_from[col] == k[a]:  # it sticks now: at the value the sensor sent just before
                    before = base[a - 1, col] + effect[a - 1, col] if a > 0 else self._last[col]
                    self._stuck_value[col] = before if np.isfinite(before) else self.level[col]
                on = stuck[:, col]
                part[on, col] = self._stuck_value[col] - base[a:b][on, col]
        self._last = base[-1] + effect[-1]
        return effect

    def _start_anomaly(self, tick: int, col: int, kind: str) -> float:
        """Record a new anomaly and arm its effect; returns the immediate offset (spikes only)."""
        rng = self.rng
        offset = 0.0
        sign = 1.0 if rng.random() < 0.5 else -1.0
        duration = int(rng.integers(30, 600))
        start = self.t0 + self.step * tick
        if kind == "spike":
            magnitude = float(rng.uniform(6, 12))
            offset = sign * magnitude * self.sigma[col]
            end = start
        elif kind == "level_shift":
            magnitude = float(rng.uniform(4, 8))
            self._shift[col] = sign * magnitude * self.sigma[col]
            self._shift_until[col] = tick + duration
            end = start + self.step * duration
        elif kind == "variance":
            magnitude = float(rng.uniform(3, 6))
            self._var[col] = magnitude
            self._var_until[col] = tick + duration
            end = start + self.step * duration
        elif kind == "stuck":
            magnitude = 0.0
            self._stuck_from[col] = tick
            self._stuck_until[col] = tick + duration
            end = start + self.step * duration
        elif kind == "season_break":
            magnitude = float(self.cycle_amp[col] / self.sigma[col])
            self._cycle_off_until[col] = tick + duration
            end = start + self.step * duration
        else:
            magnitude = float(rng.uniform(5, 10))
            self._drift_slope[col] = sign * magnitude * self.sigma[col] / duration
            self._drift_start[col] = tick
            self._drift_until[col] = tick + duration
            end = start + self.step * duration
        self._busy_until[col] = tick + (end - start) // self.step
        self.anomalies.append(InjectedAnomaly(str(self.names[col]), kind, start, end, magnitude))
        return offset

    def _corrupt(self, frame: pd.DataFrame) -> pd.DataFrame:
        bad = np.flatnonzero(self.rng.random(len(frame)) < self.bad_rate)
        if len(bad) == 0:
            return frame
        # object arrays, so a cell can hold a wrong type — what a broken producer sends
        ts = frame["ts"].to_numpy(dtype=object, copy=True)
        value = frame["value"].to_numpy(dtype=object, copy=True)
        how = self.rng.integers(0, 4, size=len(bad))
        for row, kind in zip(bad.tolist(), how.tolist()):
            if kind == 0:
                ts[row] = "not-a-time"
            elif kind == 1:
                value[row] = "n/a"
            elif kind == 2:
                value[row] = float("inf")
            else:
                ts[row] = ts[row] - pd.Timedelta(days=1)
        frame = frame.assign(ts=ts, value=value, series=frame["series"].astype(object))
        return frame

    def labels(self, frame: pd.DataFrame) -> pd.Series:
        """1 where a row of ``frame`` falls inside an injected anomaly of its series, else 0."""
        out = np.zeros(len(frame), dtype=np.int8)
        ts = pd.to_datetime(frame["ts"], utc=True, errors="coerce")
        for a in self.anomalies:
            out[((frame["series"] == a.series) & (ts >= a.start) & (ts <= a.end)).to_numpy()] = 1
        return pd.Series(out, index=frame.index, name="label")

    # -- the source protocol -------------------------------------------------------------------

    async def batches(self) -> AsyncIterator[pd.DataFrame]:
        started = time.monotonic()
        produced = 0
        while self.limit is None or produced < self.limit:
            ticks = self.ticks_per_batch
            if self.limit is not None:
                ticks = min(ticks, -(-(self.limit - produced) // self.n))
            if self.rate:
                # pace: at most one batch per interval, sized to the rate
                ticks = max(1, min(ticks, int(self.rate * self.pace) // self.n or 1))
                due = started + (produced + ticks * self.n) / self.rate
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            frame = self.generate(ticks)
            if self.limit is not None and produced + len(frame) > self.limit:
                frame = frame.iloc[: self.limit - produced]
            produced += len(frame)
            self.emitted += len(frame)
            yield frame
            if not self.rate:
                await asyncio.sleep(0)
        self.exhausted = True

    # A spec from the network must not make one request cost the server its memory.
    SPEC_MAX_SERIES = 100_000
    SPEC_MAX_BATCH = 1_000_000

    @classmethod
    def from_spec(cls, settings: Any, **params: Any) -> "Simulator":
        """As the constructor, with the sizes a spec may ask for bounded (series, batch_size)."""
        series, batch_size = params.get("series", 20), params.get("batch_size", 10_000)
        for name, value, bound in (("series", series, cls.SPEC_MAX_SERIES),
                                   ("batch_size", batch_size, cls.SPEC_MAX_BATCH)):
            if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= bound:
                raise ValueError(f"simulator {name} must be a whole number from 1 to {bound:,}")
        return cls(**params)

    def clock(self) -> pd.Timestamp | None:
        """The newest event time generated: with ``rate=None`` (or a rate above ``series / freq``) the
        simulator runs ahead of the wall clock, and its records are on time by its own clock."""
        if self.tick == 0:
            return None
        return self.t0 + self.step * (self.tick - 1)

    def lag(self) -> float | None:
        if self.tick == 0:
            return None
        newest = self.t0 + self.step * (self.tick - 1)
        return max(0.0, (pd.Timestamp.now(tz="UTC") - newest).total_seconds())

    def info(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for a in self.anomalies:
            counts[a.kind] = counts.get(a.kind, 0) + 1
        return {"anomalies_injected": len(self.anomalies), "by_kind": counts}
