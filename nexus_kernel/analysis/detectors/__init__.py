"""Online anomaly detectors: one per module, all registered in :data:`detectors`.

The period finder the seasonal detectors use is :func:`nexus_kernel.analysis.seasonality.find_period`
(re-exported here). ``HoltWinters`` is the old name of :class:`HoltWintersResidual` (detector
``"holt_winters"``); it still resolves, with a :class:`DeprecationWarning`, because the forecaster of that
name is :class:`nexus_kernel.analysis.forecasting.HoltWinters`.
"""

import warnings
from typing import Any

from ..seasonality import find_period
from ._base import RESULT_COLUMNS, Detector, Result, detectors, score_to_z, z_to_score
from .bocpd import BOCPD
from .context_ose import ContextOSE
from .cusum import Cusum
from .ensemble import Ensemble
from .ewma import EWMA
from .holt_winters import HoltWintersResidual
from .iforest import IsolationForestDetector
from .level_shift import LevelShift
from .mean_shift import MeanShift
from .relative_entropy import RelativeEntropy
from .robust_z import RobustZ
from .season_change import SeasonChange
from .seasonal import Seasonal
from .sequence import SequenceNovelty
from .spread import Spread
from .stuck import Stuck
from .trend import Trend

__all__ = ["Detector", "Result", "RESULT_COLUMNS", "detectors", "z_to_score", "score_to_z", "find_period",
           "RobustZ", "EWMA", "HoltWintersResidual", "Seasonal", "IsolationForestDetector", "Cusum", "BOCPD",
           "LevelShift", "Trend", "Ensemble", "SequenceNovelty",
           "RelativeEntropy", "ContextOSE", "Stuck", "MeanShift", "SeasonChange", "Spread"]

#: names kept for code written before a rename: old name -> (new name, why)
RENAMED = {"HoltWinters": ("HoltWintersResidual", "the forecaster is nexus_kernel.analysis.forecasting.HoltWinters")}


def __getattr__(name: str) -> Any:
    if name in RENAMED:
        new, why = RENAMED[name]
        warnings.warn(f"{__name__}.{name} is now {new} ({why})", DeprecationWarning, stacklevel=2)
        return globals()[new]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
