"""Telegram journeys, end to end: the real python-telegram-bot ``Application`` started by
``adapters.telegram.serve`` (long polling, or its webhook server), against the Bot API emulator;
the real vonage SDK against the Verify emulator; a real Redis and SQLite behind the engine."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bot.identity import MemberKey
from tests.e2e.conftest import RunBot
from tests.emulators.telegram import SentMessage, TelegramEmulator
from tests.emulators.vonage import VonageEmulator

NUMBER = "+44 7400 123456"
E164 = "447400123456"
OTHER_NUMBER = "+44 7400 654321"
OTHER_E164 = "447400654321"
LOGIN_WARNING = "NOT a Telegram login code"


async def next_message(
    telegram: TelegramEmulator, chat_id: int, containing: str, *, after: int = 0
) -> SentMessage:
    """The first message to ``chat_id``, beyond the first ``after``, whose text contains this."""

    def found() -> SentMessage | None:
        for message in telegram.messages_in(chat_id)[after:]:
            if containing in message.text:
                return message
        return None

    message: SentMessage = await telegram.wait_for(found)
    return message


def callback_data(message: SentMessage) -> list[str]:
    markup = message.reply_markup or {}
    return [b.get("callback_data", "") for row in markup.get("inline_keyboard", []) for b in row]


async def verify_by_typing(
    telegram: TelegramEmulator, vonage: VonageEmulator, user: int, start: str = "/start"
) -> None:
    seen = len(telegram.messages_in(user))
    telegram.send_text(user, start)
    await next_message(telegram, user, "phone number", after=seen)
    telegram.send_text(user, NUMBER)
    await next_message(telegram, user, "I've sent a 6-digit code", after=seen)
    telegram.send_text(user, vonage.last_code(E164))
    await next_message(telegram, user, "You're verified", after=seen)


# --- The private chat -------------------------------------------------------------------------


async def test_a_member_verifies_by_typing_their_number(
    run_bot: RunBot, telegram: TelegramEmulator, vonage: VonageEmulator
) -> None:
    ada = telegram.add_user("Ada", language_code="en")
    async with run_bot() as app:
        telegram.send_text(ada, "/start")
        ask = await next_message(telegram, ada, "send me your mobile phone number")
        assert ask.reply_markup is not None
        contact_button = ask.reply_markup["keyboard"][0][0]
        assert contact_button == {"text": "Share my phone number", "request_contact": True}

        telegram.send_text(ada, NUMBER)
        sent = await next_message(telegram, ada, "I've sent a 6-digit code")
        assert "+44•••••3456" in sent.text
        assert LOGIN_WARNING in sent.text
        assert "Nobody will ever ask you for a Telegram login code" in sent.text
        assert callback_data(sent) == ["vb:resend", "vb:change_number", "vb:cancel"]
        closing = telegram.messages_in(ada)[-2]
        assert closing.reply_markup == {"remove_keyboard": True}

        telegram.send_text(ada, vonage.last_code(E164))
        done = await next_message(telegram, ada, "You're verified")

        assert "+44•••••3456" in done.text
        link = app.directory.find_user("telegram", str(ada))[0]
        assert (link.is_phone_verified, link.phone_e164, link.display_name) == (
            True,
            "+447400123456",
            "Ada",
        )


async def test_a_member_verifies_by_sharing_their_own_contact(
    run_bot: RunBot, telegram: TelegramEmulator, vonage: VonageEmulator
) -> None:
    ada = telegram.add_user("Ada")
    async with run_bot() as app:
        telegram.send_text(ada, "/verify")
        await next_message(telegram, ada, "phone number")
        telegram.share_contact(ada, "447400123456", contact_user_id=ada)
        await next_message(telegram, ada, "I've sent a 6-digit code")
        assert {"remove_keyboard": True} in [m.reply_markup for m in telegram.messages_in(ada)]

        telegram.send_text(ada, vonage.last_code(E164))
        await next_message(telegram, ada, "You're verified")
        assert app.directory.find_user("telegram", str(ada))[0].is_phone_verified


@pytest.mark.parametrize("owner", ["someone else", "nobody"])
async def test_a_contact_that_is_not_the_members_own_is_refused(
    owner: str, run_bot: RunBot, telegram: TelegramEmulator, vonage: VonageEmulator
) -> None:
    ada = telegram.add_user("Ada")
    bob = telegram.add_user("Bob")
    async with run_bot():
        telegram.send_text(ada, "/start")
        await next_message(telegram, ada, "phone number")
        contact_user = bob if owner == "someone else" else None
        telegram.share_contact(ada, "447400123456", contact_user_id=contact_user)

        refusal = await next_message(telegram, ada, "share your own contact")

        assert refusal.reply_markup is not None
        assert refusal.reply_markup["keyboard"][0][0]["request_contact"] is True
        assert vonage.deliveries == []


async def test_a_wrong_code_then_the_right_one(
    run_bot: RunBot, telegram: TelegramEmulator, vonage: VonageEmulator
) -> None:
    ada = telegram.add_user("Ada")
    async with run_bot() as app:
        telegram.send_text(ada, "/start")
        telegram.send_text(ada, NUMBER)
        await next_message(telegram, ada, "I've sent")
        right = vonage.last_code(E164)
        wrong = "000000" if right != "000000" else "111111"

        telegram.send_text(ada, wrong)
        refused = await next_message(telegram, ada, "That code isn't right")
        assert "2 tries left" in refused.text
        assert LOGIN_WARNING in refused.text
        assert callback_data(refused) == ["vb:resend", "vb:change_number", "vb:cancel"]

        telegram.send_text(ada, right)
        await next_message(telegram, ada, "You're verified")
        assert app.directory.find_user("telegram", str(ada))[0].is_phone_verified


async def test_resend_then_change_of_number_by_buttons(
    run_bot: RunBot, telegram: TelegramEmulator, vonage: VonageEmulator
) -> None:
    ada = telegram.add_user("Ada")
    async with run_bot() as app:
        telegram.send_text(ada, "/start")
        telegram.send_text(ada, NUMBER)
        sent = await next_message(telegram, ada, "I've sent")

        pressed = telegram.press(ada, sent.message_id, "vb:resend")
        again = await next_message(telegram, ada, "again")
        assert LOGIN_WARNING in again.text
        query_id = pressed["callback_query"]["id"]
        assert telegram.callback_answer(query_id) is not None
        await telegram.wait_for(lambda: telegram.messages_in(ada)[-2].reply_markup is None)

        second = telegram.press(ada, again.message_id, "vb:change_number")
        await next_message(telegram, ada, "phone number", after=len(telegram.messages_in(ada)))
        telegram.send_text(ada, OTHER_NUMBER)
        await next_message(telegram, ada, "+44•••••4321")
        telegram.send_text(ada, vonage.last_code(OTHER_E164))
        await next_message(telegram, ada, "You're verified with +44•••••4321")

        assert app.directory.find_user("telegram", str(ada))[0].phone_e164 == "+447400654321"
        assert telegram.callback_answer(second["callback_query"]["id"]) is not None


async def test_an_expired_code_asks_for_the_number_again(
    run_bot: RunBot, telegram: TelegramEmulator, vonage: VonageEmulator
) -> None:
    ada = telegram.add_user("Ada")
    async with run_bot(code_validity_seconds=1) as app:
        telegram.send_text(ada, "/start")
        telegram.send_text(ada, NUMBER)
        await next_message(telegram, ada, "I've sent")
        await asyncio.sleep(1.1)

        telegram.send_text(ada, vonage.last_code(E164))

        await next_message(telegram, ada, "Your code has expired")
        assert app.directory.find_user("telegram", str(ada)) == []


async def test_texts_follow_the_members_language(
    run_bot: RunBot, telegram: TelegramEmulator, vonage: VonageEmulator
) -> None:
    ana = telegram.add_user("Ana", language_code="es")
    async with run_bot():
        telegram.send_text(ana, "/start")
        await next_message(telegram, ana, "envíame tu número de móvil")
        telegram.send_text(ana, NUMBER)
        sent = await next_message(telegram, ana, "He enviado un código")
        assert "NO es un código de inicio de sesión de Telegram" in sent.text


async def test_a_redelivered_update_is_answered_once(
    run_bot: RunBot, telegram: TelegramEmulator
) -> None:
    ada = telegram.add_user("Ada")
    async with run_bot():
        start = telegram.send_text(ada, "/start")
        await next_message(telegram, ada, "phone number")

        telegram.redeliver(start)
        telegram.send_text(ada, "/status")
        await next_message(telegram, ada, "send your mobile phone number")

        texts = [m.text for m in telegram.messages_in(ada)]
        assert len(texts) == 2, texts


async def test_a_chats_updates_are_handled_in_order_even_when_they_arrive_together(
    run_bot: RunBot, telegram: TelegramEmulator
) -> None:
    members = [telegram.add_user(f"M{n}") for n in range(8)]
    async with run_bot():
        for n, member in enumerate(members):  # one getUpdates batch, chats interleaved
            telegram.send_text(member, "/start")
            telegram.send_text(member, f"+44 7400 1000{n:02d}")
        for member in members:
            await next_message(telegram, member, "I've sent a 6-digit code")
            assert "I verify members" not in telegram.messages_in(member)[0].text


async def test_a_members_updates_in_a_group_are_handled_in_order_beside_other_members(
    run_bot: RunBot, telegram: TelegramEmulator
) -> None:
    group = telegram.add_group("Club")
    members = [telegram.add_user(f"M{n}") for n in range(8)]
    async with run_bot(telegram_gate_mode="restrict") as app:
        for member in members:  # one getUpdates batch, members interleaved in one group
            telegram.join(member, group)
            telegram.leave(member, group)

        # Each leave is handled after that member's join, so no hold is left behind, and
        # the welcome goes once the last member it served has left.
        await telegram.wait_for(lambda: len(telegram.calls_to("restrictChatMember")) == 8)
        welcomes = telegram.messages_in
        await telegram.wait_for(lambda: welcomes(group) and all(m.deleted for m in welcomes(group)))
        for member in members:
            key = MemberKey("telegram", str(telegram.bot_id), str(member))
            assert await app.gatekeeper.gate.release(key) == []


async def test_commands_are_registered_for_members_and_admins_in_every_language(
    run_bot: RunBot, telegram: TelegramEmulator
) -> None:
    async with run_bot():
        private = {"type": "all_private_chats"}
        admins = {"type": "all_chat_administrators"}
        await telegram.wait_for(lambda: telegram.commands(admins, "es"))

        names = [c["command"] for c in telegram.commands(private)]
        assert names == ["verify", "status", "cancel", "help"]
        assert [c["command"] for c in telegram.commands(admins)] == [
            "verify",
            "settings",
            "grant",
            "revoke",
            "roles",
            "whois",
            "verified",
            "stats",
            "export",
            "unlink",
            "fraud",
        ]
        spanish = {c["command"]: c["description"] for c in telegram.commands(private, "es")}
        assert spanish["status"] == "Estado de tu verificación"
        spanish_admin = {c["command"]: c["description"] for c in telegram.commands(admins, "es")}
        assert spanish_admin["revoke"] == "Quitar un rol a un miembro"


async def test_a_member_who_blocked_the_bot_does_not_stop_it(
    run_bot: RunBot, telegram: TelegramEmulator
) -> None:
    ada = telegram.add_user("Ada")
    bob = telegram.add_user("Bob")
    group = telegram.add_group("Club")
    async with run_bot(telegram_gate_mode="join_request"):
        telegram.send_text(ada, "/start")
        await next_message(telegram, ada, "phone number")
        telegram.block_bot(ada)
        telegram.request_join(ada, group)  # the bot's message to Ada is refused with 403
        await telegram.wait_for(
            lambda: [c for c in telegram.calls_to("sendMessage") if c.status == 403]
        )

        telegram.send_text(bob, "/start")
        await next_message(telegram, bob, "phone number")
        assert telegram.join_request_state(group, ada) == "pending"


async def test_a_429_from_telegram_is_waited_out_and_the_reply_still_arrives(
    run_bot: RunBot, telegram: TelegramEmulator
) -> None:
    ada = telegram.add_user("Ada")
    async with run_bot():
        telegram.inject("sendMessage", 429, retry_after=1)
        telegram.send_text(ada, "/start")

        await next_message(telegram, ada, "phone number")

        statuses = [call.status for call in telegram.calls_to("sendMessage")]
        assert statuses[:2] == [429, 200]


async def test_every_button_press_is_answered_even_a_stale_or_unknown_one(
    run_bot: RunBot, telegram: TelegramEmulator
) -> None:
    ada = telegram.add_user("Ada")
    async with run_bot():
        telegram.send_text(ada, "/status")
        offer = await next_message(telegram, ada, "not verified")
        assert callback_data(offer) == ["vb:start"]
        telegram.send_text(ada, "/start")
        await next_message(telegram, ada, "phone number")

        stale = telegram.press(ada, offer.message_id, "vb:start")  # pressed after moving on

        await telegram.wait_for(lambda: telegram.callback_answer(stale["callback_query"]["id"]))
        await next_message(telegram, ada, "Please send your mobile phone number")


# --- Webhook mode -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def test_webhook_mode_serves_updates_and_refuses_a_wrong_secret(
    run_bot: RunBot, telegram: TelegramEmulator
) -> None:
    ada = telegram.add_user("Ada")
    port = free_port()
    async with run_bot(
        webhook=True,
        telegram_webhook_url=f"http://127.0.0.1:{port}/telegram",
        telegram_webhook_secret="s3cret-Token_1",
        listen_host="127.0.0.1",
        port=port,
    ):
        setting = telegram.calls_to("setWebhook")[-1].params
        assert setting["secret_token"] == "s3cret-Token_1"
        assert "chat_member" in setting["allowed_updates"]

        update = telegram.send_text(ada, "/start")
        await next_message(telegram, ada, "phone number")
        forged = {**update, "update_id": update["update_id"] + 1000}

        assert await asyncio.to_thread(telegram.post_to_webhook, forged, "wrong") == 403
        assert await asyncio.to_thread(telegram.post_to_webhook, forged, None) == 403
        await asyncio.sleep(0.2)
        assert len(telegram.messages_in(ada)) == 1
        assert await asyncio.to_thread(telegram.post_to_webhook, forged, "s3cret-Token_1") == 200
        await next_message(telegram, ada, "phone number", after=1)


# --- Gated groups -----------------------------------------------------------------------------


def url_buttons(message: SentMessage) -> list[str]:
    markup = message.reply_markup or {}
    return [b.get("url", "") for row in markup.get("inline_keyboard", []) for b in row]


async def test_a_new_group_member_is_restricted_until_verified(
    run_bot: RunBot, telegram: TelegramEmulator, vonage: VonageEmulator
) -> None:
    ada = telegram.add_user("Ada")
    group = telegram.add_group("Club")
    async with run_bot(telegram_gate_mode="restrict") as app:
        telegram.join(ada, group)

        welcome = await next_message(telegram, group, "Welcome, Ada")
        assert telegram.member_status(group, ada) == "restricted"
        assert telegram.permissions(group, ada) == {
            name: False for name in telegram.permissions(group, ada) or {}
        }
        link = f"https://t.me/{telegram.bot_username}?start=g{group}"
        assert url_buttons(welcome) == [link]
        ours = {m.message_id for m in telegram.messages_in(group)}
        await telegram.wait_for(  # the "Ada joined" service message is tidied away
            lambda: [
                c for c in telegram.calls_to("deleteMessage") if c.params["message_id"] not in ours
            ]
        )

        await verify_by_typing(telegram, vonage, ada, start=f"/start g{group}")

        await next_message(telegram, ada, "You can now take part in Club")
        assert telegram.member_status(group, ada) == "member"
        assert await telegram.wait_for(lambda: telegram.messages_in(group)[0].deleted)
        ada_key = MemberKey("telegram", str(telegram.bot_id), str(ada))
        assert app.directory.is_admitted(ada_key, str(group))


async def test_a_wave_of_joins_is_restricted_at_once_under_one_welcome(
    run_bot: RunBot, telegram: TelegramEmulator
) -> None:
    group = telegram.add_group("Club")
    wave = [telegram.add_user(f"Newcomer {n}") for n in range(25)]
    async with run_bot(telegram_gate_mode="restrict"):
        for user in wave:
            telegram.join(user, group)

        # 25 restrictions and 25 deleted "joined" messages, well within Telegram's 20
        # messages a minute per group: admin actions do not wait for the message budget.
        await telegram.wait_for(
            lambda: all(telegram.member_status(group, u) == "restricted" for u in wave),
            timeout=5,
        )
        await telegram.wait_for(lambda: len(telegram.calls_to("deleteMessage")) >= 25)
        # Joins are handled side by side, so the one welcome names whichever newcomer's
        # restriction came back first; its button serves the whole wave.
        (welcome,) = [m.text.split("!")[0] for m in telegram.messages_in(group)]
        assert welcome in {f"Welcome, Newcomer {n}" for n in range(25)}


async def test_a_member_admitted_before_rejoins_without_being_asked(
    run_bot: RunBot, telegram: TelegramEmulator, vonage: VonageEmulator
) -> None:
    ada = telegram.add_user("Ada")
    group = telegram.add_group("Club")
    other = telegram.add_group("Other club")
    async with run_bot(telegram_gate_mode="restrict"):
        await verify_by_typing(telegram, vonage, ada)
        telegram.join(ada, group)
        await next_message(telegram, group, "Welcome, Ada")
        telegram.send_text(ada, f"/start g{group}")  # already verified: one tap, no SMS
        await next_message(telegram, ada, "You can now take part in Club")
        telegram.leave(ada, group)
        await telegram.wait_for(lambda: telegram.member_status(group, ada) == "left")

        telegram.join(ada, group)
        telegram.join(ada, other)

        await next_message(telegram, other, "Welcome, Ada")
        assert telegram.member_status(group, ada) == "member"
        assert telegram.member_status(other, ada) == "restricted"
        assert len(vonage.deliveries) == 1


async def test_a_join_request_is_approved_once_verified(
    run_bot: RunBot, telegram: TelegramEmulator, vonage: VonageEmulator
) -> None:
    ada = telegram.add_user("Ada")
    group = telegram.add_group("Club")
    async with run_bot(telegram_gate_mode="join_request"):
        telegram.request_join(ada, group)

        await next_message(telegram, ada, "You asked to join Club")
        await next_message(telegram, ada, "send me your mobile phone number")
        telegram.send_text(ada, NUMBER)
        await next_message(telegram, ada, "I've sent")
        telegram.send_text(ada, vonage.last_code(E164))
        await next_message(telegram, ada, "You can now take part in Club")

        assert telegram.join_request_state(group, ada) == "approved"
        assert telegram.member_status(group, ada) == "member"


async def test_unverified_members_are_removed_after_the_timeout_and_verified_ones_stay(
    run_bot: RunBot, telegram: TelegramEmulator, vonage: VonageEmulator
) -> None:
    ada = telegram.add_user("Ada")
    bob = telegram.add_user("Bob")
    group = telegram.add_group("Club")
    async with run_bot(telegram_gate_mode="restrict", telegram_verify_timeout="2"):
        telegram.join(ada, group)
        await next_message(telegram, group, "Welcome, Ada")
        telegram.join(bob, group)  # a wave: Ada's welcome, and its button, serve Bob too
        await telegram.wait_for(lambda: telegram.member_status(group, bob) == "restricted")
        await verify_by_typing(telegram, vonage, bob, start=f"/start g{group}")
        await next_message(telegram, bob, "You can now take part in Club")

        await telegram.wait_for(lambda: telegram.member_status(group, ada) == "left", timeout=6)

        assert [c.params["user_id"] for c in telegram.calls_to("banChatMember")] == [ada]
        assert telegram.member_status(group, bob) == "member"
        welcomes = telegram.messages_in(group)
        assert [m.text.split("!")[0] for m in welcomes] == ["Welcome, Ada"]
        await telegram.wait_for(lambda: all(m.deleted for m in telegram.messages_in(group)))


async def test_a_join_request_is_declined_after_the_timeout(
    run_bot: RunBot, telegram: TelegramEmulator
) -> None:
    ada = telegram.add_user("Ada")
    group = telegram.add_group("Club")
    async with run_bot(telegram_gate_mode="join_request", telegram_verify_timeout="1"):
        telegram.request_join(ada, group)
        await next_message(telegram, ada, "You asked to join Club")

        await telegram.wait_for(lambda: telegram.join_request_state(group, ada) == "declined")
        await next_message(telegram, ada, "declined")


# --- The command operators run ----------------------------------------------------------------


async def test_verifybot_run_telegram_serves_members_and_stops_cleanly_on_sigterm(
    telegram: TelegramEmulator, redis_url: str, key_prefix: str, tmp_path: Path
) -> None:
    import signal
    import sys

    from tests.conftest import unconfigured_environment

    ada = telegram.add_user("Ada")
    env = unconfigured_environment(
        TELEGRAM_BOT_TOKEN=telegram.token,
        TELEGRAM_API_BASE_URL=telegram.base_url,
        REDIS_URL=redis_url,
        REDIS_PREFIX=key_prefix,
        DATABASE_URL=f"sqlite:///{tmp_path / 'bot.db'}",
        DATA_DIR=str(tmp_path / "data"),
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "verifybot", "run", "telegram",
        env=env, cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        await telegram.wait_for(lambda: telegram.calls_to("getUpdates"), timeout=30)
        telegram.send_text(ada, "/start")
        await next_message(telegram, ada, "phone number")
    finally:
        process.send_signal(signal.SIGTERM)
        raw, _ = await asyncio.wait_for(process.communicate(), timeout=20)
    output = raw.decode()
    assert process.returncode == 0, output
    assert "telegram_polling" in output
    assert "Traceback" not in output
    assert telegram.token not in output


async def test_doctor_asks_telegram_who_the_bot_is(
    make_settings: Callable[..., Any], telegram: TelegramEmulator
) -> None:
    from verifybot.doctor import check_platforms

    good = make_settings(telegram_bot_token=telegram.token, telegram_api_base_url=telegram.base_url)
    wrong = make_settings(telegram_bot_token="999:WRONG", telegram_api_base_url=telegram.base_url)
    unreachable = make_settings(
        telegram_bot_token=telegram.token, telegram_api_base_url="http://127.0.0.1:9/bot"
    )

    [ok, slack] = await check_platforms(good)
    [refused, _] = await check_platforms(wrong)
    [down, _] = await check_platforms(unreachable)

    assert ok.ok and ok.detail == (
        f"@{telegram.bot_username} (id {telegram.bot_id}), no webhook (long polling)"
    )
    assert slack.ok and "not configured" in slack.detail
    assert not refused.ok and "TELEGRAM_BOT_TOKEN was refused" in refused.detail
    assert not down.ok and "cannot reach http://127.0.0.1:9/bot" in down.detail
