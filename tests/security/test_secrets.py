"""Secrets at rest and in answers: specs hold references, never secrets; the registry is owner-only;
status rows and API answers never show a secret.

Finding reproduced: ``streams.json`` was world-readable (0644) and held a Redis source's password in
clear.
"""

from __future__ import annotations

import json
import socket
import stat
import time
from typing import Any

import httpx
import pytest
import redis

from nexus_kernel.client import connect
from nexus_kernel.config import load_settings
from nexus_kernel.engine import Pipeline, SpecError, StreamManager, sources

REDIS_PASSWORD = "pw-never-shown-7f3a"
REDIS_URL = f"redis://:{REDIS_PASSWORD}@127.0.0.1:6379/0"  # the local Redis has no password: AUTH is a no-op


def _headers(gw: Any, role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {gw.token(role)}"}


def _create(gw: Any, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{gw.url}/api/streams", json=body, headers=_headers(gw, "analyst"), timeout=30)


def _answers(gw: Any, name: str) -> str:
    """Everything a viewer can read about stream ``name``."""
    return "".join(httpx.get(f"{gw.url}{path}", headers=_headers(gw, "viewer"), timeout=10).text
                   for path in ("/api/streams", f"/api/streams/{name}", f"/api/streams/{name}/status"))


def _mode(path: Any) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- at rest ---------------------------------------------------------------------------------------

def test_the_stream_registry_is_owner_only_even_over_an_older_world_readable_one(settings):
    settings.home.mkdir(parents=True)
    registry, tmp = settings.registry_path, settings.registry_path.with_suffix(".tmp")
    registry.write_text(json.dumps({"version": 1, "streams": {}}))
    tmp.write_text("left by an older version")
    registry.chmod(0o644)
    tmp.chmod(0o644)
    manager = StreamManager(settings)
    manager.create("plant", spec={"source": {"kind": "simulator", "params": {}}})
    assert _mode(registry) == 0o600
    assert not tmp.exists()  # renamed over the registry: it was the owner-only file just written
    manager.delete("plant")
    assert _mode(registry) == 0o600


def test_over_rest_the_registry_is_owner_only(gw):
    r = _create(gw, {"name": "plant", "source": {"kind": "simulator", "params": {"limit": 1}}})
    assert r.status_code == 201
    assert _mode(gw.settings.registry_path) == 0o600


# -- in specs: references only ---------------------------------------------------------------------

@pytest.mark.parametrize("source, field", [
    ({"kind": "redis", "params": {"url": REDIS_URL}}, "source.params.url"),
    ({"kind": "websocket", "params": {"url": f"ws://feeder:{REDIS_PASSWORD}@127.0.0.1:1/"}}, "source.params.url"),
    ({"kind": "websocket", "params": {"url": "ws://127.0.0.1:1/", "subscribe": {"op": "login",
                                                                               "api_key": REDIS_PASSWORD}}},
     "source.params.subscribe.api_key"),
    ({"kind": "simulator", "params": {"password": REDIS_PASSWORD}}, "source.params.password"),
])
def test_a_secret_in_clear_is_refused_with_a_pointer_to_references(gw, source, field):
    r = _create(gw, {"name": "clear", "source": source})
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["field"] == field and '{"secret": "NAME"}' in body["detail"]
    assert REDIS_PASSWORD not in r.text
    registry = gw.settings.registry_path
    assert not registry.exists() or REDIS_PASSWORD not in registry.read_text()


def test_a_step_param_in_clear_is_refused_too(settings):
    spec = {"source": {"kind": "simulator"}, "steps": [{"kind": "publish", "params": {"token": "abc123"}}]}
    with pytest.raises(SpecError, match="steps.0.params.token looks like a credential") as exc:
        Pipeline.from_spec(spec, settings)
    assert exc.value.field == "steps.0.params.token"


def test_an_unset_secret_names_the_setting_to_set(gw):
    r = _create(gw, {"name": "feed", "source": {"kind": "redis", "params": {"url": {"secret": "feed_url"}}}})
    assert r.status_code == 422 and r.json()["field"] == "source.params.url"
    assert "secret 'feed_url' is not set" in r.json()["detail"] and "NEXUS_SECRET_FEED_URL" in r.json()["detail"]
    r = _create(gw, {"name": "feed", "source": {"kind": "redis", "params": {"url": {"secret": "../x"}}}})
    assert r.status_code == 422 and "letters, digits and '_'" in r.json()["detail"]


def test_a_secret_reference_runs_a_real_redis_source_and_is_never_stored_or_shown(serve_with, redis_key):
    client = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    for i in range(30):
        client.xadd(redis_key, {"series": "a", "ts": f"2024-01-01T00:00:{i:02d}Z", "value": str(i)})
    client.close()
    with serve_with(secrets={"FEED_URL": REDIS_URL}) as gw:
        spec_source = {"kind": "redis", "params": {"url": {"secret": "FEED_URL"}, "key": redis_key,
                                                   "group": "g", "consumer": "c1", "block_ms": 50}}
        r = _create(gw, {"name": "feed", "start": True, "source": spec_source,
                         "steps": [{"kind": "validate", "params": {}}, {"kind": "store", "params": {}}]})
        assert r.status_code == 201, r.text
        deadline = time.monotonic() + 30
        got = connect(gw.url, token=gw.token("viewer")).query("feed")
        while len(got) < 30 and time.monotonic() < deadline:
            time.sleep(0.1)
            got = connect(gw.url, token=gw.token("viewer")).query("feed")
        assert sorted(got["value"]) == [float(i) for i in range(30)]  # resolved: the source connected
        saved = gw.settings.registry_path.read_text()
        assert REDIS_PASSWORD not in saved and '"secret": "FEED_URL"' in saved
        assert _mode(gw.settings.registry_path) == 0o600
        assert REDIS_PASSWORD not in _answers(gw, "feed") + r.text
        pipe = gw.services.manager.pipelines["feed"]
        assert pipe.spec()["source"]["params"]["url"] == {"secret": "FEED_URL"}  # what a save would write
        httpx.post(f"{gw.url}/api/streams/feed/stop", headers=_headers(gw, "analyst"), timeout=30)


def test_a_secret_in_an_error_is_scrubbed_from_every_answer(serve_with):
    # a feed URL whose query holds a token: no URL password, so only the resolved value can be scrubbed
    url = f"ws://127.0.0.1:{_closed_port()}/feed?key=tok-never-shown-91c2"
    with serve_with(secrets={"FEED": url}) as gw:
        r = _create(gw, {"name": "ws", "start": True,
                         "source": {"kind": "websocket", "params": {"url": {"secret": "FEED"}, "max_retries": 0,
                                                                    "initial_backoff": 0.01, "max_backoff": 0.01}}})
        assert r.status_code == 201, r.text
        deadline = time.monotonic() + 30
        row = r.json()
        while row["state"] != "failed" and time.monotonic() < deadline:
            time.sleep(0.05)
            row = httpx.get(f"{gw.url}/api/streams/ws", headers=_headers(gw, "viewer"), timeout=10).json()
        assert row["state"] == "failed" and "websocket ***: gave up after 1 failed attempts" in row["last_error"]
        assert "tok-never-shown" not in _answers(gw, "ws")
        gw.services.manager.reconcile()  # records the failure in the registry, as `nexus up` does
        saved = gw.settings.registry_path.read_text()
        assert "gave up" in saved and "tok-never-shown" not in saved


def test_secrets_come_from_the_environment_under_their_prefix_only(monkeypatch, tmp_path):
    monkeypatch.setenv("NEXUS_SECRET_FEED_URL", REDIS_URL)
    settings = load_settings(home=tmp_path / "home")
    pipe = Pipeline.from_spec({"source": {"kind": "redis", "params": {"url": {"secret": "feed_url"}}}}, settings)
    assert pipe.source.params["url"] == REDIS_URL
    assert pipe.spec()["source"]["params"]["url"] == {"secret": "feed_url"}
    # another variable of the process (the JWT secret, say) is not reachable by naming it
    monkeypatch.setenv("NEXUS_JWT_SECRET", "jwt-never-shown")
    with pytest.raises(SpecError, match="secret 'JWT_SECRET' is not set"):
        Pipeline.from_spec({"source": {"kind": "redis", "params": {"url": {"secret": "JWT_SECRET"}}}}, settings)


def test_an_in_process_source_with_a_clear_password_runs_but_is_not_saved(settings):
    source = sources.make("redis", url=REDIS_URL, key="nexus-test:never-read")
    with pytest.raises(SpecError, match="holds a password in clear") as exc:
        StreamManager(settings).create("mine", Pipeline.from_source(source, settings=settings))
    assert REDIS_PASSWORD not in str(exc.value)
    assert not settings.registry_path.exists() or REDIS_PASSWORD not in settings.registry_path.read_text()


def test_status_rows_redact_dsn_passwords_saved_by_older_versions(settings):
    settings.home.mkdir(parents=True)
    entry = {"state": "failed", "created_at": 0, "updated_at": 0, "error": f"source: ConnectionError: {REDIS_URL}",
             "spec": {"source": {"kind": "simulator", "params": {}}, "steps": []}}
    settings.registry_path.write_text(json.dumps({"version": 1, "streams": {"old": entry}}))
    row = StreamManager(settings).status("old")
    assert REDIS_PASSWORD not in row["last_error"] and "redis://:***@127.0.0.1" in row["last_error"]
