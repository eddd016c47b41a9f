"""Authentication (JWT HS256/RS256, API keys), the permission matrix cell by cell, scopes, the audit log."""

from __future__ import annotations

import base64
import json
import time

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from nexus_kernel.gateway import ACTIONS, PERMISSIONS, ROLES, KeyStore


def _get(gw, path: str, token: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return httpx.get(gw.url + path, headers=headers)


def _claims(gw, **over):
    now = int(time.time())
    claims = {"sub": "u", "role": "admin", "aud": gw.settings.jwt_audience, "iss": gw.settings.jwt_issuer,
              "iat": now, "nbf": now, "exp": now + 60}
    claims.update(over)
    return {k: v for k, v in claims.items() if v is not None}


def _secret(gw) -> str:
    return gw.settings.jwt_secret.get_secret_value()


def test_valid_hs256_token_accepted(gw):
    assert _get(gw, "/api/streams", jwt.encode(_claims(gw), _secret(gw), algorithm="HS256")).status_code == 200


@pytest.mark.parametrize("case, detail", [
    ("expired", "expired"), ("not_yet", "not yet valid"), ("audience", "audience"), ("issuer", "issuer"),
    ("wrong_key", "signature"), ("alg_none", "algorithm"), ("tampered", "signature"), ("no_exp", "exp"),
    ("garbage", "malformed"), ("bad_role", "role"),
])
def test_bad_tokens_refused_with_401(gw, case, detail):
    secret = _secret(gw)
    now = int(time.time())
    if case == "expired":
        token = jwt.encode(_claims(gw, exp=now - 10), secret, algorithm="HS256")
    elif case == "not_yet":
        token = jwt.encode(_claims(gw, nbf=now + 600), secret, algorithm="HS256")
    elif case == "audience":
        token = jwt.encode(_claims(gw, aud="someone-else"), secret, algorithm="HS256")
    elif case == "issuer":
        token = jwt.encode(_claims(gw, iss="evil"), secret, algorithm="HS256")
    elif case == "wrong_key":
        token = jwt.encode(_claims(gw), "not-the-secret-at-all-but-long-enough", algorithm="HS256")
    elif case == "alg_none":
        token = jwt.encode(_claims(gw), None, algorithm="none")
    elif case == "tampered":  # a viewer token whose payload is edited to say admin
        good = jwt.encode(_claims(gw, role="viewer"), secret, algorithm="HS256")
        head, _, sig = good.split(".")
        body = base64.urlsafe_b64encode(json.dumps(_claims(gw, role="admin")).encode()).rstrip(b"=").decode()
        token = f"{head}.{body}.{sig}"
    elif case == "no_exp":
        token = jwt.encode(_claims(gw, exp=None), secret, algorithm="HS256")
    elif case == "bad_role":
        token = jwt.encode(_claims(gw, role="root"), secret, algorithm="HS256")
    else:
        token = "abc.def"
    r = _get(gw, "/api/streams", token)
    assert r.status_code == 401, (case, r.text)
    assert detail in r.json()["detail"] and r.json()["error"] == "unauthorized"
    assert secret not in r.text


def test_missing_and_wrong_scheme(gw):
    r = _get(gw, "/api/streams", None)
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")
    r = httpx.get(gw.url + "/api/streams", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert r.status_code == 401 and "scheme" in r.json()["detail"]


def test_rs256_tokens_and_algorithm_confusion(serve_with, tmp_path):
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    public = private.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    (tmp_path / "pub.pem").write_bytes(public)
    (tmp_path / "key.pem").write_bytes(pem)
    with serve_with(jwt_public_key=tmp_path / "pub.pem", jwt_private_key=tmp_path / "key.pem") as g:
        token = g.token("viewer")  # minted with RS256 since a private key is configured
        assert jwt.get_unverified_header(token)["alg"] == "RS256"
        assert _get(g, "/api/streams", token).status_code == 200
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        forged = jwt.encode(_claims(g), other, algorithm="RS256")
        assert _get(g, "/api/streams", forged).status_code == 401
        # HS256 "signed" with the public key text: the algorithm-confusion attack
        import hmac, hashlib  # noqa: E401
        head = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').rstrip(b"=")
        body = base64.urlsafe_b64encode(json.dumps(_claims(g)).encode()).rstrip(b"=")
        sig = base64.urlsafe_b64encode(hmac.new(public, head + b"." + body, hashlib.sha256).digest()).rstrip(b"=")
        confused = b".".join((head, body, sig)).decode()
        assert _get(g, "/api/streams", confused).status_code == 401


def test_api_keys_hashed_listed_revoked(gw):
    admin = {"Authorization": f"Bearer {gw.token('admin')}"}
    created = httpx.post(gw.url + "/api/keys", json={"name": "ci", "role": "analyst"}, headers=admin).json()
    key = created["key"]
    assert key.startswith("nxk_") and _get(gw, "/api/streams", key).status_code == 200
    stored = (gw.settings.home / "api_keys.json").read_text()
    assert key.split("_", 2)[2] not in stored  # only the hash is kept
    assert oct((gw.settings.home / "api_keys.json").stat().st_mode & 0o777) == "0o600"
    listed = httpx.get(gw.url + "/api/keys", headers=admin).json()["keys"]
    assert [k["id"] for k in listed] == [created["id"]] and "hash" not in listed[0] and "key" not in listed[0]
    assert httpx.delete(gw.url + f"/api/keys/{created['id']}", headers=admin).status_code == 200
    r = _get(gw, "/api/streams", key)
    assert r.status_code == 401 and "revoked" in r.json()["detail"]
    assert _get(gw, "/api/streams", key[:-2] + "xx").status_code == 401
    assert httpx.delete(gw.url + f"/api/keys/{created['id']}", headers=admin).status_code == 404


def test_key_scope_limits_streams(gw):
    key, _ = KeyStore.for_home(gw.settings.home).create("scoped", "analyst", streams=["pumps"])
    h = {"Authorization": f"Bearer {key}", "Content-Type": "application/x-ndjson"}
    line = b'{"series":"a","ts":"2024-01-01T00:00:00Z","value":1}'
    assert httpx.post(gw.url + "/api/streams/pumps/records", content=line, headers=h).status_code == 200
    r = httpx.post(gw.url + "/api/streams/boilers/records", content=line, headers=h)
    assert r.status_code == 403 and "scoped" in r.json()["detail"]
    r = httpx.post(gw.url + "/api/streams", headers={"Authorization": f"Bearer {key}"},
                   json={"name": "boilers", "source": {"kind": "simulator"}})
    assert r.status_code == 403
    gw.services.store.write(__import__("pandas").DataFrame({  # another stream exists; the key cannot see it
        "stream": ["boilers"], "series": ["x"], "ts": [__import__("pandas").Timestamp("2024-01-01", tz="UTC")],
        "seq": [1], "value": [1.0]}))
    names = httpx.get(gw.url + "/api/streams", headers={"Authorization": f"Bearer {key}"}).json()["streams"]
    assert [s["name"] for s in names] == ["pumps"]


# Every cell of the permission matrix: one representative request per action.
_REQUESTS = {
    "read": ("GET", "/api/streams/pumps/query", None),
    "ingest": ("POST", "/api/streams/pumps/records", b'[{"series":"a","ts":"2024-01-01T00:00:00Z","value":1}]'),
    "control": ("POST", "/api/streams", {"name": "m{n}", "source": {"kind": "simulator"}}),
    "analyze": ("POST", "/api/streams/pumps/detect", {"last": "1h"}),
    "delete": ("DELETE", "/api/streams/gone{n}", None),
    "admin": ("GET", "/api/keys", None),
}
_EXPECTED = {  # the matrix of the issue, written out (not derived from the code under test)
    "viewer": {"read"},
    "analyst": {"read", "ingest", "control", "analyze"},
    "admin": {"read", "ingest", "control", "analyze", "delete", "admin"},
}


def test_matrix_constant_matches_the_issue():
    assert {r: set(PERMISSIONS[r]) for r in ROLES} == _EXPECTED
    assert set(_REQUESTS) == set(ACTIONS)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("action", ACTIONS)
def test_permission_matrix_cell(gw, role, action):
    n = f"{role}{action}"
    # the stream the reads name exists (an unknown stream is a 404, which would hide the permission check)
    gw.services.store.write(__import__("pandas").DataFrame({
        "stream": ["pumps"], "series": ["a"], "ts": [__import__("pandas").Timestamp.now(tz="UTC")], "seq": [1],
        "value": [1.0]}))
    if action == "delete":
        gw.services.manager.create(f"gone{n}", spec={"source": {"kind": "simulator", "params": {}}})
    method, path, body = _REQUESTS[action]
    path = path.format(n=n)
    kwargs = {}
    if isinstance(body, bytes):
        kwargs["content"] = body
    elif body is not None:
        kwargs["json"] = json.loads(json.dumps(body).replace("{n}", n))
    r = httpx.request(method, gw.url + path, headers={"Authorization": f"Bearer {gw.token(role)}"}, **kwargs)
    if action in _EXPECTED[role]:
        assert r.status_code < 300, (role, action, r.text)
    else:
        assert r.status_code == 403, (role, action, r.text)
        assert r.json()["error"] == "forbidden" and action in r.json()["detail"]
        entry = gw.services.audit.tail(1)[0]
        assert (entry["status"], entry["outcome"], entry["action"]) == (403, "refused", action)
        assert entry["principal"] == f"jwt:test-{role}"


def test_audit_logs_writes_and_refusals_without_secrets(gw):
    token = gw.token("analyst")
    httpx.post(gw.url + "/api/streams/pumps/records", content=b'[{"series":"a","ts":"2024-01-01","value":1}]',
               headers={"Authorization": f"Bearer {token}"})
    httpx.get(gw.url + "/api/streams?token=leaky-" + token)
    httpx.get(gw.url + "/api/keys", headers={"Authorization": f"Bearer {token}"})
    entries = [json.loads(line) for line in (gw.settings.home / "audit.jsonl").read_text().splitlines()]
    assert [(e["method"], e["status"], e["outcome"]) for e in entries] == [
        ("POST", 200, "ok"), ("GET", 401, "refused"), ("GET", 403, "refused")]
    text = (gw.settings.home / "audit.jsonl").read_text()
    assert token not in text and "leaky" not in text
    admin = httpx.get(gw.url + "/api/audit", params={"outcome": "refused"},
                      headers={"Authorization": f"Bearer {gw.token('admin')}"}).json()["entries"]
    assert len(admin) == 2
