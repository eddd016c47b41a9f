"""The monitor ``nexus up`` serves asks for the gateway's credentials, and its controls follow the role.

Findings reproduced: the monitor (Panel/Bokeh on port 5006) answered without credentials, and its
start / pause / stop controls were enabled for whoever reached it. Real parts: the monitor server
(``start_monitor`` with :class:`~dashboards.MonitorAuth`) over running pipelines, the gateway's
authenticator and API keys, ``nexus up`` itself, and Debian's Chromium for what a browser shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from email.utils import parsedate_to_datetime
from pathlib import Path

import httpx
import jwt
import pytest

from dashboards._auth import COOKIE
from nexus_kernel.gateway import mint_token
from tests.dashboards.conftest import artifacts, chromium  # noqa: F401 - fixtures shared with the dashboard suite
from tests.dashboards.dash_helpers import CHROMIUM_ARGS, DRAWN_JS, MonitorThread

NEXUS = str(Path(sys.executable).with_name("nexus"))


@pytest.fixture
def monitor(tmp_path: Path):
    served = MonitorThread(tmp_path / "home", ws_recheck=1.0, jwt_ttl=900.0)
    try:
        yield served
    finally:
        served.stop()


def _bokeh_token(page: str) -> dict:
    """The payload of the Bokeh session token the page embeds (what any script on the page can read)."""
    from bokeh.util.token import get_token_payload

    found = re.search(r'"token":"([^"]+)"', page)
    assert found, "no Bokeh session in the page"
    return get_token_payload(found.group(1))


def _login(client: httpx.Client, monitor: MonitorThread, credential: str) -> httpx.Response:
    """``/monitor?token=...`` → login → the page, following each redirect by hand; returns the page."""
    first = client.get(f"{monitor.url}?token={credential}")
    assert first.status_code == 302
    login = client.get(httpx.URL(monitor.url).join(first.headers["location"]))
    assert login.status_code == 302, login.text
    assert login.headers["location"] == "/monitor"  # the token left the address
    return client.get(monitor.base + login.headers["location"])


# -- without credentials: no app ------------------------------------------------------------------


def test_without_credentials_every_monitor_route_answers_a_login_page_or_a_refusal(monitor: MonitorThread) -> None:
    with httpx.Client(timeout=20) as client:
        page = client.get(monitor.url)
        assert page.status_code == 302 and "login?next=%2Fmonitor" in page.headers["location"]
        login = client.get(monitor.url, follow_redirects=True)
        assert login.status_code == 200 and 'name="token"' in login.text
        for sign_of_the_app in ("Bokeh", "docs_json", "nexus-plot", "sensors"):
            assert sign_of_the_app not in login.text
        assert client.get(monitor.base + "/").status_code == 302
        autoload = client.get(f"{monitor.url}/autoload.js?bokeh-autoload-element=x")
        assert autoload.status_code == 302 and "Bokeh" not in autoload.text
        forged = client.get(monitor.url, cookies={COOKIE: "2|1:0|10:1|13:nexus-monitor|4:Zm9v|00"})
        assert forged.status_code == 302

    async def socket_without_cookie() -> int:
        from tornado.httpclient import HTTPClientError, HTTPRequest
        from tornado.websocket import websocket_connect

        request = HTTPRequest(monitor.url.replace("http", "ws") + "/ws", headers={"Origin": monitor.base})
        try:
            await websocket_connect(request, subprotocols=["bokeh", "x"])
        except HTTPClientError as exc:
            return exc.code
        return 101

    assert asyncio.run(socket_without_cookie()) == 403


def test_a_refused_credential_gets_a_401_that_names_the_reason(monitor: MonitorThread) -> None:
    settings = monitor.settings
    cases = {
        "nope": "malformed token",
        mint_token(settings, "late", "admin", ttl=-10): "token expired",
        jwt.encode({"sub": "x", "role": "admin", "aud": settings.jwt_audience, "iss": settings.jwt_issuer,
                    "exp": int(time.time()) + 600}, "not the home's secret", algorithm="HS256"):
            "token signature does not verify",
        "nxk_000000000000_guessed": "invalid or revoked API key",
    }
    with httpx.Client(timeout=20) as client:
        for credential, reason in cases.items():
            answer = client.get(f"{monitor.url}?token={credential}", follow_redirects=True)
            assert answer.status_code == 401, (reason, answer.text)
            assert f"Not logged in: {reason}." in answer.text
            assert credential not in answer.text  # the refusal never echoes the secret
            assert "Bokeh" not in answer.text and COOKIE not in client.cookies
        posted = client.post(f"{monitor.base}/login", data={"token": "", "next": "/monitor"})
        assert posted.status_code == 401 and "Paste a token or an API key." in posted.text


def test_the_url_token_becomes_a_signed_httponly_lax_cookie_that_expires_with_it(monitor: MonitorThread) -> None:
    token = mint_token(monitor.settings, "ana", "analyst", ttl=600)
    exp = jwt.decode(token, options={"verify_signature": False})["exp"]
    with httpx.Client(timeout=20) as client:
        first = client.get(f"{monitor.url}?token={token}")
        login = client.get(httpx.URL(monitor.url).join(first.headers["location"]))
        assert login.status_code == 302 and login.headers["location"] == "/monitor"
        cookie = login.headers["set-cookie"]
        assert cookie.startswith(f"{COOKIE}=") and "HttpOnly" in cookie and "SameSite=Lax" in cookie
        assert "Path=/" in cookie
        expires = parsedate_to_datetime(re.search(r"expires=([^;]+)", cookie).group(1)).timestamp()
        assert exp - 2 <= expires <= exp, "the cookie must not outlive the token"
        value = client.cookies[COOKIE]
        assert token not in value and token.split(".")[1] not in value  # sealed, not merely signed
        page = client.get(monitor.url)
        assert page.status_code == 200 and "Bokeh" in page.text
        # the credential never reaches the page's scripts: not in the HTML, not in the Bokeh session token
        assert value not in page.text and token not in page.text
        payload = _bokeh_token(page.text)
        assert COOKIE not in payload["cookies"] and "Cookie" not in payload["headers"]
        # a cookie whose signature was touched is a logged-out caller
        client.cookies.set(COOKIE, value[:-1] + ("0" if value[-1] != "0" else "1"))
        assert client.get(monitor.url).status_code == 302


def test_an_api_key_logs_in_by_the_form_and_stops_working_on_the_next_request_once_revoked(
        monitor: MonitorThread) -> None:
    key, entry = monitor.keys.create("wall screen", "viewer")
    with httpx.Client(timeout=20) as client:
        posted = client.post(f"{monitor.base}/login", data={"token": key, "next": "/monitor?token=x"})
        assert posted.status_code == 302 and posted.headers["location"] == "/monitor"
        cookie = posted.headers["set-cookie"]
        expires = parsedate_to_datetime(re.search(r"expires=([^;]+)", cookie).group(1)).timestamp()
        assert expires <= time.time() + monitor.settings.jwt_ttl + 1  # a key's session lasts jwt_ttl
        assert client.get(monitor.url).status_code == 200
        monitor.keys.revoke(entry["id"])
        after = client.get(monitor.url)
        assert after.status_code == 302 and "login" in after.headers["location"]
        # logging out forgets the cookie
        fresh = _login(client, monitor, mint_token(monitor.settings, "vi", "viewer"))
        assert fresh.status_code == 200
        client.get(f"{monitor.base}/logout")
        assert client.get(monitor.url).status_code == 302


def test_login_never_redirects_off_the_server(monitor: MonitorThread) -> None:
    token = mint_token(monitor.settings, "vi", "viewer")
    with httpx.Client(timeout=20) as client:
        for elsewhere in ("https://evil.example/", "//evil.example/monitor", "/\\evil.example", "monitor"):
            answer = client.get(f"{monitor.base}/login", params={"token": token, "next": elsewhere})
            assert answer.status_code == 302 and answer.headers["location"] == "/monitor", elsewhere


# -- controls follow the role, checked again server-side ---------------------------------------------


def test_a_viewer_page_has_no_controls_and_a_forged_control_event_changes_nothing(monitor: MonitorThread) -> None:
    import panel as pn

    from dashboards import Monitor
    from dashboards.monitor import page_for

    auth, source = monitor.auth, monitor.source
    viewer, _ = auth.open_session(mint_token(monitor.settings, "vi", "viewer"))
    analyst_key, entry = monitor.keys.create("ops", "analyst")
    analyst, _ = auth.open_session(analyst_key)

    def viewer_page():
        layout = page_for(viewer, auth, source, start=False)
        groups = [w.options for w in layout.select(pn.widgets.RadioButtonGroup)]
        return layout.monitor.control, groups

    control, groups = monitor.call(viewer_page)
    assert control is None and ["start", "pause", "stop"] not in groups  # absent, not disabled

    def forged_from_viewer() -> str:
        # the same widget an analyst has, driven as a browser event would drive it, on a viewer's session
        page = Monitor(source, can_control=True,
                       authorize=lambda _action, stream: auth.require(viewer, "control", stream))
        page.control.value = "stop"
        return page.control_msg.object

    assert monitor.call(forged_from_viewer) == "refused: role 'viewer' may not control streams (analyst or admin may)"
    assert monitor.state() == "running"

    def analyst_clicks(action: str) -> str:
        layout = page_for(analyst, auth, source, start=False)
        layout.monitor.control.value = action
        return layout.monitor.control_msg.object

    assert monitor.call(lambda: analyst_clicks("pause")) == "sensors: pause → paused"
    assert monitor.state() == "paused"
    assert monitor.call(lambda: analyst_clicks("start")) == "sensors: start → running"
    monitor.keys.revoke(entry["id"])
    refused = monitor.call(lambda: analyst_clicks("stop"))
    assert refused == "refused: credential no longer accepted: invalid or revoked API key"
    assert monitor.state() == "running"


# -- in a browser ----------------------------------------------------------------------------------


HAS_CONTROLS_JS = """() => (window.Bokeh ? Bokeh.documents : []).some(doc => Array.from(doc.all_models).some(
  m => Array.isArray(m.labels) && m.labels.includes('stop')))"""


def test_browser_viewer_sees_plots_and_no_controls_analyst_gets_controls_until_revoked(
        chromium: str, artifacts: Path, monitor: MonitorThread) -> None:  # noqa: F811 - pytest fixtures
    from playwright.async_api import TimeoutError as PlaywrightTimeout
    from playwright.async_api import async_playwright

    viewer_token = mint_token(monitor.settings, "wall", "viewer")
    analyst_key, entry = monitor.keys.create("ops", "analyst")

    async def drawn(page) -> None:
        for _ in range(100):
            if (await page.evaluate(DRAWN_JS)).get("nexus-line-0", 0) > 5:
                return
            await asyncio.sleep(0.2)
        pytest.fail(f"no line drawn: {await page.evaluate(DRAWN_JS)}")

    async def main() -> None:
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            errors: list[str] = []

            # no credentials: the login form, and no Bokeh document at all
            anonymous = await (await browser.new_context()).new_page()
            await anonymous.goto(monitor.url)
            await anonymous.wait_for_selector("input[name=token]", timeout=30_000)
            assert await anonymous.evaluate("() => typeof window.Bokeh") == "undefined"
            assert await anonymous.locator("canvas").count() == 0

            # a viewer, by the printed-URL way: plots, and no start / pause / stop anywhere
            viewer = await (await browser.new_context(viewport={"width": 1280, "height": 1000})).new_page()
            viewer.on("pageerror", lambda e: errors.append(str(e)))
            await viewer.goto(f"{monitor.url}?token={viewer_token}")
            await viewer.wait_for_selector("canvas", timeout=30_000)
            assert "token=" not in viewer.url
            await drawn(viewer)
            assert await viewer.get_by_text("(viewer)").count() > 0
            for action in ("start", "pause", "stop"):
                assert await viewer.get_by_role("button", name=action, exact=True).count() == 0
            assert not await viewer.evaluate(HAS_CONTROLS_JS)
            await viewer.screenshot(path=str(artifacts / "monitor-viewer.png"), full_page=True)

            # an analyst (API key): the controls, and they work
            analyst = await (await browser.new_context(viewport={"width": 1280, "height": 1000})).new_page()
            analyst.on("pageerror", lambda e: errors.append(str(e)))
            await analyst.goto(f"{monitor.url}?token={analyst_key}")
            await analyst.wait_for_selector("canvas", timeout=30_000)
            assert "token=" not in analyst.url
            await drawn(analyst)
            assert await analyst.evaluate(HAS_CONTROLS_JS)
            await analyst.get_by_role("button", name="pause", exact=True).click()
            for _ in range(50):
                if monitor.state() == "paused":
                    break
                await asyncio.sleep(0.2)
            assert monitor.state() == "paused"
            await analyst.get_by_role("button", name="start", exact=True).click()
            for _ in range(50):
                if monitor.state() == "running":
                    break
                await asyncio.sleep(0.2)
            assert monitor.state() == "running"
            await analyst.screenshot(path=str(artifacts / "monitor-analyst.png"), full_page=True)

            # the key is revoked while the page is open: the next action is refused, then the page ends. On
            # a loaded machine the session's periodic recheck may end the page before the click lands: then
            # the button is gone, and the stream must still run all the same
            monitor.keys.revoke(entry["id"])
            with contextlib.suppress(PlaywrightTimeout):
                await analyst.get_by_role("button", name="stop", exact=True).click(timeout=5_000)
            await analyst.get_by_text(re.compile("refused: credential no longer accepted|Session ended")).first \
                .wait_for(timeout=30_000)
            assert monitor.state() == "running"
            await analyst.get_by_text("Session ended").wait_for(timeout=30_000)
            await analyst.reload()
            await analyst.wait_for_selector("input[name=token]", timeout=30_000)

            # the login form works in a browser too
            await anonymous.fill("input[name=token]", viewer_token)
            await anonymous.get_by_role("button", name="Log in").click()
            await anonymous.wait_for_selector("canvas", timeout=30_000)
            assert anonymous.url == monitor.url
            assert not errors, errors
            await browser.close()

    asyncio.run(main())


# -- nexus up ---------------------------------------------------------------------------------------


def test_nexus_up_prints_a_monitor_url_that_logs_in_and_the_bare_url_asks_for_credentials(tmp_path: Path) -> None:
    env = {**os.environ, "NEXUS_HOME": str(tmp_path / "home"), "NEXUS_PORT": "0", "NEXUS_MONITOR_PORT": "0",
           "NEXUS_SIM_RATE": "100", "NEXUS_SIM_SERIES": "2", "NEXUS_STORE": "memory"}
    proc = subprocess.Popen([NEXUS, "up", "--headless"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    try:
        lines: list[str] = []
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not any(ln.startswith("nexus up: home") for ln in lines):
            line = proc.stdout.readline()
            if not line:
                pytest.fail(f"nexus up exited: {proc.stderr.read()}")
            lines.append(line)
        printed = re.search(r"monitor: (http://\S+/monitor)\?token=(\S+)", "".join(lines))
        assert printed, "".join(lines)
        url, token = printed.groups()
        assert token == re.search(r"admin token: (\S+)", "".join(lines)).group(1)
        with httpx.Client(timeout=20) as client:
            bare = client.get(url, follow_redirects=True)
            assert "Bokeh" not in bare.text and 'name="token"' in bare.text
            page = client.get(f"{url}?token={token}", follow_redirects=True)
            assert page.status_code == 200 and "Bokeh" in page.text
            assert str(page.url) == url  # the token was exchanged for the cookie and left the URL
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
    assert proc.returncode == 0, err
    assert token not in err, "the login token must not reach the log"
