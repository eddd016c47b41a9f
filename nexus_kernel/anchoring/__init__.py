"""Anchoring: an append-only Merkle log of what the home stored, signed tree heads, and the backends
that make those heads public (see :mod:`._protocol`).

The log (:class:`MerkleLog`) keeps every anchorable item (:data:`ITEM_KINDS`) as an RFC 6962 leaf; the
anchor service (:class:`AnchorService`) fills it from the live bus and, every ``anchor_every`` items or
``anchor_interval`` seconds, signs a tree head and anchors it through ``settings.anchor_backend``
(:data:`ANCHORS`; ``ledger`` by default). :func:`verify_item` and :func:`verify_bundle` walk an item's
proof step by step; :func:`export_bundle` writes one JSON file an outsider can check.
"""

from ._encoding import ENCODING_VERSION, ITEM_KINDS, ItemKind, canonical_json, encode_item, item_id, item_ids
from ._heads import SignedTreeHead, check_signature, sign_head, signing_key
from ._kinds import RecordKind, TableKind
from ._ledger import LedgerAnchor
from ._log import LogError, MerkleLog
from ._merkle import MerkleTree, leaf_hash, node_hash
from ._proofs import check_consistency, check_inclusion
from ._bundle import BUNDLE_SCHEMA, dump_bundle, parse_bundle
from ._job import anchor_span
from ._queue import AnchorQueue
from ._service import TOPIC_KINDS, AnchorService
from ._verify import Verdict, build_bundle, verify_bundle, verify_item
from ._protocol import (
    ANCHORS,
    AnchorBackend,
    AnchorDropped,
    AnchorError,
    AnchorFactory,
    AnchorReceipt,
    AnchorRequest,
    AnchorUnavailable,
    VerifyStep,
)
from . import _chain  # noqa: F401  registers the evm and irys backends (lazily: web3 is an extra)

__all__ = [
    "ANCHORS",
    "AnchorQueue",
    "AnchorService",
    "BUNDLE_SCHEMA",
    "TOPIC_KINDS",
    "Verdict",
    "anchor_span",
    "build_bundle",
    "dump_bundle",
    "parse_bundle",
    "verify_bundle",
    "verify_item",
    "AnchorBackend",
    "AnchorDropped",
    "AnchorError",
    "AnchorFactory",
    "AnchorReceipt",
    "AnchorRequest",
    "AnchorUnavailable",
    "ENCODING_VERSION",
    "ITEM_KINDS",
    "ItemKind",
    "LedgerAnchor",
    "LogError",
    "MerkleLog",
    "MerkleTree",
    "RecordKind",
    "SignedTreeHead",
    "TableKind",
    "VerifyStep",
    "canonical_json",
    "check_consistency",
    "check_inclusion",
    "check_signature",
    "encode_item",
    "item_id", "item_ids",
    "leaf_hash",
    "node_hash",
    "sign_head",
    "signing_key",
]
