"""TELEGRAM_SEND_RATE through the real PTB rate limiter, measured by the Bot API emulator.

The pace is read from what the emulator recorded (the moment each sendMessage arrived), and
only as a lower bound: a slow machine can only spread the sends further, so these tests fail
when sends are not paced, never because the machine is busy.
"""

from __future__ import annotations

import asyncio
from contextlib import suppress

import pytest
from telegram.ext import ExtBot

from adapters.telegram.client import TelegramClient
from adapters.telegram.http import AiohttpRequest
from adapters.telegram.updates import PaceMessages
from bot.texts import Catalogue
from tests.emulators.telegram import TelegramEmulator


def bot_for(telegram: TelegramEmulator, per_second: int) -> ExtBot[int]:
    return ExtBot(
        telegram.token,
        base_url=telegram.base_url,
        request=AiohttpRequest(),
        rate_limiter=PaceMessages.at(per_second, max_retries=0),
    )


async def test_sends_to_members_are_paced_at_the_configured_rate(
    telegram: TelegramEmulator,
) -> None:
    members = [telegram.add_user(f"M{i}") for i in range(15)]
    for member in members:
        telegram.send_text(member, "/start")  # a private chat the bot may write to
    async with bot_for(telegram, 5) as bot:
        await asyncio.gather(*(bot.send_message(m, "hello") for m in members))
    arrived = sorted(call.at for call in telegram.calls_to("sendMessage"))
    assert len(arrived) == 15 and {c.status for c in telegram.calls_to("sendMessage")} == {200}
    # 5 a second: the first 5 at once, then one every 0.2 s, so the last 10 take >= 2 s.
    assert arrived[-1] - arrived[0] >= 1.6


@pytest.mark.parametrize("say", [False, True], ids=["send_message", "TelegramClient.say"])
async def test_rate_zero_lifts_the_overall_pace_but_keeps_twenty_a_minute_per_group(
    telegram: TelegramEmulator, say: bool
) -> None:
    group = telegram.add_group()
    async with bot_for(telegram, 0) as bot:
        limiter = bot.rate_limiter
        assert isinstance(limiter, PaceMessages)
        assert limiter._base_limiter is None  # PTB's overall AsyncLimiter is not built
        client = TelegramClient(bot, Catalogue.load())
        sends = [
            asyncio.create_task(
                client.say(group, f"notice {i}") if say else bot.send_message(group, f"notice {i}")
            )
            for i in range(25)
        ]

        def twenty_arrived() -> bool:
            return len(telegram.calls_to("sendMessage")) >= 20

        await telegram.wait_for(twenty_arrived, timeout=30)
        await asyncio.sleep(0.5)  # the 21st would be here by now if the group were not paced
        calls = telegram.calls_to("sendMessage")
        assert len(calls) == 20
        assert {call.status for call in calls} == {200}  # no 429 from the group's budget
        for task in sends:
            task.cancel()
        for task in sends:
            with suppress(asyncio.CancelledError):
                await task
