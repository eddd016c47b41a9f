"""Constants shared by the dashboard tests (a uniquely named module: test folders are not packages)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "dashboards"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


# BokehJS: lengths of the monitor's line sources in every Bokeh document of the page (Voila has several).
DRAWN_JS = """() => {
  const out = {};
  for (const doc of (window.Bokeh ? Bokeh.documents : [])) {
    for (const name of ['nexus-line-0', 'nexus-line-1', 'nexus-anomalies']) {
      const m = doc.get_model_by_name(name);
      if (m) out[name] = m.data.x.length;
    }
  }
  return out;
}"""


# BokehJS: the widest step (ms) between consecutive x values of the first line (a hole = lost updates).
MAX_GAP_JS = """() => {
  const m = Bokeh.documents[0].get_model_by_name('nexus-line-0');
  const x = Array.from(m.data.x);
  let gap = 0;
  for (let i = 1; i < x.length; i++) gap = Math.max(gap, x[i] - x[i - 1]);
  return gap;
}"""


# BokehJS: what the series picker holds in the browser (options count and chosen series), per document.
PICKER_JS = """() => {
  const out = [];
  for (const doc of (window.Bokeh ? Bokeh.documents : [])) {
    for (const m of doc.all_models) {
      if (String(m.type).includes('MultiChoice')) out.push({options: m.options.length, value: m.value});
    }
  }
  return out;
}"""


class GatewayThread:
    """A real gateway (``start_gateway``) with the built-in simulated stream, on its own event loop thread.

    Its own thread, so that blocking SDK calls from the test (or a monitor tick) never wait on the loop
    that must answer them. ``url``, ``token`` (analyst role), ``manager``; ``stop()`` ends everything.
    """

    def __init__(self, home: Path) -> None:
        import asyncio
        import threading

        self.home = home
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(60)

    async def _start(self) -> None:
        from nexus_kernel.config import load_settings
        from nexus_kernel.gateway import Services, mint_token, start_gateway
        from nexus_kernel.runtime import Runtime
        from nexus_kernel.storage import open_bus, open_store

        settings = load_settings(home=self.home, store="memory", port=0, batch_interval=0.1)
        self.store, self.bus = open_store("memory"), open_bus(settings, backend="memory")
        self.runtime = Runtime.open(settings, store=self.store, bus=self.bus)
        self.runtime.start()  # the built-in stream, on the runtime's pipeline thread
        self.manager = self.runtime.manager
        self.services = Services.create(settings, runtime=self.runtime)
        self.gateway = await start_gateway(settings, self.services)
        self.url = self.gateway.url
        self.token = mint_token(settings, "monitor-test", "analyst")

    async def _stop(self) -> None:
        await self.gateway.stop()
        await self.services.close()
        await self.runtime.aclose()

    def stop(self) -> None:
        import asyncio

        try:
            asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(30)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.bus.close()
            self.store.close()


class MonitorThread:
    """The monitor ``nexus up`` mounts (:func:`dashboards._serve.serve` over a :class:`Runtime`, with its
    login) over the built-in simulated stream, served on an event loop thread of its own: blocking HTTP
    clients and browsers in the test never wait on it. The pipelines run on the runtime's thread.

    ``url`` (the page, no credential), ``settings``, ``runtime``, ``source``, ``auth`` (the server's
    :class:`~dashboards.MonitorAuth`), ``keys`` (the home's API keys), ``served`` (what ``serve``
    returned); ``call(fn)`` runs ``fn`` on the server's loop and returns its result; ``stop()`` ends
    everything. ``settings`` overrides ``load_settings`` (e.g. ``ws_recheck=1``).
    """

    def __init__(self, home: Path, **settings: object) -> None:
        import asyncio
        import threading

        self.home = home
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(settings), self.loop).result(60)

    async def _start(self, overrides: dict) -> None:
        from dashboards._serve import serve
        from nexus_kernel.config import load_settings
        from nexus_kernel.gateway import KeyStore
        from nexus_kernel.runtime import Runtime
        from nexus_kernel.storage import open_store

        self.settings = load_settings(**{"home": self.home, "store": "memory", "batch_interval": 0.1, **overrides})
        self.store = open_store("memory")
        self.runtime = Runtime.open(self.settings, store=self.store)
        self.runtime.start()
        self.served = await serve(self.runtime, port=0, authenticator=None, admin_token="unused-in-tests")
        self.source, self.auth = self.served.source, self.served.auth
        self.keys = KeyStore.for_home(self.home)
        self.base = f"http://127.0.0.1:{self.served.port}"
        self.url = f"{self.base}/monitor"

    def call(self, fn, timeout: float = 30):
        import asyncio

        async def run():
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout)

    def state(self, stream: str = "sensors") -> str:
        return self.call(lambda: self.source.manager.streams()[stream]["state"])

    async def _stop(self) -> None:
        self.served.stop()
        await self.runtime.aclose()

    def stop(self) -> None:
        import asyncio

        try:
            asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(30)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.store.close()
