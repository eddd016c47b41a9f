"""Data makers shared by the storage tests."""

from __future__ import annotations

import uuid

import numpy as np
import pandas as pd


def new_schema() -> str:
    return f"s_{uuid.uuid4().hex[:10]}"


def make_batch(stream: str = "pumps", n_series: int = 3, n: int = 200, start: str = "2024-01-01T00:00:00Z",
               step: str = "7s", fields=("value",), seed: int = 0, seq0: int = 0) -> pd.DataFrame:
    """A deterministic batch: ``n`` records per series at ``step`` spacing with random values."""
    rng = np.random.default_rng(seed)
    times = pd.date_range(start, periods=n, freq=step, tz="UTC")
    series = [f"s{i}" for i in range(n_series)]
    frame = pd.DataFrame({
        "stream": pd.array([stream] * (n * n_series), dtype="string"),
        "series": pd.array(np.repeat(series, n), dtype="string"),
        "ts": pd.DatetimeIndex(np.tile(times.tz_convert(None).to_numpy(), n_series)).tz_localize("UTC").as_unit("ns"),
        "seq": np.arange(seq0, seq0 + n * n_series, dtype="int64"),
    })
    for name in fields:
        frame[name] = rng.normal(10, 3, len(frame)).round(6)
    return frame


class Forwarder:
    """A loopback TCP forwarder to PostgreSQL that a test can stop (an outage) and start again.

    Test equipment, not code under test: it stands between the store and the real server so that
    "the server went away" can be staged without stopping the shared PostgreSQL.
    """

    def __init__(self, target=("127.0.0.1", 5432)) -> None:
        import socket
        import threading

        self.target, self._socket, self._threading = target, socket, threading
        self.port = 0
        self._conns: list = []
        self._listener = None

    def start(self) -> None:
        s = self._socket
        listener = s.socket(s.AF_INET, s.SOCK_STREAM)
        listener.setsockopt(s.SOL_SOCKET, s.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = self._socket.create_connection(self.target)
            self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                self._threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a, b) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (a, b):
                try:
                    sock.close()
                except OSError:
                    pass

    def stop(self) -> None:
        s = self._socket
        if self._listener is not None:
            try:  # wakes the thread blocked in accept(); close() alone leaves the port listening
                self._listener.shutdown(s.SHUT_RDWR)
            except OSError:
                pass
            self._listener.close()
            self._listener = None
        for sock in self._conns:
            try:
                sock.shutdown(s.SHUT_RDWR)
                sock.close()
            except OSError:
                pass
        self._conns = []
