"""Write ``examples/pumps.csv``: one seeded hour of three pumps, the file the README replays.

Columns: ``ts`` (UTC, every 10 s from 2024-03-01 08:00), ``pump`` (p1, p2, p3), ``value`` (discharge
pressure, bar) and ``temperature`` (bearing temperature, °C). What an analyst should find in it:

* p2's pressure jumps by about 2.5 bar for one minute at 08:40 (a spike);
* p3's bearing temperature climbs by 8 °C over the last 20 minutes (a drift);
* two readings of p1 have no pressure value (the validator sends them to the dead letters).

Run ``python examples/make_pumps.py`` to write it again (same seed, same bytes); ``tests/test_examples.py``
checks that the shipped file is what this script writes.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

PUMPS = {"p1": 4.0, "p2": 5.5, "p3": 3.2}  # normal discharge pressure, bar
START = pd.Timestamp("2024-03-01 08:00", tz="UTC")
STEPS = 360  # one hour at 10 s


def pumps(seed: int = 12) -> pd.DataFrame:
    """The hour of readings, in time order (all pumps of one instant together)."""
    rng = np.random.default_rng(seed)
    ts = START + pd.to_timedelta(np.arange(STEPS) * 10, unit="s")
    minutes = np.arange(STEPS) / 6.0
    frames = []
    for i, (pump, base) in enumerate(PUMPS.items()):
        pressure = base + 0.15 * np.sin(2 * np.pi * minutes / 15 + i) + rng.normal(0, 0.04, STEPS)
        temperature = 41.0 + 2 * i + 0.3 * np.sin(2 * np.pi * minutes / 30) + rng.normal(0, 0.1, STEPS)
        if pump == "p2":
            pressure[240:246] += 2.5  # 08:40, one minute
        if pump == "p3":
            temperature[240:] += np.linspace(0.0, 8.0, STEPS - 240)
        frame = pd.DataFrame({"ts": ts, "pump": pump, "value": pressure.round(3),
                              "temperature": temperature.round(2)})
        if pump == "p1":
            frame.loc[[100, 101], "value"] = np.nan
        frames.append(frame)
    out = pd.concat(frames).sort_values(["ts", "pump"], kind="mergesort").reset_index(drop=True)
    out["ts"] = out["ts"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    return out


def main(path: str | None = None) -> Path:
    target = Path(path) if path else Path(__file__).with_name("pumps.csv")
    pumps().to_csv(target, index=False, lineterminator="\n")
    return target


if __name__ == "__main__":
    print(main(sys.argv[1] if len(sys.argv) > 1 else None))
