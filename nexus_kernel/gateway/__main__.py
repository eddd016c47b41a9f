"""``python -m nexus_kernel.gateway``: serve the gateway alone (settings from NEXUS_* / nexus.toml).

Prints ``gateway <url>`` once listening; stops on SIGTERM / Ctrl-C.
"""

from __future__ import annotations

import asyncio
import signal

from ..config import load_settings
from ._server import start_gateway


async def main() -> None:
    settings = load_settings()
    gateway = await start_gateway(settings)
    print(f"gateway {gateway.url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await gateway.stop()


if __name__ == "__main__":
    asyncio.run(main())
