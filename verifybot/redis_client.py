"""The bot's Redis client: every command given up on after ``COMMAND_SECONDS``, whatever it
is waiting for (a pooled connection, a connect, the write or the reply).

redis-py bounds each step on its own when connections have a ``socket_timeout`` (its default
is 5 s): a timer for the pool's checkout, a task and a timer (``asyncio.wait_for``) for the
write, a timer for the read. That was a fifth of the Python calls of each of our round trips.
One deadline per command bounds the same wait, a hung Redis included, for one timer: so the
connections have no socket timeout and the pool waits without one of its own.

A deadline that passes cancels the command inside redis-py, which then drops that connection
(its reply may still come), and is raised as redis-py's own ``TimeoutError``, as before.
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import TimeoutError as RedisTimeout

#: How long one command (or pipeline) may take before the member is answered "try again".
COMMAND_SECONDS = 5.0
#: Connection keywords for the pool: no per-step timeouts, a bounded connect.
CONNECTION_KWARGS: dict[str, Any] = {"socket_timeout": None, "socket_connect_timeout": 5.0}


class BoundedRedis(Redis):
    """``redis.asyncio.Redis`` with one deadline per command and per pipeline."""

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        deadline = asyncio.timeout(COMMAND_SECONDS)
        try:
            async with deadline:
                return await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]
        except TimeoutError:
            if deadline.expired():
                raise _timed_out() from None
            raise

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> Pipeline:
        return BoundedPipeline(
            self.connection_pool, self.response_callbacks, transaction, shard_hint
        )


class BoundedPipeline(Pipeline):
    """A pipeline whose ``execute`` (its one round trip) has the same deadline."""

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        deadline = asyncio.timeout(COMMAND_SECONDS)
        try:
            async with deadline:
                return await super().execute(raise_on_error)
        except TimeoutError:
            if deadline.expired():
                raise _timed_out() from None
            raise


def _timed_out() -> RedisTimeout:
    """What callers catch as a ``RedisError``, as redis-py's own timeouts were."""
    return RedisTimeout(f"no answer from Redis within {COMMAND_SECONDS:g} s")
