"""The ANS-104 builder byte for byte: arbundles' own test vectors, layout, and refusals of bad items."""

from __future__ import annotations

import hashlib
import struct

import pytest
from eth_account import Account

from nexus_kernel.anchoring.irys import (
    DataItemError,
    TagError,
    b64url,
    build_data_item,
    decode_tags,
    deep_hash,
    encode_tags,
    parse_data_item,
)

from .irys_node import check_item

KEY = "0x" + "42" * 32

# Irys-xyz/arbundles src/__tests__/deepHash.spec.ts
DEEP_HASH_VECTORS = [
    (bytes([1, 2, 3]), "41300af79285f856e833164518c7ec4974f5869ec77ca3458113fe6c587680d050f9f6864fd77f9eb62bd4e2faea9ae8"),
    (b"", "fbf00cc444f5fea9dc3bedf62a13fba8ae87e7445fc910567a23bec4eb82fadb1143c433069314d8362983dc3c2e4a38"),
    ([bytes([1, 2, 3]), bytes([4, 5, 6])],
     "4dacdcc81acd09f38c77a07a2a7ae81f77c61e6b97ee5cc7b92f3a7f258e8d5ba69d14d7d66070797b083873717c9896"),
]

# Irys-xyz/arbundles src/__tests__/tags.spec.ts (rustTags, shortTags, longTags)
TAG_VECTORS = [
    ([("Hello", "Bundlr!"), ("This is a ", "Test")],
     bytes([4, 10, 72, 101, 108, 108, 111, 14, 66, 117, 110, 100, 108, 114, 33, 20, 84, 104, 105, 115, 32, 105, 115,
            32, 97, 32, 8, 84, 101, 115, 116, 0])),
    ([("ThisIsAShortName", "ThisIsAShortValue")],
     bytes([2, 32]) + b"ThisIsAShortName" + bytes([34]) + b"ThisIsAShortValue" + bytes([0])),
    ([("ThisIsALongName" + "A" * 49, "ThisIsALongValue" + "A" * 62)],
     bytes([2, 128, 1]) + b"ThisIsALongName" + b"A" * 49 + bytes([156, 1]) + b"ThisIsALongValue" + b"A" * 62 + bytes([0])),
]


@pytest.mark.parametrize(("chunk", "expected"), DEEP_HASH_VECTORS)
def test_deep_hash_matches_arbundles(chunk: bytes | list[bytes], expected: str) -> None:
    assert deep_hash(chunk).hex() == expected


@pytest.mark.parametrize(("tags", "encoded"), TAG_VECTORS)
def test_tags_match_arbundles(tags: list[tuple[str, str]], encoded: bytes) -> None:
    assert encode_tags(tags) == encoded
    assert decode_tags(encoded) == tags


def test_tags_decode_blocks_with_byte_size_and_refuse_garbage() -> None:
    # an Avro writer may emit a block as (-count, byte size, items): same tags
    body = encode_tags([("a", "b"), ("c", "d")])[1:-1]
    assert decode_tags(bytes([3]) + bytes([len(body) * 2]) + body + b"\x00") == [("a", "b"), ("c", "d")]
    assert encode_tags([]) == b""
    for bad in (b"\x02\x02a", b"\x02\x02a\x02b\x00junk", b"\x02\x40"):
        with pytest.raises(TagError):
            decode_tags(bad)
    with pytest.raises(TagError):
        encode_tags([("", "x")])
    with pytest.raises(TagError):
        encode_tags([("n", "v")] * 129)


def test_item_layout_signature_and_id() -> None:
    tags = [("App-Name", "Nexus-Stream"), ("Content-Type", "application/octet-stream")]
    raw = build_data_item(b"signed tree head", tags, KEY)
    assert struct.unpack_from("<H", raw)[0] == 3
    account = Account.from_key(KEY)
    item = parse_data_item(raw)
    assert item.owner[0] == 4 and len(item.owner) == 65 and len(item.signature) == 65
    assert item.owner_address == account.address == item.signer_address()
    assert item.target == item.anchor == b"" and raw[132] == 0 and raw[133] == 0
    assert struct.unpack_from("<QQ", raw, 134) == (2, len(encode_tags(tags)))
    assert item.tags == tags and item.data == b"signed tree head"
    assert item.id == b64url(hashlib.sha256(item.signature).digest()) and len(item.id) == 43
    # deterministic: the same head makes the same item (uploading twice names one id)
    assert build_data_item(b"signed tree head", tags, KEY) == raw
    # the stand-in node's own, separately written check accepts it and agrees on the id
    assert check_item(raw)["id"] == item.id


def test_item_with_target_and_anchor() -> None:
    raw = build_data_item(b"x", [("a", "b")], KEY, target=b"\x01" * 32, anchor=b"\x02" * 32)
    item = parse_data_item(raw)
    assert (item.target, item.anchor) == (b"\x01" * 32, b"\x02" * 32) and item.signature_valid()
    assert check_item(raw)["id"] == item.id
    with pytest.raises(DataItemError, match="32 bytes"):
        build_data_item(b"x", [], KEY, anchor=b"short")


def test_empty_tags_and_data() -> None:
    item = parse_data_item(build_data_item(b"", [], KEY))
    assert item.tags == [] and item.tags_raw == b"" and item.data == b"" and item.signature_valid()


@pytest.mark.parametrize(("offset", "value", "reason"), [
    (0, 1, "signature type"), (67, 2, "uncompressed"), (132, 9, "presence byte"), (134, 3, "tags"),
])
def test_parse_names_what_is_wrong(offset: int, value: int, reason: str) -> None:
    raw = bytearray(build_data_item(b"data", [("a", "b")], KEY))
    raw[offset] = value
    with pytest.raises(DataItemError, match=reason):
        parse_data_item(bytes(raw))
    with pytest.raises(DataItemError, match="shorter"):
        parse_data_item(bytes(raw[:100]))


def test_tampered_data_breaks_the_signature() -> None:
    raw = bytearray(build_data_item(b"data", [("a", "b")], KEY))
    raw[-1] ^= 1
    assert not parse_data_item(bytes(raw)).signature_valid()
    with pytest.raises(ValueError, match="invalid signature"):
        check_item(bytes(raw))


def test_a_signature_that_recovers_nothing_is_invalid_not_an_error() -> None:
    raw = bytearray(build_data_item(b"data", [("a", "b")], KEY))
    raw[2:34] = bytes(32)  # r = 0: no public key recovers from it
    item = parse_data_item(bytes(raw))
    assert item.signer_address() is None and not item.signature_valid()
