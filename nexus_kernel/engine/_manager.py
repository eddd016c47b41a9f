"""Named streams with a lifecycle, persisted under ``.nexus/`` so that a restart restores them.

Lifecycle::

    create ─► created ─start─► running ─pause─► paused ─resume─► running
                                  │  └─────────stop──────┴──► stopped ─start─► running
                                  └─(source error)─► failed ─start─► running
    delete: from created, stopped or failed (a running stream must be stopped first)

Any other transition is refused with :class:`StreamStateError`, whose message says what is allowed.

The registry file (``streams.json``) holds each stream's spec and its *desired* state. Several
processes may share it: the CLI changes desired states; the process that runs the streams
(``nexus up``) calls :meth:`StreamManager.reconcile` periodically and makes the running pipelines match.
Writes are atomic (write, fsync, rename) under an exclusive ``flock``; the file and its tmp file are
owner-only (0600).

Specs are data: every spec the manager saves or runs goes through :meth:`Pipeline.from_spec
<nexus_kernel.engine.Pipeline.from_spec>` (registered sources, steps and transforms only; files only
inside the data directories; secrets as references ``{"secret": "NAME"}``, never in clear). So a
pipeline built in a notebook can be saved only if its steps are registered (a plain callable cannot)
and its files lie in a data directory. ``status()`` rows never carry a secret or a DSN password.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import time
from collections.abc import Iterator
from typing import Any

from ..config import Settings, redact
from ._pipeline import Pipeline, PipelineStateError
from ._specs import SpecError

__all__ = ["StreamManager", "StreamStateError", "NAME_PATTERN"]

NAME_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")

_ALLOWED: dict[str, dict[str, str]] = {
    "start": {"created": "running", "stopped": "running", "failed": "running"},
    "pause": {"running": "paused"},
    "resume": {"paused": "running"},
    "stop": {"running": "stopped", "paused": "stopped"},
    "delete": {"created": "deleted", "stopped": "deleted", "failed": "deleted"},
}


# Why a refused move is refused, where the state alone does not say it (appended to the error).
_WHY_NOT: dict[tuple[str, str], str] = {
    ("delete", "running"): ", and a stream is deleted only once stopped, so that no pipeline keeps running without "
                           "its saved spec: stop it first",
    ("delete", "paused"): ", and a paused stream still holds its source and open windows; a stream is deleted only "
                          "once stopped (which flushes them): stop it first",
}


class StreamStateError(RuntimeError):
    """A lifecycle transition that the stream's state does not allow, or an unknown stream."""


class StreamManager:
    """Owns the named streams of one Nexus home.

    Parameters
    ----------
    settings
        Where the registry lives (``settings.home``) and what pipelines are built with.
    services
        Shared services (store, bus, cache) handed to every pipeline's steps.
    run
        Whether this manager runs pipelines (``nexus up``) or only edits the registry (the CLI).
    loop
        The event loop its pipelines run on (a runtime's pipeline thread); default: the caller's loop,
        else the engine's background loop (see :meth:`Pipeline.start`).
    """

    def __init__(self, settings: Settings, services: dict[str, Any] | None = None, run: bool = True,
                 loop: Any = None) -> None:
        self.settings = settings
        self.services = services or {}
        self.run = run
        self.loop = loop
        self.path = settings.registry_path
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_path = self.path.with_suffix(".lock")
        self.pipelines: dict[str, Pipeline] = {}

    # -- registry file -------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, Any]]:
        with open(self._lock_path, "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                data = self._read()
                before = json.dumps(data, sort_keys=True)
                yield data
                if json.dumps(data, sort_keys=True) != before:
                    self._write(data)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _read(self) -> dict[str, Any]:
        if not self.path.exists():
            return {"version": 1, "streams": {}}
        try:
            data = json.loads(self.path.read_text())
        except ValueError as exc:
            raise StreamStateError(f"stream registry {self.path} is corrupt: {exc}") from None
        data.setdefault("streams", {})
        return data

    def _write(self, data: dict[str, Any]) -> None:
        tmp = self.path.with_suffix(".tmp")
        # owner-only: specs hold secret references, not secrets, but a registry of another version may not
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)  # a tmp file left by an older version keeps its mode through O_TRUNC
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=2, sort_keys=True, default=str)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)

    def streams(self) -> dict[str, dict[str, Any]]:
        """Every stream's registry entry (spec, state, timestamps)."""
        return self._read()["streams"]

    # -- lifecycle -----------------------------------------------------------------------------

    def create(self, name: str, pipeline: Pipeline | None = None, spec: dict[str, Any] | None = None) -> dict[str, Any]:
        """Register a stream from a pipeline (or its spec). It starts in state ``created``."""
        if not NAME_PATTERN.match(name or ""):
            raise StreamStateError(
                f"invalid stream name {name!r}: use a letter then letters, digits, '_', '.', '-' (max 64)")
        if pipeline is None and spec is None:
            raise StreamStateError("create needs a pipeline or a spec")
        if pipeline is not None:
            pipeline.name = name
            spec = pipeline.spec()
        assert spec is not None
        spec = {**spec, "name": name}
        Pipeline.from_spec(spec, self.settings)  # refuse a spec that cannot be rebuilt, now
        with self._locked() as data:
            if name in data["streams"]:
                raise StreamStateError(f"stream '{name}' already exists")
            now = time.time()
            entry = {"spec": spec, "state": "created", "created_at": now, "updated_at": now}
            data["streams"][name] = entry
        if pipeline is not None and self.run:
            self.pipelines[name] = pipeline
        return entry

    def _transition(self, name: str, action: str) -> str:
        with self._locked() as data:
            entry = data["streams"].get(name)
            if entry is None:
                raise StreamStateError(f"no stream named '{name}'")
            state = entry["state"]
            target = _ALLOWED[action].get(state)
            if target is None:
                allowed = sorted(a for a, moves in _ALLOWED.items() if state in moves)
                why = _WHY_NOT.get((action, state), "")
                raise StreamStateError(
                    f"cannot {action} stream '{name}': it is {state}{why} (allowed now: {', '.join(allowed) or 'none'})")
            if target == "deleted":
                del data["streams"][name]
            else:
                entry["state"] = target
                entry["updated_at"] = time.time()
                entry.pop("error", None)
        return target

    def start(self, name: str) -> str:
        """Start a stream; a saved spec that is refused now (see :class:`~nexus_kernel.engine.SpecError`)
        leaves the stream ``failed`` with the reason, and the error is raised."""
        state = self._transition(name, "start")
        if self.run:
            try:
                self._run(name)
            except SpecError as exc:
                self._mark_failed(name, str(exc))
                raise
        return state

    def pause(self, name: str) -> str:
        state = self._transition(name, "pause")
        if self.run and name in self.pipelines:
            self.pipelines[name].pause()
        return state

    def resume(self, name: str) -> str:
        state = self._transition(name, "resume")
        if self.run and name in self.pipelines:
            self.pipelines[name].resume()
        return state

    def stop(self, name: str) -> str:
        state = self._transition(name, "stop")
        if self.run:
            self._halt(name)
        return state

    def delete(self, name: str) -> None:
        self._transition(name, "delete")
        self.pipelines.pop(name, None)

    def status(self, name: str | None = None) -> list[dict[str, Any]] | dict[str, Any]:
        entries = self.streams()
        if name is not None and name not in entries:
            raise StreamStateError(f"no stream named '{name}'")
        rows = []
        for key in [name] if name else sorted(entries):
            entry = entries[key]
            pipe = self.pipelines.get(key)
            row = {"name": key, "state": entry["state"], "source": entry["spec"]["source"]["kind"],
                   "rate": 0.0, "lag": None, "records_in": 0, "records_out": 0, "dead_letters": 0,
                   "errors": 0, "last_error": entry.get("error")}
            if pipe is not None:
                live = pipe.status()
                row.update({k: live[k] for k in ("rate", "lag", "records_in", "records_out", "dead_letters",
                                                  "errors", "last_error", "dead_letter_reasons")})
                if live["state"] == "failed":
                    row["state"] = "failed"
            if row["last_error"]:  # a pipeline scrubs its own; this covers errors saved by older versions
                row["last_error"] = redact(str(row["last_error"]))
            rows.append(row)
        return rows[0] if name else rows

    # -- running -------------------------------------------------------------------------------

    def _build(self, name: str) -> Pipeline:
        entry = self.streams()[name]
        pipe = Pipeline.from_spec(entry["spec"], self.settings)
        pipe.services.update(self.services)
        return pipe

    def _run(self, name: str) -> None:
        pipe = self.pipelines.get(name)
        if pipe is None or pipe.state in ("stopped", "failed"):
            pipe = self._build(name) if pipe is None or pipe.source.exhausted else pipe
            self.pipelines[name] = pipe
        if pipe.state == "created" or pipe.state in ("stopped", "failed"):
            pipe.services.update(self.services)
            pipe.start(loop=self.loop)

    def _halt(self, name: str) -> None:
        pipe = self.pipelines.get(name)
        if pipe is not None and pipe.state in ("running", "paused"):
            pipe.stop()

    def restore(self) -> list[str]:
        """Start the streams whose saved state is running or paused (after a restart)."""
        started = []
        for name, entry in self.streams().items():
            if entry["state"] in ("running", "paused"):
                try:
                    self._run(name)
                except SpecError as exc:  # one refused spec must not keep the others from running
                    self._mark_failed(name, str(exc))
                    continue
                if entry["state"] == "paused":
                    self.pipelines[name].pause()
                started.append(name)
        return started

    def reconcile(self) -> None:
        """Make running pipelines match the registry (changed by the CLI or another process)."""
        entries = self.streams()
        for name in list(self.pipelines):
            if name not in entries:
                self._halt(name)
                del self.pipelines[name]
        for name, entry in entries.items():
            want = entry["state"]
            pipe = self.pipelines.get(name)
            have = pipe.state if pipe is not None else "created"
            if have == "failed" and pipe is not None and want in ("running", "paused"):
                if entry.get("updated_at", 0) <= (pipe.failed_at or 0):
                    self._mark_failed(name, pipe.last_error)  # failed on its own: say so, don't retry
                    continue
            try:
                if want == "running" and have not in ("running", "paused"):
                    self._run(name)
                elif want == "running" and have == "paused":
                    pipe.resume()  # type: ignore[union-attr]
                elif want == "paused" and have == "running":
                    pipe.pause()  # type: ignore[union-attr]
                elif want == "paused" and have not in ("running", "paused"):
                    self._run(name)
                    self.pipelines[name].pause()
                elif want == "stopped" and have in ("running", "paused"):
                    self._halt(name)
            except PipelineStateError:
                pass  # raced with the pipeline's own end; the next reconcile sees the new state
            except SpecError as exc:  # a spec saved by another process that this one refuses
                self._mark_failed(name, str(exc))

    def _mark_failed(self, name: str, error: str | None) -> None:
        with self._locked() as data:
            entry = data["streams"].get(name)
            if entry is not None:
                entry["state"] = "failed"
                entry["error"] = error
                entry["updated_at"] = time.time()

    def shutdown(self) -> None:
        """Stop every pipeline of this process without changing the saved states (restart restores)."""
        for pipe in self.pipelines.values():
            if pipe.state in ("running", "paused"):
                with contextlib.suppress(PipelineStateError):
                    pipe.stop()

    async def shutdown_async(self) -> None:
        for pipe in self.pipelines.values():
            if pipe.state in ("running", "paused"):
                with contextlib.suppress(PipelineStateError):
                    await pipe.stop_async()


