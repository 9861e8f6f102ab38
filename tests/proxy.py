"""A TCP proxy on 127.0.0.1 that a test controls: forward, refuse, or hang (black hole).

Put it between a server and its database to take the database away and give it back:

- ``open``: bytes flow both ways.
- ``refuse``: every open connection is cut and new ones are refused (the port is closed),
  as when the database is down.
- ``hang``: connections stay open but nothing flows, and new ones are accepted and left
  silent, as with a stuck server or a network that drops packets.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from collections.abc import Iterator

__all__ = ["TcpProxy", "tcp_proxy"]


class TcpProxy:
    """Forwards ``127.0.0.1:port`` to ``upstream`` in daemon threads."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.mode = "open"
        self._listener: socket.socket | None = None
        self._pairs: list[tuple[socket.socket, socket.socket | None]] = []
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = int(probe.getsockname()[1])
        probe.close()

    # ---- control
    def start(self) -> None:
        """Listen (again) and forward."""
        self.mode = "open"
        self._listen()

    def refuse(self) -> None:
        """Cut every connection and refuse new ones."""
        self.mode = "refuse"
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for client, server in pairs:
            for sock in (client, server):
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)
                    sock.close()

    def hang(self) -> None:
        """Keep connections open but let nothing through; accept new ones silently."""
        self.mode = "hang"
        if self._listener is None:
            self._listen()

    def resume(self) -> None:
        """Forward again (after :meth:`hang`, the held bytes flow; after :meth:`refuse`,
        new connections are accepted)."""
        self.mode = "open"
        if self._listener is None:
            self._listen()

    def stop(self) -> None:
        """Close everything."""
        self._stopped.set()
        self.refuse()

    # ---- threads
    def _listen(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed by refuse()
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._pairs.append((client, server))
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()

    def _pump(self, client: socket.socket, server: socket.socket) -> None:
        peers = {client: server, server: client}
        try:
            while not self._stopped.is_set():
                if self.mode == "hang":
                    self._stopped.wait(0.05)
                    continue
                if self.mode == "refuse":
                    return
                readable, _, _ = select.select(list(peers), [], [], 0.1)
                for sock in readable:
                    if self.mode != "open":
                        break
                    data = sock.recv(65536)
                    if not data:
                        return
                    peers[sock].sendall(data)
        except OSError:
            return
        finally:
            for sock in (client, server):
                with contextlib.suppress(OSError):
                    sock.close()


@contextlib.contextmanager
def tcp_proxy(host: str, port: int) -> Iterator[TcpProxy]:
    """A started :class:`TcpProxy` to ``host:port``, stopped on exit."""
    proxy = TcpProxy((host, port))
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()
