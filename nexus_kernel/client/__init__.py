"""The Python SDK of a running Nexus gateway: every endpoint, DataFrames out, retries, live subscriptions.

    client = connect("http://127.0.0.1:8765", token=...)
    client.streams(); client.query("pumps", last="6h", every="5min"); client.ingest("pumps", frame)
    client.subscribe("pumps")            # streamz source of DataFrames
    async with AsyncClient(url, token) as c:
        async for event in c.subscribe("pumps"): ...

    store = home_store(settings)         # the home's store: through its live `nexus up` when one runs
"""

from typing import Any

from ._client import AsyncClient, Client, connect
from ._core import NexusError, frame_from_columns
from ._live import LiveEvent, LiveSource, Subscription

# The home's store pulls in the runtime (and the engine): loaded on first use, so `nk.connect` stays light.
_LAZY = {"home_store": "._store", "RemoteStore": "._store", "RemoteStoreError": "._store", "BorrowedStore": "._store"}

__all__ = ["AsyncClient", "BorrowedStore", "Client", "LiveEvent", "LiveSource", "NexusError", "RemoteStore",
           "RemoteStoreError", "Subscription", "connect", "frame_from_columns", "home_store"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'nexus_kernel.client' has no attribute '{name}'")
    import importlib

    return getattr(importlib.import_module(module, __name__), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
