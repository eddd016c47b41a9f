"""Nothing lost, nothing doubled: PostgreSQL dropping connections mid-stream, and going away entirely."""

from __future__ import annotations

import threading
import time

import pandas as pd
import psycopg
import pytest
from psycopg import sql

from nexus_kernel.storage import BatchTypeError, PostgresStore, ResilientStore, SpoolFullError, open_store
from .storage_helpers import Forwarder, make_batch, new_schema


def _batches(k=30, n=50):
    return [make_batch(n=n, n_series=2, seed=i, seq0=i * 1000,
                       start=str(pd.Timestamp("2024-01-01T00:00:00Z") + pd.Timedelta(minutes=10 * i))) for i in range(k)]


def _check_exactly_once(store, batches):
    rows = sum(len(b) for b in batches)
    got = store.query("pumps")
    assert len(got) == rows
    assert not got.duplicated(["series", "ts", "seq"]).any()
    want = pd.concat(batches).sort_values(["series", "ts", "seq"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want)


def test_terminated_backends_mid_stream(pg_dsn, tmp_path):
    schema = new_schema()
    inner = PostgresStore(pg_dsn, schema=schema, timeout=5)
    store = ResilientStore(inner, tmp_path / "spool", attempts=6, max_wait=0.2)
    batches = _batches()
    killed = 0
    try:
        with psycopg.connect(pg_dsn, autocommit=True) as admin:
            for i, batch in enumerate(batches):
                store.write(batch)
                if i % 5 == 2:  # kill every connection the store holds, between and during writes
                    killed += admin.execute(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid <> pg_backend_pid() AND application_name = ''"
                    ).fetchone()[0]
            # and while writes are in flight: a thread kills the store's active backends a few times
            in_flight = []

            def killer():
                with psycopg.connect(pg_dsn, autocommit=True) as conn:
                    for _ in range(400):
                        if len(in_flight) >= 3:
                            return
                        hit = conn.execute(
                            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = "
                            "current_database() AND pid <> pg_backend_pid() AND state = 'active'").fetchone()[0]
                        if hit:
                            in_flight.append(hit)
                        time.sleep(0.005)

            thread = threading.Thread(target=killer)
            thread.start()
            extra = [b.assign(seq=b["seq"] + 100_000) for b in _batches(k=8, n=3000)]
            for batch in extra:
                store.write(batch)
            thread.join()
        store.replay()
        assert killed > 0 and in_flight  # both kinds of cut really happened
        assert store.pending() == 0
        _check_exactly_once(store, batches + extra)
    finally:
        inner.drop_schema()
        store.close()


def test_server_gone_then_back(pg_dsn, tmp_path):
    forwarder = Forwarder()
    forwarder.start()
    dsn = pg_dsn.replace("127.0.0.1:5432", f"127.0.0.1:{forwarder.port}")
    schema = new_schema()
    inner = PostgresStore(dsn, schema=schema, timeout=0.5)
    store = ResilientStore(inner, tmp_path / "spool", attempts=2, max_wait=0.05)
    batches = _batches(k=20)
    try:
        for i, batch in enumerate(batches):
            if i == 5:
                forwarder.stop()  # the server goes away mid-stream: a closed port
            if i == 14:
                forwarder.start()  # and comes back on the same port
            store.write(batch)
            if i == 10:
                assert store.pending() >= 5  # writes were spooled to disk meanwhile
                assert len(list((tmp_path / "spool").glob("*.parquet"))) == store.pending()
        assert store.pending() == 0  # the first write after recovery replayed the spool
        assert store.spooled >= 9 and store.replayed == store.spooled
        _check_exactly_once(store, batches)
        # a replay after the fact changes nothing (idempotent)
        for batch in batches[:3]:
            assert inner.write(batch) == 0
    finally:
        forwarder.stop()
        with psycopg.connect(pg_dsn, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
        store.store._pool.close()


def test_spool_is_bounded_and_bad_batches_are_not_spooled(pg_dsn, tmp_path):
    forwarder = Forwarder()
    forwarder.start()
    dsn = pg_dsn.replace("127.0.0.1:5432", f"127.0.0.1:{forwarder.port}")
    inner = PostgresStore(dsn, schema=new_schema(), timeout=0.3)
    store = ResilientStore(inner, tmp_path / "spool", attempts=1, max_bytes=60_000, max_wait=0.01)
    try:
        forwarder.stop()
        bad = make_batch(n=5).assign(value="x")
        with pytest.raises(BatchTypeError):
            store.write(bad)
        assert store.pending() == 0
        with pytest.raises(SpoolFullError):
            for batch in _batches(k=40, n=100):
                store.write(batch)
        assert 0 < store.pending() < 40
        assert store.spool.size() <= 60_000
        forwarder.start()
        spooled, deadline = store.spooled, time.monotonic() + 60
        while store.pending() and time.monotonic() < deadline:  # the pool reconnects with its own backoff
            store.replay()
        assert store.pending() == 0 and store.replayed == spooled
    finally:
        forwarder.stop()
        inner._pool.close()


def test_open_store_wraps_postgres_in_resilient_store(pg_dsn, tmp_path):
    from nexus_kernel.config import load_settings

    settings = load_settings(home=tmp_path, store=pg_dsn)
    store = open_store(settings, schema=new_schema())
    try:
        assert isinstance(store, ResilientStore)
        assert store.spool.directory == tmp_path / "spool"
        store.write(make_batch(n=10))
        assert len(store.query("pumps")) == 30
    finally:
        store.store.drop_schema()
        store.close()
