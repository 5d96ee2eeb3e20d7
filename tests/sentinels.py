"""A replicated Redis behind Sentinel on localhost, for tests: a primary, a replica and three
sentinels, each a real ``redis-server`` with its own generated config file and free port.

Failure detection is tuned down (``down-after-milliseconds``, ``failover-timeout``) so that
a killed primary is replaced within a few seconds. Every process is killed on the way out,
whatever happened in between.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from redis import Redis

from verifybot.embedded_redis import redis_server_binary

MASTER = "mymaster"
#: Generous waits for a loaded machine: how long the servers may take to start and meet.
READY_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class ReplicatedRedis:
    """``with ReplicatedRedis(tmp_path) as redis:`` then ``redis.sentinels`` for settings,
    ``redis.kill_primary()``, and ask the sentinels who the primary is now."""

    def __init__(self, root: Path, *, down_after_ms: int = 400, failover_ms: int = 2000) -> None:
        self.root = root
        self.binary = shutil.which("redis-server") or redis_server_binary()
        self.primary_port, self.replica_port = free_port(), free_port()
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.down_after_ms, self.failover_ms = down_after_ms, failover_ms
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def sentinels(self) -> str:
        """REDIS_SENTINELS for these sentinels."""
        return ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)

    def __enter__(self) -> ReplicatedRedis:
        try:
            self._start("primary", self.primary_port, [])
            self._start("replica", self.replica_port, [f"replicaof 127.0.0.1 {self.primary_port}"])
            for index, port in enumerate(self.sentinel_ports):
                self._start(
                    f"sentinel{index}",
                    port,
                    [
                        f"sentinel monitor {MASTER} 127.0.0.1 {self.primary_port} 2",
                        f"sentinel down-after-milliseconds {MASTER} {self.down_after_ms}",
                        f"sentinel failover-timeout {MASTER} {self.failover_ms}",
                        f"sentinel parallel-syncs {MASTER} 1",
                    ],
                    sentinel=True,
                )
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _start(self, name: str, port: int, lines: list[str], *, sentinel: bool = False) -> None:
        where = self.root / name
        where.mkdir(parents=True, exist_ok=True)
        config = where / ("sentinel.conf" if sentinel else "redis.conf")
        config.write_text(
            "\n".join(
                [
                    f"port {port}",
                    "bind 127.0.0.1",
                    f"dir {where}",
                    f"logfile {where / 'log.txt'}",
                    "daemonize no",
                    *([] if sentinel else ['save ""', "appendonly no"]),
                    *lines,
                ]
            )
            + "\n"
        )
        args = [self.binary, str(config), *(["--sentinel"] if sentinel else [])]
        self.processes[name] = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    def client(self, port: int) -> Redis:
        return Redis(port=port, socket_timeout=2, socket_connect_timeout=2)

    def _wait_until_ready(self) -> None:
        """Until the replica is in sync and every sentinel knows the replica and the others:
        before that, a failover could not be agreed on."""

        def ready() -> bool:
            with self.client(self.replica_port) as replica:
                if replica.info("replication").get("master_link_status") != "up":
                    return False
            for port in self.sentinel_ports:
                with self.client(port) as sentinel:
                    state = sentinel.sentinel_master(MASTER)
                    if int(state["num-other-sentinels"]) < 2 or int(state["num-slaves"]) < 1:
                        return False
            return True

        self._wait(ready, READY_TIMEOUT, "the sentinels did not meet")

    def kill_primary(self) -> None:
        """SIGKILL: no goodbye to the replica or to the clients."""
        process = self.processes["primary"]
        process.send_signal(signal.SIGKILL)
        process.wait()

    def wait_for_replica_sync(self) -> None:
        """Until the replica has everything the primary has written."""

        def synced() -> bool:
            with self.client(self.primary_port) as primary:
                written = int(primary.info("replication")["master_repl_offset"])
            with self.client(self.replica_port) as replica:
                return int(replica.info("replication")["slave_repl_offset"]) >= written

        self._wait(synced, READY_TIMEOUT, "the replica did not catch up")

    def primary_port_now(self) -> int:
        """The primary's port as the first sentinel names it."""
        with self.client(self.sentinel_ports[0]) as sentinel:
            address = sentinel.sentinel_get_master_addr_by_name(MASTER)
        return int(address[1])

    def _wait(self, condition: Callable[[], bool], timeout: float, problem: str) -> None:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                if condition():
                    return
            except Exception as exc:  # a server still starting, or one just killed
                last = exc
            time.sleep(0.05)
        raise AssertionError(f"{problem} within {timeout:.0f} s ({last!r}):\n{self.logs()}")

    def logs(self) -> str:
        return "\n".join(
            f"--- {path.parent.name}\n{path.read_text(errors='replace')[-1500:]}"
            for path in sorted(self.root.glob("*/log.txt"))
        )

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
        for process in self.processes.values():
            process.wait()
        self.processes.clear()
