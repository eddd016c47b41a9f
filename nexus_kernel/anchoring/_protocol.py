"""The anchor family: where a signed tree head of the Merkle log is made public.

An anchor backend takes an :class:`AnchorRequest` (one signed tree head), publishes it and answers
with an :class:`AnchorReceipt` whose ``reference`` is plain JSON: everything someone outside the system
needs to check the anchor again (a transaction hash and contract address, a data-item id and the
bundler's receipt, a ledger entry and its chain hash). The anchoring service owns the persistent queue,
retries and backoff; a backend only submits, confirms and verifies.

Backends register in :data:`ANCHORS` by name (``ledger``, ``evm``, ``irys``; more through the entry point
group ``nexus_kernel.anchors``). A factory is called as ``factory(settings, store)``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, runtime_checkable

from .._registry import Registry

if TYPE_CHECKING:
    from ..config import Settings
    from ..storage import Store

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

AnchorStatus = Literal["pending", "final"]


class AnchorError(RuntimeError):
    """An anchor could not be made or checked; the message says which step and why."""


class AnchorUnavailable(AnchorError):
    """The backend cannot be reached now (network, node down, out of funds): retry later, lose nothing."""


class AnchorDropped(AnchorError):
    """An anchor once submitted is no longer there (a reorg dropped its transaction): submit it again."""


@dataclass(frozen=True)
class AnchorRequest:
    """One signed tree head to anchor.

    ``head_id`` is the hex SHA-256 of ``payload``; ``payload`` is the signed tree head's canonical bytes
    (what a backend that stores data, such as Irys, carries); ``root`` is the 32-byte Merkle root.
    """

    head_id: str
    root: bytes
    tree_size: int
    payload: bytes


@dataclass(frozen=True)
class AnchorReceipt:
    """Where and how a tree head was anchored; ``reference`` is JSON and enough to verify it again."""

    backend: str
    head_id: str
    status: AnchorStatus
    reference: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class VerifyStep:
    """One step of a verification walk, with its verdict and what it checked, in words."""

    step: str
    ok: bool
    detail: str


@runtime_checkable
class AnchorBackend(Protocol):
    """Publishes tree heads. Every member passes ``tests/anchoring/test_anchor_conformance.py``."""

    name: ClassVar[str]

    def submit(self, request: AnchorRequest) -> AnchorReceipt:
        """Publish ``request``; raise :class:`AnchorUnavailable` when it cannot be reached now."""
        ...

    def confirm(self, receipt: AnchorReceipt) -> AnchorReceipt:
        """The receipt's current state (``final`` once settled); :class:`AnchorDropped` if it vanished."""
        ...

    def verify(self, request: AnchorRequest, reference: Mapping[str, Any]) -> list[VerifyStep]:
        """Check from ``reference`` alone that ``request`` was anchored; one step per fact checked."""
        ...

    def close(self) -> None:
        ...


AnchorFactory = Callable[["Settings", "Store | None"], AnchorBackend]

ANCHORS: Registry[AnchorFactory] = Registry("anchors")
