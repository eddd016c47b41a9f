"""A local anvil chain for tests, benchmarks and trying the evm anchor: started on 127.0.0.1, stopped by PID.

anvil comes from the npm registry (``@foundry-rs/anvil``, pinned in the repo's ``package.json``;
``make node-tools`` installs it into ``./node_modules``, no other download). The platform binary inside
the package is run directly, not through the npm wrapper script, so that the PID we stop is anvil's.

Example (after ``make node-tools``)::

    >>> with LocalAnvil() as chain:                       # doctest: +SKIP
    ...     address = deploy_anchor(chain.url, DEV_KEYS[0])

Caveat: the keys in :data:`DEV_KEYS` are anvil's public development keys; never use them on a real chain.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from types import TracebackType

__all__ = ["DEV_KEYS", "LocalAnvil", "anvil_binary"]

#: anvil's default accounts 0 and 1 (mnemonic "test test ... junk"): public, for local chains only.
DEV_KEYS = ("0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
            "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d")

_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


def anvil_binary(root: Path | None = None) -> Path:
    """The anvil executable under ``root/node_modules`` (default: the working directory and its parents)."""
    system = {"Linux": "linux", "Darwin": "darwin", "Windows": "win32"}.get(platform.system(), "")
    arch = _ARCH.get(platform.machine().lower(), "")
    exe = "anvil.exe" if system == "win32" else "anvil"
    starts = [root] if root else [Path.cwd(), *Path.cwd().parents, Path(__file__).resolve().parents[3]]
    for base in starts:
        candidate = base / "node_modules" / "@foundry-rs" / f"anvil-{system}-{arch}" / "bin" / exe
        if candidate.is_file():
            return candidate
    raise FileNotFoundError("anvil not found in node_modules: run `make node-tools` (npm ci) in the repo root")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalAnvil:
    """One anvil process on a free loopback port.

    Parameters
    ----------
    port:
        None picks a free one; give the old port to restart a stopped chain where clients expect it.
    state:
        A file anvil loads at start and writes at exit (``--state``): a stopped and restarted chain keeps
        its blocks, transactions and contracts.
    block_time:
        Seconds per block; None mines a block per transaction (automine).
    """

    def __init__(self, *, port: int | None = None, state: Path | None = None, block_time: float | None = None,
                 chain_id: int = 31337) -> None:
        self.port = port or _free_port()
        self.state = state
        self.block_time = block_time
        self.chain_id = chain_id
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> LocalAnvil:
        args = [str(anvil_binary()), "--host", "127.0.0.1", "--port", str(self.port), "--chain-id",
                str(self.chain_id), "--hardfork", "prague", "--silent"]
        if self.state is not None:
            args += ["--state", str(self.state)]
        if self.block_time is not None:
            args += ["--block-time", str(self.block_time)]
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode(errors="replace") if self.process.stderr else ""
                raise RuntimeError(f"anvil exited with {self.process.returncode}: {err.strip()[:500]}")
            try:
                if self.rpc("eth_chainId") is not None:
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"anvil did not answer on {self.url} within {timeout} s")

    def rpc(self, method: str, *params: object) -> object:
        """One JSON-RPC call (anvil_* and evm_* methods included); raises RuntimeError on an RPC error."""
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}).encode()
        request = urllib.request.Request(self.url, body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            answer = json.loads(response.read())
        if "error" in answer:
            raise RuntimeError(f"{method}: {answer['error']}")
        return answer.get("result")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (anvil writes its ``--state`` then exits), SIGKILL after ``timeout`` s."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
        if process.stderr:
            process.stderr.close()

    def __enter__(self) -> LocalAnvil:
        return self.start() if self.process is None else self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
