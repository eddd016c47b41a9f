"""Arweave's deep hash (SHA-384), the message an ANS-104 data item's owner signs.

A blob hashes as ``SHA384(SHA384("blob" + len) + SHA384(bytes))``; a list as a left fold starting from
``SHA384("list" + count)``, each step ``SHA384(acc + deep_hash(item))``; lengths and counts are decimal
ASCII. Byte-for-byte the algorithm of arweave-js ``deepHash.ts`` and Irys ``arbundles``
(``src/deepHash.ts``), whose test vectors ``tests/anchoring/test_ans104.py`` checks.

Example::

    >>> deep_hash(bytes([1, 2, 3])).hex()[:16]
    '41300af79285f856'

References: ANS-104 section 2 (ArweaveTeam/arweave-standards ``ans/ANS-104.md``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Union

__all__ = ["DeepHashChunk", "deep_hash"]

DeepHashChunk = Union[bytes, Sequence["DeepHashChunk"]]


def _sha384(data: bytes) -> bytes:
    return hashlib.sha384(data).digest()


def deep_hash(chunk: DeepHashChunk) -> bytes:
    """The 48-byte deep hash of a blob or a (nested) list of blobs."""
    if isinstance(chunk, (bytes, bytearray, memoryview)):
        data = bytes(chunk)
        return _sha384(_sha384(b"blob" + str(len(data)).encode()) + _sha384(data))
    acc = _sha384(b"list" + str(len(chunk)).encode())
    for item in chunk:
        acc = _sha384(acc + deep_hash(item))
    return acc
