"""The directory as the async bot sees it: the same methods, awaited.

Each call runs the synchronous ``Directory`` method on the directory's own threads, so a call
stuck on a hung database holds one of those, never the event loop or asyncio's default
threads. With a ``timeout`` the wait is given up after that many seconds whatever the call is
doing (``DirectoryTimeout``), so a member is answered while the hung connection is still
being given up on; the engine's connect, statement and TCP timeouts free the thread later.

On SQLite, the Core calls of a member's path (``lane=True`` below) first run on the event loop
(``Directory.run_here``), on a connection that never waits: SQLite in WAL mode answers a
read, and a write nobody else is making, in tens of microseconds from a local file. A call
that would wait (SQLite's lock or this process's write gate held elsewhere) goes to the
threads instead, to wait there within its timeout.

The method is looked up on the ``Directory`` at each call, so a test that replaces one on
the instance (to make it fail or hang) is seen.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine
from typing import Any, Concatenate, ParamSpec, TypeVar

from bot import metrics
from bot.directory.directory import Directory, DirectoryTimeout, WouldWait

_P = ParamSpec("_P")
#: The cancel message of a call given up on after the timeout (a caller's cancel has another).
_GAVE_UP = "verifybot: the directory's timeout"
_T = TypeVar("_T")


def _awaited(
    method: Callable[Concatenate[Directory, _P], _T], *, lane: bool = False
) -> Callable[Concatenate[AsyncDirectory, _P], Coroutine[Any, Any, _T]]:
    """``lane``: a Core method that ``Directory.run_here`` may run on the event loop."""
    name = method.__name__

    @functools.wraps(method)
    async def call(self: AsyncDirectory, /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        bound: Callable[_P, _T] = getattr(self.sync, name)
        with metrics.timed(metrics.DATABASE_SECONDS, metrics.DATABASE_ERRORS, name):
            if lane and self.sync.has_lane:
                try:
                    return self.sync.run_here(functools.partial(bound, *args, **kwargs))
                except WouldWait:
                    metrics.DATABASE_LANE_WAITS.labels(name).inc()
            return await self._run(functools.partial(bound, *args, **kwargs))

    return call


class AsyncDirectory:
    """``Directory``'s member and moderation methods, awaited and (optionally) bounded."""

    def __init__(self, directory: Directory, *, timeout: float | None) -> None:
        self.sync = directory
        self.timeout = timeout

    @classmethod
    def bounded(cls, directory: Directory) -> AsyncDirectory:
        """Every call given up on after the directory's own timeout: a member's path."""
        return cls(directory, timeout=directory.timeout)

    async def _run(self, call: Callable[[], _T]) -> _T:
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self.sync.threads, call)
        if self.timeout is None:
            return await future
        # One timer that cancels the call's future (a call not yet started never runs), not
        # ``wait_for``, which adds a future, a task-less callback and a wrapper per call.
        expiry = loop.call_later(self.timeout, future.cancel, _GAVE_UP)
        try:
            return await future
        except asyncio.CancelledError as exc:
            task = asyncio.current_task()
            if exc.args != (_GAVE_UP,) or (task is not None and task.cancelling()):
                raise  # the caller's own cancellation
            raise DirectoryTimeout(
                f"the database did not answer within {self.timeout:g} s"
            ) from None
        finally:
            expiry.cancel()

    # phone links
    count_links = _awaited(Directory.count_links, lane=True)
    record_verified = _awaited(Directory.record_verified, lane=True)
    unverify = _awaited(Directory.unverify)
    find = _awaited(Directory.find)
    find_verified = _awaited(Directory.find_verified)
    verified_number = _awaited(Directory.verified_number, lane=True)
    find_by_handle = _awaited(Directory.find_by_handle)
    find_user = _awaited(Directory.find_user)
    list_links = _awaited(Directory.list_links)
    count_members = _awaited(Directory.count_members)
    stats = _awaited(Directory.stats)
    # admissions and invites
    admit = _awaited(Directory.admit)
    is_admitted = _awaited(Directory.is_admitted)
    admit_for_role = _awaited(Directory.admit_for_role)
    record_invite = _awaited(Directory.record_invite)
    invites_to_revoke = _awaited(Directory.invites_to_revoke)
    pending_revocations = _awaited(Directory.pending_revocations)
    invite_revoked = _awaited(Directory.invite_revoked)
    invite_withdrawn = _awaited(Directory.invite_withdrawn)
    # communities' policies and the groups the bot is in
    community_policy = _awaited(Directory.community_policy)
    change_community_policy = _awaited(Directory.change_community_policy)
    record_group = _awaited(Directory.record_group)
    forget_group = _awaited(Directory.forget_group)
    groups = _awaited(Directory.groups)
    # roles and the audit log
    grant_role = _awaited(Directory.grant_role)
    revoke_role = _awaited(Directory.revoke_role)
    audit = _awaited(Directory.audit, lane=True)
    audit_trail = _awaited(Directory.audit_trail)
