"""CAD OSE port: the pieces that make it faithful, its memory growth, and the Numenta calibration."""

import pickle

import numpy as np
import pytest

from nexus_kernel.analysis.detectors import ContextOSE, Ensemble
from nexus_kernel.analysis.detectors import _cad_kernel as k


def _py2_tuple_hash(values):
    # CPython 2.7 / 3.0-3.7 tuplehash on 64 bits, ints hashing to themselves
    x, mult, n = 0x345678, 1000003, len(values)
    for i, v in enumerate(values):
        x = ((x ^ v) * mult) & (2**64 - 1)
        mult += 82520 + 2 * (n - 1 - i)
    x = (x + 97531) & (2**64 - 1)
    x = x - 2**64 if x >= 2**63 else x
    return -2 if x == -1 else x


def test_reference_hash_is_cpython2():
    assert _py2_tuple_hash((1, 2)) == 3713081631934410656  # hash((1, 2)) on a 64-bit CPython 2.7


def test_kernel_hash_matches_cpython2_on_fact_values():
    facts = np.array([0, 3, 5, k.KS + 7, k.KS + 1000], dtype=np.int64)
    values = (65536, 65539, 65541, 2**31 + 7, 2**31 + 1000)
    assert k.py2_hash_facts(facts, len(facts)) == _py2_tuple_hash(values)
    assert k.py2_hash_mask(np.int64(0b101001), np.empty(k.KS, np.int64)) == _py2_tuple_hash((65536, 65539, 65541))


def test_encoding_is_the_binary_digits_of_the_level():
    # level 5 of 0..7 -> digits 1,0,1 (least significant first) -> facts 0*2+1, 1*2+0, 2*2+1
    assert k.encode(5.0, 0.0, 7.0, 3, False) == (1 << 1) | (1 << 2) | (1 << 5)
    assert k.encode(20.0, 0.0, 7.0, 3, False) == (1 << 0) | (1 << 2) | (1 << 5) | (1 << 6) | (1 << 9)  # 20 = 10100b
    assert k.encode(20.0, 0.0, 7.0, 3, True) == k.encode(7.0, 0.0, 7.0, 3, True) | (1 << k.ABOVE)
    assert k.encode(-3.0, 0.0, 7.0, 3, True) & (1 << k.NEG)


def test_learned_pattern_is_silent_and_a_break_scores():
    x = np.tile(np.r_[np.zeros(5), np.ones(5)], 80)
    x[705] = 0.5
    r = ContextOSE(lo=0.0, hi=1.0, rest_period=5).score_learn("s", x)
    assert r.score[600:700].max() == 0.0 and r.score[705] > 0.5


def test_given_range_scores_from_the_first_point_and_rest_period_silences():
    x = np.random.default_rng(0).normal(size=300)
    free = ContextOSE(lo=float(x.min()), hi=float(x.max()), rest_period=0).score_learn("s", x).score
    rested = ContextOSE(lo=float(x.min()), hi=float(x.max()), rest_period=20).score_learn("s", x).score
    assert free[0] > 0 and rested[:20].max() == 0.0 and (rested <= free).all()
    # after a score >= 0.75 the next 20 outputs are 0
    i = int(np.flatnonzero(free[20:200] >= 0.75)[0]) + 20
    assert rested[i + 1 : i + 21].max() == 0.0


def test_tables_grow_and_state_pickles_after_growth():
    x = np.random.default_rng(1).normal(size=1500)
    det = ContextOSE(lo=-3.0, hi=3.0)
    a = det.score_learn("s", x[:700]).score
    assert det._states["s"]["ctx"].shape[0] > 256  # the start capacity was outgrown
    copy = pickle.loads(pickle.dumps(det))
    assert np.array_equal(det.score_learn("s", x[700:]).score, copy.score_learn("s", x[700:]).score)
    whole = ContextOSE(lo=-3.0, hi=3.0).score_learn("s", x).score
    assert np.array_equal(whole[:700], a)


def test_memory_cap_stops_new_contexts():
    x = np.random.default_rng(2).normal(size=2000)
    det = ContextOSE(lo=-3.0, hi=3.0, max_contexts=300)
    det.score_learn("s", x)
    assert det._states["s"]["ic"][k.I_NC] <= 300


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError):
        ContextOSE(lo=1.0)
    with pytest.raises(ValueError):
        ContextOSE(lo=2.0, hi=1.0)
    with pytest.raises(ValueError):
        Ensemble(calibration="gauss")


def test_numenta_calibration_finds_a_shift_and_pickles():
    rng = np.random.default_rng(0)
    x = np.r_[rng.normal(size=1200), rng.normal(size=300) + 8]
    kw = {"calibration": "numenta", "learning": 100, "estimation": 50, "history": 1000, "threshold": 4.5,
          "members": {"level_shift": {}, "robust_z": {}}}
    det = Ensemble(**kw)
    s = det.score_learn("s", x[:1000]).score
    assert (s[:150] == 0).all()  # nupic's probation: likelihood 0.5 -> z 0
    copy = pickle.loads(pickle.dumps(det))
    rest = det.score_learn("s", x[1000:]).score
    assert np.array_equal(rest, copy.score_learn("s", x[1000:]).score)
    assert rest[200:220].max() > 0.999 and rest[200:220].max() > s[300:].max()
