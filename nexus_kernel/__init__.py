"""Nexus Stream: a Jupyter workbench for analysts who watch live data streams.

The surface an analyst touches::

    import nexus_kernel as nk

    pipe = (nk.Pipeline.from_source(nk.sources.replay("pumps.csv", time="ts", speed=60))
              .validate()
              .window("1min", agg=["mean", "max"])
              .sink(nk.store()))
    pipe.start(); pipe.status(); pipe.stop()
"""

from __future__ import annotations

import importlib
from typing import Any

from ._version import __version__
from .config import Settings, SettingsError, load_settings
from .engine import Pipeline, StreamManager, Window, sources
from .records import DeadLetterQueue, Schema, Validator

# Heavier parts load on first use, so that `import nexus_kernel` stays quick in a kernel.
_LAZY = {
    "detect": "nexus_kernel.analysis",
    "forecast": "nexus_kernel.analysis",
    "open_store": "nexus_kernel.storage",
    "connect": "nexus_kernel.client",
}

# Every public name, the lazy ones included (tests/test_surface.py checks each resolves).
__all__ = [
    "DeadLetterQueue",
    "Pipeline",
    "Schema",
    "Settings",
    "SettingsError",
    "StreamManager",
    "Validator",
    "Window",
    "__version__",
    "load_settings",
    "query",
    "sources",
    "store",
    *_LAZY,
]


def query(stream: str, store_target: str | Settings | None = None, **params: Any) -> Any:
    """Points of ``stream`` as a DataFrame, e.g. ``query("pumps", last="6h", every="5min")`` (parameters of
    :meth:`nexus_kernel.storage.Store.query`), from the store :func:`store` gives for ``store_target``.

    An empty frame means the stream has no points in that range; a stream with no stored points at all
    raises :class:`~nexus_kernel.storage.UnknownStreamError` (a ``LookupError``) naming the known streams."""
    opened = store(store_target)
    try:
        frame = opened.query(stream, **params)
        if not len(frame):  # nothing in range, or no such stream: say which
            storage = importlib.import_module("nexus_kernel.storage")
            storage.check_stream(opened, stream)
        return frame
    finally:
        opened.close()


def store(target: str | Settings | None = None) -> Any:
    """The store of a Nexus home: the configured one (no ``target``) or that of ``target`` (settings).

    While ``nexus up`` owns the home, this is its store reached through its gateway (a
    :class:`~nexus_kernel.client.RemoteStore`: reads, and job runs); with no ``nexus up``, the store
    itself (DuckDB under ``.nexus/`` by default). A URL ``target`` (``"duckdb:///x.db"``, a DSN) opens
    that store here, whoever else may own it.

    >>> db = store()                                   # doctest: +SKIP
    >>> db.query("sensors", last="1h", every="1min")   # doctest: +SKIP
    """
    if isinstance(target, str):
        storage = importlib.import_module("nexus_kernel.storage")
        return storage.open_store(target)
    client = importlib.import_module("nexus_kernel.client")
    return client.home_store(target if target is not None else load_settings())


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'nexus_kernel' has no attribute '{name}'")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    """The module's names with the lazy ones, so that tab completion offers ``nk.detect`` before first use."""
    return sorted({*globals(), *__all__})


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext nexus_kernel``: the ``%nexus`` and ``%%nexus_sql`` magics (see nexus_kernel._magics)."""
    from ._magics import load_ipython_extension as load

    load(ipython)


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    """The Jupyter server extension mounting the gateway under ``/nexus/`` (nexus_kernel.gateway._jupyter)."""
    return [{"module": "nexus_kernel.gateway._jupyter"}]
