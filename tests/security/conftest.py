"""The security suite: each finding of the independent probe reproduced against real parts.

A gateway on a background loop (``gw``, ``serve_with``) comes from the gateway suite's fixtures; tests
that need a whole ``nexus up`` start one in a subprocess on loopback.
"""

from __future__ import annotations

from tests.gateway.conftest import gw, serve_with  # noqa: F401 - fixtures shared with the gateway suite
