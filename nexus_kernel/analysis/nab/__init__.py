"""NAB evaluation: a scorer written from the NAB rules, and a runner for NAB-layout corpora."""

from ._corpus import NabFile, evaluate, has_labels, load_corpus, run_detector, score_corpus, write_results
from ._scorer import PROFILES, Profile, normalise, optimize_threshold, probation_length, score_at, sweep_parts

__all__ = ["PROFILES", "Profile", "NabFile", "evaluate", "has_labels", "load_corpus", "run_detector", "score_corpus",
           "write_results", "normalise", "optimize_threshold", "probation_length", "score_at", "sweep_parts"]
