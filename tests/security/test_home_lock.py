"""The home's process lock: the kernel's flock decides who runs ``nexus up``, never a PID that is alive.

Findings reproduced: a stale ``up.pid`` naming an unrelated live process blocked ``nexus up``, and a
restart 0.5 s after a SIGKILL said "already running". Real ``.venv/bin/nexus up`` processes on a temp
home (no gateway, no monitor: the lock is taken before either would start).
"""

from __future__ import annotations

import fcntl
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from nexus_kernel._home_lock import LOCK_NAME, HomeBusyError, HomeLock, holder_pid

NEXUS = str(Path(sys.executable).with_name("nexus"))
READY = "nexus up: home"


def _env(home: Path) -> dict[str, str]:
    return {**os.environ, "NEXUS_HOME": str(home), "NEXUS_PORT": "0", "NEXUS_MONITOR_PORT": "0",
            "NEXUS_SIM_RATE": "100", "NEXUS_SIM_SERIES": "2", "NEXUS_STORE": "memory"}


def _up(home: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([NEXUS, "up", "--headless", "--no-gateway", "--no-monitor", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(home))


def _wait_ready(proc: subprocess.Popen, timeout: float = 60) -> str:
    """Lines of ``proc`` up to its ready line (fails with its stderr when it exits first)."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            proc.wait(5)
            pytest.fail(f"nexus up exited ({proc.returncode}) before it was ready: {proc.stderr.read()}")
        seen.append(line)
        if line.startswith(READY):
            return "".join(seen)
    pytest.fail(f"nexus up not ready after {timeout}s: {''.join(seen)}")


def _stop(proc: subprocess.Popen) -> tuple[int, str]:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        out, _ = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return proc.returncode, out


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([NEXUS, *args], capture_output=True, text=True, timeout=60, env=_env(home))


def test_a_stale_pid_naming_a_live_unrelated_process_blocks_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    unrelated = subprocess.Popen(["sleep", "120"])
    try:
        # what a crashed owner leaves behind, naming a PID that is alive now (the old check trusted it)
        (home / "up.pid").write_text(str(unrelated.pid))
        (home / LOCK_NAME).write_text(f"{unrelated.pid}\n")
        (home / "status.json").write_text('{"time": 0, "streams": [{"name": "sensors", "records_in": 99}]}')
        assert holder_pid(home) is None
        # the CLI asks the lock too: nobody applies its change now, and the stale status is not shown
        created = _cli(home, "streams", "create", "plant", "--start")
        assert created.returncode == 0, created.stderr
        assert "takes effect when `nexus up` runs" in created.stdout
        listed = _cli(home, "streams", "list", "--json")
        assert '"records_in": 99' not in listed.stdout

        ran = subprocess.run([NEXUS, "up", "--headless", "--no-gateway", "--no-monitor", "--duration", "1"],
                             capture_output=True, text=True, timeout=90, env=_env(home))
        assert ran.returncode == 0, ran.stderr
        assert READY in ran.stdout and "stopped cleanly" in ran.stdout
        assert unrelated.poll() is None  # untouched
        assert not (home / "up.pid").exists()  # the misleading legacy file is gone
        assert (home / LOCK_NAME).read_text() == ""  # a clean stop erases its PID
    finally:
        unrelated.kill()
        unrelated.wait()


def test_two_concurrent_ups_on_one_home_the_second_is_refused_naming_the_first(tmp_path: Path) -> None:
    home = tmp_path / "home"
    first, second = _up(home), _up(home)  # started together: exactly one may own the home
    try:
        procs = {first.pid: first, second.pid: second}
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and all(p.poll() is None for p in procs.values()):
            time.sleep(0.1)
        losers = [p for p in procs.values() if p.poll() is not None]
        assert len(losers) == 1, "one of the two must be refused"
        loser = losers[0]
        winner = second if loser is first else first
        _wait_ready(winner)
        err = loser.stderr.read()
        assert loser.returncode == 1
        assert err.strip() == (f"error: nexus up is already running for {home} (pid {winner.pid}); "
                               "stop it first, or use another --home")
        assert holder_pid(home) == winner.pid
        # a third, started while the first runs, is refused the same way
        third = subprocess.run([NEXUS, "up", "--headless", "--no-gateway", "--no-monitor", "--duration", "1"],
                               capture_output=True, text=True, timeout=90, env=_env(home))
        assert third.returncode == 1 and f"already running for {home} (pid {winner.pid})" in third.stderr
        assert winner.poll() is None, "the refused start must not disturb the owner"
        code, out = _stop(winner)
        assert code == 0 and "stopped cleanly" in out
    finally:
        for proc in (first, second):
            _stop(proc)


def test_sigkill_then_immediate_restart_starts(tmp_path: Path) -> None:
    home = tmp_path / "home"
    crashed = _up(home)
    try:
        _wait_ready(crashed)
        assert holder_pid(home) == crashed.pid
        crashed.send_signal(signal.SIGKILL)
        crashed.wait(10)
        # the lock file still names the dead owner; the kernel dropped the lock with it
        assert (home / LOCK_NAME).read_text().strip() == str(crashed.pid)
        assert holder_pid(home) is None
        restarted = _up(home)
        try:
            text = _wait_ready(restarted, timeout=60)
            assert "streams running: sensors" in text
            assert holder_pid(home) == restarted.pid
        finally:
            code, out = _stop(restarted)
        assert code == 0, out
    finally:
        _stop(crashed)


def test_a_forked_child_does_not_keep_the_home_locked_after_its_parent_dies(tmp_path: Path) -> None:
    """A flock lives as long as any copy of its descriptor: forked children must drop theirs."""
    home = tmp_path / "home"
    script = (
        "import os, sys, time\n"
        "from nexus_kernel._home_lock import HomeLock\n"
        f"HomeLock({str(home)!r}).acquire()\n"
        "child = os.fork()\n"
        "if child == 0:\n"
        "    time.sleep(30); os._exit(0)\n"
        "print(child, flush=True)\n"
        "os._exit(0)\n"  # the owner dies at once; its child lives on
    )
    parent = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert parent.returncode == 0, parent.stderr
    child = int(parent.stdout.strip())
    try:
        os.kill(child, 0)  # the child is alive...
        assert holder_pid(home) is None  # ...and the home is free
        with HomeLock(home) as lock:
            assert lock.held and holder_pid(home) == os.getpid()
    finally:
        os.kill(child, signal.SIGKILL)


def test_a_probe_at_the_moment_of_acquiring_is_not_mistaken_for_an_owner(tmp_path: Path) -> None:
    """``holder_pid`` takes a shared lock for an instant: an acquire at that moment waits it out."""
    home = tmp_path / "home"
    home.mkdir()
    path = home / LOCK_NAME
    path.write_text("")
    with open(path) as probe:
        fcntl.flock(probe, fcntl.LOCK_SH)  # a probe that lingers 0.2 s
        started = time.monotonic()
        release_at = started + 0.2
        threading.Timer(0.2, lambda: fcntl.flock(probe, fcntl.LOCK_UN)).start()
        with HomeLock(home, wait=2.0) as lock:
            assert lock.held and time.monotonic() >= release_at
    busy = HomeLock(home, wait=0.1)
    with HomeLock(home):
        with pytest.raises(HomeBusyError, match=re.escape(f"already running for {home} (pid {os.getpid()})")):
            busy.acquire()
