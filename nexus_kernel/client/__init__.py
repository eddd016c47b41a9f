"""The Python SDK of a running Nexus gateway: every endpoint, DataFrames out, retries, live subscriptions.

    client = connect("http://127.0.0.1:8765", token=...)
    client.streams(); client.query("pumps", last="6h", every="5min"); client.ingest("pumps", frame)
    client.subscribe("pumps")            # streamz source of DataFrames
    async with AsyncClient(url, token) as c:
        async for event in c.subscribe("pumps"): ...
"""

from ._client import AsyncClient, Client, connect
from ._core import NexusError, frame_from_columns
from ._live import LiveEvent, LiveSource, Subscription

__all__ = ["AsyncClient", "Client", "LiveEvent", "LiveSource", "NexusError", "Subscription", "connect",
           "frame_from_columns"]
