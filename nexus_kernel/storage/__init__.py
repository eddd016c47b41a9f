"""Where results live: the ``Store`` protocol and its backends (DuckDB, PostgreSQL, and plugins registered
in :data:`STORES` by URL scheme), the spool that keeps writes through outages, backup/restore — and the
cache and live bus (whose topics :func:`topic`, :func:`split_topic` and :func:`topic_pattern` spell).

>>> from nexus_kernel.storage import open_store
>>> store = open_store("memory")
"""

from ._tables import POINT_COLUMNS, POINT_KEY, TABLES, BatchTypeError, TableSpec
from ._protocol import (
    AGGREGATES,
    STORES,
    BaseStore,
    Store,
    StoreBackend,
    StoreError,
    StoreLockedError,
    StoreUnavailable,
    UnknownStoreError,
    open_store,
    parse_span,
    parse_time,
    split_store_url,
    store_backend,
)
from ._migrations import LATEST as SCHEMA_VERSION
from ._duckdb import DuckDBStore
from ._postgres import PostgresStore
from ._spool import ResilientStore, Spool, SpoolFullError
from ._backup import backup, restore
from ._known import UnknownStreamError, check_stream

__all__ = [
    "AGGREGATES",
    "BaseStore",
    "BatchTypeError",
    "DuckDBStore",
    "POINT_COLUMNS",
    "POINT_KEY",
    "PostgresStore",
    "ResilientStore",
    "SCHEMA_VERSION",
    "STORES",
    "Spool",
    "SpoolFullError",
    "Store",
    "StoreBackend",
    "StoreError",
    "StoreLockedError",
    "StoreUnavailable",
    "TABLES",
    "TableSpec",
    "UnknownStoreError",
    "UnknownStreamError",
    "backup",
    "check_stream",
    "open_store",
    "parse_span",
    "parse_time",
    "restore",
    "split_store_url",
    "store_backend",
]

# ---- cache and live bus (owned by the cache/bus engineer: add their imports and __all__ entries below) ----
from ._cache import Cache, MemoryCache, caches, open_cache
from ._bus import (
    Bus,
    BusError,
    MemoryBus,
    Message,
    SubscriberLagged,
    Subscription,
    buses,
    check_kind,
    open_bus,
    split_topic,
    topic,
    topic_pattern,
)

try:  # the Redis members need the `server` extra; without it open_cache/open_bus fall back to memory
    from ._bus_redis import RedisBus
    from ._cache_redis import RedisCache
except ImportError:  # pragma: no cover - depends on the installed extras
    pass
else:
    __all__ += ["RedisBus", "RedisCache"]

__all__ += [
    "Bus",
    "BusError",
    "Cache",
    "MemoryBus",
    "MemoryCache",
    "Message",
    "SubscriberLagged",
    "Subscription",
    "buses",
    "caches",
    "check_kind",
    "open_bus",
    "open_cache",
    "split_topic",
    "topic",
    "topic_pattern",
]
