"""IPython magics: ``%load_ext nexus_kernel``, then ``%nexus status`` and ``%%nexus_sql``.

``%nexus status`` shows the streams: through the gateway when ``%nexus connect URL TOKEN`` was run,
from the local Nexus home otherwise. ``%%nexus_sql`` runs the cell's SQL on the local DuckDB store and
returns a DataFrame (read the tables ``points``, ``anomalies``, ``forecasts``, ...). Tokens passed to
``%nexus connect`` are kept in the client only and never echoed.

They live at the package's top (not in the gateway, whose server they never use): ``%load_ext nexus_kernel``
calls :func:`nexus_kernel.load_ipython_extension`, which registers them through :func:`load_ipython_extension`.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

_state: dict[str, Any] = {}


def nexus(line: str) -> Any:
    """``%nexus status`` (the default: a DataFrame of streams) or ``%nexus connect URL [TOKEN]``."""
    words = line.split()
    if not words or words[0] == "status":
        client = _state.get("client")
        if client is not None:
            return client.streams()
        from .config import load_settings
        from .engine import StreamManager

        rows = StreamManager(load_settings(), run=False).status()
        return pd.DataFrame(rows)
    if words[0] == "connect" and len(words) in (2, 3):
        from .client import connect

        _state["client"] = connect(words[1], token=words[2] if len(words) == 3 else None)
        return f"connected to {words[1]}"
    raise ValueError("usage: %nexus status | %nexus connect URL [TOKEN]")


def nexus_sql(line: str, cell: str) -> pd.DataFrame:
    """``%%nexus_sql [STORE]``: the cell's SQL on the DuckDB store ``line`` names (the configured one if
    empty; opened once and kept for later cells) as a DataFrame. Other stores raise ``ValueError``."""
    store = _state.get("store")
    if store is None:
        from .config import load_settings
        from .storage import open_store

        store = _state["store"] = open_store(line.strip() or load_settings())
    con = getattr(store, "_con", None)
    if con is None:
        raise ValueError("%%nexus_sql needs a DuckDB store")
    cursor = con.cursor()
    try:
        return cursor.sql(cell).df()
    finally:
        cursor.close()


def load_ipython_extension(ipython: Any) -> None:
    """Register ``%nexus`` and ``%%nexus_sql`` on the ``ipython`` shell."""
    ipython.register_magic_function(nexus, "line", "nexus")
    ipython.register_magic_function(nexus_sql, "cell", "nexus_sql")
