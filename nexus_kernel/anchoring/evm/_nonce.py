"""Nonces for one sending account, safe when several threads of one process submit at once.

The first nonce is the node's *pending* transaction count (so transactions already in its pool count);
after that nonces are counted locally, so two submits never race for the same one. Any failure while a
nonce is held (the node down, "nonce too low" because another process used the key, a restart of the
node that lost its pool) forgets the local count: the next reservation asks the node again.

Caveat: one key per process. Two processes signing with one key race for nonces; the loser gets
"nonce too low", re-syncs and retries (see ``EvmAnchor.submit``), which is correct but slower.

Example::

    >>> keeper = NonceKeeper(lambda: 7)
    >>> with keeper.reserve() as nonce:
    ...     nonce
    7
    >>> with keeper.reserve() as nonce:
    ...     nonce
    8
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["NonceKeeper"]


class NonceKeeper:
    """Hands out consecutive nonces; ``fetch`` returns the node's pending count for the account."""

    def __init__(self, fetch: Callable[[], int]) -> None:
        self._fetch = fetch
        self._lock = threading.Lock()
        self._next: int | None = None

    @contextmanager
    def reserve(self) -> Iterator[int]:
        """Hold the next nonce while the block signs and sends; it is used up only if the block succeeds.

        The lock is held for the whole block, so sends of one process go out in nonce order.
        """
        with self._lock:
            nonce = self._fetch() if self._next is None else self._next
            try:
                yield nonce
            except BaseException:
                self._next = None  # unknown whether the node took it: ask again next time
                raise
            self._next = nonce + 1

    def forget(self) -> None:
        """Drop the local count (after a reorg or a node restart); the next reservation asks the node."""
        with self._lock:
            self._next = None
