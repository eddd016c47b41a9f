"""Who owns a Nexus home: an exclusive ``flock`` on ``home/up.lock``, held for the life of ``nexus up``.

The kernel decides, not a PID file: the lock is dropped when its process ends in any way (SIGKILL
included), so a restart right after a crash starts, and a stale PID that now names an unrelated live
process blocks nothing. The owner writes its PID into the lock file as information (who holds it);
:func:`holder_pid` reports it only while the lock is actually held.

Example
-------
>>> import tempfile
>>> home = Path(tempfile.mkdtemp())
>>> with HomeLock(home) as lock:
...     holder_pid(home) == os.getpid()
True
>>> holder_pid(home) is None
True

Caveats
-------
* A flock belongs to an open file description, which a *forked* child shares: a child outliving its
  parent would keep the home locked. Forked children therefore close their copy at once
  (``os.register_at_fork``; closing drops only the child's reference, the parent keeps the lock).
  Spawned children (``subprocess``, papermill kernels) never get it: Python's descriptors are not
  inheritable.
* The lock file is never deleted: unlinking a lock file lets two processes lock two different inodes
  of the same name. On a clean stop its PID is erased instead.
* A probe (:func:`holder_pid`) takes a shared lock for an instant; :meth:`HomeLock.acquire` retries
  for ``wait`` seconds so that a probe running at that moment is not mistaken for an owner.
* Right after the lock is taken and before the PID is written (microseconds), :func:`holder_pid`
  answers 0: held, holder not known yet.
* Network file systems may not honour ``flock``: keep a home on a local disk.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
from pathlib import Path
from types import TracebackType

__all__ = ["HomeBusyError", "HomeLock", "LOCK_NAME", "holder_pid"]

LOCK_NAME = "up.lock"

#: locks held by this process, closed in forked children (see the module caveats)
_HELD: set[HomeLock] = set()


class HomeBusyError(RuntimeError):
    """Another live process holds the lock of this Nexus home."""


class HomeLock:
    """The exclusive lock of one Nexus home (``home/up.lock``).

    Parameters
    ----------
    home
        The Nexus home directory (created when missing).
    wait
        Seconds :meth:`acquire` keeps trying while the lock is taken, before it gives up. It covers a
        concurrent probe, not a concurrent owner: a second ``nexus up`` is refused after this long.
    """

    def __init__(self, home: str | Path, wait: float = 0.5) -> None:
        self.home = Path(home)
        self.path = self.home / LOCK_NAME
        self.wait = wait
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> HomeLock:
        """Take the lock and write this PID into it; raises :class:`HomeBusyError` naming the holder."""
        if self._fd is not None:
            return self
        self.home.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        deadline = time.monotonic() + self.wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    os.close(fd)
                    raise
                if time.monotonic() >= deadline:
                    os.close(fd)
                    pid = holder_pid(self.home)
                    who = f"pid {pid}" if pid else "another process"
                    raise HomeBusyError(f"nexus up is already running for {self.home} ({who}); "
                                        "stop it first, or use another --home") from None
                time.sleep(0.02)
        self._fd = fd
        _HELD.add(self)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return self

    def release(self) -> None:
        """Erase the PID and drop the lock (closing the descriptor drops it; so does the process's end)."""
        fd, self._fd = self._fd, None
        _HELD.discard(self)
        if fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)

    def _forget_in_child(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def __enter__(self) -> HomeLock:
        return self.acquire()

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


def holder_pid(home: str | Path) -> int | None:
    """PID of the process holding the lock of ``home``; None when no process holds it.

    Answered by the kernel (a non-blocking shared lock attempt), never by whether a PID is alive.
    0 means held by a holder that has not written its PID yet (see the module caveats).
    """
    path = Path(home) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
            text = os.pread(fd, 32, 0).decode(errors="replace").strip()
            return int(text) if text.isdigit() else 0
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _close_in_forked_child() -> None:
    for lock in list(_HELD):
        lock._forget_in_child()
    _HELD.clear()


os.register_at_fork(after_in_child=_close_in_forked_child)
