"""Analysis: online detectors, their evaluation on NAB, the notebook ``detect`` and the engine step.

Public surface (detection half)::

    detect(df, detector="ensemble", **params) -> DataFrame     # ts, series, value, score, is_anomaly, reason
    Analyzer(detector="ensemble").update(batch) -> {"anomalies": frame[, "forecasts": frame]}
    detectors                                                 # the registry; detectors.get("robust_z")(...)
    find_period(x) -> (period | None, strength)
"""

from ._analyzer import ANOMALY_COLUMNS, Analyzer, empty_anomalies
from ._detect import detect
from .detectors import (
    BOCPD,
    EWMA,
    Cusum,
    Detector,
    Ensemble,
    HoltWinters,
    IsolationForestDetector,
    LevelShift,
    RobustZ,
    Seasonal,
    Trend,
    detectors,
    find_period,
)

__all__ = [
    "detect",
    "Analyzer",
    "ANOMALY_COLUMNS",
    "empty_anomalies",
    "detectors",
    "Detector",
    "find_period",
    "RobustZ",
    "EWMA",
    "HoltWinters",
    "Seasonal",
    "IsolationForestDetector",
    "Cusum",
    "BOCPD",
    "LevelShift",
    "Trend",
    "Ensemble",
]

# --- FORECAST EXPORTS: the forecasting half adds its imports and __all__ entries below this line ---
# Public surface (forecasting half)::
#
#     forecast(df, horizon="1h", level=0.9, model="auto") -> DataFrame   # ts, series, yhat, lo, hi, ... (forecasts schema)
#     ForecastStep(model="auto", horizon="1h")(batch) -> DataFrame       # engine step, one forecaster per series
#     FeatureExtractor(window=60)(batch) -> DataFrame; rolling_features(df)
#     forecasters                                                        # the registry: "ets", "gbm", "seasonal_naive"
#     backtest(df, model, horizon, folds) -> DataFrame                   # MAE, MASE, sMAPE, coverage per origin
#     retrain(stream, store=..., settings=...) / serve(stream, store=...) / train / evaluate / load_model
from ._forecast import FORECAST_COLUMNS, ForecastStep, forecast, make_forecaster
from .backtest import backtest, summarize
from .features import FeatureExtractor, dominant_period, rolling_features, seasonal_strength
from .forecasters import BaseForecaster, Forecaster, forecasters
from .models import ModelNotFound, ModelRecord, StreamModel, evaluate, load_model, retrain, save_model, serve, train

__all__ += [
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
