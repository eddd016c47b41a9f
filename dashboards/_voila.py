"""Voila hooks kept with the dashboards (configured in ``deploy/voila/voila.py``).

Why ``prelaunch_hook`` sets the XSRF cookie: when a Voila page is closed, its ``beforeunload`` handler
posts ``_xsrf`` (read from the ``_xsrf`` cookie) to ``/voila/api/shutdown/<kernel>``. Voila streams the
page and flushes its headers before anything reads ``handler.xsrf_token``, so the cookie was never
set, the beacon carried an empty token, the server answered "403 '_xsrf' argument missing" — and the
kernel of every closed page kept running. Reading ``xsrf_token`` in the prelaunch hook (called before
the first byte is written) sets the cookie; the shutdown request then passes the normal XSRF check.
Nothing is disabled: a cross-site page still cannot shut kernels down (it cannot read the cookie).
"""

from __future__ import annotations

from typing import Any

__all__ = ["prelaunch_hook"]


def prelaunch_hook(req: Any, notebook: Any = None, cwd: str | None = None) -> None:
    """Voila ``prelaunch_hook``: make sure this page's response sets the ``_xsrf`` cookie."""
    _ = req.xsrf_token  # tornado sets the cookie as a side effect of first access
    return None
