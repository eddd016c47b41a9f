"""Rate limits (in process, and shared through Redis by two real processes), HTTPS, secrets kept out."""

from __future__ import annotations

import datetime as dt
import logging
import os
import subprocess
import sys
import uuid

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from nexus_kernel.client import NexusError, connect
from nexus_kernel.config import load_settings
from nexus_kernel.gateway import mint_token


def test_rate_limit_per_key_with_retry_after(serve_with):
    with serve_with(rate_limit=3, rate_window=30) as g:
        h = {"Authorization": f"Bearer {g.token('viewer')}"}
        codes = [httpx.get(g.url + "/api/streams", headers=h).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        r = httpx.get(g.url + "/api/streams", headers=h)
        assert r.json()["error"] == "rate_limited" and 1 <= int(r.headers["Retry-After"]) <= 30
        other = {"Authorization": f"Bearer {mint_token(g.settings, 'someone-else', 'viewer')}"}
        assert httpx.get(g.url + "/api/streams", headers=other).status_code == 200  # its own budget
        with pytest.raises(NexusError) as exc:
            connect(g.url, token=h["Authorization"][7:], retries=0).streams()
        assert exc.value.status == 429 and exc.value.retry_after >= 1


def test_rate_limit_per_address(serve_with):
    with serve_with(rate_limit_address=2, rate_window=30) as g:
        codes = [httpx.get(g.url + "/api/streams", headers={"Authorization": f"Bearer {g.token(str(i) and 'viewer', ttl=60)}"}).status_code
                 for i in range(3)]
        assert codes == [200, 200, 429]
        assert httpx.get(g.url + "/healthz").status_code == 200  # health is never limited


def _start(env: dict) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "nexus_kernel.gateway"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    assert line.startswith("gateway "), line
    return proc, line.split()[1]


def test_two_processes_share_one_budget_in_redis(tmp_path):
    redis = pytest.importorskip("redis")
    prefix = f"nexus-test-{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.skip("Redis is not running")
    env = {**os.environ, "NEXUS_HOME": str(tmp_path / "home"), "NEXUS_STORE": "memory", "NEXUS_PORT": "0",
           "NEXUS_REDIS_URL": "redis://127.0.0.1:6379/0", "NEXUS_KEY_PREFIX": prefix,
           "NEXUS_JWT_SECRET": "shared-" + uuid.uuid4().hex, "NEXUS_RATE_LIMIT": "5", "NEXUS_RATE_WINDOW": "30"}
    procs = []
    try:
        first, url1 = _start(env)
        procs.append(first)
        second, url2 = _start(env)
        procs.append(second)
        from nexus_kernel.config import load_settings

        token = mint_token(load_settings(home=tmp_path / "home", jwt_secret=env["NEXUS_JWT_SECRET"]), "u", "viewer")
        h = {"Authorization": f"Bearer {token}"}
        codes = [httpx.get((url1, url2)[i % 2] + "/api/streams", headers=h).status_code for i in range(7)]
        assert codes == [200] * 5 + [429, 429]
        assert client.keys(f"{prefix}:ratelimit:*")
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)
        for key in client.scan_iter(f"{prefix}:*"):
            client.delete(key)


def _self_signed(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    import ipaddress

    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .sign(key, hashes.SHA256()))
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                         serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    return tmp_path / "cert.pem", tmp_path / "key.pem"


def test_https_with_self_signed_certificate(serve_with, tmp_path):
    cert, key = _self_signed(tmp_path)
    with serve_with(tls_cert=cert, tls_key=key) as g:
        assert g.url.startswith("https://")
        with pytest.raises(httpx.ConnectError):
            httpx.get(g.url + "/healthz")  # not trusted by default
        client = connect(g.url, token=g.token(), verify=str(cert))
        assert client.health()["status"] == "ok" and client.streams().empty
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            httpx.get(g.url.replace("https", "http") + "/healthz")


def test_secrets_never_in_logs_errors_or_metrics(serve_with, caplog, tmp_path):
    secret = "jwt-secret-" + uuid.uuid4().hex
    with serve_with(jwt_secret=secret, redis_url=None) as g:
        caplog.set_level("DEBUG")
        token = g.token("admin")
        key = httpx.post(g.url + "/api/keys", json={"name": "k", "role": "viewer"},
                         headers={"Authorization": f"Bearer {token}"}).json()["key"]
        texts = []
        for headers, path in [({"Authorization": f"Bearer {token}x"}, "/api/streams"),
                              ({"Authorization": f"Bearer {key}"}, "/api/keys"),
                              ({}, f"/api/streams?token={token}"),
                              ({"Authorization": f"Bearer {key}"}, "/api/streams/pumps/query?every=bad"),
                              ({"Authorization": f"Bearer {token}"}, "/api/audit"),
                              ({"Authorization": f"Bearer {token}"}, "/api/keys")]:
            texts.append(httpx.get(g.url + path, headers=headers).text)
        texts.append(httpx.get(g.url + "/metrics").text)
        # the server's records (the test's own httpx client logs the URLs it was asked to fetch)
        texts += [r.getMessage() for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
        texts.append((g.settings.home / "audit.jsonl").read_text())
        texts.append(repr(connect(g.url, token=token)))
        everything = "\n".join(texts)
        for needle in (secret, token, key, key.split("_", 2)[2]):
            assert needle not in everything


def test_dsn_password_never_in_reprs_errors_logs_or_answers(serve_with, caplog, pg_dsn):
    from nexus_kernel.config import SettingsError, redact

    password = "pw-" + uuid.uuid4().hex  # trust auth ignores it: the store really connects with it
    dsn = pg_dsn.replace("postgresql://postgres@", f"postgresql://postgres:{password}@", 1)
    assert password in dsn
    texts = []
    try:
        load_settings(store=dsn.replace("postgresql://", "mysql://", 1))
    except SettingsError as exc:
        texts.append(str(exc))
    else:
        raise AssertionError("a mysql:// store must be refused")
    caplog.set_level("DEBUG")
    with serve_with(store=dsn, redis_url=None) as g:
        assert g.settings.store == dsn  # the value itself stays usable
        texts += [repr(g.settings), str(g.settings), repr(g.services.store)]
        token = g.token("admin")
        auth = {"Authorization": f"Bearer {token}"}
        texts.append(httpx.post(g.url + "/api/streams/pumps/records", json=[{"series": "a", "ts": "never"}],
                                headers=auth).text)
        for path in ("/readyz", "/healthz", "/metrics", "/api/streams", "/api/streams/pumps/query?every=bad",
                     "/api/audit", "/nope"):
            texts.append(httpx.get(g.url + path, headers=auth).text)
        logging.getLogger("nexus_kernel.gateway").error("store %s failed", dsn)  # what a careless caller logs
        texts += [r.getMessage() for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
        texts.append((g.settings.home / "audit.jsonl").read_text())
    everything = "\n".join(texts)
    assert "postgres:***@" in everything  # the redacted form did show up: the checks above saw the DSN
    assert password not in everything
    assert redact(f"host=db password={password} dbname=x") == "host=db password=*** dbname=x"
