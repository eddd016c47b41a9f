"""The one name space of forecasters: names to classes, the default, and fresh instances.

Built-in members register themselves here when their module is imported (``"auto"``, ``"ets"``,
``"gbm"``, ``"seasonal_naive"``); third-party members through the ``nexus_kernel.forecasters`` entry-point group.
Every caller that turns a name into a forecaster — :func:`~nexus_kernel.analysis.forecasting.forecast`,
:class:`~nexus_kernel.analysis.forecasting.ForecastStep`, the backtests, the model pipeline, the
:class:`~nexus_kernel.analysis.Analyzer` — goes through :func:`forecaster_class`, so a name means the same
everywhere and an unknown one is an error that lists the known ones (never a silent fallback).

Example
-------
>>> forecaster_class("auto").__name__, forecaster_name("auto"), AUTO_MODEL
('AutoForecaster', 'auto', 'auto')
>>> forecaster_class("holt_winters")
Traceback (most recent call last):
...
nexus_kernel._registry.UnknownPluginError: unknown forecasters 'holt_winters' (known: auto, ets, gbm, seasonal_naive)
"""

from __future__ import annotations

import copy
from typing import Any

from nexus_kernel._registry import Registry, UnknownPluginError
from nexus_kernel.analysis.forecasting._base import BaseForecaster

__all__ = ["forecasters", "AUTO_MODEL", "ModelLike", "forecaster_class", "forecaster_name", "make_forecaster"]

forecasters: Registry[type[BaseForecaster]] = Registry("forecasters")

#: the default forecaster: "auto" (:class:`~nexus_kernel.analysis.forecasting.auto.AutoForecaster`) picks,
#: per series, Holt-Winters or seasonal naive by a backtest over its own last seasons; Holt-Winters alone
#: lost to seasonal naive on some series (bench/forecast.py)
AUTO_MODEL = "auto"

#: what names a forecaster: a registered name, a class, or a prototype instance
ModelLike = str | type | BaseForecaster


def forecaster_class(name: str) -> type[BaseForecaster]:
    """The class registered as ``name``.

    Raises :class:`~nexus_kernel._registry.UnknownPluginError` (a ``LookupError``) naming the known
    forecasters when ``name`` is not one of them.
    """
    if not isinstance(name, str) or name not in forecasters:
        known = ", ".join(forecasters.names())
        raise UnknownPluginError(f"unknown forecasters {name!r} (known: {known})")
    return forecasters.get(name)


def forecaster_name(model: ModelLike) -> str:
    """The registry name of ``model`` (a name, a class or an instance); a class that is not registered
    goes by its class name. A string is checked: an unknown one raises as :func:`forecaster_class`."""
    if isinstance(model, str):
        forecaster_class(model)
        return model
    cls = model if isinstance(model, type) else type(model)
    for name, member in forecasters.items():
        if member is cls:
            return name
    return cls.__name__


def make_forecaster(model: ModelLike = "auto", **options: Any) -> BaseForecaster:
    """A fresh forecaster from a registered name, a class (built with ``options``), or a prototype
    instance (deep-copied, its learned state included; ``options`` do not apply to a copy)."""
    if isinstance(model, BaseForecaster):
        return copy.deepcopy(model)
    if isinstance(model, type):
        return model(**options)
    return forecaster_class(model)(**options)
