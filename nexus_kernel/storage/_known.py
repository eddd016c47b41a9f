"""An unknown stream is an error, not an empty answer: ``query("nosuch")`` says which streams there are.

A query that finds no rows is ambiguous: the stream may exist with nothing in the asked range, or the
name may be misspelt. :func:`check_stream` tells them apart after an empty answer (the store's own list
of streams with points, plus any names the caller knows of, e.g. registered streams that have not
stored anything yet) and raises :class:`UnknownStreamError` naming the known streams.

Example
-------
>>> from nexus_kernel.storage import open_store
>>> check_stream(open_store("memory"), "nosuch")
Traceback (most recent call last):
...
nexus_kernel.storage._known.UnknownStreamError: no stream named 'nosuch' (no stream has stored points yet)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["UnknownStreamError", "check_stream", "unknown_stream_message"]

#: streams named in the message at most (a store can hold thousands)
SHOWN = 20


class UnknownStreamError(LookupError):
    """The stream named has no stored points and is not otherwise known."""

    def __str__(self) -> str:  # LookupError's str() quotes a single argument
        return str(self.args[0]) if self.args else ""


def unknown_stream_message(name: str, known: Iterable[str]) -> str:
    """``no stream named 'x' (streams: a, b, ...)``: what to say about ``name`` given the ``known`` names."""
    names = sorted(set(known))
    if not names:
        return f"no stream named '{name}' (no stream has stored points yet)"
    shown = ", ".join(names[:SHOWN]) + (f", ... ({len(names) - SHOWN} more)" if len(names) > SHOWN else "")
    return f"no stream named '{name}' (streams: {shown})"


def check_stream(store: Any, name: str, also: Iterable[str] = ()) -> None:
    """Raise :class:`UnknownStreamError` unless ``name`` is one of ``store.streams()`` or ``also``.

    Call it after a query came back empty (listing streams costs a query of its own).
    """
    extra = set(also)
    if name in extra:
        return
    known = set(store.streams())
    if name not in known:
        raise UnknownStreamError(unknown_stream_message(name, known | extra))
