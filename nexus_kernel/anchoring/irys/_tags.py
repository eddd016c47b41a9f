"""ANS-104 tags in Avro binary: ``array<record Tag {bytes name; bytes value}>``.

Encoding (as arbundles ``serializeTags`` writes it): one block whose count is a zig-zag varint, each tag
as two Avro ``bytes`` (zig-zag varint length + the UTF-8 bytes), then the terminating count 0. No tags
at all encode as *zero bytes* (not ``b"\\x00"``): the data item then says 0 tags and 0 tag bytes.
Decoding also reads what other Avro writers emit: several blocks, and negative block counts followed
by the block's byte size.

Example::

    >>> encode_tags([("Hello", "Bundlr!")]).hex()
    '020a48656c6c6f0e42756e646c722100'
    >>> decode_tags(encode_tags([("a", "b")]))
    [('a', 'b')]

Limits checked (ANS-104 2.1): at most 128 tags; names 1..1024 bytes, values 1..3072 bytes.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["MAX_TAGS", "TagError", "decode_tags", "encode_tags"]

MAX_TAGS, MAX_NAME, MAX_VALUE = 128, 1024, 3072


class TagError(ValueError):
    """Tags that ANS-104 does not allow, or bytes that are not Avro-encoded tags."""


def _zigzag(value: int) -> bytes:
    n = (value << 1) ^ (value >> 63)
    out = bytearray()
    while n & ~0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _bytes(value: bytes) -> bytes:
    return _zigzag(len(value)) + value


def encode_tags(tags: Sequence[tuple[str, str]]) -> bytes:
    """Avro bytes of ``tags`` (name, value) pairs, in order."""
    if not tags:
        return b""
    if len(tags) > MAX_TAGS:
        raise TagError(f"{len(tags)} tags, at most {MAX_TAGS}")
    out = bytearray(_zigzag(len(tags)))
    for name, value in tags:
        raw_name, raw_value = name.encode(), value.encode()
        if not 0 < len(raw_name) <= MAX_NAME or not 0 < len(raw_value) <= MAX_VALUE:
            raise TagError(f"tag {name[:40]!r}: name must be 1..{MAX_NAME} bytes, value 1..{MAX_VALUE} bytes")
        out += _bytes(raw_name) + _bytes(raw_value)
    out += b"\x00"
    return bytes(out)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def long(self) -> int:
        shift = result = 0
        while True:
            if self.pos >= len(self.data):
                raise TagError("tags end inside a varint")
            byte = self.data[self.pos]
            self.pos += 1
            result |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return (result >> 1) ^ -(result & 1)
            if shift > 63:
                raise TagError("varint too long")

    def raw(self) -> bytes:
        size = self.long()
        if size < 0 or self.pos + size > len(self.data):
            raise TagError("tag length out of range")
        value = self.data[self.pos:self.pos + size]
        self.pos += size
        return value


def decode_tags(data: bytes) -> list[tuple[str, str]]:
    """The (name, value) pairs of Avro-encoded ``data``; TagError if it is not exactly that."""
    if not data:
        return []
    reader, tags = _Reader(data), []
    while True:
        count = reader.long()
        if count == 0:
            break
        if count < 0:  # a block with its byte size: the count is negated
            count = -count
            reader.long()
        for _ in range(count):
            try:
                tags.append((reader.raw().decode(), reader.raw().decode()))
            except UnicodeDecodeError as exc:
                raise TagError("tag is not UTF-8") from exc
            if len(tags) > MAX_TAGS:
                raise TagError(f"more than {MAX_TAGS} tags")
    if reader.pos != len(data):
        raise TagError(f"{len(data) - reader.pos} bytes after the tags")
    return tags
