"""The ``evm`` anchor: one transaction per tree head to the ``Anchor`` contract, final after N blocks.

``submit`` signs locally (the key never leaves the process) and sends ``anchor(root, treeSize,
headId)``; the receipt is ``pending`` with the transaction hash, contract, chain id, sender and nonce.
``confirm`` turns it ``final`` once the transaction's block has ``evm_confirmations`` blocks on top
(its own included), and raises :class:`AnchorDropped` when the node no longer knows the transaction (a
reorg dropped it, or a node that lost its pool): the service queues the head again. ``verify`` checks,
from the reference alone and the node, each fact in :mod:`._verify`.

Parameters come from :class:`~nexus_kernel.config.Settings` (``evm_*``). Caveats:

- Exactly once: before sending, ``submit`` looks for an earlier anchor of the same head id and returns
  that transaction instead of sending a second one — first among this key's transactions still waiting
  in the node's pool (nonces between its mined and its pending count, read from the node's pending block,
  else ``txpool_content``; a process that died after sending, before recording the receipt, leaves one
  there), then among ``Anchored`` logs of the configured contract in the last ``evm_log_lookback``
  blocks. In that order, a transaction mined between the two looks is still seen by the second. When
  the node has transactions of this key waiting and can list neither, ``submit`` raises
  :class:`AnchorUnavailable` (sent again once they are mined) rather than risk a second anchor.
- Fees: EIP-1559 (max fee = 2 x base fee + tip), capped by ``evm_max_fee_gwei`` when set; a base fee
  above the cap raises :class:`AnchorUnavailable` (wait for cheaper gas) rather than overpaying.
- A transaction stuck in the pool (its fees fell below what blocks take) is replaced: ``confirm`` of a
  transaction still unmined ``evm_replace_after`` seconds after it was sent signs the same call again
  with the same nonce and both fees raised by an eighth at least (and to the current ones, if higher;
  nodes refuse a replacement below +10 %), within ``evm_max_fee_gwei``. The receipt then names the new
  transaction and keeps the ones it replaced (``replaced``); whichever of them is mined is the anchor —
  one nonce, so exactly one of them can be.

Example (needs a node; see the README section "Chain anchors")::

    backend = EvmAnchor.from_settings(settings)
    receipt = backend.submit(AnchorRequest(head_id, root, tree_size, payload))
    receipt = backend.confirm(receipt)          # pending, then final
    steps = backend.verify(request, receipt.reference)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from eth_account import Account
from eth_utils import to_checksum_address
from hexbytes import HexBytes
from web3.exceptions import TransactionNotFound, Web3RPCError

from .._protocol import AnchorDropped, AnchorError, AnchorReceipt, AnchorRequest, AnchorUnavailable, VerifyStep
from ._contract import ANCHORED_SIGNATURE, ANCHORED_TOPIC, anchor_artifact
from ._nonce import NonceKeeper
from ._rpc import connect, rpc_errors, rpc_message
from ._verify import check_request, verify_anchor

if TYPE_CHECKING:
    from ...config import Settings

__all__ = ["EvmAnchor"]

log = logging.getLogger(__name__)

GAS_MARGIN = 1.2  # over the node's estimate: estimates are exact for this contract, the margin is for forks


class EvmAnchor:
    """Anchors tree heads as ``Anchored`` events of one ``Anchor`` contract on one EVM chain.

    Parameters
    ----------
    rpc_url, private_key, contract:
        The node, the hex key that signs (may be None for a verify-only backend), the contract address.
    chain_id:
        Chain to sign for; None asks the node (once).
    confirmations:
        Blocks (the anchor's own included) before ``confirm`` says final; ``verify`` asks as many.
    gas_cap, max_fee_wei, timeout, log_lookback, replace_after:
        See the ``evm_*`` settings.
    """

    name: ClassVar[str] = "evm"

    def __init__(self, rpc_url: str, private_key: str | None, contract: str, *, chain_id: int | None = None,
                 confirmations: int = 1, gas_cap: int = 100_000, max_fee_wei: int | None = None,
                 timeout: float = 10.0, log_lookback: int = 10_000, replace_after: float = 60.0) -> None:
        if confirmations < 1:
            raise ValueError("confirmations must be >= 1")
        try:
            self.contract = to_checksum_address(contract)
        except ValueError as exc:
            raise AnchorError(f"evm_contract {contract!r} is not an address") from exc
        self.rpc_url = rpc_url
        self.confirmations = confirmations
        self.gas_cap = gas_cap
        self.max_fee_wei = max_fee_wei
        self.log_lookback = log_lookback
        self.replace_after = replace_after
        self._w3, self._session = connect(rpc_url, timeout)
        self._account = Account.from_key(private_key) if private_key else None
        self._chain_id = chain_id
        self._abi_contract = self._w3.eth.contract(address=self.contract, abi=anchor_artifact()["abi"])
        self._nonces = NonceKeeper(self._pending_count)

    @classmethod
    def from_settings(cls, settings: Settings) -> EvmAnchor:
        if not settings.evm_contract:
            raise AnchorError("evm anchor: no contract address; deploy one with `nexus anchor deploy` and set "
                              "NEXUS_EVM_CONTRACT")
        key = settings.evm_private_key.get_secret_value() if settings.evm_private_key else None
        max_fee = int(settings.evm_max_fee_gwei * 10**9) if settings.evm_max_fee_gwei else None
        return cls(settings.evm_rpc_url, key, settings.evm_contract, chain_id=settings.evm_chain_id,
                   confirmations=settings.evm_confirmations, gas_cap=settings.evm_gas_cap, max_fee_wei=max_fee,
                   timeout=settings.evm_timeout, log_lookback=settings.evm_log_lookback,
                   replace_after=settings.evm_replace_after)

    # -- protocol ---------------------------------------------------------------------------------

    def submit(self, request: AnchorRequest) -> AnchorReceipt:
        check_request(request)
        if self._account is None:
            raise AnchorError("evm anchor: no evm_private_key, this backend can only verify")
        earlier = self._find_in_pool(request) or self._find_earlier(request)
        if earlier is not None:
            log.info("tree head %s already anchored in %s; not sending again", request.head_id, earlier["tx_hash"])
            return AnchorReceipt(self.name, request.head_id, "pending", earlier)
        data = self._abi_contract.encode_abi("anchor", args=[request.root, request.tree_size,
                                                             bytes.fromhex(request.head_id)])
        tx: dict[str, Any] = {"from": self._account.address, "to": self.contract, "data": data, "value": 0,
                              "chainId": self.chain_id}
        with rpc_errors("estimating gas"):
            estimate = int(self._w3.eth.estimate_gas(tx))  # type: ignore[arg-type]
        if estimate > self.gas_cap:
            raise AnchorError(f"evm anchor needs {estimate} gas, above evm_gas_cap={self.gas_cap}")
        tx["gas"] = min(self.gas_cap, int(estimate * GAS_MARGIN))
        tx.update(self._fees())
        for attempt in (1, 2):
            try:
                with rpc_errors("sending the anchor transaction"):
                    return self._send(request, tx)
            except AnchorError as exc:
                cause = exc.__cause__
                stale = isinstance(cause, Web3RPCError) and any(
                    word in rpc_message(cause) for word in ("nonce too low", "nonce too high"))
                if attempt == 2 or not stale:
                    raise
                log.warning("evm anchor: %s; nonce re-synced from the node", exc)  # the keeper forgot its count
        raise AssertionError("unreachable")

    def confirm(self, receipt: AnchorReceipt) -> AnchorReceipt:
        reference = dict(receipt.reference)
        tx_hash = reference.get("tx_hash")
        if not isinstance(tx_hash, str):
            raise AnchorError("evm receipt has no tx_hash")
        with rpc_errors("reading the anchor receipt"):
            tx_receipt = None
            for sent in [tx_hash, *reference.get("replaced", [])]:  # one nonce: at most one of them is mined
                try:
                    tx_receipt = self._w3.eth.get_transaction_receipt(sent)
                except TransactionNotFound:
                    continue
                if tx_receipt is not None:
                    if sent != tx_hash:
                        reference["tx_hash"] = sent
                        reference["replaced"] = [h for h in [tx_hash, *reference["replaced"]] if h != sent]
                    break
            if tx_receipt is None:
                try:
                    waiting = self._w3.eth.get_transaction(tx_hash)  # type: ignore[arg-type]
                except TransactionNotFound:
                    self._nonces.forget()  # its nonce is free again on this chain
                    raise AnchorDropped(f"evm transaction {tx_hash} is no longer known to the node "
                                        "(dropped by a reorg or from the pool): queue the tree head again") from None
                if time.time() - float(reference.get("sent_at", time.time())) >= self.replace_after:
                    reference = self._replace(waiting, reference)
                return AnchorReceipt(self.name, receipt.head_id, "pending", reference)
            head = int(self._w3.eth.block_number)
        if int(tx_receipt["status"]) != 1:
            raise AnchorError(f"evm transaction {tx_hash} reverted (status 0)")
        block = int(tx_receipt["blockNumber"])
        depth = head - block + 1
        reference.update(block_number=block, block_hash=_hex(tx_receipt["blockHash"]),
                         gas_used=int(tx_receipt["gasUsed"]), confirmations=depth)
        if depth >= self.confirmations:
            reference.pop("sent_at", None)  # only the pending need it; a final reference names the anchor alone
            return AnchorReceipt(self.name, receipt.head_id, "final", reference)
        return AnchorReceipt(self.name, receipt.head_id, "pending", reference)

    def verify(self, request: AnchorRequest, reference: Mapping[str, Any]) -> list[VerifyStep]:
        """The steps of :func:`._verify.verify_anchor`; AnchorUnavailable if the node cannot be asked."""
        with rpc_errors("verifying an anchor"):
            return verify_anchor(self._w3, self.contract, self.confirmations, request, reference)

    def close(self) -> None:
        self._session.close()

    # -- helpers ----------------------------------------------------------------------------------

    @property
    def chain_id(self) -> int:
        if self._chain_id is None:
            with rpc_errors("reading the chain id"):
                self._chain_id = int(self._w3.eth.chain_id)
        return self._chain_id

    @property
    def address(self) -> str | None:
        """The sending account's address (None for a verify-only backend)."""
        return self._account.address if self._account else None

    def _pending_count(self) -> int:
        assert self._account is not None
        with rpc_errors("reading the account nonce"):
            return int(self._w3.eth.get_transaction_count(self._account.address, "pending"))

    def _fees(self) -> dict[str, int]:
        with rpc_errors("reading gas prices"):
            base = int(self._w3.eth.get_block("latest").get("baseFeePerGas") or 0)
            tip = int(self._w3.eth.max_priority_fee)
        if self.max_fee_wei is not None and base + tip > self.max_fee_wei:
            raise AnchorUnavailable(f"evm base fee {base + tip} wei/gas is above evm_max_fee_gwei; waiting for "
                                    "cheaper gas")
        max_fee = 2 * base + tip
        if self.max_fee_wei is not None:
            max_fee = min(max_fee, self.max_fee_wei)
        return {"maxFeePerGas": max_fee, "maxPriorityFeePerGas": tip}

    def _send(self, request: AnchorRequest, tx: dict[str, Any]) -> AnchorReceipt:
        assert self._account is not None
        with self._nonces.reserve() as nonce:  # any error here frees the nonce (the keeper re-syncs)
            signed = self._account.sign_transaction({**tx, "nonce": nonce})
            tx_hash = self._w3.eth.send_raw_transaction(signed.raw_transaction)
        reference = {"chain_id": self.chain_id, "contract": self.contract, "tx_hash": _hex(tx_hash),
                     "from": self._account.address, "nonce": nonce, "event": ANCHORED_SIGNATURE,
                     "sent_at": round(time.time(), 3)}
        return AnchorReceipt(self.name, request.head_id, "pending", reference)

    def _replace(self, waiting: Mapping[str, Any], reference: dict[str, Any]) -> dict[str, Any]:
        """Send ``waiting`` (this key's transaction, unmined too long) again with its nonce and higher fees;
        the reference of the replacement, or ``reference`` as it was if the fee cap leaves no room."""
        if self._account is None or to_checksum_address(waiting["from"]) != self._account.address:
            return reference  # a verify-only backend, or not our transaction: nothing to replace
        old_fee, old_tip = int(waiting["maxFeePerGas"]), int(waiting["maxPriorityFeePerGas"])
        try:
            now = self._fees()
        except AnchorUnavailable:  # the base fee alone is above the cap: a replacement would not be mined
            now = {"maxFeePerGas": 0, "maxPriorityFeePerGas": 0}
        tip = max(old_tip + old_tip // 8 + 1, now["maxPriorityFeePerGas"])
        fee = max(old_fee + old_fee // 8 + 1, now["maxFeePerGas"], tip)
        if self.max_fee_wei is not None and fee > self.max_fee_wei:
            log.warning("evm anchor %s waits unmined, and raising its fee would pass evm_max_fee_gwei",
                        reference["tx_hash"])
            return reference
        tx = {"from": self._account.address, "to": waiting["to"], "data": waiting["input"], "value": 0,
              "chainId": self.chain_id, "gas": int(waiting["gas"]), "nonce": int(waiting["nonce"]),
              "maxFeePerGas": fee, "maxPriorityFeePerGas": tip}
        signed = self._account.sign_transaction(tx)
        try:
            new_hash = _hex(self._w3.eth.send_raw_transaction(signed.raw_transaction))
        except Web3RPCError as exc:  # mined meanwhile ("nonce too low") or refused: confirmed next round
            log.warning("evm anchor %s not replaced: %s", reference["tx_hash"], rpc_message(exc))
            return reference
        log.info("evm anchor %s waited unmined %.0f s; replaced by %s (max fee %d wei/gas)",
                 reference["tx_hash"], self.replace_after, new_hash, fee)
        return {**reference, "tx_hash": new_hash, "replaced": [reference["tx_hash"], *reference.get("replaced", [])],
                "sent_at": round(time.time(), 3)}

    def _find_in_pool(self, request: AnchorRequest) -> dict[str, Any] | None:
        """The reference of a transaction of this head from this key still waiting in the node's pool."""
        assert self._account is not None
        address = self._account.address
        with rpc_errors("looking in the node's pool"):
            mined = int(self._w3.eth.get_transaction_count(address, "latest"))
            sent = int(self._w3.eth.get_transaction_count(address, "pending"))
            if sent <= mined:
                return None
            waiting = self._waiting(address, set(range(mined, sent)))
        for nonce in sorted(waiting):
            tx = waiting[nonce]
            if not tx.get("to") or to_checksum_address(tx["to"]) != self.contract:
                continue
            try:
                function, args = self._abi_contract.decode_function_input(tx["input"])
            except ValueError:
                continue
            if function.fn_name == "anchor" and bytes(args["headId"]).hex() == request.head_id:
                return {"chain_id": self.chain_id, "contract": self.contract, "tx_hash": _hex(tx["hash"]),
                        "from": address, "nonce": nonce, "event": ANCHORED_SIGNATURE,
                        "sent_at": round(time.time(), 3)}  # found now: replaced if it still waits later
        return None

    def _waiting(self, address: str, nonces: set[int]) -> dict[int, Mapping[str, Any]]:
        """This key's pool transactions of ``nonces`` (nonce → transaction); AnchorUnavailable if the node
        cannot list them all (the caller must not send while one of them may anchor the same head)."""
        found: dict[int, Mapping[str, Any]] = {}
        block = self._w3.eth.get_block("pending", full_transactions=True)
        for tx in block.get("transactions", []):
            if isinstance(tx, Mapping) and to_checksum_address(tx["from"]) == address and int(tx["nonce"]) in nonces:
                found[int(tx["nonce"])] = tx
        if nonces - set(found):  # a node whose pending block is the latest one: ask its pool
            answer = self._w3.provider.make_request("txpool_content", [])  # type: ignore[arg-type]
            pool = answer.get("result") if isinstance(answer, Mapping) else None
            pending = pool.get("pending", {}) if isinstance(pool, Mapping) else {}
            for sender, txs in pending.items():
                if to_checksum_address(sender) == address:
                    for nonce, tx in txs.items():
                        if int(nonce) in nonces:
                            found[int(nonce)] = tx
        missing = nonces - set(found)
        if missing:
            raise AnchorUnavailable(f"evm node holds {len(missing)} unmined transaction(s) of {address} (nonces "
                                    f"{sorted(missing)}) it cannot list; waiting until they are mined so that no "
                                    "tree head is anchored twice")
        return found

    def _find_earlier(self, request: AnchorRequest) -> dict[str, Any] | None:
        """The reference of an earlier anchor of this head by this contract, if the node has one."""
        if self.log_lookback == 0:
            return None
        with rpc_errors("looking for an earlier anchor"):
            head = int(self._w3.eth.block_number)
            logs = self._w3.eth.get_logs({
                "address": self.contract, "fromBlock": max(0, head - self.log_lookback), "toBlock": head,
                "topics": [HexBytes(ANCHORED_TOPIC), HexBytes(request.root), HexBytes(bytes.fromhex(request.head_id))]})
        for entry in logs:
            if entry.get("removed"):
                continue
            with rpc_errors("reading an earlier anchor"):
                tx = self._w3.eth.get_transaction(entry["transactionHash"])
            return {"chain_id": self.chain_id, "contract": self.contract, "tx_hash": _hex(entry["transactionHash"]),
                    "from": tx["from"], "nonce": int(tx["nonce"]), "event": ANCHORED_SIGNATURE}
        return None


def _hex(value: Any) -> str:
    text = value.hex() if isinstance(value, (bytes, bytearray)) else str(value)
    return text if text.startswith("0x") else "0x" + text
