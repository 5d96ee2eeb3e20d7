"""What every long-running adapter needs from its process: a clean stop, a short memory, and
a cheap bound on work at once."""

from __future__ import annotations

import asyncio
import functools
import signal
import time
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Coroutine, Hashable, Iterator
from contextlib import contextmanager, suppress
from types import TracebackType
from typing import Any, Generic, ParamSpec, TypeVar

import structlog
from aiohttp import web

from bot.health import PATHS, Health

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
P = ParamSpec("P")
R = TypeVar("R")

log = structlog.get_logger("verifybot.runtime")

#: How long a stop waits for cancelled tasks to end. A task that swallows its cancellation
#: (a library turning it into an error that a loop retries) would otherwise hold the stop
#: for ever; it is named in the log with where it waits, and left behind.
CANCEL_WAIT = 3.0


async def cancel_all(tasks: Collection[asyncio.Task[Any]], *, wait: float = CANCEL_WAIT) -> int:
    """Cancel ``tasks`` and wait up to ``wait`` seconds for them to end (re-cancelling,
    since a swallowed cancellation is gone); say how many did not."""
    pending = {task for task in tasks if not task.done()}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while pending and (left := deadline - loop.time()) > 0:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=min(left, 0.1))
    for task in pending:
        frames = task.get_stack(limit=3)
        log.error(
            "task_resisted_cancel",
            task=task.get_name(),
            waiting_in=[f"{f.f_code.co_filename}:{f.f_lineno}" for f in frames],
        )
    return len(pending)


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


class InFlight:
    """The updates being handled right now, so that a stop can let them finish, for a while.

    A stop first shuts the door (no new updates), then ``drain``s: updates still waiting
    for their turn may be dropped at once (when they will be delivered again), the ones
    under way get up to the grace period, and whatever still runs after it is cancelled.
    """

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self._started: set[asyncio.Task[Any]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def watch(self, task: asyncio.Task[Any]) -> None:
        """Count ``task`` in from now until it is done (even before it first runs)."""
        self._tasks.add(task)
        task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        self._started.discard(task)

    @contextmanager
    def handling(self) -> Iterator[None]:
        """Count the current task in while the block runs (waiting for its turn, at first)."""
        task = asyncio.current_task()
        if task is None:  # pragma: no cover - always inside a task under asyncio
            yield
            return
        self._tasks.add(task)
        try:
            yield
        finally:
            self._forget(task)

    def started(self) -> None:
        """The current task's update is under way: a stop lets it finish."""
        task = asyncio.current_task()
        if task is not None and task in self._tasks:
            self._started.add(task)

    def tracked(self, listener: Callable[P, Awaitable[R]]) -> Callable[P, Coroutine[Any, Any, R]]:
        """``listener``, counted in (as under way) while it runs; its signature is kept for
        bolt's argument injection, which unwraps it."""

        @functools.wraps(listener)
        async def run(*args: P.args, **kwargs: P.kwargs) -> R:
            with self.handling():
                self.started()
                return await listener(*args, **kwargs)

        return run

    async def drain(self, grace: float, *, drop_waiting: bool = False) -> int:
        """Wait up to ``grace`` seconds for everything in flight (and whatever starts
        meanwhile), cancel what is left, and say how many were cancelled. With
        ``drop_waiting``, updates not under way yet are cancelled first: they did nothing,
        and will be delivered again."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        await asyncio.sleep(0)  # tasks created just now count themselves in on their first step
        dropped = [task for task in self._tasks if task not in self._started]
        if drop_waiting:
            await cancel_all(dropped)
        while self._tasks and (left := deadline - loop.time()) > 0:
            await asyncio.wait(set(self._tasks), timeout=left)
        late = [task for task in self._tasks if not task.done()]
        await cancel_all(late)
        log.info(
            "shutdown_drained",
            dropped_waiting=len(dropped) if drop_waiting else 0,
            cancelled=len(late),
            grace=grace,
        )
        return len(late)


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


class Slots:
    """At most ``size`` holders at once, served first come first served; ``async with``.

    ``asyncio.Semaphore`` does the same, but on Python 3.11 its ``acquire`` scans every waiter
    (``locked``) and removes itself from the middle of the queue: with 200 members' updates
    waiting for one of 64 slots, that was 5 % of the bot's CPU (bench/README.md). Here a freed
    slot goes straight to the first waiter still waiting, each step O(1).
    """

    def __init__(self, size: int) -> None:
        self._free = size
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def __aenter__(self) -> None:
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():  # handed a slot as it was cancelled
                self._release()
            raise

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._release()

    def _release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():  # a cancelled waiter is skipped where it stands
                waiter.set_result(None)
                return
        self._free += 1
