"""River's HalfSpaceTrees beside our ensemble on the NAB subset: NAB score and points/s, same run.

HalfSpaceTrees needs features in [0, 1]: it runs behind river's online MinMaxScaler, score_one before
learn_one (the same online protocol as ours). Skips cleanly without the data or without ``river``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

NAB_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "nab"


class _HST:
    def __init__(self) -> None:
        from river import anomaly, preprocessing

        self.model = preprocessing.MinMaxScaler() | anomaly.HalfSpaceTrees(seed=42)

    def score_learn(self, key, values):
        from types import SimpleNamespace

        out = np.empty(len(values))
        for i, v in enumerate(values):
            x = {"value": float(v)}
            out[i] = self.model.score_one(x)
            self.model.learn_one(x)
        return SimpleNamespace(score=out)


def run(quick: bool = False, root: Path = NAB_ROOT) -> list[dict]:
    skip = None
    try:
        import river  # noqa: F401
    except ImportError:
        skip = "river is not installed (pip install nexus-stream[bench])"
    if not (root / "data").exists():
        skip = f"no NAB data at {root}"
    if skip:
        return [{"metric": "detect_peers", "unit": "skipped", "ours": None, "peer": "river HalfSpaceTrees",
                 "peer_value": None, "ratio": None, "params": {"reason": skip}}]
    from nexus_kernel.analysis.detectors import Ensemble
    from nexus_kernel.analysis.nab import load_corpus, run_detector, score_corpus

    files = load_corpus(root)
    Ensemble().score_learn("warm-up", np.sin(np.arange(1500) / 7.0))  # JIT compile outside the timing
    if quick:
        files = files[::4]
    ours, our_rate = run_detector(Ensemble, files)
    peer, peer_rate = run_detector(_HST, files)
    a, b = score_corpus(files, ours), score_corpus(files, peer)
    rows = [{"metric": f"nab_{p}", "unit": "score", "ours": round(a[p]["score"], 2), "peer": "river HalfSpaceTrees",
             "peer_value": round(b[p]["score"], 2), "ratio": round(a[p]["score"] / b[p]["score"], 3) if b[p]["score"] else None,
             "params": {"files": len(files)}} for p in a]
    rows.append({"metric": "throughput", "unit": "points/s", "ours": round(our_rate), "peer": "river HalfSpaceTrees",
                 "peer_value": round(peer_rate), "ratio": round(our_rate / peer_rate, 1), "params": {"files": len(files)}})
    return rows


if __name__ == "__main__":
    for row in run():
        print(row)
