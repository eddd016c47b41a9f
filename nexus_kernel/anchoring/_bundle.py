"""The proof bundle: one JSON file holding an item, its proof and its anchor, for someone outside the system.

Schema ``nexus-proof-bundle/1``::

    {
      "schema": "nexus-proof-bundle/1",
      "item":      {"id": "anomaly:3f2a...", "kind": "anomaly", "key": {...}, "body": {...}},
      "encoding":  "<hex of the item's canonical bytes (nexus_kernel.anchoring._encoding, version 1)>",
      "leaf":      {"index": 41, "hash": "<hex SHA-256(0x00 || encoding)>"},
      "inclusion": {"tree_size": 64, "path": ["<hex>", ...]},          # RFC 9162 audit path, leaf side first
      "tree_head": {"payload": "<the signed canonical JSON text>", "signature": "<hex Ed25519>",
                    "public_key": "<hex raw 32-byte Ed25519 key>"},
      "anchor":    {"backend": "ledger", "status": "final", "reference": {...}} | null,
      "consistency": {"tree_head": {...newest signed head...}, "path": ["<hex>", ...]}   # optional
    }

``reference`` is the anchor backend's own (see each backend: a ledger entry with its chain hash, a
transaction hash and contract address, a data item id and the bundler's receipt). What the verifier
checks, in order: the bundle's form, the item (its id and encoding re-derived from kind, key and body), the
leaf hash, the tree head, the inclusion proof against the head's root, the head's signature, and the
anchor, through the backend named. ``consistency`` (present when the log grew past the anchored head)
proves with an RFC 9162 consistency proof that the newest head, signed by the same key, extends the
anchored one: the log is append-only between the two.

Example
-------
>>> parse_bundle(b'{"schema": "nexus-proof-bundle/2"}')
Traceback (most recent call last):
...
ValueError: not a nexus-proof-bundle/1 file (schema 'nexus-proof-bundle/2')
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["BUNDLE_SCHEMA", "parse_bundle", "dump_bundle"]

BUNDLE_SCHEMA = "nexus-proof-bundle/1"

_SHAPE: dict[str, tuple[type, ...]] = {"item": (dict,), "encoding": (str,), "leaf": (dict,), "inclusion": (dict,),
                                       "tree_head": (dict,), "anchor": (dict, type(None))}


def parse_bundle(data: bytes | str) -> dict[str, Any]:
    """The bundle in ``data``, checked for its form; :class:`ValueError` saying what is wrong otherwise."""
    try:
        bundle = json.loads(data)
    except ValueError as exc:
        raise ValueError(f"the bundle is not JSON ({exc})") from None
    if not isinstance(bundle, dict) or bundle.get("schema") != BUNDLE_SCHEMA:
        got = bundle.get("schema") if isinstance(bundle, dict) else type(bundle).__name__
        raise ValueError(f"not a {BUNDLE_SCHEMA} file (schema {got!r})")
    for name, types in _SHAPE.items():
        if not isinstance(bundle.get(name), types):
            raise ValueError(f"the bundle's '{name}' is missing or of the wrong type")
    checks = [("item", "id", str), ("item", "kind", str), ("item", "key", dict), ("item", "body", dict),
              ("leaf", "index", int), ("leaf", "hash", str), ("inclusion", "tree_size", int),
              ("inclusion", "path", list), ("tree_head", "payload", str), ("tree_head", "signature", str),
              ("tree_head", "public_key", str)]
    for part, name, kind in checks:
        value = bundle[part].get(name)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ValueError(f"the bundle's '{part}.{name}' is missing or not {kind.__name__}")
    later = bundle.get("consistency")
    if later is not None and not (isinstance(later, dict) and isinstance(later.get("tree_head"), dict)
                                  and isinstance(later.get("path"), list)):
        raise ValueError("the bundle's 'consistency' is not {tree_head, path}")
    if not all(isinstance(p, str) for p in bundle["inclusion"]["path"]):
        raise ValueError("the bundle's inclusion path holds something other than hex strings")
    return bundle


def dump_bundle(bundle: dict[str, Any]) -> str:
    """The bundle as indented JSON text (what ``nexus verify --export`` writes)."""
    return json.dumps(bundle, indent=2, sort_keys=False, ensure_ascii=False) + "\n"
