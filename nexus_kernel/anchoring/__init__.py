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
