"""Sources: where micro-batches come from. Built-ins register at import; others by entry point."""

from ._base import BoundedBuffer, Source, sources
from ._ingest import Ingest, IngestInlet, IngestRefused, IngestRound
from ._iterable import Iterable
from ._replay import Replay
from ._simulator import InjectedAnomaly, Simulator

__all__ = [
    "BoundedBuffer",
    "Ingest",
    "IngestInlet",
    "IngestRefused",
    "IngestRound",
    "InjectedAnomaly",
    "Iterable",
    "Replay",
    "Simulator",
    "Source",
    "iterable",
    "make",
    "replay",
    "simulator",
    "sources",
]

for _optional in ("_redis", "_websocket"):
    try:
        __import__(f"{__name__}.{_optional}")
    except ImportError:  # redis or websockets not installed: those sources are unavailable
        pass


def simulator(**params) -> Simulator:
    return Simulator(**params)


def replay(path, **params) -> Replay:
    return Replay(path, **params)


def iterable(data, **params) -> Iterable:
    return Iterable(data, **params)


def make(registered: str, /, **params) -> Source:
    """Build a registered source by name, e.g. ``make("redis", url=..., key=...)``."""
    return sources.get(registered)(**params)
