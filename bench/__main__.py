"""Run benchmarks: ``python -m bench [NAME ...] [--quick]`` (no name: all of them).

Each benchmark is a module ``bench/<name>.py`` (dashes in NAME become underscores) with
``run(quick: bool = False) -> list[dict]``; each row is
``{"metric", "unit", "ours", "peer", "peer_value", "ratio", "params"}`` — our figure beside a peer's
figure measured in the same run. The rows are printed as a table and written to
``bench/results/NAME.json``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def available() -> list[str]:
    return sorted(m.name.replace("_", "-") for m in pkgutil.iter_modules([str(HERE)])
                  if not m.name.startswith("_"))


def run_one(name: str, quick: bool) -> list[dict]:
    module = importlib.import_module(f"bench.{name.replace('-', '_')}")
    started = time.perf_counter()
    rows = module.run(quick=quick)
    elapsed = time.perf_counter() - started
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(rows, indent=2, default=str))
    print(f"\n== {name} ({elapsed:.1f} s{', quick' if quick else ''}) ==")
    print(table(rows))
    return rows


def table(rows: list[dict]) -> str:
    header = ("metric", "unit", "ours", "peer", "peer_value", "ratio")
    cells = [[_fmt(r.get(h)) for h in header] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return "-" if value is None else str(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"benchmarks to run (default all): {', '.join(available())}")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    args = parser.parse_args(argv)
    names = args.names or available()
    unknown = [n for n in names if n not in available()]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; available: {available()}")
    for name in names:
        run_one(name, args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
