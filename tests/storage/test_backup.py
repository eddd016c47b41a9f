"""Backup/restore round trips, within a backend and across backends."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nexus_kernel.storage import TABLES, backup, restore
from .storage_helpers import make_batch
from .test_conformance import _aux_frame


def _fill(store):
    store.write(make_batch(n=300, fields=("value", "temp")))
    attrs = make_batch(stream="other", n=20, n_series=1)
    attrs["attrs"] = pd.array(['{"a": "x\\ny"}'] * 20, dtype="string")
    store.write(attrs)
    for name, spec in TABLES.items():
        store.append(name, _aux_frame(spec, 4))
    store.set_retention("other", "30D")


def _snapshot(store):
    points = pd.concat(list(store.dump("points")), ignore_index=True)
    return points, {name: store.read(name) for name in TABLES}, store.retention()


def test_round_trip(make_store, tmp_path):
    source = make_store()
    _fill(source)
    manifest = backup(source, tmp_path / "bk")
    assert manifest["counts"]["points"] == 300 * 3 * 2 + 20
    target = make_store()
    added = restore(target, tmp_path / "bk")
    assert added["points"] == manifest["counts"]["points"]
    assert restore(target, tmp_path / "bk")["points"] == 0  # idempotent
    for a, b in zip(_snapshot(source)[:2], _snapshot(target)[:2]):
        if isinstance(a, dict):
            for name in a:
                pd.testing.assert_frame_equal(a[name], b[name])
        else:
            pd.testing.assert_frame_equal(a, b)
    assert target.retention() == source.retention()


def test_across_backends(both, tmp_path):
    duck, pg = both
    _fill(duck)
    backup(duck, tmp_path / "d")
    restore(pg, tmp_path / "d")
    backup(pg, tmp_path / "p")
    left, right = _snapshot(duck), _snapshot(pg)
    pd.testing.assert_frame_equal(left[0], right[0])
    for name in TABLES:
        pd.testing.assert_frame_equal(left[1][name], right[1][name])


def test_restore_refuses_a_folder_that_is_not_a_backup(store, tmp_path):
    with pytest.raises(ValueError, match="not a nexus backup"):
        restore(store, tmp_path)


def test_duckdb_and_postgres_answer_the_same(both):
    duck, pg = both
    batch = make_batch(n=2000, n_series=4, step="3s", fields=("value", "temp"), seed=5)
    for store in both:
        store.write(batch.iloc[:5000])
        store.write(batch.iloc[4000:])
    start, end = "2024-01-01T00:07:13Z", "2024-01-01T01:31:02Z"
    aggs = ["mean", "min", "max", "count", "sum", "last"]
    pd.testing.assert_frame_equal(duck.query("pumps"), pg.query("pumps"))
    pd.testing.assert_frame_equal(duck.latest("pumps"), pg.latest("pumps"))
    for kw in ({"every": "1min"}, {"every": "5min", "start": start, "end": end}, {"every": "17s", "start": start},
               {"every": "1h", "end": end, "series": ["s1", "s3"]}, {"every": "2min", "field": "temp"}):
        d, p = duck.query("pumps", agg=aggs, **kw), pg.query("pumps", agg=aggs, **kw)
        pd.testing.assert_frame_equal(d[["stream", "series", "ts", "seq"]], p[["stream", "series", "ts", "seq"]])
        np.testing.assert_allclose(d.iloc[:, 4:].to_numpy(), p.iloc[:, 4:].to_numpy(), rtol=1e-9)
