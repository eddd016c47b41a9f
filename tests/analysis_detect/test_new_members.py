"""Sequence novelty, relative entropy and the ensemble weights: the behaviour each was added for."""

import numpy as np

from nexus_kernel.analysis.detectors import Ensemble, RelativeEntropy, SequenceNovelty


def test_sequence_novelty_is_zero_on_a_learned_pattern_and_high_on_a_broken_one():
    x = np.tile(np.r_[np.zeros(5), np.ones(5)], 60)
    x[455] = 0.0  # the cycle skips a beat: every level is known, the path is not
    r = SequenceNovelty(warmup=50).score_learn("s", x)
    assert np.nanmax(r.statistic[300:450]) == 0.0
    assert r.statistic[455] > 0.3 and r.score[455] == r.statistic[455]


def test_sequence_novelty_scores_a_level_never_seen_as_one():
    x = np.r_[np.tile([1.0, 2.0, 3.0], 100), 100.0]
    assert SequenceNovelty(warmup=30).score_learn("s", x).statistic[-1] == 1.0


def test_sequence_tables_are_bounded():
    det = SequenceNovelty(table_bits=10)
    det.score_learn("s", np.random.default_rng(0).normal(size=5000))
    state = det._states["s"]
    assert state["ctx"].size == state["nxt"].size == 1024


def test_relative_entropy_sees_a_change_of_spread_with_an_unchanged_mean():
    rng = np.random.default_rng(0)
    x = np.r_[rng.normal(size=1000), rng.normal(size=200) * 4]
    s = RelativeEntropy().score_learn("s", x).statistic
    assert np.nanmax(s[1000:1100]) > 3 * np.nanmax(s[400:1000])


def test_relative_entropy_sees_spikes_come_more_often():
    rng = np.random.default_rng(1)
    x = rng.normal(size=3000) * 0.1
    x[np.arange(200, 2000, 100)] += 5.0  # one spike every 100 points ...
    x[np.arange(2000, 3000, 4)] += 5.0  # ... then one every 4
    s = RelativeEntropy().score_learn("s", x).statistic
    assert np.nanmax(s[2000:2100]) > 1.5 * np.nanmax(s[600:2000])


def test_relative_entropy_rejects_bad_parameters():
    import pytest

    with pytest.raises(ValueError):
        RelativeEntropy(decay=0.0)
    with pytest.raises(ValueError):
        SequenceNovelty(table_bits=40)


def test_ensemble_weights_scale_a_member_down():
    rng = np.random.default_rng(2)
    x = np.r_[rng.normal(size=1200), rng.normal(size=100) + 6]
    members = {"level_shift": {}}
    full = Ensemble(members=members, weights={}).score_learn("s", x).statistic
    half = Ensemble(members=members, weights={"level_shift": 0.5}).score_learn("s", x).statistic
    free = Ensemble(members=members, weights={}, refractory=0).score_learn("s", x).statistic
    assert np.nanmax(half) < np.nanmax(full)
    assert np.allclose(Ensemble(members=members, weights={"level_shift": 0.5}, refractory=0)
                       .score_learn("s", x).statistic, 0.5 * free)
