"""The directory as the async bot sees it: the same answers, awaited; a member's path gives up
after the directory's timeout, a moderator's waits for the database's own limits."""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from bot.directory import AsyncDirectory, Directory, RecordOutcome
from bot.directory.directory import DirectoryTimeout
from bot.identity import MemberKey

ADA = MemberKey("telegram", "chat", "1")
NOW = datetime(2026, 1, 1, tzinfo=UTC)
#: Schema, lifecycle and where calls run: the CLI's, bootstrap's and facade's business.
NOT_AWAITED = {
    "upgrade", "revision", "ping", "close", "engine", "threads", "timeout", "has_lane", "run_here"
}  # fmt: skip


@pytest.fixture
def directory(sqlite_directory: Callable[..., Directory]) -> Directory:
    return sqlite_directory(timeout=0.3)


def test_every_method_the_bot_calls_has_an_awaited_twin_of_the_same_name() -> None:
    public = {name for name in dir(Directory) if not name.startswith("_")} - NOT_AWAITED
    for name in public:
        twin = getattr(AsyncDirectory, name)
        assert inspect.iscoroutinefunction(twin), name
        assert twin.__wrapped__ is getattr(Directory, name), name


async def test_an_awaited_call_gives_the_directory_s_answer(directory: Directory) -> None:
    db = AsyncDirectory.bounded(directory)
    recorded = await db.record_verified(
        ADA, phone_e164="+447400123456", country="GB", display_name="Ada", now=NOW
    )
    assert recorded is RecordOutcome.RECORDED
    link = await db.find_verified(ADA)
    assert link is not None and link.phone_e164 == "+447400123456"
    assert link == directory.find_verified(ADA)


async def test_a_member_s_call_gives_up_after_the_timeout_a_moderator_s_waits(
    directory: Directory, monkeypatch: pytest.MonkeyPatch
) -> None:
    released = threading.Event()

    def hung(member: MemberKey) -> None:
        released.wait(10)

    # Replaced on the instance, as tests that make the database hang do: the facade sees it.
    monkeypatch.setattr(directory, "find", hung)
    with pytest.raises(DirectoryTimeout):
        await AsyncDirectory.bounded(directory).find(ADA)
    waiting = asyncio.create_task(AsyncDirectory(directory, timeout=None).find(ADA))
    await asyncio.sleep(0.6)  # twice the member's bound: still waiting, not given up
    assert not waiting.done()
    released.set()
    assert await waiting is None


async def test_a_caller_s_cancellation_stays_a_cancellation_not_a_timeout(
    directory: Directory, monkeypatch: pytest.MonkeyPatch
) -> None:
    started, released = threading.Event(), threading.Event()

    def hung(member: MemberKey) -> None:
        started.set()
        released.wait(10)

    monkeypatch.setattr(directory, "find", hung)
    call = asyncio.create_task(AsyncDirectory.bounded(directory).find(ADA))
    assert await asyncio.to_thread(started.wait, 10)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    released.set()
