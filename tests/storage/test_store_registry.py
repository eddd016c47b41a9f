"""Stores are chosen by URL scheme through the ``STORES`` registry: built-ins, run-time members and entry points.

``Settings.store`` and ``open_store`` ask the same registry, so a plugin's scheme is a valid setting and an
unknown one fails at start with the known schemes named (never the URL: it may hold a password).
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
from pydantic import ValidationError

from nexus_kernel._registry import UnknownPluginError
from nexus_kernel.config import Settings, SettingsError, load_settings
from nexus_kernel.storage import (
    STORES,
    DuckDBStore,
    PostgresStore,
    ResilientStore,
    UnknownStoreError,
    open_store,
    split_store_url,
    store_backend,
)

from .storage_helpers import make_batch, new_schema


@pytest.fixture
def stores(monkeypatch):
    """STORES, with whatever a test adds (members, entry points read) undone afterwards.

    The registry is process-wide; a member left behind would leak into other tests (the conformance
    suite runs one factory per registered backend).
    """
    monkeypatch.setattr(STORES, "_members", dict(STORES._members))
    monkeypatch.setattr(STORES, "_entry_points_loaded", STORES._entry_points_loaded)
    return STORES


class ScratchStore(DuckDBStore):
    """A plugin store: a DuckDB file named by ``scratch://<path>`` (BaseStore's default ``from_url``)."""


class HomeStore:
    """A plugin that is no BaseStore: ``home://<name>`` opens ``<settings.home>/<name>.duckdb``."""

    resilient_by_default = True

    @classmethod
    def from_url(cls, url: str, settings: Settings | None = None, **options) -> DuckDBStore:
        _, name = split_store_url(url)
        return DuckDBStore(Path(settings.home) / f"{name}.duckdb", **options)


def _round_trip(store) -> None:
    batch = make_batch(n=20, n_series=2)
    assert store.write(batch) == len(batch)
    assert len(store.query("pumps")) == len(batch)


# -- built-in schemes ------------------------------------------------------------------------------


def test_built_in_backends_register_the_schemes_they_serve():
    assert {"duckdb", "memory", "postgresql", "postgres"} <= set(STORES.names())
    assert store_backend("memory") is store_backend("duckdb:///x.db") is DuckDBStore
    assert store_backend("postgres://u@h/db") is store_backend("postgresql://u@h/db") is PostgresStore
    assert store_backend("DuckDB:///x.db") is DuckDBStore  # schemes are case-insensitive (RFC 3986)


def test_duckdb_urls_open_what_they_name(tmp_path):
    settings = load_settings(home=tmp_path / "home", store="duckdb")
    with open_store("memory") as memory:
        assert isinstance(memory, DuckDBStore) and memory.path == ":memory:"
    with open_store(settings) as under_home:
        assert Path(under_home.path) == tmp_path / "home" / "nexus.duckdb"
        _round_trip(under_home)
    with open_store(f"duckdb://{tmp_path / 'elsewhere.duckdb'}") as named:
        assert Path(named.path) == tmp_path / "elsewhere.duckdb"
    assert (tmp_path / "home" / "nexus.duckdb").exists() and (tmp_path / "elsewhere.duckdb").exists()
    with open_store("duckdb://") as empty_rest:
        assert empty_rest.path == ":memory:"


def test_resilient_follows_the_backend_unless_the_caller_says(pg_dsn, tmp_path):
    settings = load_settings(home=tmp_path, store=pg_dsn.replace("postgresql://", "postgres://", 1))
    wrapped = open_store(settings, schema=new_schema())
    plain = open_store(settings, resilient=False, schema=new_schema())
    try:
        assert isinstance(wrapped, ResilientStore) and isinstance(wrapped.store, PostgresStore)
        assert type(plain) is PostgresStore
        _round_trip(wrapped)
    finally:
        wrapped.store.drop_schema()
        wrapped.close()
        plain.drop_schema()
        plain.close()
    duck = open_store("memory", settings=settings, resilient=True)  # a caller may ask for it on any backend
    assert isinstance(duck, ResilientStore) and duck.spool.directory == tmp_path / "spool"
    duck.close()
    assert type(open_store("memory")) is DuckDBStore  # DuckDB's default: a local file has no outages


# -- unknown schemes --------------------------------------------------------------------------------


def test_an_unknown_scheme_is_refused_naming_the_known_ones_and_never_the_password():
    url = "mysql://nexus:s3cret-pw@db:3306/nexus"
    with pytest.raises(UnknownStoreError) as raised:
        open_store(url)
    message = str(raised.value)
    assert "unknown store scheme 'mysql'" in message
    assert "known: duckdb, memory, postgres, postgresql" in message and "nexus_kernel.stores" in message
    assert "s3cret-pw" not in message
    assert isinstance(raised.value, ValueError) and isinstance(raised.value, UnknownPluginError)

    with pytest.raises(SettingsError) as bad_setting:
        load_settings(store=url)
    assert "setting 'store' (NEXUS_STORE)" in str(bad_setting.value)
    assert "unknown store scheme 'mysql'" in str(bad_setting.value)
    assert "s3cret-pw" not in str(bad_setting.value)


@pytest.mark.parametrize("value", ["/data/nexus.duckdb", "", "://nothing", "1db://x"])
def test_a_value_without_a_scheme_is_refused_with_a_hint(value):
    with pytest.raises(ValidationError, match="not a store URL: expected a scheme.*'duckdb:///path.db'"):
        Settings(store=value)
    with pytest.raises(UnknownStoreError, match="known: duckdb, memory"):
        open_store(value)


# -- plugins ----------------------------------------------------------------------------------------


def test_a_store_registered_at_run_time_is_selected_by_settings_and_open_store(stores, tmp_path):
    url = f"scratch://{tmp_path / 'plugin.duckdb'}"
    with pytest.raises(ValidationError, match="unknown store scheme 'scratch'"):
        Settings(home=tmp_path, store=url)

    stores.register("scratch")(ScratchStore)  # what an entry point's member does, at run time
    settings = Settings(home=tmp_path, store=url)
    assert settings.store == url
    with open_store(settings) as store:
        assert type(store) is ScratchStore and Path(store.path) == tmp_path / "plugin.duckdb"
        _round_trip(store)
    with open_store(url, settings=settings) as again:  # the URL alone picks it as well; the data stayed
        assert len(again.query("pumps")) == 40


def test_a_plugin_that_is_no_base_store_opens_through_its_from_url(stores, tmp_path):
    stores.add("home", HomeStore)
    settings = Settings(home=tmp_path, store="home://journal")
    store = open_store(settings)
    try:
        assert isinstance(store, ResilientStore)  # HomeStore.resilient_by_default
        assert Path(store.store.path) == tmp_path / "journal.duckdb"
        _round_trip(store)
    finally:
        store.close()


def test_a_store_from_an_installed_entry_point_is_selected_by_settings(stores, tmp_path, monkeypatch):
    # A real distribution on sys.path: importlib.metadata reads its entry_points.txt as pip leaves it.
    site = tmp_path / "site"
    (site / "nexus_demo_store-0.1.dist-info").mkdir(parents=True)
    (site / "nexus_demo_store-0.1.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: nexus-demo-store\nVersion: 0.1\n")
    (site / "nexus_demo_store-0.1.dist-info" / "entry_points.txt").write_text(
        "[nexus_kernel.stores]\ndemo = nexus_demo_store:DemoStore\n")
    (site / "nexus_demo_store.py").write_text(textwrap.dedent("""
        from nexus_kernel.storage import DuckDBStore

        class DemoStore(DuckDBStore):
            '''demo://<path>: a DuckDB file, from a third-party package.'''
    """))
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, "nexus_demo_store", raising=False)
    monkeypatch.setattr(stores, "_entry_points_loaded", False)  # as in a fresh process with the package installed

    url = f"demo://{tmp_path / 'demo.duckdb'}"
    try:
        settings = Settings(home=tmp_path, store=url)
        with open_store(settings) as store:
            assert type(store).__name__ == "DemoStore" and type(store).__module__ == "nexus_demo_store"
            _round_trip(store)
        assert "demo" in stores.names()
    finally:
        sys.modules.pop("nexus_demo_store", None)  # imported by the entry point; not ours to keep
