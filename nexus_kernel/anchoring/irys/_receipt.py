"""The bundler's receipt: its RSA-PSS signature over a deep hash of the item id, time and deadline.

What a receipt proves: the bundler holding the key in ``public`` saw the item ``id`` at ``timestamp``
(ms) and promised to post it to Arweave by block ``deadlineHeight``. It is an *attestation by the
bundler*, not proof that the item is on a chain: whoever trusts it trusts that key.

The signed message is ``deep_hash(["Bundlr", version, id, str(deadlineHeight), str(timestamp)])``
(Irys js-sdk ``Utils.verifyReceipt``); the signature is RSA-PSS / SHA-256 / MGF1-SHA-256 (Arweave's
crypto driver), ``public`` the base64url RSA modulus with exponent 65537.

Example::

    >>> verify_receipt({"id": "x"}) is False
    True
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from ._dataitem import b64url_decode
from ._deephash import deep_hash

__all__ = ["RECEIPT_FIELDS", "receipt_message", "verify_receipt"]

RECEIPT_FIELDS = ("id", "timestamp", "version", "public", "signature", "deadlineHeight")


def receipt_message(receipt: Mapping[str, Any]) -> bytes:
    return deep_hash([b"Bundlr", str(receipt["version"]).encode(), str(receipt["id"]).encode(),
                      str(receipt["deadlineHeight"]).encode(), str(receipt["timestamp"]).encode()])


def verify_receipt(receipt: Mapping[str, Any]) -> bool:
    """True when ``receipt`` is complete and its signature verifies with the key named in it."""
    if not all(field in receipt for field in RECEIPT_FIELDS):
        return False
    try:
        modulus = int.from_bytes(b64url_decode(str(receipt["public"])), "big")
        key = rsa.RSAPublicNumbers(65537, modulus).public_key()
        key.verify(b64url_decode(str(receipt["signature"])), receipt_message(receipt),
                   padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO), hashes.SHA256())
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True
