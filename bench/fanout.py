"""Fan-out: 100 WebSocket clients subscribed to one stream published at 1,000 messages/s; p50/p99 delivery
latency — beside a bare ``websockets`` server broadcasting the same frames to the same clients in the same run.

Ours: the gateway (tornado) on an event loop in this process, in-process bus; a publisher task on the same
loop puts one one-record batch on ``stream:fan:points`` every millisecond (``bus.publish_nowait``, as the
engine and the ingest handler do; the frames are built before the clock starts and the publisher yields
to the loop after each message, so it neither pays for pandas construction nor starves the writers). Each batch goes through the gateway's live path: bus subscription →
per-filter encoding → each client's bounded queue → its writer task (coalescing what waits).
Peers: ``websockets.serve`` + ``websockets.broadcast`` of the *same* JSON frame bytes (encoded once per
message with the gateway's own encoder), from the same kind of publisher task — no bus, no queues, no
filter, no auth: (1) a frame per message, (2) the messages of each ``ws_linger`` joined into one
``batch`` frame, the gateway's own policy — the floor of a Python WebSocket fan-out.

The clients run in a separate process (``python -m bench.fanout clients URL N SECONDS OUT``:
``websockets`` clients, one loop) and record (seq, arrival time) of every message into ``OUT`` (.npz); the
publisher records each message's publish time (``time.time()``), and latency = arrival − publish, for
messages published after a 1 s warm-up. Same machine, one clock.
Caveat: on this 2-core machine the client process competes with the server for CPU, which inflates
both figures alike. Loopback only; bounded by the duration.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from typing import Any

import numpy as np
import pandas as pd

CLIENTS = 100
RATE = 1_000
WARMUP = 1.0


def _frame(i: int) -> pd.DataFrame:
    return pd.DataFrame({"stream": pd.array(["fan"], dtype="string"), "series": pd.array([f"s{i % 10}"], dtype="string"),
                         "ts": pd.DatetimeIndex([pd.Timestamp("2024-01-01", tz="UTC") + pd.Timedelta(milliseconds=i)]),
                         "seq": np.asarray([i], dtype=np.int64), "value": [float(i)]})


async def _publish(publish: Any, frames: list[pd.DataFrame], due_at: np.ndarray) -> int:
    """One message per millisecond on average; a late publisher catches up, yielding after each message.

    ``due_at`` gets each message's *scheduled* time: latency counts from when a message was due, so a
    server too slow to take 1,000 messages/s shows it (no coordinated omission).
    """
    start = time.perf_counter()
    wall = time.time()
    due_at[:] = wall + np.arange(len(frames)) / RATE
    sent = 0
    while sent < len(frames):
        due = min(len(frames), int((time.perf_counter() - start) * RATE))
        while sent < due:
            publish(frames[sent])
            sent += 1
            await asyncio.sleep(0)  # let the writers run between messages
        await asyncio.sleep(0.001)
    return sent


class _Server:
    """A server on its own event loop in a thread: ``url``, ``publish(i)`` (thread-safe), ``stop()``."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def call(self, coro: Any, timeout: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def _measure(server: _Server, url: str, headers: dict[str, str], publish: Any, seconds: float) -> dict[str, Any]:
    total = int(RATE * (seconds + WARMUP))
    frames = [_frame(i) for i in range(total)]
    gc.collect()
    gc.freeze()  # the prebuilt frames are the bench's, not the server's: keep them out of GC passes
    stamps = np.full(total, np.nan)  # scheduled publish times
    out = tempfile.mktemp(suffix=".npz", prefix="nexus-fanout-")
    proc = subprocess.Popen([sys.executable, "-m", "bench.fanout", "clients", url, str(CLIENTS),
                             str(10 * (seconds + WARMUP) + 60), json.dumps(headers), out], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True,
                            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        line = proc.stdout.readline().strip()
        if line != "ready":
            raise RuntimeError(f"clients did not connect: {line!r}")
        started = time.perf_counter()
        sent = server.call(_publish(publish, frames, stamps), timeout=10 * (seconds + WARMUP) + 60)
        publish_s = time.perf_counter() - started
        time.sleep(1.0)  # what is still queued gets a second to arrive; later is counted as lost
        proc.stdin.write("stop\n")
        proc.stdin.flush()
        done = json.loads(proc.stdout.readline())
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    gc.unfreeze()
    with np.load(out) as data:
        seq, arrived = data["seq"], data["t"]
    os.unlink(out)
    published = stamps[seq]
    keep = published >= stamps[0] + WARMUP
    latency = (arrived[keep] - published[keep]) * 1000
    measured = int((stamps >= stamps[0] + WARMUP).sum())
    return {"p50_ms": round(float(np.percentile(latency, 50)), 2) if len(latency) else float("nan"),
            "p99_ms": round(float(np.percentile(latency, 99)), 2) if len(latency) else float("nan"),
            "max_ms": round(float(latency.max()), 2) if len(latency) else float("nan"),
            "received": int(keep.sum()), "expected": measured * CLIENTS, "dropped": done["dropped"],
            "sent": sent, "publish_rate": round(sent / publish_s)}


def _ours(seconds: float) -> dict[str, Any]:
    from nexus_kernel.config import load_settings
    from nexus_kernel.gateway import mint_token
    from nexus_kernel.storage import topic

    home = tempfile.mkdtemp(prefix="nexus-fanout-")
    # the 100 clients share one token: let that principal hold them all (ws_per_principal)
    settings = load_settings(home=home, store="memory", port=0, jwt_secret=uuid.uuid4().hex,
                             rate_limit=10_000_000, rate_limit_address=10_000_000, ws_per_principal=CLIENTS)
    server = _Server()
    gateway = server.call(_start(settings))
    bus = gateway.services.bus
    try:
        url = gateway.url.replace("http://", "ws://") + "/api/streams/fan/live?snapshot=false"
        headers = {"Authorization": f"Bearer {mint_token(settings, 'bench', 'viewer')}"}
        fan = topic("fan", "points")
        return _measure(server, url, headers, lambda frame: bus.publish_nowait(fan, frame), seconds)
    finally:
        server.call(gateway.stop())
        server.close()


async def _start(settings: Any) -> Any:
    from nexus_kernel.gateway import Services, start_gateway

    return await start_gateway(settings, Services.create(settings))


def _peer(seconds: float, linger: float = 0.0) -> dict[str, Any]:
    """A bare websockets server: each message broadcast as its own frame (``linger=0``), or what
    arrived during ``linger`` seconds broadcast as one ``batch`` frame (the gateway's policy, without
    its bus, per-client queues, filters or auth)."""
    from websockets.asyncio.server import broadcast, serve

    from nexus_kernel.gateway._frames import columns, dumps

    clients: set[Any] = set()
    pending: list[bytes] = []

    async def handler(ws: Any) -> None:
        clients.add(ws)
        try:
            await ws.wait_closed()
        finally:
            clients.discard(ws)

    async def flusher() -> None:
        while True:
            await asyncio.sleep(linger)
            if pending:
                items = pending[:]
                pending.clear()
                data = items[0] if len(items) == 1 else b'{"type":"batch","messages":[' + b",".join(items) + b"]}"
                broadcast(clients, data.decode())

    server = _Server()

    async def start() -> Any:
        ws_server = await serve(handler, "127.0.0.1", 0, max_queue=None)
        task = asyncio.get_running_loop().create_task(flusher()) if linger else None
        return ws_server, task

    ws_server, task = server.call(start())
    port = next(iter(ws_server.sockets)).getsockname()[1]

    def publish(frame: pd.DataFrame) -> None:
        data = dumps({"type": "data", "kind": "points", "id": "0", "rows": 1, "columns": columns(frame)})
        if linger:
            pending.append(data)
        else:
            broadcast(clients, data.decode())

    async def stop() -> None:
        if task is not None:
            task.cancel()
        ws_server.close()
        await ws_server.wait_closed()

    try:
        return _measure(server, f"ws://127.0.0.1:{port}/", {}, publish, seconds)
    finally:
        server.call(stop())
        server.close()


def run(quick: bool = False) -> list[dict]:
    from nexus_kernel.config import Settings

    seconds = 3.0 if quick else 10.0
    linger = Settings.model_fields["ws_linger"].default
    ours = _ours(seconds)
    peers = {"websockets.broadcast, a frame per message": _peer(seconds),
             f"websockets.broadcast, batched every {linger * 1000:g} ms": _peer(seconds, linger)}
    common = {"clients": CLIENTS, "rate": RATE, "seconds": seconds, "warmup": WARMUP, "ws_linger": linger}
    rows = []
    for name, peer in peers.items():
        for metric, key in (("fanout-p50", "p50_ms"), ("fanout-p99", "p99_ms")):
            rows.append({"metric": metric, "unit": "ms", "ours": ours[key], "peer": name, "peer_value": peer[key],
                         "ratio": round(ours[key] / peer[key], 3) if peer[key] else None,
                         "params": {**common, "target_p99_ms": 100 if key == "p99_ms" else None}})
        rows.append({"metric": "fanout-delivered", "unit": "% of messages", "ours": _share(ours), "peer": name,
                     "peer_value": _share(peer), "ratio": round(_share(ours) / _share(peer), 3) if _share(peer) else None,
                     "params": {**common, "ours": ours, "peer": peer}})
    return rows


def _share(result: dict[str, Any]) -> float:
    return round(100.0 * result["received"] / result["expected"], 2) if result["expected"] else 0.0


# -- the client process ---------------------------------------------------------------------------


async def _client_main(url: str, n: int, seconds: float, headers: dict[str, str], out: str) -> dict[str, Any]:
    import websockets

    # decode=False: text frames come as bytes (no UTF-8 decoding of what only a regex reads)
    sockets = [await websockets.connect(url, additional_headers=headers, max_size=1 << 24, open_timeout=30)
               for _ in range(n)]
    seqs: list[list[bytes]] = [[] for _ in range(n)]
    times: list[list[float]] = [[] for _ in range(n)]
    dropped = [0] * n
    # The client only needs each message's seq: a regex over the frame (C speed) instead of building
    # Python objects for 100,000 messages/s, so the measuring process is not what falls behind.
    seq_of = re.compile(rb'"seq":\[(\d+)\]')
    dropped_of = re.compile(rb'"type":"dropped","count":(\d+)')

    async def reader(i: int, ws: Any) -> None:
        while True:
            try:
                data = await ws.recv(decode=False)
            except websockets.ConnectionClosed:
                return
            now = time.time()
            got = seq_of.findall(data)
            seqs[i].extend(got)
            times[i].extend([now] * len(got))
            if b'"dropped"' in data:
                dropped[i] += sum(int(c) for c in dropped_of.findall(data))

    print("ready", flush=True)
    tasks = [asyncio.create_task(reader(i, ws)) for i, ws in enumerate(sockets)]
    stop = asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)  # the bench says when
    await asyncio.wait([stop], timeout=seconds)
    for task in tasks:
        task.cancel()
    for ws in sockets:
        await ws.close()
    np.savez(out, seq=np.concatenate([np.asarray(s, dtype=np.int64) for s in seqs]),
             t=np.concatenate([np.asarray(t, dtype=np.float64) for t in times]))
    return {"dropped": int(sum(dropped))}


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "clients":
        _, _, url, n, seconds, headers, out = sys.argv
        print(json.dumps(asyncio.run(_client_main(url, int(n), float(seconds), json.loads(headers), out))),
              flush=True)
    else:
        for row in run(quick="--quick" in sys.argv):
            print(row)
