"""Run a detector over a NAB-layout corpus, write NAB result files, and score them.

Layout read: ``ROOT/data/<category>/<file>.csv`` (``timestamp,value``) and, when present,
``ROOT/labels/combined_windows.json`` (else ``combined_labels.json``, windows built by NAB's rule).
Layout written: ``OUT/<detector>/<category>/<detector>_<file>.csv`` with ``timestamp,value,anomaly_score,label``,
``OUT/<detector>/<detector>_<profile>_scores.csv`` (NAB's per-file score table) and
``OUT/final_results.json`` (NAB's normalised scores: ``{detector: {profile: score}}``).

Each file is fed to a fresh detector online, in micro-batches of ``batch`` rows, as the engine would.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..detectors import Detector
from ._scorer import PROFILES, normalise, optimize_threshold, probation_length, score_at, sweep_parts, window_ids

__all__ = ["NabFile", "load_corpus", "run_detector", "score_corpus", "evaluate"]


@dataclass
class NabFile:
    category: str
    name: str  # file name with .csv
    frame: pd.DataFrame  # timestamp (naive), value
    windows: list[tuple[str, str]]
    ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @property
    def key(self) -> str:
        return f"{self.category}/{self.name}"


def _windows_from_labels(labels: list[str], ts: pd.Series) -> list[tuple[str, str]]:
    if not labels:
        return []
    width = int(0.1 * len(ts) / len(labels))
    out = []
    for label in labels:
        i = int(np.searchsorted(ts.to_numpy(), pd.Timestamp(label).to_datetime64()))
        lo, hi = max(0, i - width // 2), min(len(ts) - 1, i + width // 2)
        out.append((str(ts.iloc[lo]), str(ts.iloc[hi])))
    return out


def has_labels(root: str | Path) -> bool:
    """Whether ``root`` has NAB labels (``labels/combined_windows.json`` or ``combined_labels.json``)."""
    labels = Path(root) / "labels"
    return (labels / "combined_windows.json").exists() or (labels / "combined_labels.json").exists()


def load_corpus(root: str | Path) -> list[NabFile]:
    """Every ``data/<category>/*.csv`` under ``root`` with its anomaly windows (empty when unlabelled)."""
    root = Path(root)
    windows_path, labels_path = root / "labels" / "combined_windows.json", root / "labels" / "combined_labels.json"
    windows = json.loads(windows_path.read_text()) if windows_path.exists() else None
    labels = json.loads(labels_path.read_text()) if labels_path.exists() and windows is None else None
    files = []
    for path in sorted((root / "data").glob("*/*.csv")):
        frame = pd.read_csv(path)
        frame["timestamp"] = pd.to_datetime(frame["timestamp"])
        key = f"{path.parent.name}/{path.name}"
        if windows is not None:
            wins = [tuple(w) for w in windows.get(key, [])]
        elif labels is not None:
            wins = _windows_from_labels(labels.get(key, []), frame["timestamp"])
        else:
            wins = []
        f = NabFile(path.parent.name, path.name, frame, wins)
        f.ids = window_ids(frame["timestamp"], f.windows)
        files.append(f)
    if not files:
        raise FileNotFoundError(f"no NAB data under {root / 'data'}")
    return files


def run_detector(make: Callable[[], Detector], files: list[NabFile], batch: int = 1000) -> tuple[dict[str, np.ndarray], float]:
    """Scores per file from a fresh detector each, and the points/s achieved (scoring time only)."""
    scores, elapsed, points = {}, 0.0, 0
    for f in files:
        det = make()
        x = f.frame["value"].to_numpy(dtype=np.float64)
        parts = []
        t0 = time.perf_counter()
        for a in range(0, len(x), batch):
            parts.append(det.score_learn(f.key, x[a : a + batch]).score)
        elapsed += time.perf_counter() - t0
        points += len(x)
        scores[f.key] = np.concatenate(parts) if parts else np.zeros(0)
    return scores, points / elapsed if elapsed > 0 else float("inf")


def score_corpus(files: list[NabFile], scores: dict[str, np.ndarray]) -> dict[str, dict]:
    """Per profile: optimised threshold, raw and normalised score, and a per-file table."""
    out = {}
    for pname, profile in PROFILES.items():
        parts = {f.key: sweep_parts(f.ids, profile, probation_length(len(f.frame))) for f in files}
        pairs = [(scores[f.key][probation_length(len(f.frame)) :], parts[f.key]) for f in files]
        threshold, _ = optimize_threshold(pairs, profile)
        rows, raw, n_windows = [], 0.0, 0
        for f, (s, p) in zip(files, pairs):
            counts = score_at(s, p, threshold, profile)
            rows.append({"detector": None, "file": f.key, "threshold": threshold, **counts})
            raw += counts["score"]
            n_windows += p.n_windows
        out[pname] = {
            "threshold": threshold,
            "raw": raw,
            "score": normalise(raw, n_windows, profile),
            "table": pd.DataFrame(rows),
        }
    return out


def write_results(out: Path, detector: str, files: list[NabFile], scores: dict[str, np.ndarray],
                  result: dict | None) -> None:
    """NAB's result files per data file; with a ``result`` (labelled corpus) also the score tables."""
    for f in files:
        d = out / detector / f.category
        d.mkdir(parents=True, exist_ok=True)
        frame = pd.DataFrame(
            {
                "timestamp": f.frame["timestamp"].dt.strftime("%Y-%m-%d %H:%M:%S"),
                "value": f.frame["value"],
                "anomaly_score": scores[f.key],
                "label": (f.ids >= 0).astype(int),
            }
        )
        frame.to_csv(d / f"{detector}_{f.name}", index=False)
    if result is None:
        return
    summary = {}
    for pname, res in result.items():
        table = res["table"].assign(detector=detector)
        table.to_csv(out / detector / f"{detector}_{pname}_scores.csv", index=False)
        summary[pname] = round(res["score"], 4)
    final = out / "final_results.json"
    merged = json.loads(final.read_text()) if final.exists() else {}
    merged[detector] = summary
    final.write_text(json.dumps(merged, indent=2, sort_keys=True))


def evaluate(root: str | Path, make: Callable[[], Detector], detector: str, out: str | Path | None = None,
             batch: int = 1000) -> dict:
    """Run, score and (when ``out`` is given) write NAB results for one detector.

    A corpus without labels is run and its result files written, but not scored: ``result`` is ``None``
    and there are no profile scores (``labelled`` says which)."""
    files = load_corpus(root)
    scores, rate = run_detector(make, files, batch=batch)
    if not has_labels(root):
        if out is not None:
            write_results(Path(out), detector, files, scores, None)
        return {"detector": detector, "points_per_s": rate, "points": sum(len(f.frame) for f in files),
                "files": len(files), "labelled": False, "result": None}
    result = score_corpus(files, scores)
    if out is not None:
        write_results(Path(out), detector, files, scores, result)
    return {"detector": detector, "points_per_s": rate, "points": sum(len(f.frame) for f in files),
            "files": len(files), "labelled": True, **{p: r["score"] for p, r in result.items()}, "result": result}
