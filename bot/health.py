"""What ``/healthz``, ``/readyz`` and ``/metrics`` answer, whichever server carries them.

The shell (``verifybot.ops``) serves them on ``HEALTH_PORT`` in polling and Socket Mode;
an adapter that serves HTTP itself (Telegram's webhook, Slack's HTTP mode) mounts them on
the bot's own port. Either way the answer comes from ``Health.answer``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from bot.directory import Directory
from bot.store import Store

LIVE, READY, METRICS = "/healthz", "/readyz", "/metrics"
PATHS = (LIVE, READY, METRICS)
#: Each readiness check gives up after this many seconds, so /readyz never hangs.
CHECK_TIMEOUT = 2.0
_JSON = "application/json"


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    content_type: str
    body: bytes


class Health:
    """The process's health: Redis, the database, and whether the platform took the token."""

    def __init__(
        self, store: Store, directory: Directory, *, timeout: float = CHECK_TIMEOUT
    ) -> None:
        self.store = store
        self.directory = directory
        self.timeout = timeout
        self.platform: str | None = None
        self._token_accepted = False
        # Its own thread: a hung database holds this one, never the bot's directory threads,
        # and a ping still out is not sent again (probes come every few seconds).
        self._db_thread = ThreadPoolExecutor(1, thread_name_prefix="readyz-db")
        self._db_ping: Future[None] | None = None

    def token_accepted(self, platform: str) -> None:
        """The adapter's platform accepted its token at start-up."""
        self.platform = platform
        self._token_accepted = True

    async def answer(self, path: str) -> Answer:
        if path == LIVE:
            return _json(200, {"status": "ok"})
        if path == METRICS:
            return Answer(200, CONTENT_TYPE_LATEST, generate_latest(REGISTRY))
        if path == READY:
            checks = await self.checks()
            down = sorted(name for name, result in checks.items() if result != "ok")
            if down:
                return _json(503, {"status": "not ready", "down": down, "checks": checks})
            return _json(200, {"status": "ready", "checks": checks})
        return _json(404, {"status": "not found"})

    async def checks(self) -> dict[str, str]:
        """Each check's result, "ok" or a few words; all run at once, each bounded."""
        names = ["redis", "database"]
        results = await asyncio.gather(
            self._bounded(self.store.ping), self._bounded(self._ping_database)
        )
        checks = dict(zip(names, results, strict=True))
        checks[self.platform or "platform"] = (
            "ok" if self._token_accepted else "token not accepted yet"
        )
        return checks

    async def _bounded(self, check: Callable[[], Awaitable[None]]) -> str:
        try:
            await asyncio.wait_for(check(), self.timeout)
        except TimeoutError:
            return f"no answer within {self.timeout:g} s"
        except Exception as exc:
            return f"error: {type(exc).__name__}"
        return "ok"

    async def _ping_database(self) -> None:
        if self._db_ping is None or self._db_ping.done():
            self._db_ping = self._db_thread.submit(self.directory.ping)
        await asyncio.wrap_future(self._db_ping)

    def close(self) -> None:
        self._db_thread.shutdown(wait=False, cancel_futures=True)


def _json(status: int, body: dict[str, object]) -> Answer:
    return Answer(status, _JSON, json.dumps(body, separators=(",", ":")).encode())
