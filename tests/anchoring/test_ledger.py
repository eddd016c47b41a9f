"""The ledger backend on both stores: rewriting, deleting or reordering an entry is detected."""

from __future__ import annotations

import hashlib

import pytest

from nexus_kernel.anchoring import AnchorDropped, AnchorRequest, LedgerAnchor

from .helpers import tamper


def _request(n: int) -> AnchorRequest:
    payload = b"head %d" % n
    return AnchorRequest(hashlib.sha256(payload).hexdigest(), hashlib.sha256(b"root %d" % n).digest(), n + 1, payload)


@pytest.fixture
def filled(any_store):
    ledger = LedgerAnchor(any_store)
    receipts = [ledger.submit(_request(n)) for n in range(4)]
    assert [r.reference["seq"] for r in receipts] == [0, 1, 2, 3]
    return ledger, receipts


def _chain(ledger, receipts, n=1):
    steps = ledger.verify(_request(n), receipts[n].reference)
    return {s.step: s for s in steps}


def test_untouched_ledger_verifies(filled):
    ledger, receipts = filled
    for n in range(4):
        assert all(s.ok for s in _chain(ledger, receipts, n).values())


@pytest.mark.parametrize("statement, words", [
    ("UPDATE ledger SET root = '{root}' WHERE seq = 2", "entry 2 was rewritten"),
    ("DELETE FROM ledger WHERE seq = 2", "entry 2 is missing"),
    ("UPDATE ledger SET seq = 100 WHERE seq = 2; UPDATE ledger SET seq = 2 WHERE seq = 3; "
     "UPDATE ledger SET seq = 3 WHERE seq = 100", "entry 2 does not link"),
], ids=["rewrite", "delete", "reorder"])
def test_tampering_with_any_entry_is_detected(filled, any_store, statement, words):
    ledger, receipts = filled
    tamper(any_store, statement.format(root="ab" * 32))
    chain = _chain(ledger, receipts, 1)["ledger chain"]  # an untouched entry: the chain around it broke
    assert not chain.ok and words in chain.detail


def test_a_vanished_entry_is_dropped_on_confirm(filled, any_store):
    ledger, receipts = filled
    tamper(any_store, "DELETE FROM ledger WHERE seq = 3")
    with pytest.raises(AnchorDropped):
        ledger.confirm(receipts[3])


def test_offline_verify_checks_the_entry_alone(filled):
    _, receipts = filled
    offline = LedgerAnchor(None)
    steps = offline.verify(_request(2), receipts[2].reference)
    assert [s.ok for s in steps] == [True, True] and "not re-read" in steps[1].detail
    bad = offline.verify(_request(2), {**receipts[2].reference, "prev_hash": "00" * 32})
    assert [s.step for s in bad if not s.ok] == ["ledger entry"]
