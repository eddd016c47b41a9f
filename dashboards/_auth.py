"""Login for the monitor ``nexus up`` serves: the gateway's credentials, then a session cookie.

:class:`MonitorAuth` is a Bokeh ``AuthProvider`` (``get_user``, ``login_url`` + ``LoginHandler``,
``logout_url`` + ``LogoutHandler``), handed to the Panel server as ``auth_provider``. Every credential
is checked by the gateway's :class:`~nexus_kernel.gateway.Authenticator` — JWTs and API keys alike;
nothing here reads a token itself.

The flow, as Jupyter's::

    GET /monitor?token=T   → 302 /login?next=...     (a token in the address always logs in anew)
    GET /login?next=...    → T checked → Set-Cookie, 302 /monitor   (the token leaves the address bar)
    GET /monitor           → the page, for the principal the cookie names
    no / bad credential    → the login page (paste a token or an API key); a refused one answers 401

The cookie (``nexus-monitor``) is a Tornado signed value (HMAC-SHA256, key version 2) holding the
credential encrypted with Fernet, both keys derived (HKDF) from the home's JWT secret
(``home/jwt_secret``, 0600, or ``settings.jwt_secret``): rotating that secret logs everyone out. It is
``HttpOnly``, ``SameSite=Lax``, ``Secure`` over HTTPS, and expires with the credential (a JWT's
``exp``; an API key's session lasts ``settings.jwt_ttl``). The credential inside is checked again on
every request and page load, and every ``settings.ws_recheck`` seconds on an open page, so a revoked
key or an expired token stops working then. It is left out of Bokeh's session token (which is
embedded in the page, readable by scripts): the page learns its principal from the server-side request
object instead (:func:`current_session`).

Controls follow the role: a page without the ``control`` permission has no start / pause / stop at all,
and the callback that performs an action checks the credential and the role again
(:meth:`MonitorAuth.require`), so a forged widget event from a viewer's session changes nothing.

Caveats: the login form has no CSRF token (a forged login can only log a browser in as the forger);
a credential scoped to some streams is checked on control, but the page shows every stream's overview;
behind a URL prefix, ``landing`` must name the prefixed page.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import re
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from bokeh.server.auth_provider import AuthProvider
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from tornado.web import RequestHandler, create_signed_value, decode_signed_value

if TYPE_CHECKING:  # the gateway is imported when a MonitorAuth is made, not with every dashboard
    from nexus_kernel.gateway import Authenticator, Principal

__all__ = ["COOKIE", "MonitorAuth", "MonitorSession", "current_session", "redact_tokens"]

log = logging.getLogger(__name__)
access_log = logging.getLogger("tornado.access")

COOKIE = "nexus-monitor"
LOGIN_PATH = "/login"
LOGOUT_PATH = "/logout"
#: the attribute of the server-side request that carries the caller's session to the page
REQUEST_ATTRIBUTE = "nexus_monitor_session"

_TOKEN_IN_URL = re.compile(r"(?i)(token(?:=|%3D))[^&\s]+?(?=&|%26|\s|$)")


@dataclass(frozen=True)
class MonitorSession:
    """A logged-in caller: who (``principal``), with what (``credential``, kept server-side), until when."""

    principal: Principal
    credential: str = field(repr=False)
    expires: float  # epoch seconds


def redact_tokens(text: str) -> str:
    """``text`` with the value of every ``token=`` query parameter (plain or URL-encoded) replaced by ***."""
    return _TOKEN_IN_URL.sub(r"\1***", text)


class MonitorAuth(AuthProvider):
    """The monitor's login, checked by the gateway's authenticator.

    Parameters
    ----------
    settings
        The home's settings: its JWT secret (cookie keys), ``jwt_ttl`` (an API key's session),
        ``ws_recheck`` (how often an open page re-checks its credential).
    authenticator
        The gateway's :class:`~nexus_kernel.gateway.Authenticator` (``nexus up`` passes the running
        gateway's); default: a new one over the home's API keys.
    landing
        Where a login without a ``next`` goes.
    """

    def __init__(self, settings: Any, authenticator: Authenticator | None = None, landing: str = "/monitor") -> None:
        from nexus_kernel.gateway import Authenticator, KeyStore
        from nexus_kernel.gateway import jwt_secret

        self.settings = settings
        self.authenticator = authenticator or Authenticator(settings, KeyStore.for_home(settings.home))
        self.landing = landing
        root = jwt_secret(settings).encode()
        self.cookie_secret = _derive(root, b"nexus monitor cookie signature").hex()
        self._fernet = Fernet(base64.urlsafe_b64encode(_derive(root, b"nexus monitor cookie encryption")))
        #: Bokeh's ``secret_key`` for signed session ids (``sign_sessions=True``)
        self.session_key = _derive(root, b"nexus monitor bokeh sessions").hex().encode()
        super().__init__()

    # -- Bokeh's AuthProvider hooks ----------------------------------------------------------------

    @property
    def get_user(self) -> Callable[[RequestHandler], str | None]:
        return self._user

    @property
    def login_url(self) -> str:
        return LOGIN_PATH

    @property
    def login_handler(self) -> type[RequestHandler]:
        return LoginHandler

    @property
    def logout_url(self) -> str:
        return LOGOUT_PATH

    @property
    def logout_handler(self) -> type[RequestHandler]:
        return LogoutHandler

    def _user(self, handler: RequestHandler) -> str | None:
        """The principal id of the request's session cookie (re-checked now), or None: log in first.

        Also leaves the session on the server-side request, where the page finds it
        (:func:`current_session`): Bokeh's session context proxies attribute reads to that request.
        """
        if handler.request.method in ("GET", "HEAD") and handler.get_query_argument("token", None) is not None:
            return None  # a token in the address logs in with it (through the login page, which drops it)
        session = self.session_from(handler.get_cookie(COOKIE))
        if session is None:
            return None
        setattr(handler.request, REQUEST_ATTRIBUTE, session)
        return str(session.principal.id)

    # -- sessions --------------------------------------------------------------------------------

    def check(self, credential: str) -> Principal:
        """The principal of ``credential`` (the gateway's authenticator); raises its 401 ``ApiError``."""
        return self.authenticator.authenticate(credential)

    def open_session(self, credential: str) -> tuple[MonitorSession, str]:
        """Check ``credential``; the session and the cookie value that carries it. Raises ``ApiError``."""
        principal = self.check(credential)
        expires = time.time() + float(self.settings.jwt_ttl)
        exp = principal.claims.get("exp") if principal.claims else None
        if isinstance(exp, (int, float)):
            expires = min(expires, float(exp))
        sealed = self._fernet.encrypt(json.dumps({"credential": credential, "exp": expires}).encode())
        value = create_signed_value(self.cookie_secret, COOKIE, sealed).decode()
        return MonitorSession(principal, credential, expires), value

    def session_from(self, cookie: str | None) -> MonitorSession | None:
        """The session a cookie value carries, if its signature, seal, expiry and credential all hold now."""
        if not cookie:
            return None
        # the sealed "exp" decides (the credential's own, or jwt_ttl for a key); Tornado's age check
        # would only cut a long-lived token's session at its default 31 days
        sealed = decode_signed_value(self.cookie_secret, COOKIE, cookie, max_age_days=3660)
        if sealed is None:
            return None
        try:
            payload = json.loads(self._fernet.decrypt(sealed))
            credential, expires = str(payload["credential"]), float(payload["exp"])
        except (InvalidToken, ValueError, KeyError, TypeError):
            return None
        if expires <= time.time():
            return None
        try:
            principal = self.check(credential)
        except Exception as exc:  # noqa: BLE001 - a refused credential is a logged-out caller
            log.info("monitor session refused: %s", getattr(exc, "detail", exc))
            return None
        return MonitorSession(principal, credential, expires)

    def refresh(self, session: MonitorSession) -> MonitorSession:
        """``session`` checked again now; raises ``PermissionError`` naming why it no longer holds."""
        if session.expires <= time.time():
            raise PermissionError("the monitor session expired")
        try:
            principal = self.check(session.credential)
        except Exception as exc:  # noqa: BLE001 - the authenticator's 401 says why
            raise PermissionError(f"credential no longer accepted: {getattr(exc, 'detail', exc)}") from None
        return MonitorSession(principal, session.credential, session.expires)

    def require(self, session: MonitorSession, action: str, stream: str | None = None) -> Principal:
        """The principal of ``session`` if it may ``action`` (on ``stream``) now; else ``PermissionError``."""
        principal = self.refresh(session).principal
        if not principal.may(action):
            raise PermissionError(f"role '{principal.role}' may not {action} streams (analyst or admin may)")
        if not principal.may(action, stream):
            raise PermissionError(f"this credential is limited to other streams than '{stream}'")
        return principal

    def set_cookie(self, handler: RequestHandler, session: MonitorSession, value: str) -> None:
        handler.set_cookie(COOKIE, value, expires=datetime.fromtimestamp(session.expires, timezone.utc),
                           path="/", httponly=True, samesite="Lax", secure=handler.request.protocol == "https")

    def clear_cookie(self, handler: RequestHandler) -> None:
        handler.clear_cookie(COOKIE, path="/", httponly=True, samesite="Lax",
                             secure=handler.request.protocol == "https")

    def next_url(self, wanted: str | None) -> str:
        """Where to go after login: ``wanted`` if it is a path on this server, without its ``token``."""
        parts = urllib.parse.urlsplit(wanted or "")
        if parts.scheme or parts.netloc or not parts.path.startswith("/") or parts.path.startswith("//") \
                or "\\" in (wanted or ""):
            return self.landing  # never an open redirect
        query = urllib.parse.urlencode([(k, v) for k, v in urllib.parse.parse_qsl(parts.query) if k != "token"])
        return urllib.parse.urlunsplit(("", "", parts.path, query, ""))


def current_session() -> MonitorSession | None:
    """The logged-in session of the Bokeh session being built or served now (None: no login here)."""
    import panel as pn

    doc = pn.state.curdoc
    context = getattr(doc, "session_context", None) if doc is not None else None
    request = getattr(context, "request", None) if context is not None else None
    return getattr(request, REQUEST_ATTRIBUTE, None) if request is not None else None


def log_request(handler: RequestHandler) -> None:
    """Tornado's access log line, with ``token=`` values redacted (the login URL carries one)."""
    status = handler.get_status()
    method = access_log.info if status < 400 else access_log.warning if status < 500 else access_log.error
    request = handler.request
    method("%d %s %s (%s) %.2fms", status, request.method, redact_tokens(request.uri or ""), request.remote_ip,
           1000.0 * request.request_time())


class LoginHandler(RequestHandler):
    """``/login``: a token or API key (query ``token``, the ``next`` URL's ``token``, or the form) → cookie."""

    def get(self) -> None:
        wanted = self.get_query_argument("next", None)
        credential = self.get_query_argument("token", None) or _token_of(wanted)
        if credential:
            self._login(credential.strip(), wanted)
        else:
            self._page(200, "", wanted)

    def post(self) -> None:
        self._login(self.get_body_argument("token", "").strip(), self.get_body_argument("next", None))

    def _login(self, credential: str, wanted: str | None) -> None:
        auth: MonitorAuth = self.application.auth_provider  # type: ignore[attr-defined]
        if not credential:
            self._page(401, "Paste a token or an API key.", wanted)
            return
        try:
            session, value = auth.open_session(credential)
        except Exception as exc:  # noqa: BLE001 - the authenticator's 401 (its detail never holds the secret)
            self._page(401, f"Not logged in: {getattr(exc, 'detail', 'credential refused')}.", wanted)
            return
        auth.set_cookie(self, session, value)
        self.redirect(auth.next_url(wanted))

    def _page(self, status: int, message: str, wanted: str | None) -> None:
        auth: MonitorAuth = self.application.auth_provider  # type: ignore[attr-defined]
        self.set_status(status)
        self.set_header("Cache-Control", "no-store")
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(_LOGIN_PAGE.format(message=html.escape(message), next=html.escape(auth.next_url(wanted))))


class LogoutHandler(RequestHandler):
    """``/logout``: forget the cookie, back to the login page."""

    def get(self) -> None:
        self.application.auth_provider.clear_cookie(self)  # type: ignore[attr-defined]
        self.redirect(LOGIN_PATH)


def _token_of(url: str | None) -> str | None:
    if not url:
        return None
    values = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query).get("token")
    return values[0] if values else None


def _derive(root: bytes, purpose: bytes) -> bytes:
    """A 32-byte key for one ``purpose``, from the home's secret (HKDF-SHA256): one secret, separate keys."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(root)


_LOGIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Nexus monitor · log in</title>
<style>body{{font-family:sans-serif;max-width:34em;margin:4em auto;color:#222}}
input[type=password]{{width:100%;padding:.4em;margin:.5em 0}} .why{{color:#b00020}}</style></head>
<body><h2>Nexus monitor</h2>
<p class="why">{message}</p>
<form method="post" action="/login">
<label>Token or API key (<code>nexus token</code>, <code>nexus keys create</code>, or the URL
<code>nexus up</code> printed)<input type="password" name="token" autocomplete="off" autofocus></label>
<input type="hidden" name="next" value="{next}">
<button type="submit">Log in</button></form></body></html>
"""
