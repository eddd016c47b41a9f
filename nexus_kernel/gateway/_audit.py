"""The audit log: one JSON line per write and per refused request.

Each entry: ``time`` (epoch seconds), ``principal`` (``key:<id>`` / ``jwt:<sub>`` / ``anonymous``, never a
credential), ``role``, ``address``, ``method``, ``path`` (no query string: tokens may ride there),
``action``, ``status``, ``outcome`` (``ok`` | ``refused`` | ``error``) and a short ``detail``.

Kept in ``home/audit.jsonl`` (0600, append-only, one ``write`` per line so lines from concurrent
processes do not interleave) and in a bounded in-memory ring that ``GET /api/audit`` serves.

Caveat: the file is not rotated; ship it to your log system (it is plain JSON lines).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import deque
from pathlib import Path
from typing import Any

__all__ = ["AuditLog"]

log = logging.getLogger("nexus_kernel.gateway.audit")


class AuditLog:
    def __init__(self, path: str | Path | None, keep: int = 10_000) -> None:
        self.path = Path(path) if path is not None else None
        self.recent: deque[dict[str, Any]] = deque(maxlen=keep)
        self._fd: int | None = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def record(self, **entry: Any) -> None:
        entry = {"time": round(time.time(), 6), **entry}
        self.recent.append(entry)
        line = json.dumps(entry, default=str, separators=(",", ":"))
        if self._fd is not None:
            os.write(self._fd, (line + "\n").encode())
        log.info(line)

    def tail(self, limit: int = 100, outcome: str | None = None) -> list[dict[str, Any]]:
        rows = [e for e in self.recent if outcome is None or e.get("outcome") == outcome]
        return rows[-limit:]

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
