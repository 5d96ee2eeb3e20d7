"""Redis dies while a member's right code is being recorded: the directory is the source
of truth, so a member it recorded hears they are verified and gates still open. A private
redis-server, started and killed by the test; the directory is real SQLite."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from redis.exceptions import TimeoutError as RedisTimeout
from structlog.testing import capture_logs

from bot.flow import PhoneGiven, Start, State, Text
from bot.identity import Member, MemberKey
from tests.conftest import Inbox
from verifybot import redis_client
from verifybot.bootstrap import open_app
from verifybot.embedded_redis import EmbeddedRedis

ALICE = Member(MemberKey("telegram", "bot1", "5001"), display_name="Alice")
PHONE = "+447400123456"


async def test_a_recorded_member_hears_verified_though_redis_died_before_the_save(
    make_settings: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inbox = Inbox()
    with EmbeddedRedis(tmp_path / "redis", persist=False) as server:
        async with open_app(make_settings(redis_url=server.url), show_code=inbox) as bot:
            await bot.engine.handle(ALICE, Start())
            sent = await bot.engine.handle(ALICE, PhoneGiven(PHONE))
            assert [r.key for r in sent.replies] == ["code.sent"]
            code = inbox.last_code
            record = bot.directory.record_verified

            def record_then_redis_dies(*args: Any, **kwargs: Any) -> Any:
                outcome = record(*args, **kwargs)
                server.stop()  # the directory has committed; the conversation save will fail
                return outcome

            monkeypatch.setattr(bot.directory, "record_verified", record_then_redis_dies)
            with capture_logs() as logs:
                done = await bot.engine.handle(ALICE, Text(code))

            assert [r.key for r in done.replies] == ["verified.done"]
            assert done.state is State.VERIFIED
            assert done.verified is not None and done.verified.phone == PHONE  # gates open
            link = bot.directory.find(ALICE.key)
            assert link is not None and link.is_phone_verified
            (failure,) = [e for e in logs if e["event"] == "conversation_save_failed"]
            assert failure["log_level"] == "warning"
            assert PHONE[-6:] not in repr(logs) and code not in repr(logs)


async def test_a_member_is_answered_while_redis_hangs_and_served_once_it_resumes(
    make_settings: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Redis that stops answering (SIGSTOP: connections stay open, no reply comes) costs a
    member one command's deadline, not the length of the hang."""
    monkeypatch.setattr(redis_client, "COMMAND_SECONDS", 0.5)
    with EmbeddedRedis(tmp_path / "redis", persist=False) as server:
        async with open_app(make_settings(redis_url=server.url)) as bot:
            pid = int((await bot.store.redis.info("server"))["process_id"])
            os.kill(pid, signal.SIGSTOP)
            try:
                hung = await bot.engine.handle(ALICE, Start())
                # What callers that fall back on a RedisError (a community's policy) catch.
                with pytest.raises(RedisTimeout):
                    await bot.store.ping()
            finally:
                os.kill(pid, signal.SIGCONT)

            assert [r.key for r in hung.replies] == ["error.internal"]
            again = await bot.engine.handle(ALICE, Start())
            assert [r.key for r in again.replies] == ["phone.ask"]
