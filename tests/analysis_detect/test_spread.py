"""The spread detector on its own: a noise that grows fivefold is flagged within a few points, by the
detector and by ``nk.detect``; plain noise and a slow season are not."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import nexus_kernel as nk
from nexus_kernel.analysis.detectors import Spread


def noise(n: int, seed: int) -> np.ndarray:
    return 20.0 + np.random.default_rng(seed).normal(size=n)


@pytest.mark.parametrize("seed", range(6))
def test_a_fivefold_noise_is_flagged_within_ten_points(seed: int) -> None:
    x = noise(450, seed)
    x[300:] = 20.0 + np.random.default_rng(seed + 100).normal(size=150) * 5.0
    frame = pd.DataFrame({"ts": pd.date_range("2024-01-01", periods=450, freq="min", tz="UTC"), "value": x})
    out = nk.detect(frame, "spread")
    flagged = np.flatnonzero(out["is_anomaly"].to_numpy())
    assert len(flagged) and flagged[0] >= 300 and flagged[0] - 300 < 10
    first = out.iloc[flagged[0]]
    assert "times the series' usual spread (threshold 3 times), spread" in first["reason"]


def test_plain_noise_and_a_season_stay_under_the_threshold() -> None:
    det = Spread()
    assert np.nanmax(det.score_learn("noise", noise(5000, 1)).statistic) < det.threshold
    i = np.arange(5000)
    seasonal = noise(5000, 2) + 3.0 * np.sin(2 * np.pi * i / 288)
    assert np.nanmax(det.score_learn("season", seasonal).statistic) < det.threshold


def test_parameters_are_checked() -> None:
    with pytest.raises(ValueError, match="spread needs"):
        Spread(fast=0.01, slow=0.1)
    with pytest.raises(ValueError, match="spread needs"):
        Spread(threshold=1.0)
