"""BOCPD's ``noise_floor``: a run whose last points happened to be quiet no longer reads a 4-sigma point
of plain noise as a change, while a step and a large spike still are; off (0) it changes nothing."""

from __future__ import annotations

import numpy as np
import pytest

from nexus_kernel.analysis.detectors import BOCPD

PARAMS = {"max_run": 32, "hazard": 1 / 1000}


def quiet_then_a_noise_point(seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=1100)
    x[1000:1040] *= 0.6  # forty quiet points, as a short run of noise sometimes is
    x[1040] = 4.0
    return x


def test_off_by_default_and_at_zero_it_is_plain_bocpd():
    x = quiet_then_a_noise_point(0)
    plain = BOCPD(**PARAMS).score_learn("s", x)
    off = BOCPD(**PARAMS, noise_floor=0.0).score_learn("s", x)
    assert np.array_equal(plain.statistic, off.statistic, equal_nan=True)
    assert np.array_equal(plain.expected, off.expected, equal_nan=True)


def test_a_noise_point_after_a_quiet_stretch_is_not_a_change():
    plain, floored = [], []
    for seed in range(10):
        x = quiet_then_a_noise_point(seed)
        plain.append(BOCPD(**PARAMS).score_learn("s", x).statistic[1040:1045].max())
        floored.append(BOCPD(**PARAMS, noise_floor=1.0).score_learn("s", x).statistic[1040:1045].max())
    assert np.median(plain) > 0.8  # without the floor: read as a change of regime
    assert max(floored) < 0.3 and np.median(floored) < 0.2


def test_a_step_and_a_large_spike_are_still_changes():
    for seed in range(5):
        rng = np.random.default_rng(seed)
        x = rng.normal(size=1500)
        x[1200:] += 6.0
        assert BOCPD(**PARAMS, noise_floor=1.0).score_learn("s", x).statistic[1200:1210].max() > 0.8
        y = rng.normal(size=1500)
        y[1200] += 12.0
        assert BOCPD(**PARAMS, noise_floor=1.0).score_learn("s", y).statistic[1200:1205].max() > 0.8


def test_scores_do_not_depend_on_the_batch_size():
    x = quiet_then_a_noise_point(3)
    x[1060:] += 5.0
    whole = BOCPD(**PARAMS, noise_floor=1.0, deseasonalize=True).score_learn("s", x).statistic
    det = BOCPD(**PARAMS, noise_floor=1.0, deseasonalize=True)
    parts = np.concatenate([det.score_learn("s", x[a:a + 37]).statistic for a in range(0, len(x), 37)])
    assert np.allclose(whole, parts, equal_nan=True)


@pytest.mark.parametrize("bad", [{"noise_floor": -0.1}, {"noise_floor": float("inf")}, {"noise_memory": 0},
                                 {"noise_memory": 2.5}])
def test_bad_parameters_are_refused(bad):
    with pytest.raises(ValueError, match="noise_floor"):
        BOCPD(**bad)
