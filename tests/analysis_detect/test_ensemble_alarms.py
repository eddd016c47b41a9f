"""The ensemble's alarm discipline: one alarm per incident, a strict quiet period, ``reopen`` to relax it."""

import json
import math

import numpy as np
import pandas as pd

import nexus_kernel as nk
from nexus_kernel.analysis.detectors import Ensemble, SeasonChange


def two_shifts(gap=60):
    rng = np.random.default_rng(0)
    x = rng.normal(size=1400)
    x[1000:] += 8.0
    x[1000 + gap :] += 8.0  # a second, larger shift inside the quiet period
    return x


def alarms(det, x):
    return np.flatnonzero(det.score_learn("s", x).statistic >= det.threshold)


def test_default_members_include_change_point_detector():
    det = Ensemble()
    # the shift member is the EW mean_shift (the old level_shift, renamed in issue 13; level_shift is
    # now the median-based detector); stuck joined for stuck sensors
    assert {"mean_shift", "seasonal", "bocpd", "stuck"} <= set(det.members)
    assert {"sequence", "robust_z", "relative_entropy"} <= set(det.members)
    # season_change speaks only directly, first past its own threshold (weight 0 on the likelihood path)
    assert det.direct == ("season_change",) and det.weights["season_change"] == 0.0
    assert all(0 < w <= 1 for m, w in det.weights.items() if m not in det.direct)
    assert det.reopen == np.inf and det.refractory == 150 and det.threshold == 2.5


def test_a_direct_member_alarms_once_per_excursion_past_its_threshold():
    """A season of 60 points stops for 400: season_change stays past its threshold for longer than the
    quiet period (its profile is held for three seasons), yet the stop gets one alarm, at its onset (a
    member past its threshold at every point would alarm again once the quiet period ends)."""
    rng = np.random.default_rng(2)
    i = np.arange(2000)
    season = 5.0 * np.sin(2 * np.pi * i / 60)
    x = 20.0 + season + rng.normal(size=2000)
    x[1200:1600] -= season[1200:1600]
    past = np.abs(np.nan_to_num(SeasonChange().score_learn("s", x).statistic)) >= 5.0
    onsets = np.flatnonzero(past[1:] & ~past[:-1]) + 1
    assert onsets.tolist() == [onsets[0]] and 1200 <= onsets[0] < 1260 and past[1200:1600].sum() > 150
    frame = pd.DataFrame({"ts": pd.date_range("2024-01-01", periods=2000, freq="min", tz="UTC"), "value": x})
    out = nk.detect(frame)
    led = [json.loads(r)["member"]["detector"] for r in out.loc[out["is_anomaly"], "reason"]]
    hits = np.flatnonzero(out["is_anomaly"].to_numpy())
    during = (hits >= 1200) & (hits < 1600)
    assert during.sum() == 1 and hits[during][0] <= onsets[0], list(zip(hits, led))
    assert not (hits < 1200).any()


def test_strict_quiet_period_gives_one_alarm_per_incident():
    hits = alarms(Ensemble(), two_shifts())
    near = hits[(hits >= 1000) & (hits < 1150)]
    assert len(near) == 1 and 1000 <= near[0] < 1020  # the first shift alarms once, early


def test_reopen_lets_stronger_evidence_through():
    strict = alarms(Ensemble(reopen=np.inf), two_shifts())
    loose = alarms(Ensemble(reopen=1.0), two_shifts())  # reopen at the threshold: no quiet period at all
    assert len(loose) > len(strict)
    assert set(strict) <= set(loose)


def test_quiet_period_carries_across_batches():
    x = two_shifts()
    whole = Ensemble().score_learn("s", x).score
    det = Ensemble()
    parts = np.concatenate([det.score_learn("s", x[a : a + 7]).score for a in range(0, len(x), 7)])
    assert np.allclose(whole, parts)


def test_bocpd_has_a_likelihood_floor_by_default_and_floors_are_checked():
    """The default floor under BOCPD's likelihood deviation (chosen on the NAB folds) keeps a blip of a
    near-constant member output from reading as many sigmas; custom members start without floors."""
    import pytest

    assert Ensemble().floors == {"bocpd": 0.02}
    assert Ensemble(members={"robust_z": {}}).floors == {}
    assert Ensemble(floors={}).floors == {}
    with pytest.raises(ValueError, match="floors"):
        Ensemble(floors={"bocpd": -0.1})


def test_the_bocpd_floor_quiets_noise_and_keeps_the_obvious():
    """On pure noise (six seeds of 3,000 points) the floor halves the false alarms or better (3 against 11
    without it, both without ``confirm``/``confirms``); a 20-sigma spike is still flagged on its own point."""
    floored = unfloored = 0
    for seed in range(6):
        noise = np.random.default_rng(seed).normal(20.0, 1.0, 3000)
        floored += len(alarms(Ensemble(confirm=0.0, confirms={}), noise))
        unfloored += len(alarms(Ensemble(floors={}, confirm=0.0, confirms={}), noise))
    assert unfloored >= 2 * floored + 1, (floored, unfloored)
    spiked = np.random.default_rng(1).normal(20.0, 1.0, 450)
    spiked[300] += 20.0
    assert 300 in alarms(Ensemble(), spiked)


def test_confirm_quiets_noise_the_likelihood_alone_reads_as_unusual():
    """``confirm`` (default 0.3): a member's likelihood counts only while its own excess reached 0.3 of its
    own threshold within the last ``short`` points. On pure noise (twelve seeds of 3,000 points, BOCPD
    floor off so the likelihood alone is twitchy) it removes at least half of the alarms (7 against 21
    when written); a step of 6 sigma and a 20-sigma spike are flagged as without it."""
    import pytest

    assert Ensemble().confirm == 0.3 and Ensemble().confirms == {"bocpd": 0.5}
    assert Ensemble(members={"bocpd": {}}).confirms == {}  # custom members start without per-member levels
    with pytest.raises(ValueError, match="confirm"):
        Ensemble(confirm=-1.0)
    with pytest.raises(ValueError, match="confirm"):
        Ensemble(confirms={"bocpd": math.inf})
    plain = confirmed = 0
    for seed in range(12):
        noise = np.random.default_rng(seed).normal(20.0, 1.0, 3000)
        plain += len(alarms(Ensemble(floors={}, confirm=0.0, confirms={}), noise))
        confirmed += len(alarms(Ensemble(floors={}), noise))
    assert plain >= 2 * confirmed + 1, (plain, confirmed)
    x = np.random.default_rng(3).normal(20.0, 1.0, 900)
    x[500] += 20.0
    x[700:] += 6.0
    for det in (Ensemble(), Ensemble(confirm=0.0, confirms={})):
        found = alarms(det, x)
        assert 500 in found and any(700 <= i < 710 for i in found), found
