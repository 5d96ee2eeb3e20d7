"""A message whose handling is cut short (a stop's grace ran out) is not taken for a
duplicate when its update comes again: it is handled then, from where the conversation
stands."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from bot.engine import Outcome
from bot.flow import Start
from bot.identity import Member, MemberKey
from verifybot.bootstrap import open_app

ALICE = Member(MemberKey("telegram", "bot1", "5101"), display_name="Alice")


async def test_an_update_cancelled_while_its_reply_was_sent_is_handled_when_it_comes_again(
    make_settings: Callable[..., Any],
) -> None:
    async with open_app(make_settings()) as bot:
        sending = asyncio.Event()
        shown: list[Outcome] = []

        async def slow_render(outcome: Outcome) -> None:
            sending.set()
            await asyncio.sleep(30)

        async def render(outcome: Outcome) -> None:
            shown.append(outcome)

        cut_short = asyncio.create_task(
            bot.engine.handle(ALICE, Start(), delivery_id="41", render=slow_render)
        )
        await sending.wait()
        cut_short.cancel()
        await asyncio.gather(cut_short, return_exceptions=True)

        again = await bot.engine.handle(ALICE, Start(), delivery_id="41", render=render)
        assert not again.duplicate
        assert [r.key for r in again.replies] and shown == [again]
        # Once handled to the end, the same update is a duplicate.
        assert (await bot.engine.handle(ALICE, Start(), delivery_id="41", render=render)).duplicate
