"""Who is calling and what they may do: JWT bearer tokens, API keys, roles and the permission matrix.

Tokens are JWTs signed with HS256 (``settings.jwt_secret``, or a secret made once under
``home/jwt_secret`` with 0600 permissions) or RS256 (verified with ``settings.jwt_public_key``). Every
token must carry ``exp``, ``aud`` and ``iss`` matching the settings; ``nbf`` is honoured when present.
The accepted algorithms are fixed by the server, never taken from the token header, so ``alg=none`` and
an HS256 token "signed" with the RSA public key are refused (the classic algorithm-confusion attack).

API keys (``nxk_<id>_<secret>``) are looked up by id and checked against a SHA-256 hash in constant time
(:mod:`._keys`). Both kinds of credentials end in the same :class:`Principal`.

Roles form a ladder — viewer < analyst < admin — and :data:`PERMISSIONS` says which role each action
needs::

    action     viewer  analyst  admin
    read         ✓        ✓       ✓     list/get streams, query, anomalies, forecasts, models, live
    ingest                ✓       ✓     POST records
    control               ✓       ✓     create/update/start/pause/resume/stop streams
    analyze               ✓       ✓     run detection
    delete                        ✓     delete streams
    admin                         ✓     API keys, audit log

A key may also be *scoped* to some streams; it is refused (403) on any other stream.

References: RFC 7519 (JWT), RFC 8725 (JWT best current practice, on algorithm confusion).
"""

from __future__ import annotations

import os
import secrets
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt

from ..config import Settings
from ._errors import ApiError

__all__ = ["ROLES", "ACTIONS", "PERMISSIONS", "Principal", "Authenticator", "allowed", "mint_token", "jwt_secret"]

ROLES: tuple[str, ...] = ("viewer", "analyst", "admin")
ACTIONS: tuple[str, ...] = ("read", "ingest", "control", "analyze", "delete", "admin")
_NEEDS = {"read": "viewer", "ingest": "analyst", "control": "analyst", "analyze": "analyst",
          "delete": "admin", "admin": "admin"}
PERMISSIONS: dict[str, frozenset[str]] = {
    role: frozenset(a for a in ACTIONS if ROLES.index(role) >= ROLES.index(_NEEDS[a])) for role in ROLES
}


def allowed(role: str, action: str) -> bool:
    return action in PERMISSIONS.get(role, frozenset())


@dataclass(frozen=True)
class Principal:
    """An authenticated caller. ``id`` names it in rate limits and the audit log (never a secret)."""

    id: str
    role: str
    kind: str  # "jwt", "key", "jupyter" or "anonymous"
    streams: frozenset[str] | None = None  # scope; None = every stream
    claims: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def may(self, action: str, stream: str | None = None) -> bool:
        if not allowed(self.role, action):
            return False
        return stream is None or self.streams is None or stream in self.streams


def jwt_secret(settings: Settings) -> str:
    """The HS256 secret: from the settings, else the one kept in ``home/jwt_secret`` (made on first use)."""
    if settings.jwt_secret is not None:
        return settings.jwt_secret.get_secret_value()
    path = Path(settings.home) / "jwt_secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(48))
    return path.read_text().strip()


def mint_token(settings: Settings, subject: str, role: str, ttl: float | None = None,
               streams: list[str] | None = None, algorithm: str | None = None) -> str:
    """A signed token for ``subject`` with ``role``; RS256 when a private key is configured."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r} (roles: {', '.join(ROLES)})")
    now = int(time.time())
    claims: dict[str, Any] = {"sub": subject, "role": role, "aud": settings.jwt_audience,
                              "iss": settings.jwt_issuer, "iat": now, "nbf": now,
                              "exp": now + int(ttl or settings.jwt_ttl), "jti": uuid.uuid4().hex}
    if streams:
        claims["streams"] = list(streams)
    algorithm = algorithm or ("RS256" if settings.jwt_private_key else "HS256")
    key = Path(settings.jwt_private_key).read_bytes() if algorithm == "RS256" else jwt_secret(settings)
    return jwt.encode(claims, key, algorithm=algorithm)


class Authenticator:
    """Turns an ``Authorization`` header value (or a bare token) into a :class:`Principal` or a 401."""

    def __init__(self, settings: Settings, keys: Any) -> None:
        self.settings = settings
        self.keys = keys
        self._hs = jwt_secret(settings)
        self._rs = Path(settings.jwt_public_key).read_bytes() if settings.jwt_public_key else None

    def authenticate(self, credential: str | None) -> Principal:
        if not credential:
            raise ApiError(401, "missing credentials: send 'Authorization: Bearer <token or API key>'",
                           headers={"WWW-Authenticate": 'Bearer realm="nexus"'})
        scheme, _, token = credential.strip().partition(" ")
        if not token:  # a bare token
            token, scheme = scheme, "bearer"
        if scheme.lower() not in ("bearer", "token"):
            raise ApiError(401, "unsupported authorization scheme: use Bearer",
                           headers={"WWW-Authenticate": 'Bearer realm="nexus"'})
        token = token.strip()
        if token.startswith("nxk_"):
            principal = self.keys.verify(token)
            if principal is None:
                raise ApiError(401, "invalid or revoked API key",
                               headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
            return principal
        return self._from_jwt(token)

    def _from_jwt(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise _invalid("malformed token") from None
        alg = header.get("alg")
        if alg == "HS256":
            key: Any = self._hs
        elif alg == "RS256" and self._rs is not None:
            key = self._rs
        else:
            raise _invalid(f"token algorithm {str(alg)[:16]!r} is not accepted")
        try:
            claims = jwt.decode(token, key, algorithms=[alg], audience=self.settings.jwt_audience,
                                issuer=self.settings.jwt_issuer,
                                options={"require": ["exp", "aud", "iss", "sub"]})
        except jwt.ExpiredSignatureError:
            raise _invalid("token expired") from None
        except jwt.ImmatureSignatureError:
            raise _invalid("token not yet valid (nbf)") from None
        except jwt.InvalidAudienceError:
            raise _invalid("token audience is not accepted") from None
        except jwt.InvalidIssuerError:
            raise _invalid("token issuer is not accepted") from None
        except jwt.InvalidSignatureError:
            raise _invalid("token signature does not verify") from None
        except jwt.MissingRequiredClaimError as exc:
            raise _invalid(f"token lacks the '{exc.claim}' claim") from None
        except jwt.PyJWTError:
            raise _invalid("invalid token") from None
        role = claims.get("role", "viewer")
        if role not in ROLES:
            raise _invalid("token role is unknown")
        streams = claims.get("streams")
        scope = frozenset(map(str, streams)) if isinstance(streams, list) else None
        return Principal(f"jwt:{str(claims['sub'])[:64]}", role, "jwt", scope, claims)


def _invalid(detail: str) -> ApiError:
    return ApiError(401, detail, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
