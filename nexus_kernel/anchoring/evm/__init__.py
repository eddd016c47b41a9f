"""The ``evm`` anchor backend: tree heads as events of the ``Anchor`` contract on an EVM chain.

Needs the ``chain`` extra (web3). The contract source is ``contracts/Anchor.sol``; its ABI and bytecode
(``Anchor.json``) are committed and rebuilt offline by ``node scripts/build-contract.js``.

Example (needs a node; see README "Chain anchors")::

    from nexus_kernel.anchoring.evm import deploy_anchor, EvmAnchor
    address = deploy_anchor(rpc_url, key)
    backend = EvmAnchor(rpc_url, key, address, confirmations=1)
"""

from ._backend import EvmAnchor
from ._contract import ANCHORED_SIGNATURE, ANCHORED_TOPIC, anchor_artifact
from ._deploy import deploy_anchor
from ._anvil import DEV_KEYS, LocalAnvil, anvil_binary
from ._nonce import NonceKeeper

__all__ = ["ANCHORED_SIGNATURE", "ANCHORED_TOPIC", "DEV_KEYS", "EvmAnchor", "LocalAnvil", "NonceKeeper", "anchor_artifact",
           "anvil_binary", "deploy_anchor"]
