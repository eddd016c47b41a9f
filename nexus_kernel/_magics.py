"""IPython magics: ``%load_ext nexus_kernel``, then ``%nexus status`` and ``%%nexus_sql``.

``%nexus status`` shows the streams: through the gateway when ``%nexus connect URL TOKEN`` was run, else
through the live ``nexus up`` that owns the home (its live counters), else the home's saved streams.
``%%nexus_sql`` runs the cell's SQL on DuckDB and returns a DataFrame (read the tables ``points``,
``anomalies``, ``forecasts``, ...): on the home's DuckDB file itself when this process may open it; when
``nexus up`` owns the home (or the store is not DuckDB), on an in-memory DuckDB of this kernel holding the
tables the SQL names, fetched through the store's owner (at most :data:`SQL_MAX_ROWS` rows per table — a
larger table is refused with a message, never cut). No SQL ever runs on the server: SQL there could read
its files. Tokens passed to ``%nexus connect`` are kept in the client only and never echoed.

They live at the package's top (not in the gateway, whose server they never use): ``%load_ext nexus_kernel``
calls :func:`nexus_kernel.load_ipython_extension`, which registers them through :func:`load_ipython_extension`.

Example
-------
::

    %load_ext nexus_kernel
    %nexus status
    %%nexus_sql
    select series, count(*) from points where field = 'value' group by series
"""

from __future__ import annotations

from typing import Any

import pandas as pd

__all__ = ["nexus", "nexus_sql", "load_ipython_extension", "SQL_MAX_ROWS"]

#: rows of one table a remote ``%%nexus_sql`` fetches at most (its points: per stream)
SQL_MAX_ROWS = 500_000

_state: dict[str, Any] = {}


def nexus(line: str) -> Any:
    """``%nexus status`` (the default: a DataFrame of streams) or ``%nexus connect URL [TOKEN]``."""
    words = line.split()
    if not words or words[0] == "status":
        client = _state.get("client")
        if client is not None:
            return client.streams()
        from .config import load_settings
        from .runtime._discovery import live_runtime

        settings = load_settings()
        live = live_runtime(settings)
        if live is not None and live.in_process:
            return pd.DataFrame(live.runtime.status())
        if live is not None and live.gateway is not None:
            with live.client() as owner:
                return owner.streams()
        from .engine import StreamManager

        rows = StreamManager(settings, run=False).status()
        return pd.DataFrame(rows)
    if words[0] == "connect" and len(words) in (2, 3):
        from .client import connect

        _state["client"] = connect(words[1], token=words[2] if len(words) == 3 else None)
        return f"connected to {words[1]}"
    raise ValueError("usage: %nexus status | %nexus connect URL [TOKEN]")


def nexus_sql(line: str, cell: str) -> pd.DataFrame:
    """``%%nexus_sql [STORE]``: the cell's SQL on the store ``line`` names (the home's if empty; opened once
    and kept for later cells) as a DataFrame.

    On a DuckDB store this process opened, the SQL runs on it; otherwise (the home's live ``nexus up``
    owns it, or another backend) on an in-memory DuckDB over the tables the SQL names, fetched through
    the store (``ValueError`` when one holds more than :data:`SQL_MAX_ROWS` rows).
    """
    store = _state.get("store")
    if store is None:
        store = _state["store"] = _open(line.strip())
    con = getattr(store, "_con", None)
    if con is not None:
        cursor = con.cursor()
        try:
            return cursor.sql(cell).df()
        finally:
            cursor.close()
    return _sql_over_fetched(store, cell)


def _open(target: str) -> Any:
    from .config import load_settings

    if target:
        from .storage import open_store

        return open_store(target)
    from .client import home_store

    return home_store(load_settings())


def _sql_over_fetched(store: Any, sql: str) -> pd.DataFrame:
    """``sql`` on a private in-memory DuckDB holding, as frames, the store's tables it names."""
    import duckdb

    from .storage import TABLES

    try:
        named = duckdb.get_table_names(sql)
    except duckdb.Error as exc:
        raise ValueError(f"%%nexus_sql: the SQL does not parse: {exc}") from None
    con = duckdb.connect(":memory:")
    try:
        for name in sorted(named):
            if name == "points" or name in TABLES:
                con.register(name, _table(store, name))
        return con.sql(sql).df()
    finally:
        con.close()


def _table(store: Any, name: str) -> pd.DataFrame:
    """Table ``name`` of ``store`` as it lies in the store (``points`` in long rows), bounded."""
    from .client import RemoteStoreError

    if name != "points":
        try:
            rows = store.read(name, limit=SQL_MAX_ROWS + 1)
        except RemoteStoreError as exc:
            raise ValueError(f"%%nexus_sql: {exc}") from None
        if len(rows) > SQL_MAX_ROWS:
            raise ValueError(_too_large(name, SQL_MAX_ROWS))
        return rows
    frames = []
    for stream in store.streams():
        limited = {"limit": SQL_MAX_ROWS + 1} if _takes_limit(store) else {}
        wide = store.query(stream, **limited)
        if len(wide) > SQL_MAX_ROWS:
            raise ValueError(_too_large(f"points of stream {stream!r}", SQL_MAX_ROWS))
        frames.append(_long(wide))
    from .storage._tables import POINTS, empty_frame

    return pd.concat(frames, ignore_index=True) if frames else empty_frame(POINTS)


def _takes_limit(store: Any) -> bool:
    import inspect

    return "limit" in inspect.signature(store.query).parameters


def _long(wide: pd.DataFrame) -> pd.DataFrame:
    """A stream's records (wide: one column per field) as the store's long point rows."""
    from .records import field_columns
    from .storage._tables import POINTS, conform, empty_frame

    if wide.empty:
        return empty_frame(POINTS)
    attrs = wide["attrs"] if "attrs" in wide.columns else pd.Series(pd.NA, index=wide.index, dtype="string")
    keys = wide[["stream", "series", "ts", "seq"]].assign(attrs=attrs)
    parts = [keys.assign(field=name, value=wide[name].to_numpy(dtype="float64", na_value=float("nan")))
             for name in field_columns(wide)]
    long = pd.concat(parts, ignore_index=True) if parts else keys.assign(field="", value=float("nan"))
    return conform(POINTS, long.dropna(subset=["value"])[list(POINTS.names)].reset_index(drop=True))


def _too_large(what: str, bound: int) -> str:
    return (f"%%nexus_sql: {what} holds more than {bound:,} rows, too many to fetch into this kernel — narrow "
            "it first (nk.query(stream, start=..., every=...), or the store's read(table, start=..., limit=...)), "
            "or run this SQL where the store is (stop nexus up to open its DuckDB file here)")


def load_ipython_extension(ipython: Any) -> None:
    """Register ``%nexus`` and ``%%nexus_sql`` on the ``ipython`` shell."""
    ipython.register_magic_function(nexus, "line", "nexus")
    ipython.register_magic_function(nexus_sql, "cell", "nexus_sql")
