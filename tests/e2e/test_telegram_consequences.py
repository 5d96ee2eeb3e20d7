"""What befalls a member who does not verify, end to end: each consequence at the deadline,
``ban_after_failures``, the moderators' review queue in the log chat, and forum groups.

The real python-telegram-bot ``Application`` (``adapters.telegram.serve``) against the Bot API
emulator, the real vonage SDK against the Verify emulator, and a real Redis and SQLite."""

from __future__ import annotations

import time
from typing import Any

import pytest

from bot.consequence import parse_consequence
from bot.identity import MemberKey
from bot.sanction import GateRules
from tests.e2e.conftest import RunBot
from tests.e2e.test_telegram import E164, NUMBER, callback_data, next_message, verify_by_typing
from tests.emulators.telegram import SentMessage, TelegramEmulator
from tests.emulators.vonage import VonageEmulator


def key_of(telegram: TelegramEmulator, user: int) -> MemberKey:
    return MemberKey("telegram", str(telegram.bot_id), str(user))


async def answer_to(telegram: TelegramEmulator, press: dict[str, Any]) -> dict[str, Any]:
    """How the bot answered a button press (every press is answered)."""
    query_id = press["callback_query"]["id"]
    answer: dict[str, Any] = await telegram.wait_for(lambda: telegram.callback_answer(query_id))
    return answer


async def reachable(telegram: TelegramEmulator, user: int) -> None:
    """The member has started the bot's private chat, so the bot may write to them there."""
    telegram.send_text(user, "/help")
    await telegram.wait_for(lambda: telegram.messages_in(user))


# --- At the deadline --------------------------------------------------------------------------


async def test_kick_removes_the_member_who_may_join_again(
    run_bot: RunBot, telegram: TelegramEmulator
) -> None:
    ada, group = telegram.add_user("Ada"), telegram.add_group("Club")
    async with run_bot(telegram_verify_timeout="1", telegram_consequence="kick"):
        await reachable(telegram, ada)
        telegram.join(ada, group)

        await next_message(telegram, ada, "you were removed from Club")

        assert telegram.member_status(group, ada) == "left"
        telegram.join(ada, group)  # free to come back (and be asked again)
        await telegram.wait_for(lambda: telegram.member_status(group, ada) == "restricted")


async def test_a_ban_for_a_duration_sets_its_until_date(
    run_bot: RunBot, telegram: TelegramEmulator
) -> None:
    ada, group = telegram.add_user("Ada"), telegram.add_group("Club")
    async with run_bot(telegram_verify_timeout="1", telegram_consequence="ban:7d"):
        await reachable(telegram, ada)
        telegram.join(ada, group)
        joined_at = time.time()

        notice = await next_message(telegram, ada, "you were banned from Club until")

        assert telegram.member_status(group, ada) == "kicked"
        until = telegram.banned_until(group, ada)
        assert until is not None
        # The deadline (1 s) plus the sweep's pace after the join, then seven days.
        assert joined_at + 7 * 86400 <= until <= joined_at + 7 * 86400 + 60
        assert time.strftime("%Y", time.gmtime(until)) in notice.text
        with pytest.raises(AssertionError, match="banned"):
            telegram.join(ada, group)


async def test_a_ban_forever_has_no_until_date(run_bot: RunBot, telegram: TelegramEmulator) -> None:
    ada, group = telegram.add_user("Ada"), telegram.add_group("Club")
    async with run_bot(telegram_verify_timeout="1", telegram_consequence="ban"):
        await reachable(telegram, ada)
        telegram.join(ada, group)

        await next_message(telegram, ada, "you were banned from Club.")

        assert telegram.member_status(group, ada) == "kicked"
        assert telegram.banned_until(group, ada) == 0
        assert telegram.calls_to("unbanChatMember") == []


async def test_mute_leaves_the_member_restricted_after_the_deadline(
    run_bot: RunBot, telegram: TelegramEmulator
) -> None:
    ada, group = telegram.add_user("Ada"), telegram.add_group("Club")
    async with run_bot(telegram_verify_timeout="1", telegram_consequence="mute"):
        await reachable(telegram, ada)
        telegram.join(ada, group)
        welcome = await next_message(telegram, group, "Welcome, Ada")

        await next_message(telegram, ada, "you stay in Club without being able to post")

        assert telegram.member_status(group, ada) == "restricted"
        assert (telegram.permissions(group, ada) or {}).get("can_send_messages") is False
        assert telegram.calls_to("banChatMember") == []
        # The hold is over: nobody is waiting on the welcome any more.
        await telegram.wait_for(
            lambda: next(
                m.deleted for m in telegram.messages_in(group) if m.message_id == welcome.message_id
            )
        )


async def test_decline_declines_a_join_request(run_bot: RunBot, telegram: TelegramEmulator) -> None:
    ada, group = telegram.add_user("Ada"), telegram.add_group("Club")
    async with run_bot(
        telegram_gate_mode="join_request",
        telegram_verify_timeout="1",
        telegram_consequence="decline",
    ):
        telegram.request_join(ada, group)

        await next_message(telegram, ada, "Your request to join Club was declined")

        await telegram.wait_for(lambda: telegram.join_request_state(group, ada) == "declined")
        assert telegram.calls_to("banChatMember") == []


async def test_decline_removes_a_member_who_joined_directly(
    run_bot: RunBot, telegram: TelegramEmulator
) -> None:
    ada, group = telegram.add_user("Ada"), telegram.add_group("Club")
    async with run_bot(telegram_verify_timeout="1", telegram_consequence="decline"):
        await reachable(telegram, ada)
        telegram.join(ada, group)

        await next_message(telegram, ada, "you were removed from Club")

        assert telegram.member_status(group, ada) == "left"


async def test_a_ban_declines_a_join_request_and_keeps_the_requester_out(
    run_bot: RunBot, telegram: TelegramEmulator
) -> None:
    ada, group = telegram.add_user("Ada"), telegram.add_group("Club")
    async with run_bot(
        telegram_gate_mode="join_request", telegram_verify_timeout="1", telegram_consequence="ban"
    ):
        telegram.request_join(ada, group)

        await telegram.wait_for(lambda: telegram.member_status(group, ada) == "kicked")

        assert telegram.join_request_state(group, ada) == "declined"
        with pytest.raises(AssertionError, match="banned"):
            telegram.request_join(ada, group)


# --- ban_after_failures ---------------------------------------------------------------------


async def fail_once(telegram: TelegramEmulator, vonage: VonageEmulator, user: int) -> None:
    """Ask for a code and type wrong ones until the verification fails."""
    seen = len(telegram.messages_in(user))
    telegram.send_text(user, NUMBER)
    await next_message(telegram, user, "I've sent a 6-digit code", after=seen)
    wrong = "000000" if vonage.last_code(E164) != "000000" else "111111"
    for _ in range(3):
        telegram.send_text(user, wrong)
    await next_message(telegram, user, "wrong too many times", after=seen)


async def test_a_member_who_fails_n_times_is_dealt_with_at_once(
    run_bot: RunBot, telegram: TelegramEmulator, vonage: VonageEmulator
) -> None:
    ada, group = telegram.add_user("Ada"), telegram.add_group("Club")
    mods = telegram.add_group("Moderators")
    # No deadline at all: only the failures can remove her.
    async with run_bot(
        telegram_consequence="ban", ban_after_failures=2, telegram_log_chat_id=str(mods)
    ):
        telegram.join(ada, group)
        await next_message(telegram, group, "Welcome, Ada")
        telegram.send_text(ada, f"/start g{group}")
        await next_message(telegram, ada, "phone number")

        await fail_once(telegram, vonage, ada)
        assert telegram.member_status(group, ada) == "restricted"  # once is not enough
        await fail_once(telegram, vonage, ada)

        await telegram.wait_for(lambda: telegram.member_status(group, ada) == "kicked")
        assert telegram.banned_until(group, ada) == 0
        await next_message(telegram, ada, "you were banned from Club")
        review = await next_message(telegram, mods, "failed to verify too many times")
        assert "Ada" in review.text and "Club" in review.text


async def test_failures_below_n_change_nothing(
    run_bot: RunBot, telegram: TelegramEmulator, vonage: VonageEmulator
) -> None:
    ada, group = telegram.add_user("Ada"), telegram.add_group("Club")
    async with run_bot(ban_after_failures=3):
        telegram.join(ada, group)
        await next_message(telegram, group, "Welcome, Ada")
        telegram.send_text(ada, f"/start g{group}")
        await next_message(telegram, ada, "phone number")
        await fail_once(telegram, vonage, ada)
        await fail_once(telegram, vonage, ada)

        await verify_by_typing(telegram, vonage, ada, start=f"/start g{group}")

        await next_message(telegram, ada, "You can now take part in Club")
        assert telegram.member_status(group, ada) == "member"
        assert telegram.calls_to("banChatMember") == []


# --- The review queue -------------------------------------------------------------------------


async def taken_number_reviewed(
    telegram: TelegramEmulator, vonage: VonageEmulator, group: int, mods: int
) -> tuple[int, SentMessage]:
    """Cy verifies with NUMBER; Ada joins ``group`` and gives the same number: her entry."""
    cy, ada = telegram.add_user("Cy"), telegram.add_user("Ada")
    await verify_by_typing(telegram, vonage, cy)
    telegram.join(ada, group)
    await next_message(telegram, group, "Welcome, Ada")
    telegram.send_text(ada, f"/start g{group}")
    await next_message(telegram, ada, "phone number")
    telegram.send_text(ada, NUMBER)
    await next_message(telegram, ada, "can't be used to verify another account")
    entry = await next_message(telegram, mods, "a number that another account holds")
    return ada, entry


async def test_approve_admits_the_member_without_a_phone_and_is_audited(
    run_bot: RunBot, telegram: TelegramEmulator, vonage: VonageEmulator
) -> None:
    group, mods = telegram.add_group("Club"), telegram.add_group("Moderators")
    grace, bob = telegram.add_user("Grace"), telegram.add_user("Bob")
    telegram.add_admin(mods, grace)
    telegram.join(bob, mods)
    async with run_bot(telegram_log_chat_id=str(mods)) as app:
        ada, entry = await taken_number_reviewed(telegram, vonage, group, mods)
        approve, deny = callback_data(entry)
        assert (approve.startswith("vr:a:"), deny.startswith("vr:d:")) == (True, True)

        # Bob sits in the log chat but moderates nothing: refused, and nothing happens.
        answer = await answer_to(telegram, telegram.press(bob, entry, approve))
        assert "Only this group's moderators" in answer["text"]
        assert telegram.member_status(group, ada) == "restricted"

        telegram.press(grace, entry, approve)

        await next_message(telegram, ada, "A moderator approved you")
        assert telegram.member_status(group, ada) == "member"
        trail = app.directory.audit_trail(subject=str(key_of(telegram, ada)))
        manual = [e for e in trail if e.event == "admitted_manually"]
        assert [(e.actor, e.details["place"]) for e in manual] == [
            (str(key_of(telegram, grace)), str(group))
        ]
        assert app.directory.find_verified(key_of(telegram, ada)) is None  # no phone link
        await telegram.wait_for(lambda: "Approved by Grace" in telegram.messages_in(mods)[-1].text)
        assert telegram.messages_in(mods)[-1].reply_markup is None  # decided: no more buttons


async def test_deny_applies_the_groups_consequence(
    run_bot: RunBot, telegram: TelegramEmulator, vonage: VonageEmulator
) -> None:
    group, mods = telegram.add_group("Club"), telegram.add_group("Moderators")
    grace = telegram.add_user("Grace")
    telegram.add_admin(group, grace)  # an administrator of the member's group may decide
    telegram.join(grace, mods)
    async with run_bot(telegram_log_chat_id=str(mods), telegram_consequence="ban") as app:
        ada, entry = await taken_number_reviewed(telegram, vonage, group, mods)

        telegram.press(grace, entry, callback_data(entry)[1])

        await telegram.wait_for(lambda: telegram.member_status(group, ada) == "kicked")
        assert telegram.banned_until(group, ada) == 0
        trail = app.directory.audit_trail(subject=str(key_of(telegram, ada)))
        assert [e.event for e in trail if e.event in ("denied", "admitted_manually")] == ["denied"]
        await telegram.wait_for(lambda: "Denied by Grace" in telegram.messages_in(mods)[-1].text)


async def test_two_moderators_pressing_at_once_decide_once(
    run_bot: RunBot, telegram: TelegramEmulator, vonage: VonageEmulator
) -> None:
    group, mods = telegram.add_group("Club"), telegram.add_group("Moderators")
    grace, hal = telegram.add_user("Grace"), telegram.add_user("Hal")
    telegram.add_admin(mods, grace)
    telegram.add_admin(mods, hal)
    async with run_bot(telegram_log_chat_id=str(mods), telegram_consequence="ban"):
        ada, entry = await taken_number_reviewed(telegram, vonage, group, mods)
        approve, deny = callback_data(entry)

        presses = [telegram.press(grace, entry, approve), telegram.press(hal, entry, deny)]

        answers = [await answer_to(telegram, press) for press in presses]
        refused = [a.get("text") for a in answers if a.get("text")]
        assert refused == ["This was decided already."]
        await telegram.wait_for(lambda: telegram.member_status(group, ada) != "restricted")
        assert telegram.member_status(group, ada) in ("member", "kicked")


# --- Forum groups -----------------------------------------------------------------------------


async def test_a_forum_welcomes_in_general_and_answers_in_the_topic_asked(
    run_bot: RunBot, telegram: TelegramEmulator
) -> None:
    forum = telegram.add_group("Forum", forum=True)
    topic = telegram.add_topic(forum, "Help")
    ada, grace = telegram.add_user("Ada"), telegram.add_user("Grace")
    telegram.add_admin(forum, grace)
    async with run_bot():
        telegram.join(ada, forum)
        welcome = await next_message(telegram, forum, "Welcome, Ada")
        assert welcome.message_thread_id is None  # the General topic, where joins show

        telegram.send_text(grace, "/verify", chat_id=forum, topic=topic)
        answer = await next_message(telegram, forum, "Members verify their phone number")
        assert answer.message_thread_id == topic

        telegram.send_text(grace, "/roles", chat_id=forum, topic=topic)
        await telegram.wait_for(lambda: len(telegram.messages_in(forum)) >= 3)
        assert telegram.messages_in(forum)[-1].message_thread_id == topic

        telegram.send_text(grace, "/verify", chat_id=forum)  # in General: answered there
        await telegram.wait_for(lambda: len(telegram.messages_in(forum)) >= 4)
        assert telegram.messages_in(forum)[-1].message_thread_id is None


# --- Per group ---------------------------------------------------------------------------------


async def test_two_groups_in_one_process_each_deal_by_their_own_rules(
    run_bot: RunBot, telegram: TelegramEmulator
) -> None:
    ada = telegram.add_user("Ada")
    kicks, bans, mutes = (telegram.add_group(t) for t in ("Kickers", "Banners", "Muters"))
    rules = {
        str(kicks): GateRules(parse_consequence("kick")),
        str(bans): GateRules(parse_consequence("ban:1d")),
        str(mutes): GateRules(parse_consequence("mute")),
    }

    async def rules_for(place: str) -> GateRules:  # what a community's policy will answer
        return rules[place]

    async with run_bot(telegram_verify_timeout="1") as app:
        app.gatekeeper.rules_for = rules_for
        await reachable(telegram, ada)
        for group in (kicks, bans, mutes):
            telegram.join(ada, group)

        await telegram.wait_for(
            lambda: (
                [telegram.member_status(g, ada) for g in (kicks, bans, mutes)]
                == ["left", "kicked", "restricted"]
                and len(telegram.messages_in(ada)) >= 4
            )
        )
        assert (telegram.banned_until(bans, ada) or 0) > time.time() + 86000
        texts = " | ".join(m.text for m in telegram.messages_in(ada))
        assert "removed from Kickers" in texts
        assert "banned from Banners until" in texts
        assert "you stay in Muters" in texts
