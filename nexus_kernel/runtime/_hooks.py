"""Hooks: what ``nexus up`` mounts from other distributions, found through entry points.

``nexus_kernel`` never imports ``dashboards`` (nor any other optional part). The live monitor is mounted
through the entry point group :data:`MONITORS` (``nexus_kernel.monitors``); ``nexus up`` loads the entry
point named ``monitor`` and awaits it on its serving loop::

    server = await serve(runtime, port=settings.monitor_port, authenticator=..., admin_token=...)
    server.port          # the port it listens on (the monitor page is http://host:port/monitor)
    server.stop()        # on shutdown (may return an awaitable)

``runtime`` is the process's :class:`~nexus_kernel.runtime.Runtime` (read its bus and store, never a
pipeline node); ``authenticator`` is the gateway's own (None when the gateway is not served), so both
answer the same credentials; ``admin_token`` is the token ``nexus up`` prints.

This distribution registers its monitor in ``pyproject.toml``::

    [project.entry-points."nexus_kernel.monitors"]
    monitor = "dashboards._serve:serve"

A plugin distribution registers its own under the same group and name. When no entry point loads — a
core-only install (``pip install -e .`` without the ``dashboards`` extra) — ``nexus up`` runs headless
and says in one line that the monitor needs the extra (:data:`MONITOR_EXTRA_HINT`).

Example
-------
>>> hook = load_monitor(group="nexus_kernel.no-such-group")
>>> hook.serve is None, hook.needs_extra, hook.problem
(True, True, "the monitor needs the dashboards extra (pip install 'nexus-stream[dashboards]')")
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from importlib.metadata import EntryPoint, entry_points
from typing import Any, NamedTuple

__all__ = ["MONITORS", "MONITOR_EXTRA_HINT", "EXTRA_MODULES", "Hook", "load_monitor", "missing_extra", "MonitorServe"]

#: The entry point group ``nexus up`` mounts its monitor from.
MONITORS = "nexus_kernel.monitors"

#: What to install for the monitor (and for scheduled notebook jobs, which share the extra).
MONITOR_EXTRA_HINT = "pip install 'nexus-stream[dashboards]'"

#: Top-level modules of the ``dashboards`` extra: a load that fails on one of them means "not installed".
EXTRA_MODULES = frozenset({"dashboards", "panel", "bokeh", "holoviews", "param", "jupyter_bokeh", "tsdownsample",
                           "voila", "ipywidgets", "matplotlib", "apscheduler", "papermill", "sqlalchemy",
                           "nbformat", "nbconvert", "ipykernel"})

#: ``serve(runtime, *, port, authenticator, admin_token)`` → a server with ``.port`` and ``.stop()``.
MonitorServe = Callable[..., Awaitable[Any]]


class Hook(NamedTuple):
    """What :func:`load_monitor` found: ``serve``, or None and ``problem`` (one line) saying why."""

    serve: MonitorServe | None
    problem: str | None = None
    needs_extra: bool = False   # the problem is a missing ``dashboards`` extra, nothing worse


def missing_extra(exc: BaseException) -> str | None:
    """The module of an optional extra that ``exc`` says is not installed (None: another failure)."""
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        top = exc.name.split(".")[0]
        if top in EXTRA_MODULES:
            return exc.name
    return None


def load_monitor(name: str = "monitor", group: str = MONITORS, found: Iterable[EntryPoint] | None = None) -> Hook:
    """The monitor's ``serve`` callable, or why it cannot be served (see :class:`Hook`).

    Parameters
    ----------
    name
        The entry point's name within ``group``.
    group
        The entry point group (default :data:`MONITORS`).
    found
        The entry points to choose from (default: those installed in ``group``).

    Caveats: a load that fails because a module of the extra is missing reads "needs the dashboards
    extra"; any other failure (a bug in the plugin) is reported with its error, not hidden behind it.
    """
    candidates = [ep for ep in (entry_points(group=group) if found is None else found) if ep.name == name]
    if not candidates:
        return Hook(None, f"the monitor needs the dashboards extra ({MONITOR_EXTRA_HINT})", True)
    point = candidates[0]
    try:
        serve = point.load()
    except ImportError as exc:
        module = missing_extra(exc)
        if module is not None:
            return Hook(None, f"the monitor needs the dashboards extra ({MONITOR_EXTRA_HINT}; "
                              f"{module} is not installed)", True)
        return Hook(None, f"the monitor ({point.value}) failed to load: {exc}")
    except Exception as exc:  # noqa: BLE001 - a broken plugin must not stop the streams
        return Hook(None, f"the monitor ({point.value}) failed to load: {type(exc).__name__}: {exc}")
    if not callable(serve):
        return Hook(None, f"the monitor entry point {point.value} is not callable")
    return Hook(serve)
