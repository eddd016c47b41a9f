"""The Jupyter server extension: the gateway's handlers under ``<base_url>/nexus/``, behind Jupyter's auth.

A request is authenticated by the Jupyter server's identity provider (its token or login cookie); the
user gets the role ``c.NexusExtension.role`` (default ``analyst``) — it is their own server. Cookie
requests that write still need Jupyter's XSRF token (see ``ApiHandler.check_xsrf_cookie``).

The extension opens the process's :class:`~nexus_kernel.runtime.Runtime` and hands it to the
handlers: streams started through ``/nexus/api/streams/{name}/start`` run on the runtime's own
pipeline thread, never on Jupyter's event loop, which only serves. The runtime is closed when the
process exits.

Tested against a real ``jupyter server`` process in ``tests/gateway/test_jupyter.py``.
"""

from __future__ import annotations

import atexit
import inspect
from typing import Any

from ..config import load_settings
from ._auth import Principal
from ._errors import ApiError

ROLE = "analyst"


async def _jupyter_user(handler: Any) -> Principal:
    provider = handler.settings.get("identity_provider")
    if provider is None:
        raise ApiError(401, "Jupyter authentication is not available")
    user = provider.get_user(handler)
    if inspect.isawaitable(user):
        user = await user
    if user is None:
        raise ApiError(401, "log in to Jupyter first")
    return Principal(f"jupyter:{getattr(user, 'username', 'user')[:64]}", ROLE, "jupyter")


def _load_jupyter_server_extension(serverapp: Any) -> None:
    from ._server import Services, handlers, install_redaction

    from ..runtime import Runtime

    install_redaction()
    settings = load_settings()
    # thread=True: the pipelines get a loop of their own, so Jupyter's loop serves kernels and pages only
    runtime = Runtime.open(settings, thread=True)
    atexit.register(runtime.close)
    services = Services.create(settings, runtime=runtime, external_auth=_jupyter_user)
    base = serverapp.web_app.settings.get("base_url", "/")
    prefix = base.rstrip("/") + "/nexus"
    from jupyter_server.base.handlers import JupyterHandler

    # Our handler first in the MRO (JSON errors, our prepare); JupyterHandler behind it gives the
    # identity provider the attributes it reads (token, cookie names, settings).
    mounted = [(pattern, type(cls.__name__, (cls, JupyterHandler), {}), kwargs)
               for pattern, cls, kwargs in handlers(services, prefix)]
    serverapp.web_app.add_handlers(".*$", mounted)
    serverapp.web_app.settings["nexus_prefix"] = prefix
    serverapp.log.info("nexus gateway mounted at %s/", prefix)


load_jupyter_server_extension = _load_jupyter_server_extension
