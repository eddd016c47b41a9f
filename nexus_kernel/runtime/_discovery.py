"""How other processes of a home find its live runtime: ``home/runtime.json``, written by ``nexus up``.

The file names the gateway's URL and the PID of the owner; it is owner-only (0600) and removed on a clean
stop. It is believed only while the home's lock is held (see :mod:`nexus_kernel._home_lock`), so a file
left by a killed process is ignored at once.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from typing import Any

from ..config import Settings

__all__ = ["advertise", "withdraw", "RUNTIME_FILE"]

RUNTIME_FILE = "runtime.json"


def advertise(settings: Settings, **endpoints: Any) -> None:
    """Write ``home/runtime.json`` with this process's PID and ``endpoints`` (``gateway="http://..."``)."""
    path = settings.home / RUNTIME_FILE
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"pid": os.getpid(), "started": time.time(), **endpoints}, fh)
    os.replace(tmp, path)


def withdraw(settings: Settings) -> None:
    """Remove ``home/runtime.json`` (on a clean stop)."""
    with contextlib.suppress(FileNotFoundError):
        (settings.home / RUNTIME_FILE).unlink()
