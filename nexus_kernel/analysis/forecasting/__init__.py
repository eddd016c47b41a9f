"""Forecasting: the forecasters, their one registry, ``forecast()``, the pipeline step, backtests and the
model registry's pure parts — the one place the analyzer, the model pipeline, the monitor and notebooks go
through.

Public surface::

    forecasters                                            # the registry: "auto", "ets", "gbm", "seasonal_naive"
    forecaster_class(name) / forecaster_name(model)        # unknown names raise, listing the known; AUTO_MODEL = "auto"
    make_forecaster(model="auto", **options)               # a fresh forecaster
    forecast(df, horizon="1h", level=0.9, model="auto")    # forecasts schema: ts, series, yhat, lo, hi, ...
    ForecastStep(model, horizon)(batch); .latest(series)   # incremental, one forecaster per (series, field)
    backtest(df, model, horizon, folds); summarize(res)    # MAE, MASE, sMAPE, coverage per origin
    train(df, model) -> StreamModel; evaluate(df, model)   # the pure half of the model pipeline
    points_frame / forecast_rows / forecasts_frame         # the forecasts table schema, for new callers

Members: ``"auto"`` (:class:`AutoForecaster`, the default: per series, the candidate — ``"ets"`` or
``"seasonal_naive"`` — that forecast its own last seasons best in a rolling-origin backtest), ``"ets"`` (:class:`HoltWinters`, Holt-Winters exponential smoothing with automatic season),
``"gbm"`` (:class:`GradientBoosting` on lag and calendar features), ``"seasonal_naive"``
(:class:`SeasonalNaive`, the baseline). Third-party members register through the
``nexus_kernel.forecasters`` entry-point group. Seasons come from
:func:`nexus_kernel.analysis.seasonality.dominant_period`. Saving, loading, serving and retraining in a
store: :mod:`nexus_kernel.analysis.models`.
"""

from nexus_kernel.analysis.forecasting._base import BaseForecaster, Forecaster, empty_forecast
from nexus_kernel.analysis.forecasting.auto import AutoForecaster
from nexus_kernel.analysis.forecasting.backtest import backtest, coverage, mae, mase, mase_scale, smape, summarize
from nexus_kernel.analysis.forecasting.ets import HoltWinters
from nexus_kernel.analysis.forecasting.frames import (
    FORECAST_COLUMNS,
    forecast_rows,
    forecasts_frame,
    horizon_steps,
    points_frame,
)
from nexus_kernel.analysis.forecasting.gbm import GradientBoosting
from nexus_kernel.analysis.forecasting.models import (
    MODEL_COLUMNS,
    ModelRecord,
    StreamModel,
    artifact_filename,
    evaluate,
    history_start,
    newest_record,
    next_version,
    train,
)
from nexus_kernel.analysis.forecasting.naive import SeasonalNaive
from nexus_kernel.analysis.forecasting.registry import (
    AUTO_MODEL,
    ModelLike,
    forecaster_class,
    forecaster_name,
    forecasters,
    make_forecaster,
)
from nexus_kernel.analysis.forecasting.step import ForecastStep, forecast

__all__ = [
    "Forecaster",
    "BaseForecaster",
    "empty_forecast",
    "forecasters",
    "AUTO_MODEL",
    "ModelLike",
    "forecaster_class",
    "forecaster_name",
    "make_forecaster",
    "AutoForecaster",
    "HoltWinters",
    "GradientBoosting",
    "SeasonalNaive",
    "FORECAST_COLUMNS",
    "points_frame",
    "horizon_steps",
    "forecast_rows",
    "forecasts_frame",
    "forecast",
    "ForecastStep",
    "backtest",
    "summarize",
    "mae",
    "mase",
    "mase_scale",
    "smape",
    "coverage",
    "StreamModel",
    "ModelRecord",
    "MODEL_COLUMNS",
    "train",
    "evaluate",
    "next_version",
    "newest_record",
    "artifact_filename",
    "history_start",
]
