"""The per-batch shortcuts of the analysis give the numbers and the row order of the steps they replace.

A live micro-batch holds a few points of many series, so the fixed cost of each call dominates: the
ensemble scores each member in one pass (``_member_z``) instead of an excess, a likelihood, a weight, a
confirmation and an onset in turn, and ``Detector.update`` orders rows with a stable lexsort instead of
``DataFrame.sort_values``. Both must be exact, not close: alarms, the NAB benchmark's cached
recombination (``bench/_nab_cv.py``) and stored scores rely on the same numbers.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest


def _in_turn(stat, threshold, cap, lik, along, short, warm, min_sd, weight, level, confirmed, above, alarm):
    """The ensemble's steps one after another, as it ran them before ``_member_z``."""
    from nexus_kernel.analysis.detectors.ensemble import _confirmed, _likelihood, _onsets

    a = np.minimum(np.abs(stat) / threshold, cap)
    z = np.zeros(len(stat)) if not weight else _likelihood(a, lik, along, short, warm, min_sd)
    z = z * weight
    if level > 0.0 and weight:
        z = z * _confirmed(a, confirmed, level, float(short))
    if len(above):
        onset = _onsets(a, above)
        z = np.maximum(z, np.where(onset > 0.0, alarm * onset, 0.0))
    return z


@pytest.mark.parametrize(("weight", "level", "direct", "min_sd"),
                         list(itertools.product((0.0, 0.8, 1.0), (0.0, 0.3, 0.5), (False, True), (0.0, 0.02))))
def test_one_pass_member_equals_its_steps_in_turn(weight: float, level: float, direct: bool, min_sd: float) -> None:
    from nexus_kernel.analysis.detectors.ensemble import _member_z

    rng = np.random.default_rng(int(weight * 10 + level * 100 + direct * 7 + min_sd * 1000))
    stat = np.abs(rng.standard_t(3, size=3000)) * 2.0
    stat[rng.integers(0, len(stat), 60)] = np.nan
    stat[rng.integers(0, len(stat), 10)] = np.inf
    stat[1500:1600] = 40.0  # past the member's threshold and the cap for a while
    states = []
    for _ in range(2):
        states.append((np.zeros(4), np.array([1e18]), np.zeros(1) if direct else np.zeros(0)))
    ours, theirs = [], []
    start = 0
    for size in rng.integers(1, 250, 40).tolist() + [len(stat)]:
        part = stat[start:start + size]
        if not len(part):
            break
        args = (3.0, 3.0)
        (lik1, conf1, up1), (lik2, conf2, up2) = states
        ours.append(_member_z(part, *args, lik1, 0.001, 10.0, 100.0, min_sd, weight, level, conf1, up1, 2.5))
        theirs.append(_in_turn(part, *args, lik2, 0.001, 10.0, 100.0, min_sd, weight, level, conf2, up2, 2.5))
        start += size
    ours_z, theirs_z = np.concatenate(ours), np.concatenate(theirs)
    assert ours_z.tobytes() == theirs_z.tobytes()  # bit for bit, signed zeros included
    assert all(a.tobytes() == b.tobytes() for a, b in zip(states[0], states[1]))  # and the state carried on
    if weight or direct:
        assert ours_z.max() > (2.5 if direct else 1.0)  # the case is not vacuous: the member spoke


def _frames(rng: np.random.Generator):
    t0 = pd.Timestamp("2024-01-01", tz="UTC")
    for case in range(12):
        n = int(rng.integers(2, 300))
        frame = pd.DataFrame({"series": pd.array(rng.choice(["b", "a", "zz", "B"], size=n), dtype="string"),
                              "ts": t0 + pd.to_timedelta(rng.integers(0, 40, n), unit="s"),
                              "value": rng.normal(size=n)})
        if case % 2:
            frame["seq"] = rng.integers(0, 4, n).astype("int64")
        if case % 3 == 1:
            frame["series"] = rng.integers(0, 12, n)  # numbers sort as numbers, not as text
        if case % 4 == 2:
            frame.loc[frame.index[:3], "series"] = pd.NA  # missing: placed last, as sort_values does
        if case % 5 == 3:
            frame["ts"] = frame["ts"].dt.tz_convert("Europe/Paris")
        yield frame


def test_rows_come_back_in_the_order_sort_values_gives() -> None:
    from nexus_kernel.analysis.detectors import RobustZ

    rng = np.random.default_rng(4)
    for frame in _frames(rng):
        by = [c for c in ("series", "ts", "seq") if c in frame.columns]
        expected = frame.sort_values(by, kind="stable")
        out = RobustZ().update(frame)
        assert out["value"].to_numpy().tobytes() == expected["value"].to_numpy().tobytes()
        assert pd.DatetimeIndex(out["ts"]).equals(pd.DatetimeIndex(expected["ts"]).tz_convert("UTC"))
        assert list(out["series"].astype(str)) == list(expected["series"].astype(str))
