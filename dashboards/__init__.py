"""Nexus dashboards: the live monitor (Panel) served by Voila and by ``nexus up``.

::

    from dashboards import EmbeddedSource, build_monitor, start_monitor
    page = build_monitor(EmbeddedSource.start(settings))     # in a notebook / Voila: a runtime of its own
    page = build_monitor(EmbeddedSource(runtime))            # over a running Runtime's bus and store
    server = await start_monitor(settings, source, port=5006)   # served: http://host:5006/monitor
    # served, the page asks for the gateway's credentials (MonitorAuth); its controls follow the role

``nexus up`` mounts the monitor through the entry point ``nexus_kernel.monitors`` → ``monitor =
"dashboards._serve:serve"`` (see :mod:`dashboards._serve`); ``nexus_kernel`` never imports this package.
"""

from ._auth import MonitorAuth, MonitorSession
from ._feed import Feed, feed_for
from ._open import open_source
from ._source import EmbeddedSource, MonitorSource, explain, is_change_point
from ._remote import RemoteSource
from .monitor import Monitor, build_monitor, downsample, start_monitor

__all__ = ["EmbeddedSource", "Feed", "Monitor", "MonitorAuth", "MonitorSession", "MonitorSource", "RemoteSource",
           "build_monitor", "downsample", "explain", "feed_for", "is_change_point", "open_source", "start_monitor"]
