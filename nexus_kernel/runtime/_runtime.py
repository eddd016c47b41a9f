"""The runtime: one per process, owning its services, its stream manager and the streams of its home.

Everything that runs pipelines or serves what they produce receives a :class:`Runtime` and builds no
service of its own: ``nexus up``, the gateway, the scheduler, the Jupyter server extension and the
embedded monitor. Consumers read the live bus (topics from :func:`~nexus_kernel.storage.topic`) and the
store, never a pipeline node.

The pipelines run on the runtime's own event loop, in a thread of their own (``nexus-pipelines``), so
the loop that serves the gateway and monitor sessions only serves. The services are thread-safe: the
memory bus hops to each subscriber's loop, the stores serialize their writers, the cache locks.

Example
-------
>>> from nexus_kernel.config import Settings
>>> rt = Runtime.open(Settings(home="/tmp/nexus-doc-home", store="memory"))   # doctest: +SKIP
>>> rt.start()                       # the saved streams (the built-in one on first start)  # doctest: +SKIP
['sensors']
>>> rt.close()                       # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..config import Settings
from ..engine import Pipeline, StreamManager
from ._default import DEFAULT_STREAM, default_spec

__all__ = ["Runtime", "RuntimeServices", "PipelineThread", "current"]

_current: list["Runtime"] = []


def current() -> "Runtime | None":
    """The runtime this process started last and has not closed (None: this process runs none).

    What code that runs inside the owner of a home (a scheduled job's bookkeeping, the Jupyter
    extension) uses instead of opening the home's store a second time.
    """
    return _current[-1] if _current else None


@dataclass
class RuntimeServices:
    """The store, cache and live bus every stream of a process shares."""

    store: Any = None
    cache: Any = None
    bus: Any = None
    #: the services :meth:`open` opened (the rest were lent by the caller): all that :meth:`close` closes
    owned: frozenset[str] = field(default=frozenset(), repr=False)

    @classmethod
    def open(cls, settings: Settings, **given: Any) -> RuntimeServices:
        """Open, through their registries, what is not ``given`` (``store=``, ``cache=``, ``bus=``)."""
        from ..storage import open_bus, open_cache, open_store

        openers: dict[str, Callable[[Settings], Any]] = {"store": open_store, "cache": open_cache, "bus": open_bus}
        opened: dict[str, Any] = {}
        try:
            for name, opener in openers.items():
                opened[name] = given[name] if given.get(name) is not None else opener(settings)
        except BaseException:
            for name, service in opened.items():
                if given.get(name) is None:
                    with contextlib.suppress(Exception):
                        service.close()
            raise
        return cls(**opened, owned=frozenset(n for n in openers if given.get(n) is None))

    def as_dict(self) -> dict[str, Any]:
        """What a pipeline's steps find in their context (absent services left out)."""
        return {k: v for k, v in (("store", self.store), ("cache", self.cache), ("bus", self.bus)) if v is not None}

    def close(self) -> None:
        """Close what :meth:`open` opened; lent services stay open for their owner."""
        for name in ("bus", "cache", "store"):
            service = getattr(self, name)
            if service is not None and name in self.owned:
                with contextlib.suppress(Exception):
                    service.close()


class PipelineThread:
    """An event loop in a daemon thread of its own: where a runtime's pipelines run."""

    def __init__(self, name: str = "nexus-pipelines") -> None:
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.call_soon(ready.set)
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, name=name, daemon=True)
        self.thread.start()
        ready.wait()

    def stop(self, timeout: float = 5.0) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout)
        if not self.thread.is_alive():
            self.loop.close()


class Runtime:
    """The services, stream manager and streams of one process.

    Parameters
    ----------
    settings
        The home (its stream registry) and the services' settings.
    services
        Services to share (default: opened from ``settings``). The runtime closes only what it opened.
    thread
        Run the pipelines on a thread of their own (default). ``False`` runs them on the caller's loop,
        as a notebook does.
    """

    def __init__(self, settings: Settings, services: RuntimeServices | None = None, *, thread: bool = True) -> None:
        self.settings = settings
        self._owns_services = services is None
        self.services = services if services is not None else RuntimeServices.open(settings)
        self._thread = PipelineThread() if thread else None
        self.manager = StreamManager(settings, services=self.services.as_dict(), run=True,
                                     loop=self._thread.loop if self._thread else None)
        self._closed = False
        #: the anchoring service (nexus_kernel.anchoring), started by :meth:`start` when ``anchor_enabled``
        self.anchoring: Any = None

    @classmethod
    def open(cls, settings: Settings, *, thread: bool = True, **given: Any) -> Runtime:
        """A runtime over the services ``settings`` name (``store=``, ``cache=``, ``bus=`` to share yours)."""
        services = RuntimeServices.open(settings, **given)
        runtime = cls(settings, services, thread=thread)
        runtime._owns_services = True  # what it opened, that is: RuntimeServices.close leaves the lent ones
        return runtime

    # -- streams -----------------------------------------------------------------------------------

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The loop the pipelines run on (None: the caller's)."""
        return self._thread.loop if self._thread else None

    @property
    def pipelines(self) -> dict[str, Pipeline]:
        return self.manager.pipelines

    @property
    def store(self) -> Any:
        return self.services.store

    @property
    def bus(self) -> Any:
        return self.services.bus

    @property
    def cache(self) -> Any:
        return self.services.cache

    def ensure_default(self) -> bool:
        """Save and start the built-in stream when the home has no stream yet; True when it did."""
        if self.manager.streams():
            return False
        self.manager.create(DEFAULT_STREAM, spec=default_spec(self.settings))
        self.manager.start(DEFAULT_STREAM)
        return True

    def start(self) -> list[str]:
        """Run the home's saved streams (the built-in one on first start); their names."""
        if self not in _current:
            _current.append(self)
        self.ensure_default()
        names = self.manager.restore()
        self.start_anchoring()
        return names

    def start_anchoring(self) -> Any:
        """Start the anchoring service on this runtime's store and bus (once; None when disabled)."""
        if self.anchoring is None and self.settings.anchor_enabled:
            from ..anchoring import AnchorService

            self.anchoring = AnchorService(self.settings, self.store, self.bus).start()
        return self.anchoring

    def reconcile(self) -> None:
        """Make the running pipelines match the registry (changed by the CLI or another process)."""
        self.manager.reconcile()

    def status(self) -> list[dict[str, Any]]:
        """One row per stream of the home: its saved state and, for those running here, live figures.

        Rows are :meth:`StreamManager.status <nexus_kernel.engine.StreamManager.status>`'s plus
        ``anomalies_injected``: what a simulated source injected so far (None for other sources).
        """
        rows = self.manager.status()
        assert isinstance(rows, list)
        for row in rows:
            pipe = self.manager.pipelines.get(row["name"])
            info = getattr(pipe.source, "info", None) if pipe is not None else None
            row["anomalies_injected"] = info().get("anomalies_injected") if callable(info) else None
        return rows

    # -- closing -----------------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Stop every pipeline (saved states untouched: the next start resumes) and close the services."""
        if self._closed:
            return
        self._closed = True
        await self.manager.shutdown_async()
        self._finish()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.manager.shutdown()
        self._finish()

    def _finish(self) -> None:
        if self.anchoring is not None:  # before the store closes: its last batch is signed and queued
            self.anchoring.close()
            self.anchoring = None
        with contextlib.suppress(ValueError):
            _current.remove(self)
        if self._thread is not None:
            self._thread.stop()
        if self._owns_services:
            self.services.close()

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Runtime(home={str(self.settings.home)!r}, streams={sorted(self.manager.pipelines)})"
