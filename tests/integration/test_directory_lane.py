"""On SQLite, a member's directory calls run on the event loop and never wait there: a lock
held by another connection (another worker process, a moderator's write) sends the call to
the directory's threads, where it waits as before, while the loop goes on serving. The WAL
is checkpointed on those threads, never by a commit on the loop."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from bot.directory import AsyncDirectory, Directory, RecordOutcome
from bot.directory.directory import WouldWait
from bot.directory.engine import create_lane_engine
from bot.identity import MemberKey
from tests.integration.conftest import SQLITE_FILE

NOW = datetime(2026, 1, 1, tzinfo=UTC)
ADA = MemberKey("telegram", "bot1", "1")
BOB = MemberKey("telegram", "bot1", "2")
PHONE = "+447400123456"


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / SQLITE_FILE


@pytest.fixture
def directory(sqlite_directory: Callable[..., Directory]) -> Directory:
    return sqlite_directory(timeout=5)


def directory_threads(*, besides: set[threading.Thread] | None = None) -> list[str]:
    others = besides or set()
    return [
        t.name for t in threading.enumerate() if t.name.startswith("directory") and t not in others
    ]


def lane_waits(operation: str) -> float:
    value = REGISTRY.get_sample_value(
        "verifybot_database_lane_waits_total", {"operation": operation}
    )
    return value or 0.0


async def test_a_members_calls_run_on_the_loop_without_a_thread(directory: Directory) -> None:
    running = set(threading.enumerate())  # other tests' directories may be closing yet
    db = AsyncDirectory.bounded(directory)
    assert await db.verified_number(ADA) is None
    assert await db.count_links(PHONE, excluding=ADA) == 0
    await db.audit("code_sent", actor=str(ADA), subject=str(ADA), details={}, now=NOW)
    recorded = await db.record_verified(
        ADA, phone_e164=PHONE, country="GB", display_name="Ada", now=NOW
    )
    assert recorded is RecordOutcome.RECORDED
    assert await db.verified_number(ADA) == (PHONE, "GB", NOW)
    assert directory_threads(besides=running) == []


async def test_a_write_meeting_anothers_lock_waits_on_a_thread_while_the_loop_serves(
    directory: Directory, path: Path
) -> None:
    running = set(threading.enumerate())
    db = AsyncDirectory.bounded(directory)
    other = sqlite3.connect(path, isolation_level=None)  # as another worker process would
    waits = lane_waits("record_verified")
    try:
        other.execute("BEGIN IMMEDIATE")
        write = asyncio.create_task(
            db.record_verified(ADA, phone_e164=PHONE, country="GB", display_name="Ada", now=NOW)
        )
        await asyncio.sleep(0.3)
        assert not write.done()  # waiting for the lock, on a directory thread
        assert directory_threads(besides=running) != []
        # WAL: a read does not wait for a writer, so it is answered on the loop meanwhile
        assert await db.count_links(PHONE, excluding=BOB) == 0
    finally:
        other.execute("COMMIT")
        other.close()
    assert await write is RecordOutcome.RECORDED
    assert await db.count_links(PHONE, excluding=BOB) == 1
    assert lane_waits("record_verified") == waits + 1


async def test_the_lane_refuses_what_would_wait_having_changed_nothing(
    directory: Directory, path: Path
) -> None:
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(WouldWait):
            directory.run_here(
                lambda: directory.record_verified(
                    BOB, phone_e164=PHONE, country="GB", display_name="Bob", now=NOW
                )
            )
    finally:
        other.execute("ROLLBACK")
        other.close()
    with pytest.raises(WouldWait):  # the ORM's methods always go to the threads
        directory.run_here(lambda: directory.find(BOB))
    assert directory.find(BOB) is None


async def test_the_wal_is_checkpointed_on_a_directory_thread(
    directory: Directory, path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = AsyncDirectory.bounded(directory)
    ran_on: list[str] = []
    done = asyncio.Semaphore(0)
    loop = asyncio.get_running_loop()
    checkpoint = directory._checkpoint

    def counted() -> None:
        ran_on.append(threading.current_thread().name)
        checkpoint()
        loop.call_soon_threadsafe(done.release)

    monkeypatch.setattr(directory, "_checkpoint", counted)
    wal = Path(f"{path}-wal")
    sizes = []
    for n in range(800):
        await db.audit("code_sent", actor=str(ADA), subject=str(n), details={}, now=NOW)
        if n % 200 == 199:  # one checkpoint per 200 writes
            await asyncio.wait_for(done.acquire(), 10)
            sizes.append(os.stat(wal).st_size)
    assert len(ran_on) == 4
    assert all(name.startswith("directory") for name in ran_on)
    # Each checkpoint emptied the WAL for the next writes: it stopped growing after the first
    # 200 (unchecked, 800 writes make it about four times as long).
    assert sizes[-1] <= sizes[0] * 1.2
    lane = create_lane_engine(f"sqlite:///{path}")
    assert lane is not None
    with lane.connect() as connection:  # so no commit on the loop checkpoints by itself
        assert connection.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 0
    lane.dispose()


async def test_the_lane_serves_one_thread_only(directory: Directory) -> None:
    assert directory.run_here(lambda: directory.count_links(PHONE, excluding=ADA)) == 0

    def elsewhere() -> int:
        return directory.run_here(lambda: directory.count_links(PHONE, excluding=ADA))

    with pytest.raises(WouldWait):  # its one connection is this thread's
        await asyncio.to_thread(elsewhere)


def test_postgresql_has_no_lane() -> None:
    assert create_lane_engine("postgresql://verifybot@127.0.0.1/verifybot") is None
