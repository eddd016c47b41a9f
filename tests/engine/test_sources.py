"""Built-in sources: simulator, replay, iterable; the source registry."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pandas as pd
import pytest

from nexus_kernel.engine import Pipeline, sources
from nexus_kernel.records import Schema, Validator


def take(source, limit=None):
    async def collect():
        out = []
        async for b in source.batches():
            out.append(b)
            if limit and sum(len(x) for x in out) >= limit:
                break
        return out

    return asyncio.run(collect())


def test_registry_knows_builtins_and_refuses_unknown():
    assert {"simulator", "replay", "iterable"} <= set(sources.sources.names())
    with pytest.raises(LookupError, match="unknown sources 'nope'"):
        sources.make("nope")


def test_simulator_is_seeded_and_complete():
    a = pd.concat(take(sources.simulator(series=4, rate=None, seed=11, limit=4000, anomaly_rate=20)))
    b = pd.concat(take(sources.simulator(series=4, rate=None, seed=11, limit=4000, anomaly_rate=20)))
    pd.testing.assert_frame_equal(a, b)
    assert len(a) == 4000 and set(a["series"]) == {"s0000", "s0001", "s0002", "s0003"}
    assert (a.groupby("series")["ts"].diff().dropna() == pd.Timedelta("1s")).all()
    c = pd.concat(take(sources.simulator(series=4, rate=None, seed=12, limit=4000)))
    assert not np.allclose(a["value"].to_numpy(), c["value"].to_numpy())


def test_simulator_injects_labelled_anomalies_of_every_kind():
    sim = sources.simulator(series=10, rate=None, seed=3, limit=100_000, anomaly_rate=10)
    data = pd.concat(take(sim))
    kinds = {a.kind for a in sim.anomalies}
    # issue 13 added a stuck sensor and a broken short season to the four kinds
    assert kinds == {"spike", "level_shift", "variance", "drift", "stuck", "season_break"}
    labels = sim.labels(data)
    assert 0 < labels.mean() < 0.9
    def quiet(a):  # no other anomaly of the series near it
        return not any(o is not a and o.series == a.series and o.start - pd.Timedelta("60s") <= a.start
                       <= o.end + pd.Timedelta("60s") for o in sim.anomalies)

    # on a series without the short cycle (issue 13), whose swing would widen the spread around it
    spike = next(a for a in sim.anomalies if a.kind == "spike" and quiet(a) and sim.cycle_amp[int(a.series[1:])] == 0)
    row = data[(data["series"] == spike.series) & (data["ts"] == spike.start)]
    around = data[(data["series"] == spike.series) & (abs(data["ts"] - spike.start) < pd.Timedelta("30s"))
                  & (data["ts"] != spike.start)]["value"]
    assert abs(row["value"].iat[0] - around.median()) > 3 * around.std()


def test_simulator_stuck_sensor_repeats_and_season_break_stops_the_cycle():
    sim = sources.simulator(series=10, rate=None, seed=3, limit=100_000, anomaly_rate=10, start="2024-01-01")
    data = pd.concat(take(sim))
    for a in sim.anomalies:  # one anomaly at a time per series
        later = [o for o in sim.anomalies if o.series == a.series and o.start > a.start]
        assert all(o.start > a.end for o in later)
    stuck = [a for a in sim.anomalies if a.kind == "stuck"]
    assert stuck
    for a in stuck:
        rows = data[(data["series"] == a.series) & (data["ts"] >= a.start) & (data["ts"] <= a.end)]["value"]
        before = data[(data["series"] == a.series) & (data["ts"] == a.start - sim.step)]["value"]
        assert rows.nunique() == 1 and (before.empty or rows.iat[0] == before.iat[0])
    breaks = [a for a in sim.anomalies if a.kind == "season_break"]
    assert breaks and all(sim.cycle_amp[int(a.series[1:])] > 0 for a in breaks)
    a = max(breaks, key=lambda a: a.end - a.start)
    col = int(a.series[1:])
    rows = data[(data["series"] == a.series) & (data["ts"] >= a.start) & (data["ts"] <= a.end)]["value"].to_numpy()
    # without the cycle only noise is left: the spread falls well under the cycle's amplitude
    assert rows.std() < 0.5 * sim.cycle_amp[col]


def test_simulator_corrupts_a_fraction_on_request():
    sim = sources.simulator(series=5, rate=None, seed=2, limit=20_000, bad_rate=0.01)
    data = pd.concat(take(sim))
    good, dead = Validator(Schema("sensors"), clock=sim.clock)(data)  # it runs ahead of the wall clock
    assert 100 < len(dead) < 350
    assert set(dead["reason"]) <= {"bad_time", "non_numeric", "not_finite", "late"}
    assert len(good) + len(dead) == 20_000


def test_simulator_paces_to_its_rate():
    sim = sources.simulator(series=10, rate=2_000, seed=1)
    t0 = time.monotonic()
    take(sim, limit=1_000)
    elapsed = time.monotonic() - t0
    assert 0.3 < elapsed < 2.0  # ~0.5 s for 1,000 records at 2,000/s


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_replay_reads_files_in_order_and_in_bounded_chunks(tmp_path, suffix):
    n = 2_500
    data = pd.DataFrame({
        "when": pd.date_range("2024-01-01", periods=n, freq="1s", tz="UTC"),
        "pump": np.where(np.arange(n) % 2, "p1", "p2"),
        "pressure": np.arange(n, dtype="float64"),
    })
    path = tmp_path / f"pumps.{suffix}"
    data.to_csv(path, index=False) if suffix == "csv" else data.to_parquet(path)
    batches = take(sources.replay(path, time="when", series="pump", batch_size=1000))
    assert max(len(b) for b in batches) <= 1000
    out = pd.concat(batches, ignore_index=True)
    assert list(out["pressure"]) == list(data["pressure"])
    good, dead = Validator(Schema("pumps"))(out)
    assert dead.empty and set(good["series"]) == {"p1", "p2"}


def test_replay_speed_factor_paces_event_time(tmp_path):
    path = tmp_path / "slow.csv"
    pd.DataFrame({"timestamp": pd.date_range("2024-01-01", periods=5, freq="10s"), "value": range(5)}).to_csv(
        path, index=False)
    t0 = time.monotonic()
    take(sources.replay(path, speed=100, batch_size=1))  # 40 s of data at 100× ≈ 0.4 s
    assert 0.3 < time.monotonic() - t0 < 2.0


def test_replay_unknown_time_column_and_missing_file_are_clear(tmp_path, settings):
    with pytest.raises(FileNotFoundError, match="replay file not found"):
        sources.replay(tmp_path / "nope.csv")
    path = tmp_path / "x.csv"
    pd.DataFrame({"t": ["2024-01-01"], "value": [1]}).to_csv(path, index=False)
    pipe = Pipeline.from_source(sources.replay(path, time="timestamp"), settings=settings).validate()
    pipe.run(timeout=10)
    assert pipe.state == "failed" and "time column 'timestamp' not in x.csv" in pipe.last_error


def test_replay_keeps_bad_rows_for_the_validator(tmp_path, settings):
    path = tmp_path / "messy.csv"
    path.write_text("timestamp,value\n2024-01-01T00:00:00Z,1\nnot a time,2\n2024-01-01T00:00:02Z,abc\n")
    pipe = Pipeline.from_source(sources.replay(path), settings=settings).validate().collect()
    pipe.run(timeout=10)
    assert len(pipe.results()) == 1
    assert pipe.dead_letters.counts() == {"bad_time": 1, "non_numeric": 1}


def test_iterable_accepts_frames_dicts_and_async_iterables():
    df = pd.DataFrame({"series": "a", "ts": pd.date_range("2024", periods=7, freq="1s"), "value": range(7)})
    assert [len(b) for b in take(sources.iterable(df, batch_size=3))] == [3, 3, 1]
    assert [len(b) for b in take(sources.iterable(df.to_dict("records"), batch_size=4))] == [4, 3]

    async def agen():
        yield df.iloc[:2]
        yield {"series": "b", "ts": "2024-01-02", "value": 1}

    assert [len(b) for b in take(sources.iterable(agen()))] == [2, 1]
    with pytest.raises(TypeError, match="cannot be persisted"):
        sources.iterable(df).spec()
