"""The canonical byte encoding of an anchorable item, and the registry of item kinds.

Every item the log holds (a stored record, an anomaly, a dead letter, a model version; alerts once they
exist) is turned into bytes the same way, on every machine, by :func:`encode_item`. These bytes are what
the Merkle leaf hashes (``SHA-256(0x00 || bytes)``, RFC 6962), what a proof bundle carries, and what a
verifier re-derives from the item's fields.

Encoding, version 1 (``ENCODING_VERSION``)
------------------------------------------
::

    b"nexus-item/1 " + kind (ASCII) + b"\\n" + canonical JSON of the item's body (UTF-8)

Canonical JSON here is: objects with keys sorted by code point, no whitespace (``","`` and ``":"``),
strings as UTF-8 (no ``\\u`` escapes but for control characters), integers in decimal, floats as the
shortest decimal that round-trips to the same IEEE-754 double (Python's ``repr``; ``1.0`` stays ``1.0``),
NaN and missing values as ``null``, times as ``"YYYY-MM-DDTHH:MM:SS.ffffffZ"`` in UTC to the microsecond
(rounded, as DuckDB stores a nanosecond time), booleans as ``true``/``false``.

An item's *id* depends only on its kind and key, never its content, so it stays the same when the content
is tampered with (and the verifier can say so): ``<kind>:<first 24 hex digits of SHA-256(kind "\\n" canonical
JSON of the key)>``.

Kinds are members of :data:`ITEM_KINDS`, a :class:`~nexus_kernel._registry.Registry`; a new kind registers
an :class:`ItemKind` (see :mod:`._kinds` for the built-ins).

Caveats
-------
* The float format is Python's; a verifier in another language must print doubles as the shortest
  round-trip decimal with Python's exponent rules (``1e+16``, ``1e-05``) — or just compare the leaf hash of
  the bundle's hex encoding, which needs no JSON at all.
* Sub-microsecond times: DuckDB rounds them, PostgreSQL (through Python datetimes) truncates; an item with
  such a time stored in PostgreSQL can fail the ``leaf`` step although it was not changed. Sources that
  stamp to the microsecond or coarser are not affected.
* A new field in a kind's body is a new encoding version of that kind; old leaves keep their version
  (the prefix says which).

Example
-------
>>> encode_item("demo", {"b": 1.5, "a": "x"})
b'nexus-item/1 demo\\n{"a":"x","b":1.5}'
>>> item_id("anomaly", {"stream": "s"})[:8]
'anomaly:'

References: RFC 6962 §2.1 (leaf hashing); RFC 8785 (JSON canonicalization, whose sorting and string rules
this follows).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np
import pandas as pd

from .._registry import Registry

__all__ = ["ENCODING_VERSION", "ITEM_KINDS", "ItemKind", "canonical_json", "encode_item", "item_id", "item_ids",
           "normalize", "iso_time", "decode_item"]

ENCODING_VERSION = 1
_PREFIX = b"nexus-item/%d " % ENCODING_VERSION


def iso_time(value: Any) -> str:
    """A UTC time to the microsecond as ``YYYY-MM-DDTHH:MM:SS.ffffffZ``, rounded as DuckDB stores it."""
    stamp = pd.Timestamp(value)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.round("us").strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def normalize(value: Any) -> Any:
    """``value`` as plain JSON types (str, int, float, bool, None, list, dict); times as :func:`iso_time`."""
    kind = type(value)  # the plain types first, by exact type: most of what an item holds, checked cheaply
    if kind is str or kind is int or kind is bool:
        return value
    if kind is float:
        return None if value != value else value
    if kind is dict:
        return {k if type(k) is str else str(k): normalize(v) for k, v in value.items()}
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else float(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, (pd.Timestamp, datetime, np.datetime64)):
        return iso_time(value)
    if isinstance(value, Mapping):
        return {str(k): normalize(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [normalize(v) for v in value]
    raise TypeError(f"cannot encode a {type(value).__name__} in an anchored item")


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def canonical_json(value: Any) -> bytes:
    """The canonical JSON bytes of ``value`` (see the module docstring); infinities are refused."""
    return _CANONICAL.encode(normalize(value)).encode("utf-8")


def encode_item(kind: str, body: Mapping[str, Any]) -> bytes:
    """The version-1 encoding of an item of ``kind`` with ``body``."""
    if not kind.isascii() or not kind or any(c in kind for c in " \n"):
        raise ValueError(f"an item kind is a non-empty ASCII word, not {kind!r}")
    return _PREFIX + kind.encode("ascii") + b"\n" + canonical_json(body)


def decode_item(data: bytes) -> tuple[str, dict[str, Any]]:
    """``(kind, body)`` of an encoding; :class:`ValueError` when it is not a version-1 encoding."""
    if not data.startswith(_PREFIX) or b"\n" not in data:
        raise ValueError(f"not a nexus-item/{ENCODING_VERSION} encoding")
    head, _, rest = data[len(_PREFIX):].partition(b"\n")
    body = json.loads(rest.decode("utf-8"))
    if not isinstance(body, dict):
        raise ValueError("an item's body is a JSON object")
    return head.decode("ascii"), body


def item_id(kind: str, key: Mapping[str, Any]) -> str:
    """The stable id of the item of ``kind`` with ``key`` (independent of its content)."""
    return id_of_key_json(kind, canonical_json(key))


def id_of_key_json(kind: str, key_json: bytes) -> str:
    """:func:`item_id` from the key's canonical JSON (for a caller that keeps that JSON too)."""
    digest = hashlib.sha256(kind.encode("ascii") + b"\n" + key_json).hexdigest()
    return f"{kind}:{digest[:24]}"


def item_ids(kind: str, frame: Any) -> list[str]:
    """The item id of each row of ``frame`` (a store read of ``kind``'s table), in order.

    >>> import pandas as pd
    >>> rows = pd.DataFrame({"name": ["m"], "version": [1], "metrics": ["{}"]})
    >>> item_ids("model", rows) == [item_id("model", {"name": "m", "version": 1})]
    True
    """
    return [item_id(kind, key) for key, _ in ITEM_KINDS.get(kind).items(frame)]


@runtime_checkable
class ItemKind(Protocol):
    """One kind of anchorable item: which fields key it, how to list items from a frame, how to re-read one.

    ``items`` turns a frame (a bus message or a store read) into ``(key, body)`` pairs; ``fetch`` reads
    the item with ``key`` back from a store as it is now (None when it is gone) — the verifier compares
    its encoding with the leaf the log recorded.
    """

    name: ClassVar[str]
    key_fields: ClassVar[tuple[str, ...]]

    def items(self, frame: pd.DataFrame) -> list[tuple[dict[str, Any], dict[str, Any]]]: ...

    def fetch(self, store: Any, key: Mapping[str, Any]) -> dict[str, Any] | None: ...


ITEM_KINDS: Registry[ItemKind] = Registry("item_kinds", group="nexus_kernel.anchor_items")
