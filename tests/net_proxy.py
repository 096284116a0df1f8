"""A TCP proxy on loopback for network-fault tests: it can hold back replies (a slow link) or
silently swallow everything on the connections open so far (a link dropped without a FIN or
RST, as a stateful firewall does). Real sockets end to end; nothing of Redis is imitated.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

HOLD_LIMIT = 30.0
"""Longest a held reply waits for release(), so a failing test cannot hang for ever."""


class Proxy:
    """Forwards 127.0.0.1:<port> to a Redis URL's host and port."""

    def __init__(self, upstream_url: str) -> None:
        parts = urlsplit(upstream_url)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 6379)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._released = threading.Event()
        self._released.set()
        self._hold_pattern: bytes | None = None
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._swallowed: set[int] = set()
        self.closed_by_client = threading.Event()
        self._stopped = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> Proxy:
        threading.Thread(target=self._accept, name="test-proxy", daemon=True).start()
        return self

    @property
    def connections(self) -> int:
        """Client connections accepted so far."""
        with self._lock:
            return len(self._sockets) // 2

    def hold_replies_with(self, pattern: bytes) -> None:
        """Keep back the first reply that contains ``pattern`` (and what follows it on that
        connection) until :meth:`release`; other connections flow normally."""
        self._hold_pattern = pattern
        self._released.clear()

    def release(self) -> None:
        self._hold_pattern = None
        self._released.set()

    def swallow_open_connections(self) -> None:
        """From now on, drop every byte on the connections open now, both ways, and keep
        them open; connections made later work normally."""
        with self._lock:
            self._swallowed.update(id(s) for s in self._sockets)

    def stop(self) -> None:
        self._stopped = True
        self._released.set()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in (self._listener, *sockets):
            with contextlib.suppress(OSError):
                sock.close()

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.upstream)
            with self._lock:
                self._sockets += [client, upstream]
            for src, dst, replies in ((client, upstream, False), (upstream, client, True)):
                threading.Thread(
                    target=self._pump, args=(src, dst, replies), name="test-proxy-pump", daemon=True
                ).start()

    def _pump(self, src: socket.socket, dst: socket.socket, replies: bool) -> None:
        holding = False
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            if not data:
                if not replies:
                    self.closed_by_client.set()
                with contextlib.suppress(OSError):
                    dst.shutdown(socket.SHUT_WR)
                return
            if id(src) in self._swallowed or id(dst) in self._swallowed:
                continue
            pattern = self._hold_pattern
            if replies and (holding or (pattern is not None and pattern in data)):
                holding = True
                self._released.wait(HOLD_LIMIT)
            try:
                dst.sendall(data)
            except OSError:
                return


@contextmanager
def proxy_to(url: str) -> Iterator[Proxy]:
    proxy = Proxy(url).start()
    try:
        yield proxy
    finally:
        proxy.stop()
