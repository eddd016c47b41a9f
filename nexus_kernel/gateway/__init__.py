"""The gateway: REST + WebSocket API over the streams, with auth, roles, rate limits and OpenAPI.

Public surface::

    services = Services.create(settings)                 # store, bus, stream manager, keys, audit, limiter
    app = make_app(services, prefix="")                   # a tornado.web.Application
    gateway = await start_gateway(settings, services)     # serving on the running loop: .url, await .stop()
    token = first_admin_token(settings)                   # a JWT with the admin role
    mint_token(settings, "me", "analyst")                 # any token
    KeyStore.for_home(settings.home).create("ci", "analyst")

New endpoints register with :func:`route` + :func:`operation` on an :class:`ApiHandler` subclass (see
:mod:`._base`); they appear in ``/openapi.json`` and get auth, limits and audit with no more code.
"""

from ._auth import ACTIONS, PERMISSIONS, ROLES, Authenticator, Principal, allowed, jwt_secret, mint_token
from ._base import ApiHandler, Operation, Route, operation, route, routes
from ._errors import ApiError
from ._keys import KeyStore
from ._openapi import openapi
from ._server import Gateway, Services, first_admin_token, handlers, make_app, start_gateway
from . import _jobs  # noqa: F401,E402  (registers /api/jobs/runs)
from . import _results  # noqa: F401,E402  (POST of forecasts, anomalies, models)
from . import _anchoring  # noqa: F401,E402  (GET /api/verify/{item_id}, /api/anchors)

__all__ = [
    "ACTIONS",
    "ApiError",
    "ApiHandler",
    "Authenticator",
    "Gateway",
    "KeyStore",
    "Operation",
    "PERMISSIONS",
    "Principal",
    "ROLES",
    "Route",
    "Services",
    "allowed",
    "first_admin_token",
    "handlers",
    "make_app",
    "jwt_secret",
    "mint_token",
    "openapi",
    "operation",
    "route",
    "routes",
    "start_gateway",
]
