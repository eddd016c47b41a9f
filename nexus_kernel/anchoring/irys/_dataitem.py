"""ANS-104 data items signed with an Ethereum key (signature type 3): build, parse, check.

Layout (all integers little-endian)::

    signature type  2 bytes   3 = Ethereum
    signature      65 bytes   r || s || v, EIP-191 personal_sign of the deep hash below
    owner          65 bytes   uncompressed secp256k1 public key (0x04 || X || Y)
    target        1 (+32)     presence byte 0/1, then 32 bytes if present
    anchor        1 (+32)     presence byte 0/1, then 32 bytes if present
    tag count       8 bytes
    tag bytes       8 bytes   length of the Avro tags that follow (see :mod:`._tags`)
    tags            Avro
    data            the rest

The owner signs ``deep_hash(["dataitem", "1", "3", owner, target, anchor, tags_avro, data])`` (an absent
target or anchor counts as empty bytes). The id is ``base64url(SHA-256(signature))``, no padding.

Caveat: the ANS-104 document lists the signed fields without the signature type; every implementation
that nodes run (arbundles ``getSignatureData``, ``verifyFile``; the Rust and Go bundlers) hashes the
type as the decimal string after "1", and a node refuses an item signed otherwise. We follow them.
Signing is deterministic (RFC 6979): the same key, tags and data give the same bytes and the same id,
so uploading a tree head twice names one item.

Example::

    >>> from eth_account import Account
    >>> key = Account.create().key.hex()
    >>> item = build_data_item(b"tree head", [("App-Name", "Nexus-Stream")], key)
    >>> parsed = parse_data_item(item)
    >>> parsed.data, parsed.tags, parsed.signature_valid()
    (b'tree head', [('App-Name', 'Nexus-Stream')], True)

References: ArweaveTeam/arweave-standards ``ans/ANS-104.md``; Irys-xyz/arbundles ``src/ar-data-create.ts``,
``src/signing/chains/ethereumSigner.ts``.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from eth_account import Account
from eth_account.messages import encode_defunct
from eth_keys import keys
from eth_utils import keccak

from ._deephash import deep_hash
from ._tags import TagError, decode_tags, encode_tags

__all__ = ["DataItem", "DataItemError", "b64url", "b64url_decode", "build_data_item", "parse_data_item"]

SIG_TYPE_ETHEREUM = 3
SIG_LEN = OWNER_LEN = 65


class DataItemError(ValueError):
    """Bytes that are not a well-formed type-3 ANS-104 data item; the message says where."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def owner_address(owner: bytes) -> str:
    """The Ethereum address (checksummed) of a 65-byte uncompressed public key."""
    return keys.PublicKey(owner[1:]).to_checksum_address()


@dataclass(frozen=True)
class DataItem:
    """A parsed item; ``raw`` is the exact bytes, ``tags_raw`` the Avro bytes as they were signed."""

    signature_type: int
    signature: bytes
    owner: bytes
    target: bytes
    anchor: bytes
    tags: list[tuple[str, str]]
    tags_raw: bytes
    data: bytes
    raw: bytes

    @property
    def id(self) -> str:
        return b64url(hashlib.sha256(self.signature).digest())

    @property
    def owner_address(self) -> str:
        return owner_address(self.owner)

    def signed_message(self) -> bytes:
        """The deep hash the owner signed."""
        return deep_hash([b"dataitem", b"1", str(self.signature_type).encode(), self.owner, self.target,
                          self.anchor, self.tags_raw, self.data])

    def signer_address(self) -> str | None:
        """The address the signature recovers to (EIP-191), None if it recovers to nothing."""
        try:
            return str(Account.recover_message(encode_defunct(primitive=self.signed_message()),
                                               signature=self.signature))
        except Exception:  # noqa: BLE001 - eth_keys' BadSignature and kin: a signature that recovers nothing
            return None

    def signature_valid(self) -> bool:
        return self.signer_address() == self.owner_address


def _optional(value: bytes | None, name: str) -> bytes:
    if value is None:
        return b"\x00"
    if len(value) != 32:
        raise DataItemError(f"{name} must be 32 bytes, got {len(value)}")
    return b"\x01" + value


def build_data_item(data: bytes, tags: Sequence[tuple[str, str]], private_key: str | bytes, *,
                    target: bytes | None = None, anchor: bytes | None = None) -> bytes:
    """The signed item carrying ``data`` and ``tags``, signed by the secp256k1 ``private_key``."""
    account = Account.from_key(private_key)
    owner = b"\x04" + keys.PrivateKey(bytes(account.key)).public_key.to_bytes()
    tags_raw = encode_tags(tags)
    message = deep_hash([b"dataitem", b"1", str(SIG_TYPE_ETHEREUM).encode(), owner, target or b"", anchor or b"",
                         tags_raw, data])
    signature = bytes(account.sign_message(encode_defunct(primitive=message)).signature)
    return b"".join([struct.pack("<H", SIG_TYPE_ETHEREUM), signature, owner, _optional(target, "target"),
                     _optional(anchor, "anchor"), struct.pack("<QQ", len(tags), len(tags_raw)), tags_raw, data])


def parse_data_item(raw: bytes) -> DataItem:
    """Parse a type-3 item; DataItemError names the field that is wrong. Does not check the signature."""
    if len(raw) < 2 + SIG_LEN + OWNER_LEN + 2 + 16:
        raise DataItemError(f"{len(raw)} bytes is shorter than any type-3 data item")
    (sig_type,) = struct.unpack_from("<H", raw, 0)
    if sig_type != SIG_TYPE_ETHEREUM:
        raise DataItemError(f"signature type {sig_type}, expected {SIG_TYPE_ETHEREUM} (Ethereum)")
    signature = raw[2:2 + SIG_LEN]
    owner = raw[2 + SIG_LEN:2 + SIG_LEN + OWNER_LEN]
    try:
        if owner[0] != 4:
            raise ValueError("no 0x04 prefix")
        owner_address(owner)
    except Exception as exc:  # noqa: BLE001 - whatever eth_keys says, the owner is unusable
        raise DataItemError(f"owner is not an uncompressed secp256k1 public key ({exc})") from None
    pos = 2 + SIG_LEN + OWNER_LEN
    fields = []
    for name in ("target", "anchor"):
        present = raw[pos]
        if present not in (0, 1):
            raise DataItemError(f"{name} presence byte is {present}, must be 0 or 1")
        fields.append(raw[pos + 1:pos + 33] if present else b"")
        pos += 33 if present else 1
    if pos + 16 > len(raw):
        raise DataItemError("item ends before the tag header")
    count, size = struct.unpack_from("<QQ", raw, pos)
    pos += 16
    if pos + size > len(raw):
        raise DataItemError(f"tag bytes ({size}) run past the end of the item")
    tags_raw = raw[pos:pos + size]
    try:
        tags = decode_tags(tags_raw)
    except TagError as exc:
        raise DataItemError(f"tags: {exc}") from exc
    if len(tags) != count:
        raise DataItemError(f"header says {count} tags, the Avro block holds {len(tags)}")
    return DataItem(sig_type, signature, owner, fields[0], fields[1], tags, tags_raw, raw[pos + size:], raw)
