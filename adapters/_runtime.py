"""What every long-running adapter needs from its process: a clean stop, a short memory."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable, Hashable
from contextlib import suppress
from typing import Generic, TypeVar

from aiohttp import web

from bot.health import PATHS, Health

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


async def until_stopped() -> None:
    """Wait for SIGINT or SIGTERM (or cancellation), so an adapter can shut down cleanly.

    asyncio.run turns only SIGINT into a cancellation; platforms stop processes with SIGTERM,
    which would otherwise end the bot without closing its connections or its webhook server.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    installed = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        with suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, stop.set)
            installed.append(signum)
    try:
        await stop.wait()
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)


def add_health_routes(application: web.Application, health: Health) -> None:
    """``/healthz``, ``/readyz`` and ``/metrics`` on an aiohttp server (``bot.health``)."""

    async def answer(request: web.Request) -> web.Response:
        found = await health.answer(request.path)
        return web.Response(
            status=found.status,
            body=found.body,
            headers={"Content-Type": found.content_type, "Cache-Control": "no-store"},
        )

    for path in PATHS:
        application.router.add_get(path, answer)


class TtlCache(Generic[K, V]):
    """Answers from a platform kept for ``ttl`` seconds, in process, at most ``limit`` of them.

    A miss costs one platform call, so a full cache first drops what has expired and, if that
    is not enough, everything. A ``ttl`` of 0 keeps nothing.
    """

    def __init__(
        self, ttl: float, *, limit: int = 10_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self.limit = limit
        self.clock = clock
        self._entries: dict[K, tuple[float, V]] = {}

    def get(self, key: K, *, max_age: float | None = None) -> V | None:
        """The value kept for ``key`` if younger than the TTL (and than ``max_age``)."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        limit = self.ttl if max_age is None else min(self.ttl, max_age)
        stored, value = entry
        return value if self.clock() - stored < limit else None

    def put(self, key: K, value: V) -> None:
        if self.ttl <= 0:
            return
        now = self.clock()
        if len(self._entries) >= self.limit and key not in self._entries:
            self._entries = {k: e for k, e in self._entries.items() if now - e[0] < self.ttl}
            if len(self._entries) >= self.limit:
                self._entries.clear()
        self._entries[key] = (now, value)

    def __len__(self) -> int:
        return len(self._entries)
