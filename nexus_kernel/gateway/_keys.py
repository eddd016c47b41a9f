"""API keys: created, listed, revoked; only their SHA-256 hashes are kept.

A key reads ``nxk_<id>_<secret>``: ``id`` (12 hex) finds the entry, ``secret`` (32 random bytes,
URL-safe) proves possession. Because the secret is random and long, one SHA-256 is the right hash (a
slow password hash buys nothing against 256 bits of entropy and would cost every request); comparison is
constant-time. The full key is shown once, at creation.

Where: ``home/api_keys.json`` with 0600 permissions, written atomically under a lock. The shared store
has no table for keys (its tables are data, not credentials); a store table ``api_keys`` (id, name, role,
streams, hash, created_at, revoked_at) would let several hosts share keys — see the gateway report.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ._auth import ROLES, Principal

__all__ = ["KeyStore"]


class KeyStore:
    """The API keys of one Nexus home.

    Example
    -------
    >>> import tempfile
    >>> keys = KeyStore(tempfile.mkdtemp() + "/api_keys.json")
    >>> key, entry = keys.create("ci", "analyst")
    >>> keys.verify(key).role, keys.revoke(entry["id"]), keys.verify(key), keys.active(entry["id"])
    ('analyst', True, None, False)
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._cache: tuple[tuple[int, int, int], dict[str, Any]] | None = None

    @classmethod
    def for_home(cls, home: str | Path) -> KeyStore:
        return cls(Path(home) / "api_keys.json")

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, Any]]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                data = self._load()
                yield data
                tmp = self.path.with_suffix(".tmp")
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "w") as fh:
                    json.dump(data, fh, indent=1, sort_keys=True)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.chmod(tmp, 0o600)
                os.replace(tmp, self.path)
                self._cache = None
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _load(self) -> dict[str, Any]:
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return {"version": 1, "keys": {}}

    def _entries(self) -> dict[str, Any]:
        # Re-read when the file changed (the CLI may revoke a key while the gateway runs). Every write
        # replaces the file, so its inode changes even when two writes share a coarse mtime tick.
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return {}
        version = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if self._cache is None or self._cache[0] != version:
            self._cache = (version, self._load()["keys"])
        return self._cache[1]

    def create(self, name: str, role: str, streams: list[str] | None = None) -> tuple[str, dict[str, Any]]:
        """A new key; returns the full key (shown once) and its public entry."""
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r} (roles: {', '.join(ROLES)})")
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        if isinstance(streams, str):
            raise TypeError("streams is a list of stream names, not one string")
        # an empty list scopes the key to no stream; only None (no scope) means every stream
        entry = {"id": key_id, "name": name, "role": role, "streams": sorted(streams) if streams is not None else None,
                 "hash": _hash(secret), "created_at": time.time(), "revoked_at": None}
        with self._locked() as data:
            data["keys"][key_id] = entry
        return f"nxk_{key_id}_{secret}", _public(entry)

    def list(self) -> list[dict[str, Any]]:
        return [_public(e) for e in sorted(self._entries().values(), key=lambda e: e["created_at"])]

    def revoke(self, key_id: str) -> bool:
        with self._locked() as data:
            entry = data["keys"].get(key_id)
            if entry is None or entry["revoked_at"] is not None:
                return False
            entry["revoked_at"] = time.time()
        return True

    def active(self, key_id: str) -> bool:
        """Whether the key ``key_id`` exists and is not revoked (the file is re-read if it changed): how an
        open WebSocket re-checks its key."""
        entry = self._entries().get(key_id)
        return entry is not None and entry["revoked_at"] is None

    def verify(self, key: str) -> Principal | None:
        parts = key.split("_", 2)
        if len(parts) != 3 or parts[0] != "nxk":
            return None
        entry = self._entries().get(parts[1])
        if entry is None or entry["revoked_at"] is not None:
            return None
        if not hmac.compare_digest(entry["hash"], _hash(parts[2])):
            return None
        stored = entry.get("streams")
        if stored is not None and not (isinstance(stored, list) and all(isinstance(s, str) for s in stored)):
            return None  # a scope that is no list of names (a hand-edited file) admits nothing
        streams = frozenset(stored) if stored is not None else None
        return Principal(f"key:{entry['id']}", entry["role"], "key", streams)


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _public(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in entry.items() if k != "hash"}
