"""``python -m nexus_kernel.gateway``: serve the gateway alone (settings from NEXUS_* / nexus.toml).

It opens a :class:`~nexus_kernel.runtime.Runtime` over the settings (its store, bus and stream manager;
streams started through the REST API run on the runtime's pipeline thread) and hands it to the
gateway. Prints ``gateway <url>`` once listening; stops on SIGTERM / Ctrl-C, the runtime with it.
"""

from __future__ import annotations

import asyncio
import signal

from ..config import load_settings
from ..runtime import Runtime
from ._server import Services, start_gateway


async def main() -> None:
    settings = load_settings()
    runtime = Runtime.open(settings)
    try:
        gateway = await start_gateway(settings, Services.create(settings, runtime=runtime))
        print(f"gateway {gateway.url}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await gateway.stop()
    finally:
        await runtime.aclose()


if __name__ == "__main__":
    asyncio.run(main())
