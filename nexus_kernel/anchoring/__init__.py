"""Anchoring: an append-only Merkle log of what the home stored, signed tree heads, and the backends
that make those heads public (see :mod:`._protocol`)."""

from ._protocol import (
    ANCHORS,
    AnchorBackend,
    AnchorDropped,
    AnchorError,
    AnchorFactory,
    AnchorReceipt,
    AnchorRequest,
    AnchorUnavailable,
    VerifyStep,
)
from . import _chain  # noqa: F401  registers the evm and irys backends (lazily: web3 is an extra)

__all__ = [
    "ANCHORS",
    "AnchorBackend",
    "AnchorDropped",
    "AnchorError",
    "AnchorFactory",
    "AnchorReceipt",
    "AnchorRequest",
    "AnchorUnavailable",
    "VerifyStep",
]
