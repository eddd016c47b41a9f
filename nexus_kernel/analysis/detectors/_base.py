"""The detector protocol: per-series online state, score-then-learn, one micro-batch at a time.

A detector keeps a small, fixed-size *state* per series (numpy arrays and scalars, so it pickles) and
exposes one method that matters, :meth:`Detector.score_learn`: given the next values of ONE series it
returns, for every value, a score in [0, 1], the detector's statistic (e.g. a z-score) and the value it
expected — each value is scored with the state as it was *before* that value, then learned. Inside a
batch the work runs in a compiled loop (numba) because the recurrences are sequential; across series
:meth:`Detector.update` loops over the series of a batch, which is the edge where Python is allowed.

Defined behaviour on awkward input (tested by the conformance suite for every registered detector):

=========================  ==================================================================
input                      behaviour
=========================  ==================================================================
NaN / inf value            score 0, statistic NaN, the state is not touched (the point is skipped)
fewer than ``warmup``      score 0 while the detector learns (a single point scores 0)
constant series            score ~0, never an anomaly; the first departure from the constant scores high (the scale
                           has a floor, so a zero spread never divides by zero)
time gaps, irregular       detectors are sequence-based: the n-th value is the n-th observation,
sampling                   whatever the spacing (seasonal periods are found in points)
duplicate timestamps       rows are scored in (ts, seq) order, each as its own observation
series mid-stream          a new series gets a fresh state and its own warm-up
=========================  ==================================================================
"""

from __future__ import annotations

import copy
import functools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from ..._registry import Registry

__all__ = ["Detector", "Result", "detectors", "z_to_score", "score_to_z", "RESULT_COLUMNS"]

detectors: Registry[type[Detector]] = Registry("detectors")

RESULT_COLUMNS = ("series", "ts", "value", "score", "is_anomaly", "statistic", "expected", "since", "reason")

_SQRT2 = math.sqrt(2.0)


@functools.cache
def _erf() -> Any:
    from scipy.special import erf  # on first use, not at import: the CLI starts without scipy

    return erf


def z_to_score(z: np.ndarray | float) -> np.ndarray:
    """Two-sided Gaussian calibration: the probability a normal point is *less* extreme than ``|z|``."""
    z = np.asarray(z, dtype=np.float64)
    score = np.asarray(_erf()(np.abs(z) / _SQRT2))
    finite = np.isfinite(z)
    # every member of the ensemble calibrates each micro-batch: ``np.nan_to_num`` first cost three times this
    return score if finite.all() else np.where(finite, score, 0.0)


def score_to_z(score: float) -> float:
    from scipy.special import erfinv

    return float(_SQRT2 * erfinv(min(max(score, 0.0), 1.0 - 1e-16)))


def _utc_index(ts: pd.Series) -> pd.DatetimeIndex:
    """``ts`` as UTC times (a column of aware times as it is: ``pd.to_datetime`` checked a large one
    element by element for its cache)."""
    if isinstance(ts.dtype, pd.DatetimeTZDtype):
        return pd.DatetimeIndex(ts).tz_convert("UTC")
    return pd.DatetimeIndex(pd.to_datetime(ts, utc=True))


def _row_order(frame: pd.DataFrame, stamps: pd.DatetimeIndex) -> np.ndarray | None:
    """The positions of ``frame``'s rows in stable (series, ts, seq) order, ``None`` when already so.

    A stable lexsort of the columns' codes (a live batch: a few points of many series, where
    ``DataFrame.sort_values`` cost more than scoring them); ``sort_values`` itself when a value is missing
    (it places them last) or the series do not compare."""
    by = [c for c in ("series", "ts", "seq") if c in frame.columns]
    if not by:
        return None
    keys = _sort_keys(frame, stamps)
    if keys is None:
        rows = frame.reset_index(drop=True)
        rows = rows.assign(ts=stamps) if "ts" in by else rows  # by time, as the keys are: not by its text
        order = rows.sort_values(by, kind="stable").index.to_numpy()
    else:
        order = np.lexsort(keys)
    return None if (order[1:] > order[:-1]).all() else order


def _sort_keys(frame: pd.DataFrame, stamps: pd.DatetimeIndex) -> list[np.ndarray] | None:
    """``np.lexsort``'s keys for (series, ts, seq), the last first; ``None`` when a value is missing or
    the series do not compare (numbers and text)."""
    keys = []
    if "seq" in frame.columns:
        seq = frame["seq"]
        if not pd.api.types.is_integer_dtype(seq.dtype) or seq.isna().any():
            return None
        keys.append(seq.to_numpy(dtype=np.int64))
    if "ts" in frame.columns:
        if stamps.hasnans:
            return None
        keys.append(stamps.asi8)
    if "series" in frame.columns:
        try:
            codes, _ = pd.factorize(frame["series"], sort=True)
        except TypeError:
            return None
        if (codes < 0).any():
            return None
        keys.append(codes)
    return keys


@dataclass
class Result:
    """What a detector says about the values of one series."""

    score: np.ndarray  # [0, 1]
    statistic: np.ndarray  # the detector's own measure of distance from normal (NaN when not scored)
    expected: np.ndarray  # what the detector thought normal was (NaN when it has no such notion)


class Detector:
    """Base class of every online detector.

    Subclasses set ``name``, ``feature`` (what is measured), ``statistic`` (the name of the distance
    in the reason), ``threshold`` (on that statistic) and implement :meth:`new_state` and
    :meth:`_run`. Parameters are keyword-only and stored as attributes so ``params()`` and cloning work.
    """

    name: ClassVar[str] = "detector"
    feature: ClassVar[str] = "value"
    statistic: ClassVar[str] = "z"
    #: the statistic's unit when it is a distance from the expected value ("sigma"), for the reason text
    unit: ClassVar[str | None] = None
    threshold: float = 4.0

    def __init__(self, *, seed: int = 0) -> None:
        self.seed = seed
        self._states: dict[str, Any] = {}
        self._runs: dict[str, pd.Timestamp | None] = {}

    # -- to implement --------------------------------------------------------------------------

    def new_state(self) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def _run(self, state: Any, x: np.ndarray) -> Result:  # pragma: no cover - abstract
        """Score then learn every finite value of ``x`` (no NaN reaches here)."""
        raise NotImplementedError

    def _score_of(self, statistic: np.ndarray) -> np.ndarray:
        return z_to_score(statistic)

    # -- public --------------------------------------------------------------------------------

    def params(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def clone(self) -> Detector:
        """A fresh detector with the same parameters and no state."""
        return type(self)(**self.params())

    @property
    def warmup_points(self) -> int:
        """Points of a series seen before its first possible score: every earlier point scores 0 (some
        detectors start later on some data, e.g. the seasonal one when no season shows early)."""
        return int(getattr(self, "warmup", 0))

    @property
    def score_threshold(self) -> float:
        """The score above which a point is an anomaly (the statistic threshold, calibrated)."""
        return float(self._score_of(np.array([self.threshold]))[0])

    def score_learn(self, key: str, values: Sequence[float] | np.ndarray) -> Result:
        """Score, then learn, the next values of series ``key``; NaN values are scored 0 and skipped."""
        x = np.ascontiguousarray(values, dtype=np.float64)
        n = len(x)
        state = self._states.get(key)
        if state is None:
            state = self._states[key] = self.new_state()
        ok = np.isfinite(x)
        if ok.all():
            return self._run(state, x)
        out = Result(np.zeros(n), np.full(n, np.nan), np.full(n, np.nan))
        if ok.any():
            part = self._run(state, x[ok])
            out.score[ok], out.statistic[ok], out.expected[ok] = part.score, part.statistic, part.expected
        return out

    def reset(self, key: str | None = None) -> None:
        if key is None:
            self._states.clear()
            self._runs.clear()
        else:
            self._states.pop(key, None)
            self._runs.pop(key, None)

    @property
    def series(self) -> list[str]:
        return list(self._states)

    def update(self, frame: pd.DataFrame, field: str = "value") -> pd.DataFrame:
        """Score a micro-batch (columns ``series``, ``ts``, ``field``; ``seq`` optional) of any series.

        Returns one row per input row in (series, ts, seq) order with :data:`RESULT_COLUMNS`; ``reason``
        is the JSON text of the structured facts for anomalous rows and empty otherwise.

        The per-series loop only scores and fills preallocated arrays; the frame is built once. A live
        batch holds a few points of many series, and a DataFrame per series cost more than the scoring.
        """
        if frame.empty:
            return _empty_result()
        n = len(frame)
        keys = frame["series"].astype(str).to_numpy() if "series" in frame.columns else np.full(n, "default")
        stamps = (_utc_index(frame["ts"]) if "ts" in frame.columns
                  else pd.DatetimeIndex(np.full(n, np.datetime64("NaT", "ns")), tz="UTC"))
        values = frame[field].to_numpy(dtype=np.float64, na_value=np.nan)
        order = _row_order(frame, stamps)
        if order is not None:
            keys, stamps, values = keys[order], stamps[order], values[order]
        naive = stamps.tz_localize(None).to_numpy()
        score, statistic, expected = np.empty(n), np.empty(n), np.empty(n)
        since = np.full(n, np.datetime64("NaT"), dtype=naive.dtype)
        reason = np.full(n, "", dtype=object)
        threshold = self.score_threshold
        starts = np.r_[0, np.flatnonzero(keys[1:] != keys[:-1]) + 1, n]
        for a, b in zip(starts[:-1].tolist(), starts[1:].tolist()):
            key = keys[a]
            res = self.score_learn(key, values[a:b])
            score[a:b], statistic[a:b], expected[a:b] = res.score, res.statistic, res.expected
            flag = res.score >= threshold
            if not flag.any() and self._runs.get(key) is None:
                self._runs[key] = None
                continue
            run = self._since(key, naive[a:b], flag)
            since[a:b] = run
            for i in np.flatnonzero(flag).tolist():  # only anomalies carry reasons: few rows
                at = None if np.isnat(run[i]) else pd.Timestamp(run[i]).tz_localize("UTC")
                facts = self.facts(res, i, at)
                facts["observed"] = _num(values[a + i])
                facts["text"] = self.describe(facts, float(values[a + i]))
                reason[a + i] = json.dumps(facts, separators=(",", ":"))
        return pd.DataFrame(
            {
                "series": pd.array(keys.astype(object), dtype="string"),
                "ts": stamps,
                "value": values,
                "score": score,
                "is_anomaly": score >= threshold,
                "statistic": statistic,
                "expected": expected,
                "since": pd.DatetimeIndex(since).tz_localize("UTC"),
                "reason": pd.array(reason, dtype="string"),
            }
        )

    # -- reasons -------------------------------------------------------------------------------

    def facts(self, res: Result, i: int, since: Any) -> dict[str, Any]:
        """The structured reason of row ``i``: which detector, what feature, how far, since when."""
        expected = res.expected[i]
        return {
            "detector": self.name,
            "feature": self.feature,
            "statistic": self.statistic,
            "value": _num(res.statistic[i]),
            "threshold": self.threshold,
            "score": _num(res.score[i]),
            "expected": _num(expected),
            "since": None if since is None or pd.isna(since) else pd.Timestamp(since).isoformat(),
        }

    def describe(self, facts: dict[str, Any], observed: float) -> str:
        """The fact that fired, in words an analyst reads, naming the detector (the ``text`` of a reason):
        "value 26.1 is 20.3 sigma above the expected 20 (threshold 5 sigma), robust_z"."""
        sentence = describe_distance(facts.get("value"), facts.get("expected"), facts.get("threshold"), observed,
                                     self.statistic, self.unit)
        return f"{sentence}, {self.name}"

    def _since(self, key: str, stamps: np.ndarray, flag: np.ndarray) -> np.ndarray:
        """Start time of the current run of consecutive anomalous rows (carried across batches).

        ``stamps`` are naive UTC datetime64 values; the run still open at the end is remembered per series.
        """
        n = len(flag)
        carried = self._runs.get(key)
        prev = np.r_[carried is not None, flag[:-1]]
        starts = flag & ~prev
        last = np.maximum.accumulate(np.where(starts, np.arange(n), -1))
        since = np.full(n, np.datetime64("NaT"), dtype=stamps.dtype)
        from_batch = flag & (last >= 0)
        since[from_batch] = stamps[last[from_batch]]
        if carried is not None:
            since[flag & (last < 0)] = np.datetime64(pd.Timestamp(carried).tz_convert("UTC").tz_localize(None))
        self._runs[key] = pd.Timestamp(since[-1]).tz_localize("UTC") if flag[-1] else None
        return since

    def __getstate__(self) -> dict[str, Any]:
        return copy.copy(self.__dict__)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"


def expected_phrase(facts: dict[str, Any]) -> str:
    """" (expected 20.1)" when the facts hold an expected value, else nothing."""
    expected = facts.get("expected")
    return "" if expected is None else f" (expected {expected:.6g})"


def describe_distance(value: float | None, expected: float | None, threshold: float | None, observed: float,
                      statistic: str, unit: str | None) -> str:
    """"value 26.1 is 20.3 sigma above the expected 20.0 (threshold 5 sigma)", or the statistic as is."""
    thr = "" if threshold is None else f" (threshold {threshold:g}{' ' + unit if unit else ''})"
    if value is None:
        return f"value {observed:.6g} not scored{thr}"
    if unit and expected is not None:
        side = "above" if value >= 0 else "below"
        return f"value {observed:.6g} is {abs(value):.1f} {unit} {side} the expected {expected:.6g}{thr}"
    exp = "" if expected is None else f", expected {expected:.6g}"
    return f"value {observed:.6g}: {statistic.replace('_', ' ')} {value:.3g}{thr}{exp}"


def _num(v: float) -> float | None:
    v = float(v)
    return round(v, 6) if math.isfinite(v) else None


def _empty_result() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "series": pd.Series([], dtype="string"),
            "ts": pd.Series([], dtype="datetime64[ns, UTC]"),
            "value": pd.Series([], dtype="float64"),
            "score": pd.Series([], dtype="float64"),
            "is_anomaly": pd.Series([], dtype="bool"),
            "statistic": pd.Series([], dtype="float64"),
            "expected": pd.Series([], dtype="float64"),
            "since": pd.Series([], dtype="datetime64[ns, UTC]"),
            "reason": pd.Series([], dtype="string"),
        }
    )
