"""BOCPD on the values less the season_change profile (``deseasonalize``, the ensemble's default): a
clear, repeating cycle is not a change of regime, a step on top of one still is."""

from __future__ import annotations

import numpy as np

from nexus_kernel.analysis.detectors import BOCPD

PARAMS = {"max_run": 32, "hazard": 1 / 1000}


def cycle(n: int = 3000, period: int = 60, amplitude: float = 5.0, seed: int = 0) -> np.ndarray:
    i = np.arange(n)
    return 20.0 + amplitude * np.sin(2 * np.pi * i / period) + np.random.default_rng(seed).normal(size=n)


def test_a_cycle_is_not_a_change_of_regime():
    x = cycle()
    plain = BOCPD(**PARAMS).score_learn("s", x).statistic
    flat = BOCPD(**PARAMS, deseasonalize=True).score_learn("s", x).statistic
    after = slice(1000, None)  # the cycle found (at 900 points) and learned
    assert np.nanmax(plain[after]) > 0.8  # the plain model reads the cycle as a change, more than once
    assert np.nanmax(flat[after]) < 0.2 and (plain[after] >= 0.5).sum() > 5


def test_a_step_on_a_cycle_is_still_a_change_and_expected_is_on_the_data_scale():
    x = cycle()
    x[2000:] += 6.0
    det = BOCPD(**PARAMS, deseasonalize=True)
    res = det.score_learn("s", x)
    assert np.nanmax(res.statistic[2000:2015]) > 0.8
    before = slice(1500, 2000)
    assert np.nanmean(np.abs(res.expected[before] - x[before])) < 2.0  # the cycle's part added back


def test_without_a_season_it_is_plain_bocpd():
    x = np.random.default_rng(3).normal(size=1500)
    x[1200:] += 4.0
    plain = BOCPD(**PARAMS).score_learn("s", x)
    flat = BOCPD(**PARAMS, deseasonalize=True).score_learn("s", x)
    assert np.array_equal(plain.statistic, flat.statistic, equal_nan=True)
    assert np.array_equal(plain.expected, flat.expected, equal_nan=True)


def test_scores_do_not_depend_on_the_batch_size():
    x = cycle(n=2000)
    x[1500:] += 5.0
    whole = BOCPD(**PARAMS, deseasonalize=True).score_learn("s", x).statistic
    det = BOCPD(**PARAMS, deseasonalize=True)
    parts = np.concatenate([det.score_learn("s", x[a:a + 37]).statistic for a in range(0, len(x), 37)])
    assert np.allclose(whole, parts, equal_nan=True)


def test_one_odd_season_in_the_search_buffer_does_not_hide_the_cycle():
    """A sensor stuck for most of one season before the period search (as on the simulator's s0003 in
    ``bench alarms``): every other season repeats the cycle, so the filter still finds it and BOCPD runs
    on the values less it. A pattern that only the first seasons show is still not a cycle."""
    from nexus_kernel.analysis.detectors import SeasonChange
    from nexus_kernel.analysis.detectors.season_change import season_likeness

    x = cycle(period=91, amplitude=4.2, seed=3)
    x[455:540] = x[454]  # stuck for 85 points of the fifth season
    assert season_likeness(x[:900], 91) >= 0.8
    det = SeasonChange()
    state = det.new_state()
    det.deseasonalize(state, x)
    assert state["active"] and state["period"] == 91
    flat = BOCPD(**PARAMS, deseasonalize=True).score_learn("s", x).statistic
    plain = BOCPD(**PARAMS).score_learn("s", x).statistic
    assert (flat[1000:] >= 0.5).sum() * 4 < (plain[1000:] >= 0.5).sum()
    wandering = x.copy()
    wandering[300:] = 20.0 + np.random.default_rng(4).normal(size=len(x) - 300) * 3.0  # the cycle only at first
    assert season_likeness(wandering[:900], 91) < 0.8


def test_in_the_ensemble_the_season_filter_runs_once_for_both_members():
    """The default ensemble runs season_change and a deseasonalizing BOCPD with the same filter: it runs
    that filter once per batch and feeds BOCPD the values less its profile. The scores are exactly those
    of BOCPD running its own filter, batch by batch, missing values included."""
    from nexus_kernel.analysis.detectors import Ensemble, SeasonChange
    from nexus_kernel.analysis.detectors.ensemble import _FedSeason

    x = cycle(n=4000, period=40)
    x[2500:2800] = 20.0 + np.random.default_rng(5).normal(size=300)  # the cycle stops
    x[3300] += 9.0
    x[[100, 1500, 1501]] = np.nan
    shared = Ensemble()
    assert isinstance(shared._detectors["bocpd"]._season, _FedSeason)
    own = Ensemble()
    own._fed = None
    own._detectors["bocpd"]._season = SeasonChange()
    for det in (shared, own):
        det.stats = np.concatenate([det.score_learn("s", x[k:k + 137]).statistic for k in range(0, len(x), 137)])
    assert np.array_equal(np.nan_to_num(shared.stats, nan=-1.0), np.nan_to_num(own.stats, nan=-1.0))
    assert np.nanmax(shared.stats[2500:2600]) >= shared.threshold  # and the stop is flagged
    # a BOCPD whose filter differs from the member's keeps its own
    assert isinstance(Ensemble(members={"bocpd": {"deseasonalize": True}, "season_change": {"threshold": 4.0}})
                      ._detectors["bocpd"]._season, SeasonChange)


def test_a_period_found_early_is_checked_again_on_the_whole_search():
    """Three seasons (``early_search``, 150 points) place a period of 46 at 44 or 45 on most noise draws
    (as on the simulator's s0008 in ``bench alarms``, where the residual kept part of the cycle and BOCPD
    read it as changes: 10 false alarms on that series); at ``season_search`` points the period is checked
    again and the filter restarts on the right one."""
    from nexus_kernel.analysis.detectors import SeasonChange

    x = cycle(n=1500, period=46, amplitude=3.5, seed=3)
    det = SeasonChange()
    state = det.new_state()
    det.deseasonalize(state, x[:899])
    assert state["period"] == 44  # the early guess, off by two
    flat = det.deseasonalize(state, x[899:])
    assert state["period"] == 46 and state["active"] and "recheck" not in state
    residual = flat[-500:] - np.median(flat[-500:])
    assert np.std(residual) < 1.25  # noise 1, the profile's own learning adds a little; 44 left about 1.6
    assert abs(np.corrcoef(residual[:-1], residual[1:])[0, 1]) < 0.15


def test_the_check_again_does_not_depend_on_the_batch_size():
    from nexus_kernel.analysis.detectors import SeasonChange

    x = cycle(n=1400, period=46, amplitude=3.5, seed=3)
    x[1200:] = 20.0 + np.random.default_rng(5).normal(size=200)  # the cycle stops after the check
    whole_det = SeasonChange()
    whole = whole_det.score_learn("s", x)
    det = SeasonChange()
    parts = [det.score_learn("s", x[a:a + 41]) for a in range(0, len(x), 41)]
    assert np.allclose(whole.statistic, np.concatenate([p.statistic for p in parts]), equal_nan=True)
    assert np.allclose(whole.expected, np.concatenate([p.expected for p in parts]), equal_nan=True)
    assert np.nanmin(whole.statistic[1200:1260]) <= -5.0  # and it still sees the stop
    flat_whole = BOCPD(**PARAMS, deseasonalize=True).score_learn("s", x).statistic
    bocpd = BOCPD(**PARAMS, deseasonalize=True)
    flat_parts = np.concatenate([bocpd.score_learn("s", x[a:a + 41]).statistic for a in range(0, len(x), 41)])
    assert np.allclose(flat_whole, flat_parts, equal_nan=True)
