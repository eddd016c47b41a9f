"""The anchoring job: log and anchor what the store holds of one stream over a span (``notebooks/anchor.ipynb``).

The live service logs what the bus carries while ``nexus up`` runs; this job covers the rest — a span
stored before anchoring was on, replayed from files, or written while the service was stopped. It reads
the stream's records, anomalies and dead letters of ``[start, end)``, logs those the log does not hold yet
(an item is logged once, whoever logged it first), closes a batch and anchors every pending head.

It writes the home's log, so it runs where the store is writable by it: with the DuckDB store, when no
``nexus up`` owns the home (its lock would refuse the store; the running service anchors live data anyway).

Example
-------
>>> import tempfile, pandas as pd
>>> from nexus_kernel.config import load_settings
>>> from nexus_kernel.storage import open_store
>>> settings = load_settings(home=tempfile.mkdtemp(), store="memory")
>>> store = open_store("memory")
>>> _ = store.write(pd.DataFrame({"stream": ["s"] * 3, "series": ["a"] * 3, "seq": [1, 2, 3], "value": [1.0, 2.0, 3.0],
...     "ts": pd.date_range("2024-01-01", periods=3, freq="min", tz="UTC")}))
>>> result = anchor_span(settings, "s", "2024-01-01", "2024-01-02", store=store)
>>> result["logged"], result["pending"], anchor_span(settings, "s", "2024-01-01", "2024-01-02", store=store)["logged"]
({'record': 3, 'anomaly': 0, 'dead_letter': 0}, 0, {'record': 0, 'anomaly': 0, 'dead_letter': 0})
"""

from __future__ import annotations

from typing import Any

from ._encoding import ITEM_KINDS, item_id
from ._protocol import ANCHORS
from ._service import AnchorService

__all__ = ["anchor_span"]


def anchor_span(settings: Any, stream: str, start: Any, end: Any, backend: str | None = None,
                store: Any | None = None) -> dict[str, Any]:
    """Log and anchor ``stream``'s stored items of ``[start, end)``; a summary of what was done.

    ``backend`` overrides ``settings.anchor_backend``; ``store`` (default: the settings' store, opened and
    closed here) is where items, the log and the queue are.
    """
    from ..storage import open_store

    own = store is None
    store = open_store(settings) if store is None else store
    assert store is not None
    try:
        chosen = ANCHORS.get(backend)(settings, store) if backend else None
        service = AnchorService(settings, store, backend=chosen)
        known = set(store.read("log_leaves")["item_id"].astype(str))
        frames = {"record": store.query(stream, start=start, end=end),
                  "anomaly": store.read("anomalies", stream=stream, start=start, end=end),
                  "dead_letter": store.read("dead_letters", stream=stream, start=start, end=end)}
        logged: dict[str, int] = {}
        for kind, frame in frames.items():
            items = [(k, b) for k, b in ITEM_KINDS.get(kind).items(frame) if item_id(kind, k) not in known]
            logged[kind] = len(service.log.append(kind, items)) if items else 0
        head = service.close_batch() if sum(logged.values()) else None
        if head is None:
            service.anchor_pending()  # whatever an earlier run left queued
        pending = len(service.queue.pending(service.backend.name))
        latest = service.log.latest_head()
        service.backend.close()
        return {"stream": stream, "start": str(start), "end": str(end), "backend": service.backend.name,
                "logged": logged, "already_logged": sum(len(f) for f in frames.values()) - sum(logged.values()),
                "log_size": service.log.size, "head": latest.tree_size if latest else None,
                "head_id": latest.head_id if latest else None, "pending": pending,
                "last_error": service.last_error}
    finally:
        if own:
            store.close()
