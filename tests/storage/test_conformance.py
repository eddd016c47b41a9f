"""One conformance suite, run against every registered store backend (DuckDB and PostgreSQL here)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nexus_kernel.storage import SCHEMA_VERSION, TABLES, BatchTypeError

from .storage_helpers import make_batch, new_schema


def frame_of(store, stream="pumps", **kw):
    return store.query(stream, **kw)


# -- writes ------------------------------------------------------------------------------------------


def test_write_is_idempotent(store):
    batch = make_batch()
    assert store.write(batch) == len(batch)
    first = store.query("pumps")
    assert store.write(batch) == 0
    assert store.write(batch.iloc[::-1]) == 0  # order does not matter either
    again = store.query("pumps")
    pd.testing.assert_frame_equal(first, again)
    assert len(again) == len(batch)
    expected = batch.sort_values(["series", "ts", "seq"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(again, expected, check_dtype=True)


def test_overlapping_batches_store_each_key_once(store):
    batch = make_batch(n=100)
    store.write(batch.iloc[:150])
    assert store.write(batch.iloc[100:]) == len(batch) - 150
    assert len(store.query("pumps")) == len(batch)


def test_several_fields_and_field_filter(store):
    batch = make_batch(fields=("value", "temp"), n=50)
    batch.loc[3, "temp"] = np.nan  # record without that field
    assert store.write(batch) == 2 * len(batch) - 1
    wide = store.query("pumps")
    assert list(wide.columns) == ["stream", "series", "ts", "seq", "temp", "value"]
    assert wide["temp"].isna().sum() == 1
    only = store.query("pumps", field="temp")
    assert list(only.columns) == ["stream", "series", "ts", "seq", "temp"]
    assert len(only) == len(batch) - 1
    assert wide.dtypes["temp"] == "float64" and wide.dtypes["ts"] == "datetime64[ns, UTC]"


def test_attrs_round_trip(store):
    batch = make_batch(n=5, n_series=1)
    batch["attrs"] = pd.array(['{"unit":"bar"}', None, '{"k":"it\'s"}', None, "{}"], dtype="string")
    store.write(batch)
    back = store.query("pumps")
    assert back["attrs"].tolist() == ['{"unit":"bar"}', pd.NA, '{"k":"it\'s"}', pd.NA, "{}"]


# -- queries -----------------------------------------------------------------------------------------


def test_time_range_start_inclusive_end_exclusive(store):
    batch = make_batch(n=100, n_series=2, step="10s")
    store.write(batch)
    start, end = pd.Timestamp("2024-01-01T00:01:00Z"), pd.Timestamp("2024-01-01T00:05:00Z")
    got = store.query("pumps", start=start, end=end, series="s1")
    want = batch[(batch.ts >= start) & (batch.ts < end) & (batch.series == "s1")]
    assert got["seq"].tolist() == want["seq"].tolist()
    assert got["ts"].min() == start and got["ts"].max() < end


def test_last_is_relative_to_now(store):
    now = pd.Timestamp.now(tz="UTC").floor("s")
    batch = make_batch(n=120, n_series=1, step="1min", start=str(now - pd.Timedelta("119min")))
    store.write(batch)
    got = store.query("pumps", last="30min")
    assert 29 <= len(got) <= 31
    with pytest.raises(ValueError):
        store.query("pumps", last="30min", start=now)


def _expected_buckets(batch, every, aggs, start=None, end=None):
    frame = batch.melt(id_vars=["stream", "series", "ts", "seq"], var_name="field", value_name="v")
    frame = frame.dropna(subset=["v"])
    if start is not None:
        frame = frame[frame.ts >= start]
    if end is not None:
        frame = frame[frame.ts < end]
    origin = pd.Timestamp("2000-01-03T00:00:00Z")
    frame = frame.assign(bucket=origin + ((frame.ts - origin) // pd.Timedelta(every)) * pd.Timedelta(every))
    frame = frame.sort_values(["ts", "seq"])
    grouped = frame.groupby(["series", "field", "bucket"])["v"]
    names = {"mean": "mean", "min": "min", "max": "max", "count": "count", "sum": "sum", "last": "last"}
    return grouped.agg([names[a] for a in aggs]).astype("float64")


@pytest.mark.parametrize("every", ["1min", "5min", "7s", "1h"])
def test_resample_matches_pandas(store, every):
    batch = make_batch(n=800, n_series=2, step="7s", fields=("value", "temp"))
    store.write(batch)
    aggs = ["mean", "min", "max", "count", "sum", "last"]
    start, end = pd.Timestamp("2024-01-01T00:03:10Z"), pd.Timestamp("2024-01-01T01:20:50Z")
    for kw in ({}, {"start": start, "end": end}):
        got = store.query("pumps", every=every, agg=aggs, **kw)
        want = _expected_buckets(batch, every, aggs, kw.get("start"), kw.get("end"))
        assert len(got) == len(want.reset_index()[["series", "bucket"]].drop_duplicates())
        for field in ("value", "temp"):
            w = want.xs(field, level="field")
            g = got.set_index(["series", "ts"])[[f"{field}_{a}" for a in aggs]]
            g.columns = aggs
            np.testing.assert_allclose(g.to_numpy(), w.to_numpy(), rtol=1e-9)
        assert (got["seq"] == 0).all()


def test_resample_one_aggregate_keeps_field_names(store):
    store.write(make_batch(n=60, step="5s"))
    got = store.query("pumps", every="1min", agg="max", series=["s0", "s2"])
    assert list(got.columns) == ["stream", "series", "ts", "seq", "value"]
    assert set(got["series"]) == {"s0", "s2"}
    with pytest.raises(ValueError, match="unknown aggregate"):
        store.query("pumps", every="1min", agg="median")


def test_latest_per_series(store):
    batch = make_batch(n=30, n_series=3, fields=("value", "temp"))
    store.write(batch)
    late = batch[batch.series == "s1"].tail(1).assign(seq=10_000, value=-1.0, temp=-2.0)  # same ts, higher seq
    store.write(late)
    got = store.latest("pumps")
    assert got["series"].tolist() == ["s0", "s1", "s2"]
    row = got.set_index("series").loc["s1"]
    assert (row["seq"], row["value"], row["temp"]) == (10_000, -1.0, -2.0)
    assert store.latest("pumps", series="s2")["series"].tolist() == ["s2"]
    assert store.latest("nothing").empty


def test_empty_results_have_contract_columns(store):
    empty = store.query("nothing")
    assert list(empty.columns) == ["stream", "series", "ts", "seq", "value"]
    assert empty.dtypes["ts"] == "datetime64[ns, UTC]"
    assert store.query("nothing", every="1min").empty


def test_names_with_quotes_and_semicolons_are_data(store):
    nasty = 'x"; DROP TABLE points; --'
    batch = make_batch(stream=nasty, n=10, n_series=1)
    batch["series"] = pd.array(["it's; \"q\" \\ 1"] * len(batch), dtype="string")
    batch = batch.rename(columns={"value": "f'\";--"})
    assert store.write(batch) == 10
    got = store.query(nasty, series="it's; \"q\" \\ 1", field="f'\";--", every="1min", agg="count")
    assert got["f'\";--"].sum() == 10
    assert store.streams() == [nasty]
    row = pd.DataFrame({"run_id": ["r'1;"], "job": ['j"; drop'], "started_at": [pd.Timestamp("2024-01-01", tz="UTC")],
                        "finished_at": [pd.NaT], "status": ["ok"], "output": [None], "error": [None], "params": ["{}"]})
    assert store.append("job_runs", row) == 1
    assert store.read("job_runs", job='j"; drop')["run_id"].tolist() == ["r'1;"]


# -- refusals ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("spoil", ["text_value", "naive_ts", "float_seq", "no_seq", "null_series", "bool_value"])
def test_wrong_typed_batch_is_refused_whole(store, spoil):
    store.write(make_batch(n=5, n_series=1))  # something there already
    batch = make_batch(n=20, n_series=2, seed=1, seq0=100)
    if spoil == "text_value":
        batch["value"] = batch["value"].astype(object)
        batch.loc[7, "value"] = "12,5"
    elif spoil == "naive_ts":
        batch["ts"] = batch["ts"].dt.tz_localize(None)
    elif spoil == "float_seq":
        batch["seq"] = batch["seq"] + 0.5
    elif spoil == "no_seq":
        batch = batch.drop(columns="seq")
    elif spoil == "null_series":
        batch["series"] = batch["series"].astype(object)
        batch.loc[11, "series"] = None
    elif spoil == "bool_value":
        batch["value"] = batch["value"] > 10
    with pytest.raises(BatchTypeError, match="nothing was written"):
        store.write(batch)
    assert len(store.query("pumps")) == 5


def test_wrong_typed_aux_frame_is_refused_whole(store):
    frame = _aux_frame(TABLES["anomalies"], 3)
    frame["score"] = frame["score"].astype(object)
    frame.loc[1, "score"] = "high"
    with pytest.raises(BatchTypeError, match="score"):
        store.append("anomalies", frame)
    with pytest.raises(BatchTypeError, match="missing"):
        store.append("anomalies", frame.drop(columns="detector"))
    assert store.read("anomalies").empty
    with pytest.raises(ValueError, match="unknown table"):
        store.append("anomalys", frame)


# -- auxiliary tables --------------------------------------------------------------------------------


def _aux_frame(spec, n, seed=0):
    rng = np.random.default_rng(seed)
    base = pd.Timestamp("2024-03-01", tz="UTC")
    out = {}
    for i, (name, kind) in enumerate(spec.columns):
        if kind == "time":
            out[name] = pd.Series(base + pd.to_timedelta(np.arange(n) * 60 + i, unit="s")).astype("datetime64[ns, UTC]")
        elif kind == "int":
            out[name] = np.arange(n, dtype="int64") + i
        elif kind == "float":
            out[name] = rng.random(n)
        elif kind == "bool":
            out[name] = rng.random(n) > 0.5
        else:
            out[name] = pd.array([f"{name}-{j % 2}" if name in ("stream",) else f'{name} "{j}"' for j in range(n)],
                                 dtype="string")
    return pd.DataFrame(out)


@pytest.mark.parametrize("table", sorted(TABLES))
def test_aux_tables_round_trip_and_idempotent(store, table):
    spec = TABLES[table]
    frame = _aux_frame(spec, 6)
    nullable = [c for c, _ in spec.columns if c not in spec.key]
    frame.loc[2, nullable[-1]] = None  # a null survives too
    assert store.append(table, frame) == 6
    assert store.append(table, frame) == 0
    back = store.read(table)
    want = frame.sort_values([spec.time, *spec.key]).reset_index(drop=True)
    want = want.astype({c: str(back.dtypes[c]) for c in want.columns})
    pd.testing.assert_frame_equal(back, want)
    assert len(store.read(table, limit=2)) == 2
    assert store.read(table, limit=2)[spec.time].tolist() == want[spec.time].tail(2).tolist()
    t = want[spec.time]
    assert len(store.read(table, start=t.iloc[1], end=t.iloc[4])) == 3
    if spec.stream:
        assert len(store.read(table, stream="stream-1")) == 3
    with pytest.raises(ValueError):
        store.read(table, nonexistent=1)


# -- retention and schema ----------------------------------------------------------------------------


def test_retention_per_stream(store):
    old = make_batch(stream="a", n=100, n_series=1, step="1h", start="2024-01-01T00:00:00Z")
    other = make_batch(stream="b", n=100, n_series=1, step="1h", start="2024-01-01T00:00:00Z")
    store.write(old)
    store.write(other)
    store.set_retention("a", "2d")
    assert store.retention() == {"a": pd.Timedelta("2D")}
    now = pd.Timestamp("2024-01-05T03:00:00Z")  # data ends at 2024-01-05T03:00
    before = store.query("a", every="1h", agg="count")
    deleted = store.apply_retention(now=now)
    kept = store.query("a")
    assert deleted == 100 - len(kept)
    assert kept["ts"].min() >= now - pd.Timedelta("2D")
    assert len(store.query("b")) == 100
    rolled = store.query("a", every="1h", agg="count")  # rollups forget the deleted hours too
    assert rolled["value"].sum() == len(kept) and len(before) == 100
    store.set_retention("a", None)
    assert store.retention() == {}


def test_schema_is_at_latest_version(store):
    assert store.schema_version() == SCHEMA_VERSION


def test_upgrade_path_from_v1(make_store, tmp_path):
    options = {"path": tmp_path / "old.duckdb"} if make_store.backend == "duckdb" else {"schema": new_schema()}
    old = make_store(schema_version=1, **options)
    assert old.schema_version() == 1
    batch = make_batch(n=50)
    old.write(batch)
    with pytest.raises(Exception):
        old.read("alerts")  # v1 had no auxiliary tables
    if make_store.backend == "duckdb":
        old.close()
    new = make_store(**options)
    assert new.schema_version() == SCHEMA_VERSION
    assert len(new.query("pumps")) == len(batch)
    assert new.write(batch) == 0
    assert new.query("pumps", every="1h", agg="count")["value"].sum() == len(batch)
    assert new.append("alerts", _aux_frame(TABLES["alerts"], 2)) == 2


def _tables_named(store, name: str) -> int:
    if store.dialect == "duckdb":
        return store._con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = ?",
                                  [name]).fetchone()[0]
    with store._conn() as con:
        return con.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = %s "
                           "AND table_name = %s", (store.schema, name)).fetchone()[0]


def test_migration_5_drops_the_placeholder_anchors_table(make_store, tmp_path):
    options = {"path": tmp_path / "v4.duckdb"} if make_store.backend == "duckdb" else {"schema": new_schema()}
    old = make_store(schema_version=4, **options)
    assert _tables_named(old, "anchors") == 1  # made by migration 2, never written
    if make_store.backend == "duckdb":
        old.close()
    new = make_store(**options)
    assert new.schema_version() == SCHEMA_VERSION and _tables_named(new, "anchors") == 0
