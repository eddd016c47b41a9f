"""Broken proofs, table-driven, the way transparency logs test theirs: each is refused, naming the step.

The bundle cases start from a real bundle (items logged by the anchor service, the head signed and
anchored in the ledger) and change one thing; the raw cases feed RFC 9162's verification algorithms
proofs made by the tree and then damaged.
"""

from __future__ import annotations

import copy
import json
from hashlib import sha256

import pandas as pd
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from nexus_kernel.anchoring import (AnchorService, MerkleTree, check_consistency, check_inclusion, leaf_hash,
                                    node_hash, verify_bundle, verify_item)
from nexus_kernel.anchoring._encoding import canonical_json
from nexus_kernel.storage import DuckDBStore

N_ITEMS, TARGET = 13, 5


def _anomalies(n: int) -> pd.DataFrame:
    return pd.DataFrame({"stream": ["pumps"] * n, "series": [f"p{i}" for i in range(n)], "field": ["value"] * n,
                         "ts": pd.date_range("2024-01-01", periods=n, freq="s", tz="UTC"), "detector": ["zscore"] * n,
                         "score": [float(i) + 0.25 for i in range(n)], "is_anomaly": [True] * n,
                         "reason": ["spike"] * n})


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    from nexus_kernel.config import load_settings

    settings = load_settings(home=tmp_path_factory.mktemp("home"))
    store = DuckDBStore(":memory:")
    frame = _anomalies(N_ITEMS)
    store.append("anomalies", frame)
    service = AnchorService(settings, store)
    assert service.ingest("anomalies", frame) == N_ITEMS
    head = service.close_batch()
    assert head is not None and head.tree_size == N_ITEMS and service.queue.pending("ledger") == []
    iids = [r for r in store.read("log_leaves").sort_values("idx")["item_id"]]
    verdict = verify_item(iids[TARGET], store, settings)
    assert verdict.verified, verdict.text()
    yield settings, store, verdict.bundle, iids
    store.close()


def _flip(hex_text: str, bit: int = 0) -> str:
    raw = bytearray(bytes.fromhex(hex_text))
    raw[bit // 8] ^= 1 << (bit % 8)
    return raw.hex()


def _resign(bundle, key, **fields):
    payload = json.loads(bundle["tree_head"]["payload"])
    payload.update(fields)
    text = canonical_json(payload)
    bundle["tree_head"]["payload"] = text.decode()
    bundle["tree_head"]["signature"] = key.sign(text).hex()


def _other_item(bundle, iids, store):
    other = verify_item(iids[TARGET + 2], store).bundle
    for part in ("item", "encoding"):
        bundle[part] = other[part]
    bundle["leaf"]["hash"] = other["leaf"]["hash"]


def _head_by_other_key(bundle):
    other = Ed25519PrivateKey.generate()
    bundle["tree_head"]["signature"] = other.sign(bundle["tree_head"]["payload"].encode()).hex()


def _head_and_key_swapped(bundle):
    from nexus_kernel.anchoring._heads import public_key_hex

    other = Ed25519PrivateKey.generate()
    public = public_key_hex(other)
    bundle["tree_head"]["public_key"] = public
    _resign(bundle, other, log=sha256(bytes.fromhex(public)).hexdigest())


def _path(bundle):
    return bundle["inclusion"]["path"]


CASES = {
    # name: (mutation(bundle, iids, store), failing step)
    "item value changed": (lambda b, i, s: b["item"]["body"].update(score=99.0), "item"),
    "encoding changed": (lambda b, i, s: b.update(encoding=b["encoding"][:-2] + "20"), "item"),
    "item id of another item": (lambda b, i, s: b["item"].update(id=i[0]), "item"),
    "wrong leaf hash": (lambda b, i, s: b["leaf"].update(hash=leaf_hash(b"other").hex()), "leaf"),
    "wrong leaf (another item, its own hash)": (_other_item, "inclusion"),
    "index + 1": (lambda b, i, s: b["leaf"].update(index=b["leaf"]["index"] + 1), "inclusion"),
    "index - 1": (lambda b, i, s: b["leaf"].update(index=b["leaf"]["index"] - 1), "inclusion"),
    "tree size doubled": (lambda b, i, s: b["inclusion"].update(tree_size=b["inclusion"]["tree_size"] * 2),
                          "inclusion"),
    "tree size halved": (lambda b, i, s: b["inclusion"].update(tree_size=b["inclusion"]["tree_size"] // 2),
                         "inclusion"),
    **{f"bit flipped in proof hash {k}": ((lambda k: lambda b, i, s: _path(b).__setitem__(k, _flip(_path(b)[k], 8 * k + 3)))(k),
                                          "inclusion") for k in range(4)},
    "hash inserted first": (lambda b, i, s: _path(b).insert(0, "00" * 32), "inclusion"),
    "hash inserted in the middle": (lambda b, i, s: _path(b).insert(2, _path(b)[1]), "inclusion"),
    "hash appended": (lambda b, i, s: _path(b).append(_path(b)[0]), "inclusion"),
    "first hash removed": (lambda b, i, s: _path(b).pop(0), "inclusion"),
    "last hash removed": (lambda b, i, s: _path(b).pop(), "inclusion"),
    "garbage appended to a proof hash": (lambda b, i, s: _path(b).__setitem__(1, _path(b)[1] + "00"), "inclusion"),
    "proof hash not hex": (lambda b, i, s: _path(b).__setitem__(1, "zz" * 32), "inclusion"),
    "wrong root": (lambda b, i, s: b["tree_head"].update(payload=b["tree_head"]["payload"].replace(
        json.loads(b["tree_head"]["payload"])["root"], "ab" * 32)), "inclusion"),
    "head signed by another key": (lambda b, i, s: _head_by_other_key(b), "signature"),
    # a forger's own key signs an equal head and is bundled with it: the signature holds (pin the key to
    # refuse it there, see below), but the anchor names the real head
    "head and key swapped for another's": (lambda b, i, s: _head_and_key_swapped(b), "ledger entry"),
    "head size changed": (lambda b, i, s: b["tree_head"].update(payload=b["tree_head"]["payload"].replace(
        f'"size":{N_ITEMS}', f'"size":{N_ITEMS + 1}')), "inclusion"),
    "head payload not canonical": (lambda b, i, s: b["tree_head"].update(
        payload=b["tree_head"]["payload"].replace(",", ", ")), "tree head"),
    "signature garbled": (lambda b, i, s: b["tree_head"].update(signature=_flip(b["tree_head"]["signature"])),
                          "signature"),
    "not anchored": (lambda b, i, s: b.update(anchor=None), "anchor"),
    "unknown anchor backend": (lambda b, i, s: b["anchor"].update(backend="nowhere"), "anchor"),
    "anchor only pending": (lambda b, i, s: b["anchor"].update(status="pending"), "anchor"),
    "ledger entry of another head": (lambda b, i, s: b["anchor"]["reference"].update(head_id="cd" * 32),
                                     "ledger entry"),
    "ledger entry hash changed": (lambda b, i, s: b["anchor"]["reference"].update(
        entry_hash=_flip(b["anchor"]["reference"]["entry_hash"])), "ledger entry"),
    "schema of another version": (lambda b, i, s: b.update(schema="nexus-proof-bundle/2"), "bundle"),
    "leaf index missing": (lambda b, i, s: b["leaf"].pop("index"), "bundle"),
}


def test_the_untouched_bundle_verifies_offline(home):
    settings, _, bundle, _ = home
    verdict = verify_bundle(json.dumps(bundle), settings)
    assert verdict.verified, verdict.text()
    assert [s.step for s in verdict.steps] == ["bundle", "item", "leaf", "tree head", "inclusion", "signature",
                                               "anchor", "ledger entry", "ledger chain"]


@pytest.mark.parametrize("case", list(CASES))
def test_broken_bundle_is_refused_naming_the_step(home, case):
    settings, store, bundle, iids = home
    mutate, step = CASES[case]
    broken = copy.deepcopy(bundle)
    mutate(broken, iids, store)
    assert broken != bundle
    verdict = verify_bundle(json.dumps(broken), settings)
    assert not verdict.verified and verdict.failed_step == step, verdict.text()


def test_garbage_after_the_bundle_is_refused(home):
    settings, _, bundle, _ = home
    verdict = verify_bundle(json.dumps(bundle) + "}garbage", settings)
    assert verdict.failed_step == "bundle" and "not JSON" in verdict.steps[0].detail


def test_a_pinned_key_refuses_every_other(home):
    settings, _, bundle, _ = home
    assert verify_bundle(json.dumps(bundle), settings, trusted_key=bundle["tree_head"]["public_key"]).verified
    verdict = verify_bundle(json.dumps(bundle), settings, trusted_key="11" * 32)
    assert verdict.failed_step == "signature" and "not the trusted key" in verdict.steps[-1].detail


# -- the RFC 9162 algorithms on their own ------------------------------------------------------------


def _mth(data: list[bytes]) -> bytes:
    """RFC 6962's recursive definition, written out naively: the reference the tree is checked against."""
    if not data:
        return sha256(b"").digest()
    if len(data) == 1:
        return leaf_hash(data[0])
    k = 1
    while k * 2 < len(data):
        k *= 2
    return node_hash(_mth(data[:k]), _mth(data[k:]))


DATA = [b"leaf %d" % i for i in range(40)]


@pytest.fixture(scope="module")
def tree():
    t = MerkleTree()
    t.extend(DATA)
    return t


def test_roots_match_the_rfc_definition(tree):
    for n in range(len(DATA) + 1):
        assert tree.root(n) == _mth(DATA[:n]), n


def test_every_inclusion_and_consistency_proof_verifies(tree):
    for n in range(1, len(DATA) + 1):
        for m in range(n):
            assert check_inclusion(leaf_hash(DATA[m]), m, n, tree.inclusion_proof(m, n), tree.root(n)) is None
        for m in range(n + 1):
            assert check_consistency(m, n, tree.consistency_proof(m, n), tree.root(m), tree.root(n)) is None


SIZES = [(3, 7), (4, 8), (5, 13), (1, 2), (6, 40), (16, 33)]


def _consistency_cases():
    cases = []
    for m, n in SIZES:
        cases += [(m, n, "bit flipped", lambda p: [bytes([p[0][0] ^ 1]) + p[0][1:], *p[1:]], lambda m, n: (m, n)),
                  (m, n, "hash removed", lambda p: p[:-1], lambda m, n: (m, n)),
                  (m, n, "hash inserted", lambda p: [*p, p[0]], lambda m, n: (m, n)),
                  (m, n, "garbage appended", lambda p: [*p[:-1], p[-1] + b"\x00"], lambda m, n: (m, n)),
                  (m, n, "first size + 1", lambda p: p, lambda m, n: (m + 1, n)),
                  (m, n, "second size doubled", lambda p: p, lambda m, n: (m, 2 * n))]
    return cases


@pytest.mark.parametrize("m, n, what, damage, sizes", _consistency_cases(),
                         ids=lambda v: v if isinstance(v, (int, str)) else "")
def test_broken_consistency_proofs_are_refused(tree, m, n, what, damage, sizes):
    proof = damage(tree.consistency_proof(m, n))
    first, second = sizes(m, n)
    assert check_consistency(first, second, proof, tree.root(m), tree.root(n)) is not None


@pytest.mark.parametrize("m, n", SIZES)
def test_consistency_with_a_wrong_root_is_refused(tree, m, n):
    proof = tree.consistency_proof(m, n)
    assert check_consistency(m, n, proof, tree.root(m - 1), tree.root(n)) is not None
    assert check_consistency(m, n, proof, tree.root(m), tree.root(n - 1)) is not None


@pytest.mark.parametrize("index, size", [(0, 1), (0, 2), (5, 13), (12, 13), (31, 32), (32, 40)])
def test_broken_inclusion_proofs_are_refused(tree, index, size):
    leaf, path, root = leaf_hash(DATA[index]), tree.inclusion_proof(index, size), tree.root(size)
    assert check_inclusion(leaf, index, size, path, root) is None
    bad = [("wrong leaf", (leaf_hash(b"x"), index, size, path, root)),
           ("index + 1", (leaf, index + 1, size, path, root)),
           ("size doubled", (leaf, index, 2 * size, path, root)),
           ("size halved", (leaf, index, size // 2, path, root)),
           ("hash inserted", (leaf, index, size, [*path, root], root)),
           ("garbage appended", (leaf, index, size, [*path[:-1], path[-1] + b"\x00"] if path else [b"\x00"], root)),
           ("wrong root", (leaf, index, size, path, leaf_hash(b"root")))]
    if index:
        bad.append(("index - 1", (leaf, index - 1, size, path, root)))
    if path:
        bad.append(("hash removed", (leaf, index, size, path[:-1], root)))
        bad += [(f"bit flipped in hash {k}", (leaf, index, size, [*path[:k], bytes([path[k][0] ^ 0x80]) + path[k][1:],
                                                                  *path[k + 1:]], root)) for k in range(len(path))]
    for what, args in bad:
        assert check_inclusion(*args) is not None, what


# -- a log that grew past the anchored head: the bundle proves the newer head extends it ------------------


@pytest.fixture(scope="module")
def grown(tmp_path_factory):
    from nexus_kernel.config import load_settings

    settings = load_settings(home=tmp_path_factory.mktemp("grown"))
    store = DuckDBStore(":memory:")
    frame = _anomalies(9)
    store.append("anomalies", frame)
    service = AnchorService(settings, store)
    service.ingest("anomalies", frame.iloc[:5])
    service.close_batch()
    service.ingest("anomalies", frame.iloc[5:])
    service.close_batch()
    first = store.read("log_leaves").sort_values("idx")["item_id"].iloc[2]
    verdict = verify_item(first, store, settings)
    assert verdict.verified, verdict.text()
    yield settings, verdict
    store.close()


def test_a_grown_log_proves_it_extends_the_anchored_head(grown):
    settings, verdict = grown
    assert verdict.bundle["inclusion"]["tree_size"] == 5 and "consistency" in verdict.bundle
    assert "consistency" in [s.step for s in verdict.steps]
    assert verify_bundle(json.dumps(verdict.bundle), settings).verified


def _later_by_other_key(bundle):
    key = Ed25519PrivateKey.generate()
    bundle["consistency"]["tree_head"]["signature"] = key.sign(bundle["consistency"]["tree_head"]["payload"].encode()).hex()


GROWN_CASES = {
    "a bit flipped in the consistency proof": lambda b: b["consistency"]["path"].__setitem__(
        0, _flip(b["consistency"]["path"][0], 5)),
    "a consistency hash removed": lambda b: b["consistency"]["path"].pop(),
    "newer head signed by another key": _later_by_other_key,
    "newer head of another root": lambda b: b["consistency"]["tree_head"].update(
        payload=b["consistency"]["tree_head"]["payload"].replace(
            json.loads(b["consistency"]["tree_head"]["payload"])["root"], "cd" * 32)),
}


@pytest.mark.parametrize("case", list(GROWN_CASES))
def test_a_broken_consistency_part_is_refused(grown, case):
    settings, verdict = grown
    broken = copy.deepcopy(verdict.bundle)
    GROWN_CASES[case](broken)
    result = verify_bundle(json.dumps(broken), settings)
    assert result.failed_step == "consistency", result.text()


@pytest.mark.parametrize("chunks", [[1] * 40, [3, 5, 7, 25], [16, 16, 8], [39, 1]])
def test_appending_in_any_chunks_builds_the_same_tree(tree, chunks):
    grown, at = MerkleTree(), 0
    for size in chunks:
        grown.extend(DATA[at:at + size])
        at += size
        assert grown.root() == _mth(DATA[:at])
    assert grown.levels == tree.levels


def test_a_leaf_hash_of_the_wrong_length_is_refused_and_changes_nothing():
    t = MerkleTree()
    t.extend([b"a"])
    with pytest.raises(ValueError):
        t.extend_hashes([bytes(32), bytes(31)])
    assert t.size == 1
