"""The shipped example data is what its generator writes, and holds what the README says it holds."""

from __future__ import annotations

import runpy
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def test_pumps_csv_is_what_make_pumps_writes(tmp_path: Path) -> None:
    make = runpy.run_path(str(ROOT / "examples" / "make_pumps.py"))
    written = make["main"](str(tmp_path / "pumps.csv"))
    assert written.read_bytes() == (ROOT / "examples" / "pumps.csv").read_bytes()


def test_pumps_csv_holds_the_documented_events() -> None:
    frame = pd.read_csv(ROOT / "examples" / "pumps.csv", parse_dates=["ts"])
    assert list(frame.columns) == ["ts", "pump", "value", "temperature"]
    assert sorted(frame["pump"].unique()) == ["p1", "p2", "p3"] and len(frame) == 3 * 360
    assert frame["value"].isna().sum() == 2 and set(frame.loc[frame["value"].isna(), "pump"]) == {"p1"}
    p2 = frame[frame["pump"] == "p2"].set_index("ts")["value"]
    spike = p2["2024-03-01 08:40":"2024-03-01 08:40:50"]
    assert spike.min() > p2[:"2024-03-01 08:39"].max()  # the 08:40 spike stands above the whole hour before it
    p3 = frame[frame["pump"] == "p3"].set_index("ts")["temperature"]
    assert p3[-30:].mean() - p3[:"2024-03-01 08:39"].mean() > 5  # the drift of the last 20 minutes
