"""The monitor ``nexus up`` mounts: :func:`serve`, registered in the entry point group ``nexus_kernel.monitors``.

``nexus_kernel`` never imports this package; ``nexus up`` looks the hook up by its entry point (``monitor
= "dashboards._serve:serve"`` in ``pyproject.toml``) and, when the ``dashboards`` extra is installed,
awaits it on the loop that serves the gateway::

    server = await serve(runtime, port=settings.monitor_port, authenticator=gateway_authenticator,
                         admin_token=admin_token)
    print(server.login_url)            # http://host:port/monitor?token=...: the first click logs in
    ...
    server.stop()

The page reads the runtime's bus and store only (:class:`~dashboards._source.EmbeddedSource`); callers
log in with the gateway's own credentials (:class:`~dashboards._auth.MonitorAuth` over the gateway's
authenticator, so both answer alike), and the page's controls follow the caller's role.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from ._auth import MonitorAuth
from ._source import EmbeddedSource

__all__ = ["MonitorServer", "serve"]


@dataclass
class MonitorServer:
    """A served monitor: ``port``, ``url`` (the page), ``login_url`` (with the admin token), ``stop()``;
    ``source`` and ``auth`` are what its pages read and log in with.

    Caveat: ``login_url`` carries a credential; print it to the owner's terminal, never to a log.
    """

    server: Any  # Panel's (Bokeh) server
    source: EmbeddedSource
    auth: MonitorAuth
    port: int
    url: str
    login_url: str

    def stop(self) -> None:
        """Stop serving and stop following the bus (the runtime and its pipelines are the caller's)."""
        try:
            self.server.stop()
        finally:
            self.source.close()

    def __repr__(self) -> str:  # never the token
        return f"MonitorServer({self.url!r})"


async def serve(runtime: Any, *, port: int, authenticator: Any, admin_token: str) -> MonitorServer:
    """Serve the live monitor over ``runtime`` on the running loop (the one serving the gateway).

    Parameters
    ----------
    runtime
        The :class:`~nexus_kernel.runtime.Runtime` of ``nexus up``: its settings (host, the home's
        secret for the session cookies), bus, store and stream manager. It stays the caller's to close.
    port
        TCP port (0: a free one, read back from ``.port``).
    authenticator
        The gateway's :class:`~nexus_kernel.gateway.Authenticator`; None: a new one over the home's API
        keys (a headless gateway-less run).
    admin_token
        The token the printed ``login_url`` carries.

    Raises ``ValueError`` when the runtime has no live bus (the monitor has nothing to show).
    """
    from .monitor import start_monitor

    if not isinstance(admin_token, str) or not admin_token:
        raise ValueError("admin_token must be a non-empty string (the printed login URL carries it)")
    settings = runtime.settings
    source = EmbeddedSource(runtime)
    try:
        auth = MonitorAuth(settings, authenticator=authenticator)
        server = await start_monitor(settings, source, port=port, auth=auth)
    except BaseException:
        with contextlib.suppress(Exception):
            source.close()
        raise
    url = f"http://{settings.host}:{server.port}/monitor"
    return MonitorServer(server=server, source=source, auth=auth, port=server.port, url=url,
                         login_url=f"{url}?token={admin_token}")
