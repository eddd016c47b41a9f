"""Online anomaly detectors: one per module, all registered in :data:`detectors`."""

from ._base import RESULT_COLUMNS, Detector, Result, detectors, score_to_z, z_to_score
from .bocpd import BOCPD
from .context_ose import ContextOSE
from .cusum import Cusum
from .ensemble import Ensemble
from .ewma import EWMA
from .holt_winters import HoltWinters
from .iforest import IsolationForestDetector
from .level_shift import LevelShift
from .relative_entropy import RelativeEntropy
from .robust_z import RobustZ
from .seasonal import Seasonal
from .seasonality import find_period
from .sequence import SequenceNovelty
from .trend import Trend

__all__ = ["Detector", "Result", "RESULT_COLUMNS", "detectors", "z_to_score", "score_to_z", "find_period",
           "RobustZ", "EWMA", "HoltWinters", "Seasonal", "IsolationForestDetector", "Cusum", "BOCPD",
           "LevelShift", "Trend", "Ensemble", "SequenceNovelty",
           "RelativeEntropy", "ContextOSE"]
