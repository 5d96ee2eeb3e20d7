"""A raid on a gated group, end to end: the real python-telegram-bot started by ``serve``
against the Bot API emulator answering each call after a realistic delay, with Telegram's
per-group message budget enforced. Newcomers are muted side by side, not one after another,
and a member who verifies is never muted by their own join afterwards."""

from __future__ import annotations

import asyncio

from tests.e2e.conftest import RunBot
from tests.e2e.raid import is_muting
from tests.e2e.test_telegram import E164, NUMBER, next_message
from tests.emulators.telegram import TelegramEmulator
from tests.emulators.vonage import VonageEmulator


async def said(telegram: TelegramEmulator, user: int, text: str) -> None:
    """Wait (longer than ``next_message``, as every call is slow here) for the bot to say it."""
    await telegram.wait_for(
        lambda: any(text in m.text for m in telegram.messages_in(user)), timeout=15
    )


async def test_a_member_who_verifies_while_their_join_waits_is_never_restricted(
    run_bot: RunBot, telegram: TelegramEmulator, vonage: VonageEmulator
) -> None:
    group = telegram.add_group("Club")
    raider, ada = telegram.add_user("Raider"), telegram.add_user("Ada")
    # One update of the group at a time, and a slow restriction of the raider holding it:
    # Ada's join waits behind it while she finishes verifying through the group's link.
    telegram.answer_delays["restrictChatMember"] = 3.0
    async with run_bot(telegram_gate_mode="restrict", telegram_group_concurrency=1):
        telegram.send_text(ada, f"/start g{group}")
        await next_message(telegram, ada, "phone number")
        telegram.send_text(ada, NUMBER)
        await next_message(telegram, ada, "I've sent a 6-digit code")
        telegram.join(raider, group)
        await telegram.wait_for(lambda: telegram.calls_to("restrictChatMember"))
        telegram.join(ada, group)
        await telegram.wait_for(lambda: not telegram.pending_updates)  # the bot has it

        telegram.send_text(ada, vonage.last_code(E164))
        await next_message(telegram, ada, "You're verified")
        raiders = telegram.calls_to("restrictChatMember")
        assert [c.status for c in raiders] == [0], "Ada's join was handled before she verified"

        # Her join comes after the raider's, and its "joined" message is tidied away.
        await telegram.wait_for(lambda: len(telegram.calls_to("deleteMessage")) >= 2, timeout=10)
        await asyncio.sleep(0.2)
        assert telegram.member_status(group, ada) == "member"
        muted = [c for c in telegram.calls_to("restrictChatMember") if is_muting(c)]
        assert [c.params["user_id"] for c in muted] == [raider]
        assert telegram.member_status(group, raider) == "restricted"

