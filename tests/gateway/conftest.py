"""A real gateway on a background event loop, with a memory store, for the tests to call over HTTP."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from nexus_kernel.config import load_settings
from nexus_kernel.gateway import Services, mint_token, start_gateway


@dataclass
class Running:
    url: str
    settings: Any
    services: Any
    loop: asyncio.AbstractEventLoop
    gateway: Any

    def token(self, role: str = "admin", **kw: Any) -> str:
        return mint_token(self.settings, f"test-{role}", role, **kw)

    def call(self, coro: Any, timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)


def serve(tmp_path, runtime: Any = None, **overrides: Any) -> Iterator[Running]:
    """A gateway on a loop of its own; ``runtime(settings)`` builds the Runtime to hand it (default: the
    gateway opens one itself)."""
    options = {"home": tmp_path / "home", "store": "memory", "port": 0, "jwt_secret": "s3cr3t-" + uuid.uuid4().hex}
    options.update(overrides)
    settings = load_settings(**options)
    given = runtime(settings) if runtime is not None else None
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def start() -> Any:
        return await start_gateway(settings, Services.create(settings, runtime=given))

    gateway = asyncio.run_coroutine_threadsafe(start(), loop).result(30)
    try:
        yield Running(gateway.url, settings, gateway.services, loop, gateway)
    finally:
        asyncio.run_coroutine_threadsafe(gateway.stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
        if given is not None:
            given.close()


@pytest.fixture
def gw(tmp_path) -> Iterator[Running]:
    yield from serve(tmp_path)


@pytest.fixture
def serve_with(tmp_path):
    """Start a gateway with other settings: ``with serve_with(max_body_bytes=10) as g:``."""
    import contextlib

    @contextlib.contextmanager
    def make(**overrides: Any) -> Iterator[Running]:
        yield from serve(tmp_path, **overrides)

    return make
