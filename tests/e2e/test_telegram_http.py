"""The running bot's Bot API client (aiohttp) behaves as PTB's own HTTPXRequest does: JSON
and multipart bodies the emulator accepts, and TimedOut / NetworkError for a slow or an
unreachable server, so PTB's retries and the adapter's error handling see no difference.
``TelegramClient.say``, which posts past ``Bot._post``, keeps PTB's errors and limiter."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, InputFile
from telegram.error import NetworkError, TimedOut
from telegram.ext import ExtBot

from adapters.telegram.chat import CLOSE_KEYBOARD
from adapters.telegram.client import TelegramClient
from adapters.telegram.http import AiohttpRequest
from adapters.telegram.updates import PaceMessages
from bot.texts import Catalogue
from tests.emulators.telegram import TelegramEmulator


async def test_messages_and_uploads_reach_the_api(telegram: TelegramEmulator) -> None:
    ada = telegram.add_user("Ada")
    telegram.send_text(ada, "/start")
    async with Bot(telegram.token, base_url=telegram.base_url, request=AiohttpRequest()) as bot:
        await bot.send_message(ada, "héllo", reply_markup=None)
        await bot.send_document(ada, InputFile(b"a,b\n1,2\n", filename="members.csv"))

    assert telegram.messages_in(ada)[0].text == "héllo"
    document = telegram.messages_in(ada)[1].document
    assert document is not None
    assert (document.filename, document.content) == ("members.csv", b"a,b\n1,2\n")


async def test_a_slow_answer_is_timed_out(telegram: TelegramEmulator) -> None:
    ada = telegram.add_user("Ada")
    telegram.send_text(ada, "/start")
    async with Bot(
        telegram.token, base_url=telegram.base_url, request=AiohttpRequest(read_timeout=0.2)
    ) as bot:
        telegram.answer_delay = 1.0
        with pytest.raises(TimedOut):
            await bot.send_message(ada, "too slow")


async def test_an_unreachable_server_is_a_network_error() -> None:
    bot = Bot("123:ABC", base_url="http://127.0.0.1:9/bot", request=AiohttpRequest())
    try:
        with pytest.raises(NetworkError):
            await bot.initialize()
    finally:
        await bot.request.shutdown()


@asynccontextmanager
async def client_for(telegram: TelegramEmulator) -> AsyncIterator[TelegramClient]:
    bot = ExtBot(
        telegram.token,
        base_url=telegram.base_url,
        request=AiohttpRequest(),
        rate_limiter=PaceMessages.at(0, max_retries=1),
    )
    async with bot:
        yield TelegramClient(bot, Catalogue.load())


async def test_say_sends_the_text_its_keyboard_and_topic(telegram: TelegramEmulator) -> None:
    group = telegram.add_group(forum=True)
    topic = telegram.add_topic(group, "Verification")
    ada = telegram.add_user("Ada")
    telegram.send_text(ada, "/start")
    keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("Resend", callback_data="vb:resend")]])
    async with client_for(telegram) as client:
        assert await client.say(ada, "héllo <b>", keyboard)
        assert await client.say(group, "in the topic", topic=topic)

    sent = telegram.messages_in(ada)[0]
    assert (sent.text, sent.reply_markup) == ("héllo <b>", keyboard.to_dict())
    [call] = [c for c in telegram.calls_to("sendMessage") if c.params["chat_id"] == group]
    assert call.params["message_thread_id"] == topic


async def test_say_sends_each_keyboard_as_itself_however_often(telegram: TelegramEmulator) -> None:
    # say keeps each keyboard's JSON: a kept one must never stand in for another.
    ada = telegram.add_user("Ada")
    telegram.send_text(ada, "/start")
    resend = InlineKeyboardMarkup([[InlineKeyboardButton("Resend", callback_data="vb:resend")]])
    keyboards = [resend, CLOSE_KEYBOARD, None, resend, CLOSE_KEYBOARD]
    async with client_for(telegram) as client:
        for n, keyboard in enumerate(keyboards):
            assert await client.say(ada, f"reply {n}", keyboard)
        for n in range(3):  # built per call, then dropped: ids may be reused
            fresh = InlineKeyboardMarkup([[InlineKeyboardButton(f"b{n}", callback_data=f"vb:{n}")]])
            assert await client.say(ada, f"fresh {n}", fresh)
    sent = [m.reply_markup for m in telegram.messages_in(ada)]
    assert sent == [
        resend.to_dict(), {"remove_keyboard": True}, None, resend.to_dict(),
        {"remove_keyboard": True},
        *({"inline_keyboard": [[{"text": f"b{n}", "callback_data": f"vb:{n}"}]]} for n in range(3)),
    ]  # fmt: skip


async def test_say_to_a_member_who_blocked_the_bot_is_false(telegram: TelegramEmulator) -> None:
    ada = telegram.add_user("Ada")
    telegram.send_text(ada, "/start")
    telegram.block_bot(ada)
    async with client_for(telegram) as client:
        assert not await client.say(ada, "hello")
    assert [call.status for call in telegram.calls_to("sendMessage")] == [403]


async def test_say_waits_out_a_429_then_sends(telegram: TelegramEmulator) -> None:
    ada = telegram.add_user("Ada")
    telegram.send_text(ada, "/start")
    telegram.inject("sendMessage", 429, retry_after=1)
    async with client_for(telegram) as client:
        assert await client.say(ada, "hello")
    assert [call.status for call in telegram.calls_to("sendMessage")] == [429, 200]
    assert telegram.messages_in(ada)[0].text == "hello"
