"""Helpers of the anchoring tests: raw SQL on a store (to tamper with it as an attacker would)."""

from __future__ import annotations

from typing import Any

from nexus_kernel.storage import DuckDBStore, PostgresStore


def tamper(store: Any, statement: str) -> None:
    """Run ``statement`` on the store's own database, bypassing the Store API (tables unqualified)."""
    if isinstance(store, DuckDBStore):
        store._con.execute(statement)
        return
    assert isinstance(store, PostgresStore)
    with store._conn() as conn:
        conn.execute(f'SET LOCAL search_path TO "{store.schema}"')
        conn.execute(statement)


class Forwarder:
    """A TCP forwarder on 127.0.0.1:``port`` to ``target``: stopped, the port refuses and every open
    connection is cut (a server gone away); started again, it forwards on the same port."""

    def __init__(self, target: tuple[str, int]) -> None:
        import socket

        self.target = target
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self._listener: Any = None
        self._sockets: list[Any] = []

    def start(self) -> Forwarder:
        import socket
        import threading

        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self._listener = listener

        def pump(src: Any, dst: Any) -> None:
            try:
                while data := src.recv(65536):
                    dst.sendall(data)
            except OSError:
                pass
            finally:
                for s in (src, dst):
                    try:
                        s.close()
                    except OSError:
                        pass

        def accept() -> None:
            while True:
                try:
                    client, _ = listener.accept()
                except OSError:
                    return
                if self._listener is not listener:  # stopped meanwhile
                    client.close()
                    return
                upstream = socket.create_connection(self.target)
                self._sockets += [client, upstream]
                threading.Thread(target=pump, args=(client, upstream), daemon=True).start()
                threading.Thread(target=pump, args=(upstream, client), daemon=True).start()

        threading.Thread(target=accept, daemon=True).start()
        return self

    def stop(self) -> None:
        import socket

        if self._listener is not None:
            try:  # wakes the thread blocked in accept() (close alone does not, on Linux)
                self._listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._listener.close()
            self._listener = None
        for s in self._sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
                s.close()
            except OSError:
                pass
        self._sockets.clear()
