"""A raid on a gated group, end to end: the real python-telegram-bot started by ``serve``
against the Bot API emulator answering each call after a realistic delay, with Telegram's
per-group message budget enforced. Newcomers are muted side by side, not one after another,
and a member who verifies is never muted by their own join afterwards."""

from __future__ import annotations

import asyncio
import itertools

from adapters.telegram.gate import WELCOME_INTERVAL
from tests.e2e.conftest import RunBot
from tests.e2e.raid import is_muting, raid, restriction_latencies
from tests.e2e.test_telegram import E164, NUMBER, next_message
from tests.emulators.telegram import TelegramEmulator
from tests.emulators.vonage import VonageEmulator

#: The issue's bound: every newcomer restricted within 2 s of joining, even when each Bot
#: API call takes 50-100 ms as it does from a real server.
RESTRICTED_WITHIN = 2.0


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
        await telegram.wait_for(telegram.handed_over)  # the bot has it

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


async def test_a_raid_is_muted_within_two_seconds_under_paced_welcomes(
    run_bot: RunBot, telegram: TelegramEmulator, vonage: VonageEmulator
) -> None:
    """150 joins in 10 s, each Bot API call answered after 50 ms (the issue's CI scale);
    five raiders verify through the welcome's link while the raid goes on."""
    group = telegram.add_group("Club")
    raiders = [telegram.add_user(f"Raider {n}") for n in range(150)]
    verifiers = {raiders[n]: f"+44 7400 2000{n % 100:02d}" for n in (20, 50, 80, 110, 140)}
    telegram.answer_delay = 0.05
    async with run_bot(telegram_gate_mode="restrict"):
        for user, number in verifiers.items():  # each has a code waiting before they join
            telegram.send_text(user, f"/start g{group}")
            await next_message(telegram, user, "phone number")
            telegram.send_text(user, number)
        for user in verifiers:
            await said(telegram, user, "I've sent a 6-digit code")

        async def verify_now(user: int) -> None:
            if user in verifiers:
                e164 = verifiers[user].replace(" ", "").lstrip("+")
                telegram.send_text(user, vonage.last_code(e164))

        joined = await raid(telegram, group, raiders, seconds=10, on_join=verify_now)

        newcomers = [user for user in raiders if user not in verifiers]
        await telegram.wait_for(
            lambda: all(telegram.member_status(group, u) == "restricted" for u in newcomers),
            timeout=10,
        )
        for user in verifiers:
            await said(telegram, user, "You're verified")
        await telegram.wait_for(
            lambda: all(telegram.member_status(group, u) == "member" for u in verifiers),
            timeout=10,
        )
        await telegram.wait_for(lambda: len(telegram.calls_to("deleteMessage")) >= 150)

    latencies = restriction_latencies(telegram, group, joined)
    assert set(newcomers) <= set(latencies)
    slowest = max(latencies[u] for u in newcomers)
    assert slowest <= RESTRICTED_WITHIN, f"a newcomer waited {slowest:.2f} s to be muted"
    welcomes = sorted(m.sent_at for m in telegram.messages_in(group))
    gaps = [later - earlier for earlier, later in itertools.pairwise(welcomes)]
    assert welcomes and all(gap >= WELCOME_INTERVAL - 0.5 for gap in gaps), gaps
    assert [c for c in telegram.calls if c.status == 429] == []
