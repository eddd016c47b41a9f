"""The ``irys`` anchor: the signed tree head as an ANS-104 data item, uploaded to an Irys node.

``submit`` builds the item (signature type 3, signed locally, see :mod:`._dataitem`) carrying the tree
head payload with tags ``App-Name``, ``Content-Type``, ``Nexus-Head-Id``, ``Nexus-Root``,
``Nexus-Tree-Size``, and posts it to ``{irys_url}/tx/ethereum`` as ``application/octet-stream``. The
node's JSON receipt goes into the reference with the item itself (base64url): the reference alone is
enough to verify again, offline.

What "final" means here: ``confirm`` is ``final`` once the node serves the item (``GET /tx/{id}``);
the receipt is the **bundler's attestation** (its RSA key promises to post the item to Arweave by
``deadlineHeight``), not proof that a chain holds it. A node that no longer knows the item raises
:class:`AnchorDropped`.

Failures: unreachable node, HTTP 5xx, 429 and 402 (no balance) raise :class:`AnchorUnavailable`; a
refusal of the item itself (4xx) raises :class:`AnchorError` with the node's words. The same tree head
always makes the same item (deterministic signatures), so uploading it again names the same id.

Example (needs a node; the tests run one: ``tests/anchoring/irys_node.py``)::

    backend = IrysAnchor("http://127.0.0.1:PORT", key_hex)
    receipt = backend.submit(request)
    steps = backend.verify(request, receipt.reference)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import httpx
from eth_account import Account

from .._protocol import AnchorDropped, AnchorError, AnchorReceipt, AnchorRequest, AnchorUnavailable, VerifyStep
from ._dataitem import DataItemError, b64url, b64url_decode, build_data_item, parse_data_item
from ._receipt import verify_receipt

if TYPE_CHECKING:
    from ...config import Settings

__all__ = ["ATTESTATION", "IrysAnchor", "head_tags"]

APP_NAME = "Nexus-Stream"
ATTESTATION = ("bundler receipt: the Irys node's RSA signature over the item id, timestamp and deadlineHeight, "
               "a promise to post the item to Arweave; not proof of inclusion in a chain")
_RETRY_LATER = {402, 408, 425, 429}


def head_tags(request: AnchorRequest) -> list[tuple[str, str]]:
    """The tags a tree head's item carries (searchable on Irys/Arweave gateways by name)."""
    return [("App-Name", APP_NAME), ("Content-Type", "application/octet-stream"), ("Nexus-Kind", "tree-head"),
            ("Nexus-Head-Id", request.head_id), ("Nexus-Root", request.root.hex()),
            ("Nexus-Tree-Size", str(request.tree_size))]


def load_or_make_key(path: Path) -> str:
    """The hex key in ``path``; a new one written there (mode 0600) on first use."""
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Account.create().key.hex()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    return key


class IrysAnchor:
    """Anchors tree heads as signed data items on an Irys node.

    Parameters
    ----------
    url:
        The node (``irys_url``); uploads go to ``{url}/tx/ethereum``.
    private_key:
        Hex secp256k1 key that signs items.
    bundler_key:
        The node's RSA public key (base64url modulus); when given, receipts signed by any other key fail
        ``irys.bundler``. None trusts the key the receipt names (and says so in the step).
    timeout:
        Seconds per request.
    """

    name: ClassVar[str] = "irys"

    def __init__(self, url: str, private_key: str | Callable[[], str], *, bundler_key: str | None = None,
                 timeout: float = 20.0, node_known: bool = True) -> None:
        self.url = url.rstrip("/")
        self._key_source = private_key
        self.bundler_key = bundler_key
        self.node_known = node_known
        self._http = httpx.Client(timeout=timeout)

    @classmethod
    def from_settings(cls, settings: Settings) -> IrysAnchor:
        """The backend of a home. Its key is read (or made, in ``home/irys_key``) on the first upload, not
        here: verifying a bundle on a machine without the home writes nothing there. Whether ``irys_url``
        was set decides if a reference's node is compared with it (see :meth:`verify`)."""
        secret = settings.irys_private_key
        key: str | Callable[[], str] = (secret.get_secret_value() if secret is not None
                                        else lambda: load_or_make_key(settings.home / "irys_key"))
        return cls(settings.irys_url, key, bundler_key=settings.irys_bundler_key, timeout=settings.irys_timeout,
                   node_known="irys_url" in settings.model_fields_set)

    def _key(self) -> str:
        if callable(self._key_source):
            self._key_source = self._key_source()
        return self._key_source

    @property
    def address(self) -> str:
        """The address that signs this backend's items (reads or makes the key)."""
        return str(Account.from_key(self._key()).address)

    # -- protocol ---------------------------------------------------------------------------------

    def submit(self, request: AnchorRequest) -> AnchorReceipt:
        if len(request.root) != 32:
            raise AnchorError(f"anchor root must be 32 bytes, got {len(request.root)}")
        if len(request.head_id) != 64 or not all(c in "0123456789abcdef" for c in request.head_id):
            raise AnchorError("anchor head_id must be 64 lower-case hex digits (SHA-256 of the tree head)")
        item = build_data_item(request.payload, head_tags(request), self._key())
        item_id = parse_data_item(item).id
        response = self._request("POST", "/tx/ethereum", content=item,
                                 headers={"Content-Type": "application/octet-stream"})
        receipt: dict[str, Any] | None = None
        if response.status_code in (200, 201):
            try:
                body = response.json()
                receipt = body if isinstance(body, dict) and "signature" in body else None
            except ValueError:
                receipt = None  # 201 "already received" may come without a receipt
        else:
            self._refused(response, "upload")
        if receipt is not None and receipt.get("id") != item_id:
            raise AnchorError(f"irys node answered a receipt for {receipt.get('id')!r}, not for item {item_id}")
        reference = {"node": self.url, "id": item_id, "owner": self.address, "item": b64url(item),
                     "receipt": receipt, "attestation": ATTESTATION}
        return AnchorReceipt(self.name, request.head_id, "pending", reference)

    def confirm(self, receipt: AnchorReceipt) -> AnchorReceipt:
        item_id = receipt.reference.get("id")
        if not isinstance(item_id, str):
            raise AnchorError("irys receipt has no item id")
        response = self._request("GET", f"/tx/{item_id}")
        if response.status_code == 404:
            raise AnchorDropped(f"irys node no longer knows item {item_id}: upload the tree head again")
        if response.status_code != 200:
            self._refused(response, "status")
        return AnchorReceipt(self.name, receipt.head_id, "final", dict(receipt.reference))

    def verify(self, request: AnchorRequest, reference: Mapping[str, Any]) -> list[VerifyStep]:
        """Offline: the item, its signature and id, its data and tags, the bundler's receipt."""
        steps: list[VerifyStep] = []

        def step(name: str, ok: bool, detail: str) -> bool:
            steps.append(VerifyStep(name, ok, detail))
            return ok

        try:
            item = parse_data_item(b64url_decode(str(reference.get("item", ""))))
        except (DataItemError, ValueError) as exc:
            step("irys.item", False, f"reference item is not an ANS-104 type-3 data item: {exc}")
            return steps
        step("irys.item", True, f"ANS-104 data item, signature type 3, {len(item.raw)} bytes, {len(item.tags)} tags")
        signer = item.signer_address()
        step("irys.signature", signer == item.owner_address,
             f"signature recovers {signer}; the item's owner is {item.owner_address}")
        step("irys.id", item.id == reference.get("id"),
             f"SHA-256 of the signature is {item.id}; reference says {reference.get('id')}")
        step("irys.data", item.data == request.payload,
             f"item data ({len(item.data)} bytes) {'equals' if item.data == request.payload else 'differs from'} "
             "the tree head payload")
        tags = dict(item.tags)
        wanted = dict(head_tags(request))
        wrong = sorted(k for k in ("Nexus-Head-Id", "Nexus-Root", "Nexus-Tree-Size") if tags.get(k) != wanted[k])
        step("irys.tags", not wrong, "head id, root and tree size tags match" if not wrong
             else f"tags that differ from the tree head: {', '.join(wrong)}")
        receipt = reference.get("receipt")
        if not isinstance(receipt, Mapping):
            step("irys.receipt", False, "no bundler receipt in the reference")
            return steps
        step("irys.receipt", receipt.get("id") == item.id,
             f"receipt for {receipt.get('id')} at {receipt.get('timestamp')} ms, deadline height "
             f"{receipt.get('deadlineHeight')}; item {item.id}")
        step("irys.receipt_signature", verify_receipt(receipt),
             "the bundler's RSA-PSS signature over id, timestamp and deadline " +
             ("verifies" if verify_receipt(receipt) else "does not verify") + f" ({ATTESTATION})")
        if self.bundler_key is not None:
            step("irys.bundler", receipt.get("public") == self.bundler_key,
                 "receipt signed by the configured bundler key" if receipt.get("public") == self.bundler_key
                 else "receipt signed by a key other than irys_bundler_key")
        else:
            step("irys.bundler", True, "irys_bundler_key unset: trusting the key the receipt names")
        # the reference's own claims, so that none can be changed unnoticed: the owner is the item's, the
        # attestation ours, and the node the configured one where irys_url is set (a reference cannot bring
        # its own node into a home); where it is not (a bundle checked away from its home), the node is only
        # reported: nothing here asks it anything, the item and the receipt's signature carry the proof
        named = {k: reference.get(k) for k in ("node", "owner", "attestation") if k in reference}
        expected = {"node": self.url, "owner": item.owner_address, "attestation": ATTESTATION}
        compared = [k for k in named if k != "node" or self.node_known]
        wrong_claims = sorted(k for k in compared if named[k] != expected[k])
        node_note = "" if self.node_known or "node" not in named else \
            f"; node {named['node']!r} not compared (irys_url is not set here)"
        step("irys.reference", not wrong_claims,
             f"{', '.join(compared) or 'no claims'} as expected{node_note}" if not wrong_claims
             else "reference fields that differ: " + ", ".join(f"{k} {named[k]!r} (expected {expected[k]!r})"
                                                              for k in wrong_claims))
        return steps

    def close(self) -> None:
        self._http.close()

    # -- helpers ----------------------------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, self.url + path, **kwargs)
        except httpx.HTTPError as exc:
            raise AnchorUnavailable(f"irys node {self.url} unreachable: {type(exc).__name__}") from exc
        if response.status_code >= 500 or response.status_code in _RETRY_LATER:
            raise AnchorUnavailable(f"irys node answered {response.status_code} to {method} {path}: "
                                    f"{response.text[:200]}")
        return response

    @staticmethod
    def _refused(response: httpx.Response, doing: str) -> None:
        raise AnchorError(f"irys node refused the {doing} ({response.status_code}): {response.text[:200]}")
