"""describe_reason: every fact of a detector's reason in one sentence, never raw JSON."""

from __future__ import annotations

import json

from nexus_kernel.analysis import describe_reason


def test_an_ensemble_reason_reads_as_a_sentence_with_all_its_facts() -> None:
    reason = json.dumps({"detector": "ensemble", "feature": "anomaly_likelihood", "statistic": "z", "value": 2.507642,
                         "threshold": 2.5, "score": 0.987846, "expected": 5.502345,
                         "since": "2024-03-01T08:40:20.900000+00:00", "window": 60,
                         "member": {"detector": "level_shift", "feature": "level", "statistic": "shift_in_deviations",
                                    "value": 8.1997, "threshold": 5.0}})
    assert describe_reason(reason) == (
        "ensemble flagged it (score 0.9878): anomaly likelihood z was 2.508, above the threshold 2.5; "
        "expected about 5.502; led by level shift, whose level shift in deviations was 8.2, above the threshold 5; "
        "since 2024-03-01 08:40:20 UTC; window 60.")


def test_odd_reasons_are_shown_as_they_are() -> None:
    assert describe_reason(None) == "" and describe_reason("") == ""
    assert describe_reason("not json") == "not json"
    assert describe_reason({"detector": "robust_z", "value": 1.0, "threshold": 4.0}) == \
        "robust z flagged it: the value was 1, below the threshold 4."
