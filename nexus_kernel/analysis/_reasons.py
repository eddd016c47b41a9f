"""An anomaly's ``reason`` (the detector's JSON facts) as one sentence a stranger can read.

Detectors explain each flag with structured facts: ``detector``, ``feature``, ``statistic``, ``value``,
``threshold``, often ``score``, ``expected``, ``since``, and for the ensemble the ``member`` whose signal
led. :func:`describe_reason` turns them into a sentence that keeps every fact (numbers rounded to four
significant digits, times as ``HH:MM:SS UTC``); facts it has no wording for are appended as
``name value`` pairs, so nothing a detector says is hidden. The JSON stays the record of truth: pages
and reports show the sentence, and the facts on demand.

Caveats: the wording is generic (it names features and statistics by their identifiers with ``_`` read
as spaces); a detector whose facts use other keys gets the plain ``name value`` list.

Example
-------
>>> describe_reason('{"detector": "robust_z", "feature": "value", "statistic": "z", "value": 6.2, '
...                 '"threshold": 4.0, "expected": 41.5}')
'robust z flagged it: value z was 6.2, above the threshold 4; expected about 41.5.'
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

__all__ = ["describe_reason"]

_WORDED = ("detector", "feature", "statistic", "value", "threshold", "score", "expected", "since", "member",
           "observed", "text")


def _num(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    return f"{value:.4g}"


def _words(name: Any) -> str:
    return str(name).replace("_", " ")


def _when(value: Any) -> str:
    try:
        ts = pd.Timestamp(value)
    except (TypeError, ValueError):
        return str(value)
    ts = ts.tz_convert("UTC") if ts.tzinfo else ts.tz_localize("UTC")
    return f"{ts:%Y-%m-%d %H:%M:%S} UTC"


def _measure(facts: dict[str, Any]) -> str:
    """``level shift in deviations was 8.2, above the threshold 5``."""
    what = " ".join(_words(facts[k]) for k in ("feature", "statistic") if facts.get(k) not in (None, "")) or "the value"
    if "value" not in facts:
        return what
    text = f"{what} was {_num(facts['value'])}".strip()
    threshold = facts.get("threshold")
    if isinstance(threshold, int | float) and isinstance(facts["value"], int | float):
        side = "above" if facts["value"] >= threshold else "below"
        text += f", {side} the threshold {_num(threshold)}"
    elif threshold is not None:
        text += f" (threshold {_num(threshold)})"
    return text


def describe_reason(reason: str | dict[str, Any] | None) -> str:
    """One sentence with every fact of ``reason`` (its JSON text or the parsed dict); '' when there is none."""
    if reason is None or reason == "" or (isinstance(reason, float) and pd.isna(reason)):
        return ""
    facts: Any = reason
    if isinstance(reason, str):
        try:
            facts = json.loads(reason)
        except ValueError:
            return reason
    if not isinstance(facts, dict):
        return str(facts)
    detector = _words(facts.get("detector", "the detector"))
    score = f" (score {_num(facts['score'])})" if "score" in facts else ""
    if isinstance(facts.get("text"), str) and facts["text"]:
        # the detector's own sentence already names the member, value, expected and threshold that fired
        since = f"; since {_when(facts['since'])}" if "since" in facts else ""
        return f"{detector} flagged it{score}: {facts['text'].rstrip('.')}{since}."
    parts = [f"{detector} flagged it{score}: {_measure(facts)}"]
    if "expected" in facts:
        parts.append(f"expected about {_num(facts['expected'])}")
    member = facts.get("member")
    if isinstance(member, dict) and member:
        parts.append(f"led by {_words(member.get('detector', 'a member'))}, whose {_measure(member)}")
    if "since" in facts:
        parts.append(f"since {_when(facts['since'])}")
    rest = [f"{_words(k)} {_num(v) if not isinstance(v, dict) else json.dumps(v, default=str)}"
            for k, v in facts.items() if k not in _WORDED]
    if isinstance(member, dict):
        rest += [f"{_words(k)} {_num(v)}" for k, v in member.items() if k not in _WORDED]
    return "; ".join(parts + rest) + "."
