"""The engine through the real bootstrap: a real Redis, a real SQLite directory, and the
sandbox verifier (the one the console uses). Vonage itself is covered against its
emulator in ``test_vonage_verifier.py``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from redis.asyncio import Redis
from sqlalchemy.exc import OperationalError

from bot.app import App
from bot.engine import Engine, Outcome
from bot.flow import (
    Cancel,
    ChangeNumber,
    CodeGiven,
    Duration,
    PhoneGiven,
    Resend,
    Start,
    StartOutcome,
    State,
    Text,
)
from bot.identity import Member, MemberKey
from bot.verifier.sandbox import SandboxVerifier
from tests.conftest import Inbox
from verifybot.bootstrap import open_app

ALICE = Member(MemberKey("telegram", "bot1", "1001"), display_name="Alice", locale="en")
BOB = Member(MemberKey("telegram", "bot1", "1002"), display_name="Bob")
PHONE = "+44 7400 123456"


@pytest.fixture
def inbox() -> Inbox:
    return Inbox()


@pytest.fixture
def open_bot(make_settings: Callable[..., Any], inbox: Inbox) -> Callable[..., Any]:
    def opener(clock: Callable[[], float] = time.time, **overrides: Any) -> Any:
        return open_app(make_settings(**overrides), show_code=inbox, clock=clock)

    return opener


@pytest.fixture
async def bot(open_bot: Callable[..., Any]) -> AsyncIterator[App]:
    async with open_bot(resend_cooldown_seconds=0) as app:
        yield app


def keys(outcome: Outcome) -> list[str]:
    return [reply.key for reply in outcome.replies]


async def verify(bot: App, inbox: Inbox, member: Member = ALICE, phone: str = PHONE) -> Outcome:
    await bot.engine.handle(member, Start())
    sent = await bot.engine.handle(member, Text(phone))
    assert keys(sent) == ["code.sent"], keys(sent)
    return await bot.engine.handle(member, Text(inbox.last_code))


class CommandCounter:
    """Counts commands sent to the real Redis (a spy: every command still runs)."""

    def __init__(self, redis: Redis) -> None:
        self.count = 0
        original: Callable[..., Awaitable[Any]] = redis.execute_command

        async def counting(*args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return await original(*args, **kwargs)

        redis.execute_command = counting  # type: ignore[method-assign]

    async def during(self, action: Any) -> int:
        before = self.count
        await action
        return self.count - before


async def test_a_member_verifies_and_the_link_is_in_the_directory(bot: App, inbox: Inbox) -> None:
    first = await bot.engine.handle(ALICE, Start())
    assert keys(first) == ["phone.ask"]
    done = await verify(bot, inbox)
    assert keys(done) == ["verified.done"]
    assert done.state is State.VERIFIED
    assert done.verified is not None and done.verified.phone == "+447400123456"
    link = bot.directory.find(ALICE.key)
    assert link is not None and link.is_phone_verified
    assert (link.phone_e164, link.country, link.display_name) == ("+447400123456", "GB", "Alice")
    trail = bot.directory.audit_trail(subject=str(ALICE.key))
    assert [entry.event for entry in trail] == ["verified", "code_sent"]
    # The SMS is audited (for /stats) with the number masked, never in full.
    assert trail[1].details == {"phone_masked": "+44•••••3456"}


async def test_starting_again_when_verified_says_so_even_after_redis_forgot(
    bot: App, inbox: Inbox, redis: Redis
) -> None:
    await verify(bot, inbox)
    await bot.store.redis.delete(bot.store.conversation_key(ALICE.key))
    again = await bot.engine.handle(ALICE, Start())
    assert keys(again) == ["verified.already"]


async def test_redis_round_trips_per_message(bot: App, inbox: Inbox) -> None:
    counter = CommandCounter(bot.store.redis)
    await bot.engine.handle(BOB, Start())  # warm the script cache (NOSCRIPT reload)
    await bot.engine.handle(ALICE, Start())
    assert await counter.during(bot.engine.handle(ALICE, Text("not a number"))) == 1
    assert await counter.during(bot.engine.handle(ALICE, Start())) <= 2
    # The number starts from this worker's copy of the conversation, which the reservation
    # checks whole: reserve, save; no load.
    assert await counter.during(bot.engine.handle(ALICE, Text(PHONE))) == 2
    assert await counter.during(bot.engine.handle(ALICE, Text("hello?"))) <= 2
    # A resend's SMS reservation is the commit before Vonage: nothing more is saved first.
    assert await counter.during(bot.engine.handle(ALICE, Resend())) == 2
    # A code is checked under a lease taken with the load, before Vonage: load, save.
    assert await counter.during(bot.engine.handle(ALICE, Text("000000"))) == 2
    # The right code: load (with the lease), save (with what the directory now says).
    assert await counter.during(bot.engine.handle(ALICE, Text(inbox.last_code))) == 2
    # Verified: the directory's answer is kept in Redis, so a start is one load, no SQL.
    assert await counter.during(bot.engine.handle(ALICE, Start())) == 1


class GatedSandbox(SandboxVerifier):
    """The sandbox, but a start waits at a gate: a slow Vonage, to widen the race."""

    def __init__(self, inbox: Inbox) -> None:
        super().__init__(inbox)
        self.gate = asyncio.Event()
        self.entered = asyncio.Event()
        self.starts = 0

    async def start(self, phone: str, *, locale: str | None = None) -> StartOutcome:
        self.starts += 1
        self.entered.set()
        await self.gate.wait()
        return await super().start(phone, locale=locale)


async def test_two_workers_never_both_start_an_sms_for_one_member(bot: App, inbox: Inbox) -> None:
    verifier = GatedSandbox(inbox)
    workers = [
        Engine(
            store=bot.store, directory=bot.directory, verifier=verifier,
            policy=bot.engine.policy, limits=bot.engine.limits,
        )
        for _ in range(2)
    ]  # fmt: skip
    await workers[0].handle(ALICE, Start())
    first = asyncio.create_task(workers[0].handle(ALICE, Text(PHONE)))
    await verifier.entered.wait()
    second = await workers[1].handle(ALICE, Text(PHONE))
    assert keys(second) == ["code.sending"]
    verifier.gate.set()
    assert keys(await first) == ["code.sent"]
    assert verifier.starts == 1
    assert len(inbox.lines) == 1


async def test_a_burst_of_the_same_number_sends_one_sms(bot: App, inbox: Inbox) -> None:
    await bot.engine.handle(ALICE, Start())
    outcomes = await asyncio.gather(*(bot.engine.handle(ALICE, Text(PHONE)) for _ in range(8)))
    assert len(inbox.lines) == 1
    assert sum(keys(o) == ["code.sent"] for o in outcomes) == 1


async def test_a_redelivered_update_is_acknowledged_and_ignored(bot: App) -> None:
    first = await bot.engine.handle(ALICE, Start(), delivery_id="update-1")
    again = await bot.engine.handle(ALICE, Start(), delivery_id="update-1")
    assert keys(first) == ["phone.ask"]
    assert again.duplicate and again.replies == ()


async def test_a_wrong_code_then_the_right_one(bot: App, inbox: Inbox) -> None:
    await bot.engine.handle(ALICE, Start())
    await bot.engine.handle(ALICE, Text(PHONE))
    wrong = await bot.engine.handle(
        ALICE, CodeGiven("000000" if inbox.last_code != "000000" else "111111")
    )
    assert keys(wrong) == ["code.wrong"]
    assert wrong.replies[0].params["tries_left"] == 2
    assert keys(await bot.engine.handle(ALICE, CodeGiven(inbox.last_code))) == ["verified.done"]


async def test_the_record_is_durable_before_the_member_hears_verified(
    bot: App, inbox: Inbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    await bot.engine.handle(ALICE, Start())
    await bot.engine.handle(ALICE, Text(PHONE))
    code = inbox.last_code
    real = bot.directory.record_verified

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise OperationalError("INSERT", {}, Exception("disk I/O error"))

    monkeypatch.setattr(bot.directory, "record_verified", broken)
    failed = await bot.engine.handle(ALICE, Text(code))
    assert keys(failed) == ["verified.save_failed"]
    assert failed.state is State.AWAIT_CODE
    assert bot.directory.find(ALICE.key) is None
    monkeypatch.setattr(bot.directory, "record_verified", real)
    # The code was used up at the verifier; the retry only records.
    assert keys(await bot.engine.handle(ALICE, Text(code))) == ["verified.done"]
    assert bot.directory.find(ALICE.key) is not None


async def test_a_number_held_by_another_member_is_refused(bot: App, inbox: Inbox) -> None:
    await verify(bot, inbox, member=ALICE)
    await bot.engine.handle(BOB, Start())
    refused = await bot.engine.handle(BOB, Text(PHONE))
    assert keys(refused) == ["phone.taken"]
    assert len(inbox.lines) == 1  # no SMS for Bob


async def test_resend_and_change_of_number(bot: App, inbox: Inbox) -> None:
    await bot.engine.handle(ALICE, Start())
    await bot.engine.handle(ALICE, Text(PHONE))
    resent = await bot.engine.handle(ALICE, Resend())
    assert keys(resent) == ["resend.done"]
    assert len(inbox.lines) == 2 and inbox.lines[0] == inbox.lines[1]
    changed = await bot.engine.handle(ALICE, ChangeNumber())
    assert keys(changed) == ["phone.ask"]
    assert keys(await bot.engine.handle(ALICE, Text("+44 7400 654321"))) == ["code.sent"]
    assert keys(await bot.engine.handle(ALICE, Text(inbox.last_code))) == ["verified.done"]
    link = bot.directory.find(ALICE.key)
    assert link is not None and link.phone_e164 == "+447400654321"


async def test_cancel_forgets_the_conversation(bot: App) -> None:
    await bot.engine.handle(ALICE, Start())
    await bot.engine.handle(ALICE, Text(PHONE))
    assert keys(await bot.engine.handle(ALICE, Cancel())) == ["cancel.done"]
    assert (await bot.engine.conversation(ALICE)).state is State.IDLE


async def test_starts_per_member_are_limited(open_bot: Callable[..., Any], inbox: Inbox) -> None:
    async with open_bot(limit_starts_per_member="1/1h") as bot:
        await bot.engine.handle(ALICE, Start())
        await bot.engine.handle(ALICE, Text(PHONE))
        await bot.engine.handle(ALICE, ChangeNumber())
        limited = await bot.engine.handle(ALICE, Text("+44 7400 654321"))
        assert keys(limited) == ["limit.sms"]
        wait = limited.replies[0].params["wait"]
        assert isinstance(wait, Duration) and 3500 < wait.seconds <= 3600
        assert len(inbox.lines) == 1


async def test_sms_per_phone_are_limited_across_members(
    open_bot: Callable[..., Any], inbox: Inbox
) -> None:
    async with open_bot(limit_sms_per_phone="1/10m", max_accounts_per_phone=5) as bot:
        for member in (ALICE, BOB):
            await bot.engine.handle(member, Start())
        assert keys(await bot.engine.handle(ALICE, Text(PHONE))) == ["code.sent"]
        # Alice's cancel ends her request, so the number is free; its SMS budget is not.
        await bot.engine.handle(ALICE, Cancel())
        assert keys(await bot.engine.handle(BOB, PhoneGiven(PHONE))) == ["limit.sms"]


async def test_the_global_daily_budget_stops_all_sms(
    open_bot: Callable[..., Any], inbox: Inbox
) -> None:
    async with open_bot(limit_sms_global="1/1d") as bot:
        assert keys(await bot.engine.handle(ALICE, PhoneGiven(PHONE))) == ["code.sent"]
        assert keys(await bot.engine.handle(BOB, PhoneGiven("+44 7400 654321"))) == ["limit.sms"]


async def test_wrong_codes_per_member_per_day(open_bot: Callable[..., Any], inbox: Inbox) -> None:
    async with open_bot(limit_wrong_codes_per_member="2/1d") as bot:
        await bot.engine.handle(ALICE, PhoneGiven(PHONE))
        wrong = "111111" if inbox.last_code != "111111" else "222222"
        assert keys(await bot.engine.handle(ALICE, Text(wrong))) == ["code.wrong"]
        assert keys(await bot.engine.handle(ALICE, Text(wrong))) == ["code.wrong"]
        blocked = await bot.engine.handle(ALICE, Text(inbox.last_code))
        assert keys(blocked) == ["limit.wrong_codes"]


async def test_an_expired_code_is_refused_without_asking_the_verifier(
    open_bot: Callable[..., Any], inbox: Inbox
) -> None:
    now = [time.time()]
    async with open_bot(code_validity_seconds=1, clock=lambda: now[0]) as bot:
        await bot.engine.handle(ALICE, PhoneGiven(PHONE))
        now[0] += 1.0  # the code is valid for one second: not a moment more
        expired = await bot.engine.handle(ALICE, Text(inbox.last_code))
        assert keys(expired)[0] == "code.expired"
        assert expired.state is State.AWAIT_PHONE


async def test_an_unexpected_failure_is_a_polite_reply_and_the_update_can_be_retried(
    bot: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("database went away")

    monkeypatch.setattr(bot.directory, "verified_number", explode)
    failed = await bot.engine.handle(ALICE, Start(), delivery_id="u-9")
    assert keys(failed) == ["error.internal"]
    monkeypatch.undo()
    retried = await bot.engine.handle(ALICE, Start(), delivery_id="u-9")
    assert not retried.duplicate and keys(retried) == ["phone.ask"]
