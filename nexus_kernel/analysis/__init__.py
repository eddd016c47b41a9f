"""Analysis: online detectors, their evaluation on NAB, forecasting, features, the notebook calls and the
engine step. Analysis opens no store and loads no settings of its own: the model pipeline (:mod:`.models`)
is handed the store its caller opened, and writes its artifacts where it is told.

Public surface (detection half)::

    detect(df, detector="ensemble", **params) -> DataFrame     # ts, series, value, score, is_anomaly, reason
    Analyzer(detector="ensemble").update(batch) -> {"anomalies": frame[, "forecasts": frame]}
    detectors                                                 # the registry; detectors.get("robust_z")(...)
    find_period(x) -> (period | None, strength)               # the seasonal detectors' view of dominant_period

``HoltWinters`` here is the old name of the detector :class:`HoltWintersResidual` (``"holt_winters"``);
it still resolves, with a ``DeprecationWarning``. The forecaster is ``forecasting.HoltWinters`` (``"ets"``).
"""

import warnings
from typing import Any

from ._analyzer import ANOMALY_COLUMNS, Analyzer, empty_anomalies
from ._detect import detect
from ._reasons import describe_reason
from .detectors import (
    BOCPD,
    EWMA,
    Cusum,
    Detector,
    Ensemble,
    HoltWintersResidual,
    IsolationForestDetector,
    LevelShift,
    RobustZ,
    Seasonal,
    Trend,
    detectors,
)
from .seasonality import dominant_period, find_period, seasonal_strength

__all__ = [
    "detect",
    "describe_reason",
    "Analyzer",
    "ANOMALY_COLUMNS",
    "empty_anomalies",
    "detectors",
    "Detector",
    "find_period",
    "RobustZ",
    "EWMA",
    "HoltWintersResidual",
    "Seasonal",
    "IsolationForestDetector",
    "Cusum",
    "BOCPD",
    "LevelShift",
    "Trend",
    "Ensemble",
]

# Public surface (forecasting half, all from :mod:`.forecasting` and :mod:`.models`)::
#
#     forecast(df, horizon="1h", level=0.9, model="auto") -> DataFrame   # ts, series, yhat, lo, hi, ... (forecasts schema)
#     ForecastStep(model="auto", horizon="1h")(batch) -> DataFrame       # engine step, one forecaster per series
#     FeatureExtractor(window=60)(batch) -> DataFrame; rolling_features(df)
#     forecasters                                                        # the registry: "ets", "gbm", "seasonal_naive"
#     backtest(df, model, horizon, folds) -> DataFrame                   # MAE, MASE, sMAPE, coverage per origin
#     retrain(stream, store, settings=...) / serve(stream, store) / train / evaluate / load_model(store, ...)
from . import forecasting
from .features import FeatureExtractor, rolling_features
from .forecasting import (
    FORECAST_COLUMNS,
    BaseForecaster,
    Forecaster,
    ForecastStep,
    backtest,
    evaluate,
    forecast,
    forecasters,
    make_forecaster,
    summarize,
    train,
)
from .models import ModelNotFound, ModelRecord, StreamModel, load_model, retrain, save_model, serve

__all__ += [
    "forecasting",
    "forecast",
    "ForecastStep",
    "FORECAST_COLUMNS",
    "make_forecaster",
    "backtest",
    "summarize",
    "FeatureExtractor",
    "rolling_features",
    "dominant_period",
    "seasonal_strength",
    "forecasters",
    "Forecaster",
    "BaseForecaster",
    "StreamModel",
    "ModelRecord",
    "ModelNotFound",
    "train",
    "evaluate",
    "save_model",
    "load_model",
    "serve",
    "retrain",
]


def __getattr__(name: str) -> Any:
    if name == "HoltWinters":  # the detector's old name; "the forecaster" is forecasting.HoltWinters
        warnings.warn("nexus_kernel.analysis.HoltWinters is now HoltWintersResidual (the detector 'holt_winters'); "
                      "the forecaster is nexus_kernel.analysis.forecasting.HoltWinters", DeprecationWarning,
                      stacklevel=2)
        return HoltWintersResidual
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
