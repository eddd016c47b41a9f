"""The one error shape of the gateway: ``{"error", "detail", "field"}`` with a 4xx (or 5xx) status.

``error`` is a stable machine word (``unauthorized``, ``forbidden``, ``not_found``, ``invalid``,
``conflict``, ``too_large``, ``rate_limited``...), ``detail`` a sentence for people, ``field`` the body or
query field at fault (or null). Messages never carry secrets: they are built from our own words and the
names of fields, never from header values.
"""

from __future__ import annotations

from typing import Any

from tornado.web import HTTPError

__all__ = ["ApiError", "from_validation"]

_WORDS = {
    400: "invalid", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
    409: "conflict", 413: "too_large", 415: "unsupported_media_type", 422: "invalid", 429: "rate_limited",
    500: "internal", 503: "unavailable",
}


class ApiError(HTTPError):
    """An answer the client gets as JSON. ``headers`` are added to the response (e.g. Retry-After).

    A tornado ``HTTPError``, so tornado treats it as an expected answer (no traceback in the log).
    """

    def __init__(self, status: int, detail: str, field: str | None = None, error: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(status, reason=_REASONS.get(status))
        self.status = status
        self.error = error or _WORDS.get(status, "error")
        self.detail = detail
        self.field = field
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": self.error, "detail": self.detail, "field": self.field}


_REASONS = {422: "Unprocessable Content", 429: "Too Many Requests"}


def from_validation(exc: Any, prefix: str | None = None) -> ApiError:
    """A pydantic ``ValidationError`` as a 422 naming the first field at fault."""
    first = exc.errors()[0]
    loc = ".".join(str(p) for p in first.get("loc", ()))
    field = ".".join(p for p in (prefix, loc) if p) or None
    return ApiError(422, f"{field or 'body'}: {first.get('msg', 'invalid value')}", field=field)
