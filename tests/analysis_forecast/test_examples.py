"""The runnable examples in the docstrings run and say what they claim."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "nexus_kernel.analysis.features",
    "nexus_kernel.analysis.seasonality",
    "nexus_kernel.analysis.forecasting.ets",
    "nexus_kernel.analysis.forecasting.gbm",
    "nexus_kernel.analysis.forecasting.naive",
    "nexus_kernel.analysis.forecasting.registry",
    "nexus_kernel.analysis.forecasting.step",
    "nexus_kernel.analysis.forecasting.backtest",
    "nexus_kernel.analysis.forecasting.models",
    "nexus_kernel.analysis.models",
    "nexus_kernel.analysis.detectors.holt_winters",
    "nexus_kernel.analysis.detectors.seasonal",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
