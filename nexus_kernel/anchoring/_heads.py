"""Signed tree heads: the log's size and root at a moment, signed with the home's Ed25519 key.

Payload, version 1 (the bytes that are signed, hashed into the head's id, and anchored)::

    canonical JSON of {"v": 1, "type": "nexus-tree-head", "log": <log id>, "size": <tree size>,
                       "root": <hex root>, "time": <UTC time to the microsecond>}

(canonical as in :mod:`._encoding`). ``log`` is the hex SHA-256 of the raw 32-byte public key, so a head
names the key that signs it. ``head_id`` = hex SHA-256 of the payload (what :class:`AnchorRequest` carries).

The key: ``settings.anchor_key`` (hex of the 32-byte Ed25519 seed), else ``home/anchor_key`` (made on first
use with mode 0600, like the gateway's JWT secret). Whoever holds it can sign heads; the public key goes
into every proof bundle and a verifier may pin it (``nexus verify --bundle F --key HEX``).

Example
-------
>>> key = Ed25519PrivateKey.generate()
>>> head = sign_head(key, 3, bytes(32), "2024-01-01T00:00:00Z")
>>> check_signature(head) is None, head.tree_size
(True, 3)

References: RFC 8032 (Ed25519); RFC 9162 §4.10 (signed tree heads).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ._encoding import canonical_json, iso_time
from ._protocol import AnchorRequest

if TYPE_CHECKING:
    from ..config import Settings

__all__ = ["SignedTreeHead", "sign_head", "check_signature", "signing_key", "public_key_hex", "parse_payload"]

HEAD_VERSION = 1


def public_key_hex(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(Encoding.Raw, PublicFormat.Raw).hex()


@dataclass(frozen=True)
class SignedTreeHead:
    """A head as stored and bundled: the exact signed ``payload`` (text), its signature and public key."""

    payload: str
    signature: str  # hex
    public_key: str  # hex of the raw 32-byte key

    @property
    def fields(self) -> dict[str, Any]:
        return parse_payload(self.payload)

    @property
    def tree_size(self) -> int:
        return int(self.fields["size"])

    @property
    def root(self) -> bytes:
        return bytes.fromhex(self.fields["root"])

    @property
    def head_id(self) -> str:
        return hashlib.sha256(self.payload.encode("utf-8")).hexdigest()

    def request(self) -> AnchorRequest:
        """What an anchor backend publishes for this head."""
        return AnchorRequest(self.head_id, self.root, self.tree_size, self.payload.encode("utf-8"))

    def to_json(self) -> dict[str, Any]:
        return {"payload": self.payload, "signature": self.signature, "public_key": self.public_key}


def parse_payload(payload: str) -> dict[str, Any]:
    """The fields of a version-1 head payload; :class:`ValueError` saying what is wrong otherwise."""
    try:
        fields = json.loads(payload)
    except ValueError:
        raise ValueError("the tree head payload is not JSON") from None
    if not isinstance(fields, dict) or fields.get("v") != HEAD_VERSION or fields.get("type") != "nexus-tree-head":
        raise ValueError(f"not a version-{HEAD_VERSION} nexus tree head")
    if canonical_json(fields).decode("utf-8") != payload:
        raise ValueError("the tree head payload is not in canonical form")
    size, root = fields.get("size"), fields.get("root")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ValueError("the tree head's size is not a non-negative integer")
    if not isinstance(root, str) or len(root) != 64 or any(c not in "0123456789abcdef" for c in root):
        raise ValueError("the tree head's root is not 64 lower-case hex digits")
    return fields


def sign_head(key: Ed25519PrivateKey, tree_size: int, root: bytes, when: Any) -> SignedTreeHead:
    """Sign the head of a tree of ``tree_size`` leaves with ``root`` at time ``when``."""
    public = public_key_hex(key)
    log_id = hashlib.sha256(bytes.fromhex(public)).hexdigest()
    payload = canonical_json({"v": HEAD_VERSION, "type": "nexus-tree-head", "log": log_id, "size": int(tree_size),
                              "root": root.hex(), "time": iso_time(when)})
    return SignedTreeHead(payload.decode("utf-8"), key.sign(payload).hex(), public)


def check_signature(head: SignedTreeHead, trusted_key: str | None = None) -> str | None:
    """None when ``head`` is signed by its public key (and that key is ``trusted_key``, when given)."""
    try:
        raw = bytes.fromhex(head.public_key)
        public = Ed25519PublicKey.from_public_bytes(raw)
        signature = bytes.fromhex(head.signature)
    except ValueError as exc:
        return f"the public key or signature is malformed ({exc})"
    if trusted_key is not None and head.public_key.lower() != trusted_key.lower():
        return f"signed by key {head.public_key[:16]}..., not the trusted key {trusted_key[:16]}..."
    try:
        fields = parse_payload(head.payload)
    except ValueError as exc:
        return str(exc)
    if fields.get("log") != hashlib.sha256(raw).hexdigest():
        return "the head names another log (its log id is not the hash of this public key)"
    try:
        public.verify(signature, head.payload.encode("utf-8"))
    except InvalidSignature:
        return "the Ed25519 signature does not verify with the bundled public key"
    return None


def signing_key(settings: Settings) -> Ed25519PrivateKey:
    """The home's signing key: ``settings.anchor_key``, else ``home/anchor_key`` (made on first use, 0600)."""
    if settings.anchor_key is not None:
        seed = settings.anchor_key.get_secret_value().strip()
    else:
        path = Path(settings.home) / "anchor_key"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:  # another process made it between the check and the open
                pass
            else:
                with os.fdopen(fd, "w") as fh:
                    fh.write(os.urandom(32).hex())
        seed = path.read_text().strip()
    try:
        raw = bytes.fromhex(seed)
        if len(raw) != 32:
            raise ValueError
    except ValueError:
        raise ValueError("the anchor key is not 64 hex digits (a 32-byte Ed25519 seed)") from None
    return Ed25519PrivateKey.from_private_bytes(raw)
