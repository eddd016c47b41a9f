"""Deploy the ``Anchor`` contract: ``deploy_anchor(rpc_url, private_key)`` returns its address.

``nexus anchor deploy`` calls it and prints the address to put in ``NEXUS_EVM_CONTRACT``. The creation
transaction is signed locally, like every anchor.

Example (needs a node, e.g. ``anvil``)::

    address = deploy_anchor("http://127.0.0.1:8545", "0x" + "ac09..." )
"""

from __future__ import annotations

from eth_account import Account
from web3 import Web3

from .._protocol import AnchorError
from ._contract import anchor_artifact
from ._rpc import connect, rpc_errors

__all__ = ["deploy_anchor"]


def deploy_anchor(rpc_url: str, private_key: str, *, timeout: float = 10.0, wait: float = 120.0) -> str:
    """Send the contract's creation transaction, wait for it (at most ``wait`` s), return the checksummed address."""
    w3, session = connect(rpc_url, timeout)
    with session:
        return _deploy(w3, private_key, wait)


def _deploy(w3: Web3, private_key: str, wait: float) -> str:
    account = Account.from_key(private_key)
    artifact = anchor_artifact()
    factory = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
    with rpc_errors("deploying the Anchor contract"):
        tx = factory.constructor().build_transaction({
            "from": account.address, "nonce": w3.eth.get_transaction_count(account.address, "pending"),
            "chainId": w3.eth.chain_id})
        tx_hash = w3.eth.send_raw_transaction(account.sign_transaction(tx).raw_transaction)
        receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=wait, poll_latency=0.2)
    if int(receipt["status"]) != 1 or not receipt["contractAddress"]:
        raise AnchorError(f"Anchor contract deployment {tx_hash.hex()} failed (status {receipt['status']})")
    return str(receipt["contractAddress"])
