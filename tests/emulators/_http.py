"""The HTTP server every emulator runs on: a thread per connection, each one tracked, so that
``stop()`` can close kept-alive connections instead of waiting for clients to let go."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

#: Seconds a kept-alive connection may sit idle before the server closes it.
IDLE_TIMEOUT = 30.0


class TrackedServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        self._connections: set[socket.socket] = set()
        self._conn_threads: set[threading.Thread] = set()
        self._guard = threading.Lock()
        super().__init__(address, handler)

    def wrap(self, conn: socket.socket) -> socket.socket:
        """Layer something over a new connection (TLS, say), in its own thread."""
        return conn

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self._serve_connection, args=(request, client_address), daemon=True
        )
        with self._guard:
            self._conn_threads.add(thread)
        thread.start()

    def _serve_connection(self, raw: socket.socket, client_address: Any) -> None:
        conn = raw
        with self._guard:
            self._connections.add(raw)
        try:
            raw.settimeout(IDLE_TIMEOUT)
            # Headers and body go out as two writes; without this, Nagle plus the client's
            # delayed ACK stalls every answer by ~40 ms.
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            wrapped = self.wrap(raw)
            if wrapped is not raw:
                with self._guard:
                    self._connections.discard(raw)
                    self._connections.add(wrapped)
                conn = wrapped
            self.RequestHandlerClass(conn, client_address, self)
        except OSError:
            pass  # the client went away, TLS was refused, or stop() shut the socket
        finally:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)  # FIN, not RST: clients see RemoteDisconnected
            conn.close()
            with self._guard:
                self._connections.discard(conn)
                self._conn_threads.discard(threading.current_thread())

    def close_connections(self) -> None:
        with self._guard:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def join_connections(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._guard:
            threads = list(self._conn_threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
