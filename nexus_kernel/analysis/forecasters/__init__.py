"""Forecasters: one series in, point forecasts with a prediction band out.

Every member follows :class:`Forecaster` and is registered in :data:`forecasters` by name:
``"ets"`` (Holt-Winters with automatic season), ``"gbm"`` (gradient boosting on lag and calendar
features), ``"seasonal_naive"`` (the baseline). Third-party members register through the
``nexus_kernel.forecasters`` entry-point group.
"""

from nexus_kernel.analysis.forecasters._base import BaseForecaster, Forecaster, empty_forecast, forecasters
from nexus_kernel.analysis.forecasters.ets import HoltWinters
from nexus_kernel.analysis.forecasters.gbm import GradientBoosting
from nexus_kernel.analysis.forecasters.naive import SeasonalNaive

__all__ = [
    "Forecaster",
    "BaseForecaster",
    "forecasters",
    "empty_forecast",
    "HoltWinters",
    "GradientBoosting",
    "SeasonalNaive",
]
