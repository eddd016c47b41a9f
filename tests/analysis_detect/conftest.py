import numpy as np
import pytest

from nexus_kernel.analysis.detectors import detectors

# small parameters so the seasonal/forest warm-ups fit in short test series
FAST = {"holt_winters": {"season_search": 120}, "seasonal": {"season_search": 120},
        "iforest": {"buffer": 128, "refit": 256, "n_estimators": 20},
        "ensemble": {"warmup": 30, "members": {"level_shift": {}, "seasonal": {"season_search": 120}}}}


def make(name):
    return detectors.get(name)(seed=3, **FAST.get(name, {}))


def labelled(n=900, seed=0):
    """A seeded daily-like series with injected anomalies: a spike and a level shift."""
    rng = np.random.default_rng(seed)
    x = 10 + np.sin(2 * np.pi * np.arange(n) / 24) + rng.normal(0, 0.1, n)
    x[500] += 6.0
    x[700:] += 4.0
    return x


@pytest.fixture(params=sorted(detectors.names()))
def name(request):
    return request.param
