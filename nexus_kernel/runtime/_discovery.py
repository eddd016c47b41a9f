"""How other processes of a home find its live runtime: ``home/runtime.json``, written by ``nexus up``.

The file names the gateway's URL, the PID of the owner and which store it serves (a redacted address,
never a password); it is owner-only (0600) and removed on a clean stop. It is believed only while the
home's lock is held by the PID it names (see :mod:`nexus_kernel._home_lock`), so a file left by a killed
process is ignored at once.

A client needs no extra settings: it signs a short-lived token with the home's own JWT secret (the
owner-only ``home/jwt_secret`` or ``settings.jwt_secret``, the same the gateway verifies with).

Example
-------
>>> live = live_runtime(load_settings(home="/tmp/nexus-home"))   # doctest: +SKIP
>>> live.gateway if live else "no nexus up"                         # doctest: +SKIP
'http://127.0.0.1:8765'
>>> live.client().streams()                                         # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import Settings, redact

__all__ = ["advertise", "withdraw", "live_runtime", "store_identity", "LiveRuntime", "RUNTIME_FILE",
           "CLIENT_ROLE", "TOKEN_TTL"]

RUNTIME_FILE = "runtime.json"
#: role of the tokens a local client signs: reads, and the writes a client of its home makes (job runs,
#: records, stream control); never keys or the audit log
CLIENT_ROLE = "analyst"
#: seconds a locally signed token is valid (a client signs a new one before half of it is gone)
TOKEN_TTL = 900.0


def store_identity(settings: Settings) -> str:
    """What names the store ``settings`` open, comparable across processes and safe to write down.

    The home's DuckDB file however spelled (``duckdb``, ``duckdb:///abs/path``) is its resolved path; a
    server's URL is redacted (its password never reaches ``runtime.json``).
    """
    store = settings.store
    if store == "duckdb":
        return f"duckdb://{(Path(settings.home) / 'nexus.duckdb').resolve()}"
    if store.startswith("duckdb://") and store != "duckdb://":
        return f"duckdb://{Path(store.removeprefix('duckdb://')).resolve()}"
    return redact(store)


def advertise(settings: Settings, **endpoints: Any) -> None:
    """Write ``home/runtime.json`` with this PID, the store it serves and ``endpoints`` (``gateway="http://..."``)."""
    path = settings.home / RUNTIME_FILE
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"pid": os.getpid(), "started": time.time(), "store": store_identity(settings), **endpoints}, fh)
    os.replace(tmp, path)


def _advertised(home: Path) -> dict[str, Any] | None:
    try:
        info = json.loads((home / RUNTIME_FILE).read_text())
    except (FileNotFoundError, ValueError, OSError):
        return None
    return info if isinstance(info, dict) else None


def withdraw(settings: Settings) -> None:
    """Remove ``home/runtime.json`` (on a clean stop)."""
    with contextlib.suppress(FileNotFoundError):
        (settings.home / RUNTIME_FILE).unlink()


@dataclass(frozen=True)
class LiveRuntime:
    """The runtime that owns a home, seen from another process (or from inside it: ``runtime`` is set).

    Attributes
    ----------
    settings
        The caller's settings (the home and the JWT secret or key used to sign tokens).
    pid
        The owner's PID (the holder of the home's lock).
    gateway
        The gateway's URL; None when the owner serves none.
    store
        :func:`store_identity` of the store the owner serves.
    runtime
        The in-process :class:`~nexus_kernel.runtime.Runtime` when the caller is the owner, else None.
    """

    settings: Settings
    pid: int
    gateway: str | None
    store: str | None
    runtime: Any = None

    @property
    def in_process(self) -> bool:
        return self.runtime is not None

    def token(self, ttl: float = TOKEN_TTL) -> str:
        """A token for this gateway, signed with the home's own secret (subject ``local:<this pid>``)."""
        from ..gateway import mint_token

        return mint_token(self.settings, f"local:{os.getpid()}", CLIENT_ROLE, ttl=ttl)

    def client(self, **options: Any) -> Any:
        """An SDK :class:`~nexus_kernel.client.Client` of the owner's gateway (``options``: timeout, retries)."""
        if self.gateway is None:
            raise LookupError(f"nexus up (pid {self.pid}) owns {self.settings.home} but serves no gateway "
                              "(started with --no-gateway): stop it, or restart it with its gateway")
        from ..client import Client

        return Client(self.gateway, self.token(), **options)


#: Seconds a process waits for a ``nexus up`` that holds the home's lock but has not advertised itself
#: yet (it is starting): opening the store meanwhile would take it from under the starting owner.
STARTUP_WAIT = 60.0


def live_runtime(settings: Settings, wait: float = STARTUP_WAIT) -> LiveRuntime | None:
    """The live runtime owning ``settings.home``, or None when no process owns it.

    Believed only while the home's lock is held by the PID ``runtime.json`` names: a file left by a
    killed ``nexus up`` (lock free) or by an earlier owner (another PID holds it now) is ignored. When
    this process is the owner, ``runtime`` is its :func:`~nexus_kernel.runtime.current` runtime.

    While another process holds the lock but has not advertised itself yet (a ``nexus up`` starting),
    this waits up to ``wait`` seconds for it; past that the owner is returned without a gateway, so
    callers report it rather than open the store it is about to open.
    """
    from .._home_lock import holder_pid
    from ._runtime import current

    home = Path(settings.home)
    own = current()
    if own is not None and Path(own.settings.home).resolve() == home.resolve():
        return LiveRuntime(settings, os.getpid(), None, store_identity(own.settings), own)
    deadline = time.monotonic() + wait
    while True:
        holder = holder_pid(home)
        if holder is None:  # nobody owns the home
            return None
        info = _advertised(home)
        if holder and info is not None and info.get("pid") == holder:
            break
        if holder == os.getpid():  # this process holds the lock and has not advertised: never wait on itself
            return None
        if time.monotonic() >= deadline:  # holder 0: an owner that has not written its PID yet
            return LiveRuntime(settings, holder, None, None)
        time.sleep(0.1)
    gateway = info.get("gateway")
    store = info.get("store")
    return LiveRuntime(settings, holder, gateway if isinstance(gateway, str) else None,
                       store if isinstance(store, str) else None)
