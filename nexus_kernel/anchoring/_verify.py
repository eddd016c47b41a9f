"""The verifier: walk an item's proof step by step and say which step, if any, fails.

Steps, in order (the walk stops at the first that fails, since later ones would rest on it):

=============  =====================================================================================
``bundle``     the bundle has the documented form (bundles only)
``log``        the log's leaves are whole (live checks: a deleted leaf fails here)
``item``       the item exists (in the store, for a live check); its id is the id of its kind and key,
               and its canonical encoding is the one re-derived from its fields
``leaf``       SHA-256(0x00 || encoding) is the leaf hash the log recorded — a stored value changed after
               it was logged fails here
``tree head``  the signed tree head is a well-formed version-1 payload
``inclusion``  the RFC 9162 audit path leads from the leaf at its index to the head's root, for the head's size
``signature``  the head's Ed25519 signature verifies with its public key (and that key is the trusted one,
               when given)
``consistency`` when the log has grown since: the newest signed head (same key) extends the anchored one
               (RFC 9162 consistency proof), so nothing before it was rewritten
``anchor``     the head was anchored (``final``) through a known backend
then           the backend's own steps (``ledger entry``, ``ledger chain``; a chain's transaction, ...)
=============  =====================================================================================

:func:`verify_item` builds the bundle from the live log and store (so what an outsider gets is what was
checked) and walks it with the backend on the store; :func:`verify_bundle` walks a bundle alone, with the
backend given no store (the ledger then checks its entry offline; chains are re-read from their node).

Example
-------
>>> verdict = verify_bundle(b"{}")
>>> verdict.verified, verdict.failed_step
(False, 'bundle')
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ._bundle import BUNDLE_SCHEMA, parse_bundle
from ._encoding import ITEM_KINDS, encode_item, item_id
from ._heads import SignedTreeHead, check_signature, parse_payload
from ._log import MerkleLog
from ._merkle import leaf_hash
from ._proofs import check_inclusion
from ._protocol import ANCHORS, VerifyStep

__all__ = ["Verdict", "verify_item", "verify_bundle", "build_bundle", "walk", "anchored_head"]


#: The anchor step's problem while the head is queued for its anchor: only pending (``nexus verify`` waits)
NOT_ANCHORED = "this tree head is not anchored yet (its batch is queued)"
#: How the tree-head step's problem ends while no signed head covers the leaf yet: pending too
BATCH_OPEN = "(its batch has not closed)"


@dataclass
class Verdict:
    """The walk's steps; ``verified`` when every step held."""

    item_id: str | None
    steps: list[VerifyStep] = field(default_factory=list)
    bundle: dict[str, Any] | None = None

    @property
    def verified(self) -> bool:
        return bool(self.steps) and all(s.ok for s in self.steps)

    @property
    def failed_step(self) -> str | None:
        return next((s.step for s in self.steps if not s.ok), None)

    def to_json(self, with_bundle: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {"item_id": self.item_id, "verified": self.verified, "failed_step": self.failed_step,
                               "steps": [{"step": s.step, "ok": s.ok, "detail": s.detail} for s in self.steps]}
        if with_bundle:
            out["bundle"] = self.bundle
        return out

    def text(self) -> str:
        lines = [f"{'ok  ' if s.ok else 'FAIL'}  {s.step:<13} {s.detail}" for s in self.steps]
        verdict = "verified" if self.verified else f"NOT verified: step '{self.failed_step}' fails"
        return "\n".join([*lines, f"{self.item_id or 'bundle'}: {verdict}"])


def _hex(value: str, what: str) -> bytes:
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise ValueError(f"{what} is not hex") from None
    return raw


def walk(bundle: Mapping[str, Any], store: Any | None, settings: Any | None,
         trusted_key: str | None = None) -> list[VerifyStep]:
    """The steps of checking ``bundle`` (already parsed); anchor backends get ``store`` (None: offline)."""
    steps: list[VerifyStep] = []

    def step(name: str, problem: str | None, ok_detail: str) -> bool:
        steps.append(VerifyStep(name, problem is None, ok_detail if problem is None else problem))
        return problem is None

    item, leaf, inclusion = bundle["item"], bundle["leaf"], bundle["inclusion"]
    kind, key, body = item["kind"], item["key"], item["body"]
    # item
    problem = None
    try:
        encoding = _hex(bundle["encoding"], "the encoding")
        if kind not in ITEM_KINDS:
            problem = f"unknown item kind '{kind}'"
        elif item_id(kind, key) != item["id"]:
            problem = f"the id {item['id']} is not the id of this {kind}'s key"
        elif any(body.get(k) != v for k, v in key.items()):
            problem = "the item's body does not hold its key"
        elif encode_item(kind, body) != encoding:
            problem = "the item's fields do not encode to the bundled bytes"
    except (ValueError, TypeError) as exc:
        problem = str(exc)
    if not step("item", problem, f"{kind} {_describe(key)}; encoding of {len(bundle['encoding']) // 2} bytes "
                f"re-derived from its fields"):
        return steps
    # leaf
    computed = leaf_hash(encoding).hex()
    if not step("leaf", None if computed == leaf["hash"].lower() else
                f"the item hashes to {computed[:16]}... but the log recorded {leaf['hash'][:16]}... at leaf "
                f"{leaf['index']}: the item was changed after it was logged",
                f"leaf {leaf['index']}: SHA-256(0x00||item) = {computed[:16]}..."):
        return steps
    # tree head
    head = SignedTreeHead(**{k: bundle["tree_head"][k] for k in ("payload", "signature", "public_key")})
    try:
        fields = parse_payload(head.payload)
        problem = None
    except ValueError as exc:
        problem, fields = str(exc), {}
    if not step("tree head", problem, f"size {fields.get('size')}, root {str(fields.get('root'))[:16]}..., "
                f"signed {fields.get('time')}"):
        return steps
    # inclusion
    try:
        path = [_hex(p, "a proof hash") for p in inclusion["path"]]
        problem = check_inclusion(_hex(leaf["hash"], "the leaf hash"), leaf["index"], inclusion["tree_size"], path,
                                  head.root)
    except ValueError as exc:
        problem = str(exc)
    if problem is None and inclusion["tree_size"] != head.tree_size:
        problem = f"the proof is for a tree of {inclusion['tree_size']}, the head is of {head.tree_size}"
    if not step("inclusion", problem, f"{len(inclusion['path'])} hashes lead from leaf {leaf['index']} to the "
                f"root of the tree of {head.tree_size}"):
        return steps
    # signature
    if not step("signature", check_signature(head, trusted_key),
                f"Ed25519 by key {head.public_key[:16]}...{' (the trusted key)' if trusted_key else ''}"):
        return steps
    # consistency (when the log grew past the anchored head: the newer head extends it, nothing rewritten)
    later = bundle.get("consistency")
    if later is not None:
        problem = _check_later(head, later, trusted_key)
        detail = "" if problem else (f"the log's newer head of {parse_payload(later['tree_head']['payload'])['size']} "
                                     f"leaves extends this one ({len(later['path'])} hashes, RFC 9162 §2.1.4.2)")
        if not step("consistency", problem, detail):
            return steps
    # anchor
    anchor = bundle.get("anchor")
    if anchor is None:
        step("anchor", NOT_ANCHORED, "")
        return steps
    name = str(anchor.get("backend"))
    reference = anchor.get("reference")
    if name not in ANCHORS:
        step("anchor", f"unknown anchor backend '{name}' (known: {', '.join(ANCHORS.names())})", "")
        return steps
    if anchor.get("status") != "final" or not isinstance(reference, Mapping):
        step("anchor", f"the anchor is '{anchor.get('status')}', not final", "")
        return steps
    try:
        backend = ANCHORS.get(name)(_settings(settings), store)
    except Exception as exc:  # noqa: BLE001 - any failure to reach the backend is this step's verdict
        step("anchor", f"the {name} backend cannot be opened here ({type(exc).__name__}: {exc})", "")
        return steps
    step("anchor", None, f"head {head.head_id[:16]}... anchored through {name} (final)")
    try:
        steps.extend(backend.verify(head.request(), reference))
    except Exception as exc:  # noqa: BLE001 - a backend that cannot check is a failed check, never a crash
        steps.append(VerifyStep(name, False, f"{type(exc).__name__}: {exc}"))
    finally:
        backend.close()
    return steps


def _check_later(head: SignedTreeHead, later: Mapping[str, Any], trusted_key: str | None) -> str | None:
    """None when ``later`` holds a head signed by the same key whose tree extends ``head``'s."""
    from ._proofs import check_consistency

    try:
        newer = SignedTreeHead(**{k: later["tree_head"][k] for k in ("payload", "signature", "public_key")})
        path = [_hex(p, "a consistency proof hash") for p in later["path"]]
    except (KeyError, TypeError, ValueError) as exc:
        return f"the newer head or its proof is malformed ({exc})"
    if newer.public_key != head.public_key:
        return "the newer head is signed by another key than the anchored one"
    bad = check_signature(newer, trusted_key)
    if bad is not None:
        return f"the newer head's signature: {bad}"
    problem = check_consistency(head.tree_size, newer.tree_size, path, head.root, newer.root)
    return None if problem is None else f"the log's newer head does not extend this one: {problem}"


def _describe(key: Mapping[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in key.items())


def _settings(settings: Any | None) -> Any:
    if settings is not None:
        return settings
    from ..config import load_settings

    return load_settings()


def verify_bundle(data: bytes | str | Mapping[str, Any], settings: Any | None = None,
                  trusted_key: str | None = None, store: Any | None = None) -> Verdict:
    """Walk a bundle (its bytes, text or parsed dict); needs no home (``store=None``: backends offline)."""
    try:
        bundle = parse_bundle(data if isinstance(data, (bytes, str)) else json.dumps(data))
    except ValueError as exc:
        return Verdict(None, [VerifyStep("bundle", False, str(exc))])
    first = VerifyStep("bundle", True, f"{BUNDLE_SCHEMA}")
    return Verdict(bundle["item"]["id"], [first, *walk(bundle, store, settings, trusted_key)], bundle)


def anchored_head(log: MerkleLog, store: Any, index: int) -> tuple[SignedTreeHead | None, dict[str, Any] | None]:
    """The smallest head containing leaf ``index`` that is anchored (final), with its anchor; else the newest
    head containing it and no anchor; ``(None, None)`` when no head contains it yet."""
    heads = [h for h in log.heads() if h.tree_size > index]
    if not heads:
        return None, None
    receipts = store.read("anchor_receipts")
    final = receipts[receipts["status"] == "final"] if len(receipts) else receipts
    by_head = {str(r.head_id): r for r in final.itertuples()}
    for head in heads:
        r = by_head.get(head.head_id)
        if r is not None:
            return head, {"backend": str(r.backend), "status": "final", "reference": json.loads(str(r.reference))}
    return heads[-1], None


def build_bundle(iid: str, store: Any, log: MerkleLog | None = None) -> tuple[dict[str, Any] | None, VerifyStep | None]:
    """The bundle of item ``iid`` as the home holds it now, or the failing step that prevents one."""
    log = log or MerkleLog(store)
    rec = log.locate(iid)
    if rec is None:
        return None, VerifyStep("item", False, f"{iid} is not in the log (an unknown id, or not logged yet)")
    if rec["kind"] not in ITEM_KINDS:
        return None, VerifyStep("item", False, f"unknown item kind '{rec['kind']}'")
    body = ITEM_KINDS.get(rec["kind"]).fetch(store, rec["item_key"])
    if body is None:
        return None, VerifyStep("item", False, f"the {rec['kind']} {_describe(rec['item_key'])} logged at leaf "
                                f"{rec['idx']} is no longer in the store")
    head, anchor = anchored_head(log, store, rec["idx"])
    if head is not None and head.tree_size > log.size:
        return None, VerifyStep("log", False, f"the log holds {log.size} leaves but a signed head covers "
                                f"{head.tree_size}: leaves were deleted")
    if head is None:
        return None, VerifyStep("tree head", False, f"no signed tree head covers leaf {rec['idx']} yet "
                                f"{BATCH_OPEN}")
    bundle: dict[str, Any] = {
        "schema": BUNDLE_SCHEMA,
        "item": {"id": iid, "kind": rec["kind"], "key": rec["item_key"], "body": body},
        "encoding": encode_item(rec["kind"], body).hex(),
        "leaf": {"index": rec["idx"], "hash": rec["leaf_hash"]},
        "inclusion": {"tree_size": head.tree_size,
                      "path": [p.hex() for p in log.inclusion_proof(rec["idx"], head.tree_size)]},
        "tree_head": head.to_json(),
        "anchor": anchor,
    }
    latest = log.latest_head()
    if latest is not None and latest.tree_size > head.tree_size and latest.tree_size <= log.size:
        bundle["consistency"] = {"tree_head": latest.to_json(),
                                 "path": [p.hex() for p in log.consistency_proof(head.tree_size, latest.tree_size)]}
    return bundle, None


def verify_item(iid: str, store: Any, settings: Any | None = None, log: MerkleLog | None = None,
                trusted_key: str | None = None) -> Verdict:
    """Check item ``iid`` against the home's log and store now; ``verdict.bundle`` is what was checked."""
    from ._log import LogError

    try:
        bundle, failure = build_bundle(iid, store, log)
    except LogError as exc:  # leaves deleted from the log: no proof can be built from it
        return Verdict(iid, [VerifyStep("log", False, str(exc))])
    if bundle is None:
        return Verdict(iid, [failure] if failure else [])
    return Verdict(iid, walk(bundle, store, settings, trusted_key), bundle)
