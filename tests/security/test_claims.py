"""Claims of a token are data of a given type: a claim of the wrong type is a 401 naming it, never read
as "no scope" or coerced into something else; an empty scope is no stream, never every stream."""

from __future__ import annotations

import json
import time

import httpx
import jwt
import pytest

from nexus_kernel.gateway import KeyStore, mint_token

LINE = b'{"series":"a","ts":"2024-01-01T00:00:00Z","value":1}'


def _token(gw, **over) -> str:
    now = int(time.time())
    claims = {"sub": "probe", "role": "analyst", "aud": gw.settings.jwt_audience, "iss": gw.settings.jwt_issuer,
              "iat": now, "nbf": now, "exp": now + 60}
    claims.update(over)
    # signed as bytes (JWS): pyjwt's own encode refuses some wrong types, a foreign issuer would not
    return jwt.api_jws.encode(json.dumps(claims).encode(), gw.settings.jwt_secret.get_secret_value(),
                              algorithm="HS256")


def _ingest(gw, token: str, stream: str) -> httpx.Response:
    return httpx.post(f"{gw.url}/api/streams/{stream}/records", content=LINE,
                      headers={"Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson"})


def test_a_string_scope_does_not_open_every_stream(gw):
    """The probe's attack: "streams": "alpha" (a string, not a list) let the token write to any stream."""
    r = _ingest(gw, _token(gw, streams="alpha"), "beta")
    assert r.status_code == 401, r.text
    assert r.json()["error"] == "unauthorized" and "'streams'" in r.json()["detail"]
    assert r.headers["WWW-Authenticate"].startswith("Bearer error=")
    assert _ingest(gw, _token(gw, streams="alpha"), "alpha").status_code == 401  # refused, not narrowed
    assert gw.services.store.streams() == []


@pytest.mark.parametrize("claim, value", [
    ("streams", "alpha"), ("streams", {"alpha": True}), ("streams", [1]), ("streams", ["alpha", None]),
    ("streams", None), ("streams", True),
    ("role", ["admin"]), ("role", {"admin": True}), ("role", 2), ("role", None), ("role", "root"),
    ("sub", 123), ("sub", ""), ("sub", ["probe"]), ("sub", None),
    ("exp", "9999999999"), ("exp", True), ("exp", [9999999999]), ("exp", None),  # pyjwt itself reads "9999999999"
    ("nbf", "0"), ("nbf", None), ("iat", "0"), ("iat", {"t": 0}),
    ("aud", 5), ("aud", [5]), ("aud", {"nexus": 1}), ("iss", 5), ("iss", ["nexus"]), ("jti", 5),
])
def test_a_claim_of_the_wrong_type_is_refused_with_its_name(gw, claim, value):
    token = _token(gw, **{claim: value})
    r = _ingest(gw, token, "alpha")
    assert r.status_code == 401, (claim, value, r.text)
    body = r.json()
    assert body["error"] == "unauthorized" and f"'{claim}'" in body["detail"], body
    assert gw.services.store.streams() == []


def test_claims_of_the_right_type_are_honoured(gw):
    scoped = _token(gw, streams=["alpha"])
    assert _ingest(gw, scoped, "alpha").status_code == 200
    r = _ingest(gw, scoped, "beta")
    assert r.status_code == 403 and "scoped" in r.json()["detail"]
    # an audience list that holds ours, float times, unknown extra claims: all fine
    relaxed = _token(gw, aud=["someone-else", gw.settings.jwt_audience], exp=time.time() + 60.5,
                     nbf=time.time() - 1.5, extra={"anything": [1, 2]})
    assert _ingest(gw, relaxed, "alpha").status_code == 200
    assert _ingest(gw, _token(gw, role="viewer"), "alpha").status_code == 403  # a typed role still limits
    assert gw.services.store.streams() == ["alpha"]


def test_an_empty_scope_is_no_stream(gw):
    r = _ingest(gw, _token(gw, streams=[]), "alpha")
    assert r.status_code == 403 and "scoped" in r.json()["detail"], r.text
    minted = mint_token(gw.settings, "probe", "analyst", streams=[])  # the same when minted here
    assert jwt.decode(minted, options={"verify_signature": False})["streams"] == []
    assert _ingest(gw, minted, "alpha").status_code == 403
    with pytest.raises(TypeError):
        mint_token(gw.settings, "probe", "analyst", streams="alpha")  # type: ignore[arg-type]


def test_an_api_key_cannot_be_made_with_an_empty_scope(gw):
    """An empty list was stored as "no scope": a key for every stream while the admin asked for none."""
    admin = {"Authorization": f"Bearer {gw.token('admin')}"}
    r = httpx.post(f"{gw.url}/api/keys", json={"name": "ci", "role": "analyst", "streams": []}, headers=admin)
    assert r.status_code == 422 and r.json()["field"] == "streams", r.text
    r = httpx.post(f"{gw.url}/api/keys", json={"name": "ci", "role": "analyst", "streams": "alpha"}, headers=admin)
    assert r.status_code == 422 and r.json()["field"] == "streams", r.text
    assert httpx.get(f"{gw.url}/api/keys", headers=admin).json()["keys"] == []


def test_a_stored_key_scope_fails_closed(gw):
    """In the key file, an empty scope is no stream and a scope that is no list of names admits nothing."""
    keys = KeyStore.for_home(gw.settings.home)
    empty, _ = keys.create("none", "analyst", streams=[])
    r = _ingest(gw, empty, "alpha")
    assert r.status_code == 403 and "scoped" in r.json()["detail"], r.text
    edited, entry = keys.create("edited", "analyst", streams=["alpha"])
    assert _ingest(gw, edited, "alpha").status_code == 200
    path = gw.settings.home / "api_keys.json"
    data = json.loads(path.read_text())
    data["keys"][entry["id"]]["streams"] = "alpha"  # a string: its letters must not become a scope
    path.write_text(json.dumps(data))
    for stream in ("alpha", "a", "beta"):
        assert _ingest(gw, edited, stream).status_code == 401
    with pytest.raises(TypeError):
        keys.create("bad", "analyst", streams="alpha")  # type: ignore[arg-type]
    assert gw.services.store.streams() == ["alpha"]
