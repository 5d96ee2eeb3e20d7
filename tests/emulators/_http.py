"""The HTTP server every emulator runs on: a thread per connection, each one tracked, so that
``stop()`` can close kept-alive connections instead of waiting for clients to let go."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

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

    def _serve_connection(self: Self, raw: socket.socket, client_address: Any) -> None:
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

    def serve_in_background(self, name: str) -> threading.Thread:
        """Start serving on a daemon thread (the emulators' start)."""
        thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.02}, name=name, daemon=True
        )
        thread.start()
        return thread

    def stop_serving(self, *threads: threading.Thread, timeout: float = 5.0) -> None:
        """The emulators' stop: no new requests, kept-alive connections closed (which unblocks
        handlers waiting on them), then wait for the connections' threads and ``threads``."""
        self.shutdown()
        self.close_connections()
        self.server_close()
        self.join_connections(timeout)
        for thread in threads:
            thread.join(timeout)

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


class JsonHandler(BaseHTTPRequestHandler):
    """Reads a request whole and writes a JSON answer; each emulator says what to answer.

    ``answer(method, target, headers, raw)`` returns ``(status, body)``, with ``body`` None for
    an empty answer, or None to drop the connection without a status line.
    """

    protocol_version = "HTTP/1.1"  # keep-alive, as the real APIs do
    sys_version = ""

    def answer(
        self, method: str, target: str, headers: dict[str, str], raw: bytes
    ) -> tuple[int, Any, str] | None:
        raise NotImplementedError

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the per-request stderr line."""

    def _dispatch(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        reply = self.answer(self.command, self.path, headers, raw)
        if reply is None:
            self.close_connection = True  # no status line at all
            return
        status, body, content_type = reply
        payload = b"" if body is None else json.dumps(body).encode()
        try:
            self.send_response(status)
            if payload:
                self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except OSError:
            self.close_connection = True  # the client gave up (e.g. its read timeout)
