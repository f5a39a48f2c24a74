"""A TCP relay between a process under test and its broker, with a switch that cuts the network.

`cut()` stops relaying in both directions without closing anything, like a partition: the
bytes wait in the kernel's buffers, heartbeats stop arriving, new connections are accepted but
never answered. `heal()` resumes relaying. Only sockets are involved; nothing outside the test
process is touched.
"""

from __future__ import annotations

import select
import socket
import threading


class CuttableProxy:
    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._open = threading.Event()
        self._open.set()
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, name="cuttable-proxy", daemon=True).start()

    def url(self, query: str = "") -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/" + (f"?{query}" if query else "")

    def cut(self) -> None:
        self._open.clear()

    def heal(self) -> None:
        self._open.set()

    def close(self) -> None:
        self._closed.set()
        self._open.set()
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                try:
                    sock.close()
                except OSError:
                    pass

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        self._open.wait()  # a connection made during a cut hangs until the network heals
        try:
            server = socket.create_connection(self.upstream, timeout=5)
        except OSError:
            client.close()
            return
        with self._lock:
            self._sockets += [client, server]
        peers = {client: server, server: client}
        try:
            while not self._closed.is_set():
                if not self._open.wait(0.2):
                    continue
                readable, _, _ = select.select(list(peers), [], [], 0.2)
                for sock in readable:
                    if not self._open.is_set():
                        break
                    data = sock.recv(65536)
                    if not data:
                        return
                    peers[sock].sendall(data)
        except OSError:
            return
        finally:
            for sock in (client, server):
                try:
                    sock.close()
                except OSError:
                    pass
