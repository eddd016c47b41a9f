"""Who is calling and what they may do: JWT bearer tokens, API keys, roles and the permission matrix.

Tokens are JWTs signed with HS256 (``settings.jwt_secret``, or a secret made once under
``home/jwt_secret`` with 0600 permissions) or RS256 (verified with ``settings.jwt_public_key``). Every
token must carry ``sub``, ``exp``, ``aud`` and ``iss`` matching the settings; ``nbf`` is honoured when
present. Once the signature verifies, every claim this gateway reads must have its JSON type
(:class:`TokenClaims`, strict): a scope ``"streams": "alpha"`` or a role ``["admin"]`` is a 401 naming
the claim, never read as "no scope" or coerced.
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
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..config import Settings
from ._errors import ApiError
from ._models import Role

__all__ = ["ROLES", "ACTIONS", "PERMISSIONS", "Principal", "TokenClaims", "Authenticator", "allowed", "mint_token",
           "jwt_secret"]

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
    """A signed token for ``subject`` with ``role``; RS256 when a private key is configured.

    ``streams`` scopes the token: ``None`` (the default) lets it touch every stream, a list only those
    (an empty list none).
    """
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r} (roles: {', '.join(ROLES)})")
    now = int(time.time())
    claims: dict[str, Any] = {"sub": subject, "role": role, "aud": settings.jwt_audience,
                              "iss": settings.jwt_issuer, "iat": now, "nbf": now,
                              "exp": now + int(ttl or settings.jwt_ttl), "jti": uuid.uuid4().hex}
    if isinstance(streams, str):
        raise TypeError("streams is a list of stream names, not one string")
    if streams is not None:  # an empty list scopes the token to no stream, it does not lift the scope
        claims["streams"] = list(streams)
    algorithm = algorithm or ("RS256" if settings.jwt_private_key else "HS256")
    key: str | bytes
    if algorithm == "RS256":
        if settings.jwt_private_key is None:
            raise ValueError("RS256 tokens need the jwt_private_key setting (a PEM file)")
        key = Path(settings.jwt_private_key).read_bytes()
    else:
        key = jwt_secret(settings)
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
            # signature first, claims' types next (in our words), then pyjwt's checks of their values
            claims = jwt.decode(token, key, algorithms=[alg], options=_SIGNATURE_ONLY)
            typed = _typed_claims(claims)
            jwt.decode(token, key, algorithms=[alg], audience=self.settings.jwt_audience,
                       issuer=self.settings.jwt_issuer, options={"require": ["exp", "aud", "iss", "sub"]})
        except jwt.ExpiredSignatureError:
            raise _invalid("token expired") from None
        except jwt.ImmatureSignatureError:
            raise _invalid("token not yet valid (its nbf or iat is in the future)") from None
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
        scope = frozenset(typed.streams) if typed.streams is not None else None
        return Principal(f"jwt:{typed.sub[:64]}", typed.role, "jwt", scope, claims)


# Verify the signature only: the claims are then checked for their types before pyjwt judges their values
# (pyjwt reads a string "exp" as a number and reports other type faults as one "invalid token").
_SIGNATURE_ONLY: jwt.types.Options = {"verify_signature": True, "verify_exp": False, "verify_nbf": False, "verify_iat": False,
                   "verify_aud": False, "verify_iss": False, "verify_sub": False, "verify_jti": False}


class TokenClaims(BaseModel):
    """The claims of a token, with the JSON types RFC 7519 §4.1 gives them and the ones this gateway adds.

    Strict: no claim is coerced (``"exp": "9999999999"``, ``"streams": "alpha"`` or ``"role": ["admin"]``
    are refused, not read as something else), and a claim present with ``null`` is refused like a wrong
    type (leave a claim out to mean "none"). Claims this gateway does not use are kept as they are.
    """

    model_config = ConfigDict(strict=True, extra="allow", allow_inf_nan=False)

    sub: str = Field(min_length=1, max_length=256)
    iss: str
    aud: str | list[str]
    exp: float = Field(description="NumericDate: seconds since the epoch, a JSON number.")
    nbf: float | None = None
    iat: float | None = None
    jti: str | None = None
    role: Role = "viewer"
    streams: list[str] | None = Field(None, description="Scope: the streams this token may touch; absent = all.")

    @model_validator(mode="before")
    @classmethod
    def _no_null_claims(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for name, value in data.items():
                if value is None and name in cls.model_fields:
                    raise ValueError(f"token claim '{name}' is null: leave it out or give it a value")
        return data


def _typed_claims(claims: dict[str, Any]) -> TokenClaims:
    """The signed claims checked for their types; a 401 naming the first claim at fault."""
    try:
        return TokenClaims.model_validate(claims)
    except ValidationError as exc:
        first = exc.errors()[0]
        name = str(first["loc"][0]) if first.get("loc") else None
        if first["type"] == "missing" and name:
            raise _invalid(f"token lacks the '{name}' claim") from None
        if name is None:  # the model validator: its message names the claim
            raise _invalid(str(first["msg"]).removeprefix("Value error, ")) from None
        raise _invalid(f"token claim '{name}' has the wrong type or value: {first['msg']}") from None


def _invalid(detail: str) -> ApiError:
    return ApiError(401, detail, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
