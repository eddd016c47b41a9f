"""The anchor backend conformance suite, run against every member of ``ANCHORS``.

For a backend named ``X`` it uses the fixture ``anchor_env_X`` (see conftest.py); a registered backend
without one fails here rather than going untested.
"""

from __future__ import annotations

import hashlib
import json
import time

import pytest

from nexus_kernel.anchoring import ANCHORS, AnchorReceipt, AnchorRequest

CONFIRM_BOUND = 60.0  # seconds a backend may take to reach final; the ledger is final at once


def _request(n: int) -> AnchorRequest:
    payload = json.dumps({"test": n, "nonce": time.time_ns()}).encode()
    root = hashlib.sha256(b"root %d" % n + payload).digest()
    return AnchorRequest(hashlib.sha256(payload).hexdigest(), root, 10 + n, payload)


@pytest.fixture(params=ANCHORS.names())
def env(request):
    name = request.param
    try:
        return request.getfixturevalue(f"anchor_env_{name}")
    except pytest.FixtureLookupError:
        pytest.fail(f"anchor backend '{name}' is registered but tests/anchoring/conftest.py has no fixture "
                    f"'anchor_env_{name}' to run the conformance suite against it")


def _final(backend, receipt: AnchorReceipt) -> AnchorReceipt:
    deadline = time.monotonic() + CONFIRM_BOUND
    while receipt.status != "final":
        assert time.monotonic() < deadline, f"{backend.name}: not final after {CONFIRM_BOUND} s"
        time.sleep(0.2)
        receipt = backend.confirm(receipt)
    return receipt


def test_submit_confirm_verify(env):
    backend = env.backend
    request = _request(1)
    receipt = backend.submit(request)
    assert receipt.backend == backend.name and receipt.head_id == request.head_id
    assert json.loads(json.dumps(receipt.reference)) == dict(receipt.reference)  # plain JSON
    receipt = _final(backend, receipt)
    steps = backend.verify(request, receipt.reference)
    assert steps and all(s.ok for s in steps), steps


def test_tampered_reference_fails_naming_the_step(env):
    backend = env.backend
    request = _request(2)
    receipt = _final(backend, backend.submit(request))
    for key, value in receipt.reference.items():
        if isinstance(value, str) and len(value) >= 8:
            flipped = value[:-1] + ("0" if value[-1] != "0" else "1")
            steps = backend.verify(request, {**receipt.reference, key: flipped})
            failed = [s for s in steps if not s.ok]
            assert failed and failed[0].step, f"{backend.name}: changing '{key}' went unnoticed: {steps}"


def test_other_root_fails(env):
    backend = env.backend
    request = _request(3)
    receipt = _final(backend, backend.submit(request))
    other = AnchorRequest(request.head_id, hashlib.sha256(b"other").digest(), request.tree_size, request.payload)
    steps = backend.verify(other, receipt.reference)
    assert any(not s.ok for s in steps) and all(s.step for s in steps)
    another = _request(4)
    steps = backend.verify(another, receipt.reference)
    assert any(not s.ok for s in steps)


def test_same_head_twice_is_anchored_once(env):
    backend = env.backend
    request = _request(5)
    first = _final(backend, backend.submit(request))
    second = _final(backend, backend.submit(request))
    assert first.reference == second.reference
