"""The runnable examples in the docstrings run and say what they claim."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "nexus_kernel.analysis.features",
    "nexus_kernel.analysis.forecasters.ets",
    "nexus_kernel.analysis.forecasters.gbm",
    "nexus_kernel.analysis.forecasters.naive",
    "nexus_kernel.analysis._forecast",
    "nexus_kernel.analysis.backtest",
    "nexus_kernel.analysis.models",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
