"""Forecast accuracy and speed on the NAB series that have a season, beside seasonal naive and
statsforecast's AutoETS (bench extra) in the same run.

Which series have a season is decided by our own detection (``dominant_period`` with calendar
preference, and ``seasonal_strength`` of the ranks ≥ 0.3) on the points before the first origin; the list is in the rows' params. Series whose
seasonal-naive in-sample error is zero (noise-free artificial files) have no MASE and are listed as
excluded. Rolling origin: ``folds`` origins one season apart at the end of each file, horizon one season;
every model sees the same trailing ``window`` points before each origin. MASE uses the in-sample seasonal
naive MAE on those points. Time is fit + forecast, per origin, wall clock, one thread.

"Ours" is the default forecaster, ``"auto"`` (:class:`AutoForecaster`): per series and origin it picks
Holt-Winters (``"ets"``) or seasonal naive by a rolling-origin backtest over the last three seasons of the
``window`` points it is given — the past of the origin only, never the evaluated season. Each series' row
says which model it chose at each origin (``chosen``) and its MASE beside seasonal naive's and ets's.
A series where it chose seasonal naive at every origin ties seasonal naive (same forecast): it is counted
as a tie, not as beaten.

Also reported: Holt-Winters alone (``mean_mase[ets]``, the default before issue 13) and our
gradient-boosting forecaster (``mean_mase[gbm]``) on the same origins.

Targets (issue 4): beat seasonal naive on every such series, mean MASE within 5% of AutoETS, ≥ 10× its speed.

Reads ``../shared/data/nab`` (never copied into the repository); skips cleanly when absent.

One more row, ``stream_forecast_ms_per_batch``, needs no data: what forecasting adds to a live batch of the
default stream (its analyze params, read from ``default_stream.json``; its shape: 20 simulated series, 2
points each per batch). Target (issue 11): ≤ 5 ms per batch on average over the forecast-off Analyzer.
The same batches also go, interleaved, through the Analyzer with ``"ets"`` alone (``added_ms_with_ets``):
what "auto"'s backtests at each refit cost beside the forecaster it replaced as the default.
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from nexus_kernel.analysis.forecasting import (AUTO_MODEL, GradientBoosting, HoltWinters, mae, make_forecaster,
                                               mase_scale)
from nexus_kernel.analysis.seasonality import calendar_periods, dominant_period, seasonal_strength

NAB_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "nab"
WINDOW = 2500  # trailing points every model is given before an origin
MIN_STRENGTH = 0.3  # seasonal strength a series needs to count as seasonal


def _row(metric: str, unit: str, ours, peer: str | None, peer_value, ratio, params: dict) -> dict:
    return {"metric": metric, "unit": unit, "ours": ours, "peer": peer, "peer_value": peer_value,
            "ratio": ratio, "params": params}


def _versus_naive(ours: float, naive: float) -> str:
    """"beats", "ties" (equal to 1e-9 relative: the same forecast) or "loses" against seasonal naive."""
    if abs(ours - naive) <= 1e-9 * max(abs(naive), 1e-12):
        return "ties"
    return "beats" if ours < naive else "loses"


def _seasonal_files(root: Path, folds: int) -> tuple[list[tuple[str, pd.DataFrame, int]], dict[str, str]]:
    chosen, excluded = [], {}
    for path in sorted((root / "data").glob("*/*.csv")):
        df = pd.read_csv(path)
        y = df["value"].to_numpy(dtype="float64")
        name = f"{path.parent.name}/{path.stem}"
        first_origin = len(y) - folds * 288  # season unknown yet: leave room for the longest we look for
        train = y[max(0, first_origin - WINDOW):first_origin]
        step = pd.to_datetime(df["timestamp"], utc=True).diff().median()
        m = dominant_period(train, max_period=min(1000, len(train) // 3), prefer=calendar_periods(step))
        if not m:
            excluded[name] = "no season detected"
            continue
        strength = seasonal_strength(rankdata(train), m)  # ranks: spikes do not hide a cycle
        if strength < MIN_STRENGTH:
            excluded[name] = f"weak season (m={m}, strength={strength:.2f})"
            continue
        if mase_scale(train, m) == 0:
            excluded[name] = f"MASE undefined: seasonal naive is exact (m={m})"
            continue
        chosen.append((name, df, m))
    return chosen, excluded


def default_analyzer_params() -> dict:
    """The Analyzer parameters of the default stream's analyze step (its ``every`` is the step's cadence)."""
    import json
    from importlib import resources

    spec = json.loads(resources.files("nexus_kernel.runtime").joinpath("default_stream.json").read_text())
    params = next(s["params"] for s in spec["steps"] if s["kind"] == "analyze")
    return {k: v for k, v in params.items() if k != "every"}


def _stream_row(quick: bool) -> dict:
    """The default stream's Analyzer with and without its forecast, on the same simulated batches.

    Long enough to include the refits (every 1000 points of a series) and the forecasts (every
    ``forecast_every`` points), which come in bursts: the mean is what the target bounds, p99 says how
    uneven the bursts make it.
    """
    from nexus_kernel.analysis import Analyzer
    from nexus_kernel.engine.sources import Simulator
    from nexus_kernel.records import Schema, Validator

    params = default_analyzer_params()
    n = 600 if quick else 3000
    sim = Simulator(series=20, freq="0.1s", rate=None, seed=7, anomaly_rate=6.0, stream="sensors")
    validate = Validator(Schema("sensors"))
    batches = [validate(sim.generate(2)).good for _ in range(n)]

    # the same Analyzer with Holt-Winters alone (the default forecaster before issue 13), for the cost of
    # "auto"'s backtests beside it
    analyzers = {"on": Analyzer(**params), "off": Analyzer(**{**params, "forecast": False}),
                 "ets": Analyzer(**{**params, "forecaster": "ets"})}
    times: dict[str, list[float]] = {key: [] for key in analyzers}
    rows = 0
    for batch in batches:  # interleaved, so a busy moment of the machine weighs on all alike
        for key, analyzer in analyzers.items():
            started = time.perf_counter()
            out = analyzer.update(batch)
            times[key].append(time.perf_counter() - started)
            rows += len(out.get("forecasts", ())) if key == "on" else 0
    on, off, ets = (np.array(times[key]) * 1e3 for key in ("on", "off", "ets"))
    added = float(on.mean() - off.mean())
    return _row("stream_forecast_ms_per_batch", "ms", round(float(on.mean()), 3), "same Analyzer, forecast off",
                round(float(off.mean()), 3), round(float(on.mean() / off.mean()), 4),
                {"added_ms": round(added, 3), "forecaster": params.get("forecaster"),
                 "added_ms_with_ets": round(float(ets.mean() - off.mean()), 3),
                 "p99_ms": round(float(np.percentile(on, 99)), 3),
                 "p99_ms_with_ets": round(float(np.percentile(ets, 99)), 3),
                 "p99_ms_forecast_off": round(float(np.percentile(off, 99)), 3),
                 "forecast_rows_per_batch": round(rows / n, 2), "batches": n, "series": 20,
                 "points_per_series_per_batch": 2, "analyze_params": params, "target": "added_ms <= 5"})


def run(quick: bool = False) -> list[dict]:
    return [_stream_row(quick), *_nab_rows(quick)]


def _nab_rows(quick: bool) -> list[dict]:
    if not (NAB_ROOT / "data").is_dir():
        return [_row("forecast", "skipped", None, None, None, None, {"reason": f"{NAB_ROOT} not found"})]
    try:
        from statsforecast.models import AutoETS
    except ImportError:
        return [_row("forecast", "skipped", None, None, None, None,
                     {"reason": "statsforecast not installed (pip install -e .[bench])"})]
    folds = 1 if quick else 2
    files, excluded = _seasonal_files(NAB_ROOT, folds)
    if quick:
        files = files[:4]
    rows: list[dict] = []
    totals = {"ours": 0.0, "autoets": 0.0, "gbm": 0.0, "ets": 0.0}
    per_series = []
    peer_failures: list[str] = []
    for name, df, m in files:
        y = df["value"].to_numpy(dtype="float64")
        ts = pd.to_datetime(df["timestamp"], utc=True)
        scores: dict[str, list[float]] = {"ours": [], "autoets": [], "seasonal_naive": [], "gbm": [], "ets": []}
        seconds = {"ours": 0.0, "autoets": 0.0, "gbm": 0.0, "ets": 0.0}
        detected, chosen = [], []
        for k in range(folds, 0, -1):
            origin = len(y) - k * m
            lo = max(0, origin - WINDOW)
            train, test = y[lo:origin], y[origin:origin + m]
            scale = mase_scale(train, m)

            started = time.perf_counter()
            f = make_forecaster(AUTO_MODEL, background=False, fit_window=WINDOW).learn(ts[lo:origin], train)
            ours = f.forecast(len(test))["yhat"].to_numpy()
            ours_seconds = time.perf_counter() - started

            started = time.perf_counter()
            e = HoltWinters(background=False, fit_window=WINDOW).learn(ts[lo:origin], train)
            ets = e.forecast(len(test))["yhat"].to_numpy()
            ets_seconds = time.perf_counter() - started

            started = time.perf_counter()
            g = GradientBoosting(background=False, fit_window=WINDOW).learn(ts[lo:origin], train)
            gbm = g.forecast(len(test))["yhat"].to_numpy()
            gbm_seconds = time.perf_counter() - started

            started = time.perf_counter()
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    peer = AutoETS(season_length=m).fit(train).predict(len(test))["mean"]
            except Exception as exc:  # noqa: BLE001 - the peer can fail ("Parameters out of range")
                # compare on the same origins only: this origin is left out for every model
                peer_failures.append(f"{name}@{origin}: {exc}")
                continue
            seconds["autoets"] += time.perf_counter() - started
            seconds["ours"] += ours_seconds
            seconds["gbm"] += gbm_seconds
            seconds["ets"] += ets_seconds
            detected.append(f.season_length)
            chosen.append(getattr(f, "chosen", None))

            naive = np.tile(train[-m:], -(-len(test) // m))[: len(test)]
            scores["ours"].append(mae(test, ours) / scale)
            scores["autoets"].append(mae(test, peer) / scale)
            scores["seasonal_naive"].append(mae(test, naive) / scale)
            scores["gbm"].append(mae(test, gbm) / scale)
            scores["ets"].append(mae(test, ets) / scale)
        if not scores["ours"]:
            continue
        mean = {key: float(np.mean(v)) for key, v in scores.items()}
        totals["ours"] += seconds["ours"]
        totals["autoets"] += seconds["autoets"]
        totals["gbm"] += seconds["gbm"]
        totals["ets"] += seconds["ets"]
        per_series.append((name, mean))
        print(f"  {name}: ours {mean['ours']:.3f} (chose {','.join(map(str, chosen))}) ets {mean['ets']:.3f} "
              f"autoets {mean['autoets']:.3f} snaive {mean['seasonal_naive']:.3f} gbm {mean['gbm']:.3f} "
              f"| s ours {seconds['ours']:.2f} ets {seconds['ets']:.2f} autoets {seconds['autoets']:.2f}",
              file=sys.stderr, flush=True)
        rows.append(_row(
            f"mase[{name}]", "MASE", round(mean["ours"], 4), "statsforecast AutoETS", round(mean["autoets"], 4),
            round(mean["ours"] / mean["autoets"], 4),
            {"season": m, "season_found_by_ets": detected, "seasonal_naive_mase": round(mean["seasonal_naive"], 4),
             "beats_seasonal_naive": mean["ours"] < mean["seasonal_naive"], "chosen": chosen,
             "ets_mase": round(mean["ets"], 4), "gbm_mase": round(mean["gbm"], 4),
             "seconds_ours": round(seconds["ours"], 3), "seconds_autoets": round(seconds["autoets"], 3)},
        ))
        # the choice per origin, in the printed table: what "auto" picked, its MASE beside seasonal naive's
        rows.append(_row(
            f"chosen[{name}]", "MASE " + ",".join(map(str, chosen)), round(mean["ours"], 4), "seasonal naive",
            round(mean["seasonal_naive"], 4),
            round(mean["ours"] / mean["seasonal_naive"], 4) if mean["seasonal_naive"] else None,
            {"chosen_per_origin": chosen, "ets_mase": round(mean["ets"], 4),
             "outcome": _versus_naive(mean["ours"], mean["seasonal_naive"])}))
    if not per_series:
        return [_row("forecast", "skipped", None, None, None, None, {"reason": "no seasonal series", **excluded})]
    ours_mean = float(np.mean([s["ours"] for _, s in per_series]))
    peer_mean = float(np.mean([s["autoets"] for _, s in per_series]))
    naive_mean = float(np.mean([s["seasonal_naive"] for _, s in per_series]))
    beaten = [n for n, s in per_series if _versus_naive(s["ours"], s["seasonal_naive"]) == "beats"]
    tied = [n for n, s in per_series if _versus_naive(s["ours"], s["seasonal_naive"]) == "ties"]
    common = {"series": [n for n, _ in per_series], "excluded": excluded, "folds": folds, "horizon": "one season",
              "window": WINDOW, "quick": quick, "autoets_failed_origins_left_out": peer_failures}
    rows.insert(0, _row("mean_mase", "MASE", round(ours_mean, 4), "statsforecast AutoETS", round(peer_mean, 4),
                        round(ours_mean / peer_mean, 4), {**common, "target": "ratio <= 1.05"}))
    rows.insert(1, _row("mean_mase_vs_seasonal_naive", "MASE", round(ours_mean, 4), "seasonal naive",
                        round(naive_mean, 4), round(ours_mean / naive_mean, 4),
                        {"beats_seasonal_naive_on": f"{len(beaten)}/{len(per_series)}",
                         "ties_on": tied, "loses_on": [n for n, _ in per_series if n not in beaten + tied],
                         "target": "every series"}))
    rows.insert(2, _row("fit_forecast_seconds", "s", round(totals["ours"], 3), "statsforecast AutoETS",
                        round(totals["autoets"], 3), round(totals["ours"] / totals["autoets"], 4),
                        {"speedup": round(totals["autoets"] / max(totals["ours"], 1e-9), 1),
                         "target": "speedup >= 10", "fits": folds * len(per_series)}))
    ets_mean = float(np.mean([s["ets"] for _, s in per_series]))
    rows.insert(3, _row("mean_mase[ets]", "MASE", round(ets_mean, 4), "seasonal naive", round(naive_mean, 4),
                        round(ets_mean / naive_mean, 4),
                        {"model": "Holt-Winters alone (the default before issue 13)",
                         "beats_seasonal_naive_on": sum(_versus_naive(s["ets"], s["seasonal_naive"]) == "beats"
                                                        for _, s in per_series),
                         "loses_on": [n for n, s in per_series
                                      if _versus_naive(s["ets"], s["seasonal_naive"]) == "loses"],
                         "seconds": round(totals["ets"], 3)}))
    gbm_mean = float(np.mean([s["gbm"] for _, s in per_series]))
    rows.insert(4, _row("mean_mase[gbm]", "MASE", round(gbm_mean, 4), "statsforecast AutoETS", round(peer_mean, 4),
                        round(gbm_mean / peer_mean, 4),
                        {"model": "our gradient boosting forecaster (not the default)",
                         "beats_seasonal_naive_on": sum(s["gbm"] < s["seasonal_naive"] for _, s in per_series),
                         "seconds": round(totals["gbm"], 3)}))
    return rows
