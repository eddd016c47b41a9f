"""The NAB scorer on a generated labelled corpus (the real NAB data is only read by bench/nab.py)."""

import json

import numpy as np
import pandas as pd
from click.testing import CliRunner

from nexus_kernel.analysis._cli import evaluate_command
from nexus_kernel.analysis.nab import PROFILES, load_corpus, score_corpus, sweep_parts
from nexus_kernel.analysis.nab._scorer import scores_by_threshold


def write_corpus(root, files=3, n=1500, seed=0):
    rng = np.random.default_rng(seed)
    windows = {}
    for k in range(files):
        ts = pd.date_range("2020-01-01", periods=n, freq="5min")
        x = 10 + np.sin(np.arange(n) / 20) + rng.normal(0, 0.2, n)
        at = 800 + 150 * k
        x[at:at + 40] += 8
        d = root / "data" / "synthetic"
        d.mkdir(parents=True, exist_ok=True)
        pd.DataFrame({"timestamp": ts.strftime("%Y-%m-%d %H:%M:%S"), "value": x}).to_csv(d / f"f{k}.csv", index=False)
        windows[f"synthetic/f{k}.csv"] = [[str(ts[at - 40]) + ".000000", str(ts[at + 40]) + ".000000"]]
    (root / "labels").mkdir(exist_ok=True)
    (root / "labels" / "combined_windows.json").write_text(json.dumps(windows))


def test_null_scores_0_and_perfect_scores_100(tmp_path):
    write_corpus(tmp_path)
    files = load_corpus(tmp_path)
    null = score_corpus(files, {f.key: np.zeros(len(f.frame)) for f in files})
    perfect = score_corpus(files, {f.key: np.r_[0, np.diff((f.ids >= 0).astype(float)) > 0].astype(float) for f in files})
    for p in PROFILES:
        assert null[p]["score"] == 0.0
        assert abs(perfect[p]["score"] - 100.0) < 1e-9


def test_late_detection_earns_less_and_false_positives_cost():
    ids = np.r_[np.full(100, -1), np.full(20, 0), np.full(100, -1)]
    parts = sweep_parts(ids, PROFILES["standard"], probation=10)
    early = np.zeros(len(parts.sweep)); early[90] = 1  # first row of the window (after probation offset)
    late = np.zeros(len(parts.sweep)); late[105] = 1
    fp = early.copy(); fp[20] = 1
    total = lambda s: scores_by_threshold(s, parts.sweep, parts.window, 1, PROFILES["standard"])[1][1:].max()
    assert total(early) > total(late) > 0
    assert abs(total(early) - total(fp) - 0.11) < 1e-9


def test_sanity_detector_lands_between(tmp_path):
    write_corpus(tmp_path)
    files = load_corpus(tmp_path)
    res = score_corpus(files, {f.key: (f.frame["value"].to_numpy() > 15).astype(float) for f in files})
    assert 60 < res["standard"]["score"] < 100  # detects every window, a little after its start


def test_evaluate_cli_writes_nab_results(tmp_path):
    write_corpus(tmp_path / "nab")
    out = tmp_path / "out"
    result = CliRunner().invoke(evaluate_command, ["--nab", str(tmp_path / "nab"), "--results", str(out),
                                                   "--detector", "robust_z"])
    assert result.exit_code == 0, result.output
    f = pd.read_csv(out / "robust_z" / "synthetic" / "robust_z_f0.csv")
    assert list(f.columns) == ["timestamp", "value", "anomaly_score", "label"] and len(f) == 1500
    scores = json.loads((out / "final_results.json").read_text())["robust_z"]
    assert set(scores) == set(PROFILES) and scores["standard"] > 50
    assert (out / "robust_z" / "robust_z_standard_scores.csv").exists()


def test_evaluate_cli_on_an_unlabelled_folder_writes_results_and_says_it_cannot_score(tmp_path):
    """Tried as a new user would: a NAB-layout folder of their own, no labels yet."""
    write_corpus(tmp_path / "nab")
    (tmp_path / "nab" / "labels" / "combined_windows.json").unlink()
    out = tmp_path / "out"
    result = CliRunner().invoke(evaluate_command, ["--nab", str(tmp_path / "nab"), "--results", str(out)])
    assert result.exit_code == 0, result.output
    assert "could not score them: no labels" in result.output and "wrote 3 result files" in result.output
    f = pd.read_csv(out / "ensemble" / "synthetic" / "ensemble_f1.csv")
    assert list(f.columns) == ["timestamp", "value", "anomaly_score", "label"] and len(f) == 1500
    assert (f["label"] == 0).all() and f["anomaly_score"].between(0, 1).all()
    assert f["anomaly_score"].iloc[950:1000].max() > 0.99  # the injected anomaly of f1 is found
    assert not (out / "final_results.json").exists()


def test_evaluate_cli_with_point_labels_prints_the_table(tmp_path):
    """NAB's other label file, combined_labels.json (points): windows are built by NAB's rule."""
    write_corpus(tmp_path / "nab")
    windows = json.loads((tmp_path / "nab" / "labels" / "combined_windows.json").read_text())
    (tmp_path / "nab" / "labels" / "combined_windows.json").unlink()
    labels = {k: [str(pd.Timestamp(a) + (pd.Timestamp(b) - pd.Timestamp(a)) / 2) for a, b in v]
              for k, v in windows.items()}
    (tmp_path / "nab" / "labels" / "combined_labels.json").write_text(json.dumps(labels))
    result = CliRunner().invoke(evaluate_command, ["--nab", str(tmp_path / "nab"), "--results",
                                                   str(tmp_path / "out"), "--detector", "robust_z"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["profile", "score", "threshold"]
    assert {line.split()[0] for line in lines[1:4]} == set(PROFILES)
    assert all(float(line.split()[1]) > 50 for line in lines[1:4])


def test_evaluate_cli_on_a_folder_without_data_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(evaluate_command, ["--nab", str(tmp_path / "empty"), "--results", str(tmp_path / "o")])
    assert result.exit_code == 2 and "data/<category>/<file>.csv" in result.output
