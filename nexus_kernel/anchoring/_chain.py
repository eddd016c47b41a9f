"""Registers the chain backends ``evm`` and ``irys`` in :data:`ANCHORS` without importing web3.

Their modules (and web3, from the ``chain`` extra) are imported when a factory is first called, so
``import nexus_kernel.anchoring`` stays light and works without the extra.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._protocol import ANCHORS, AnchorBackend, AnchorError

if TYPE_CHECKING:
    from ..config import Settings
    from ..storage import Store

__all__: list[str] = []


def _need_chain_extra(name: str) -> AnchorError:
    return AnchorError(f"the {name} anchor needs web3: pip install 'nexus-stream[chain]'")


@ANCHORS.register("evm")
def evm_anchor(settings: Settings, store: Store | None) -> AnchorBackend:
    try:
        from .evm import EvmAnchor
    except ImportError as exc:
        raise _need_chain_extra("evm") from exc
    return EvmAnchor.from_settings(settings)


@ANCHORS.register("irys")
def irys_anchor(settings: Settings, store: Store | None) -> AnchorBackend:
    try:
        from .irys import IrysAnchor
    except ImportError as exc:
        raise _need_chain_extra("irys") from exc
    return IrysAnchor.from_settings(settings)
