"""The running bot's Bot API client (aiohttp) behaves as PTB's own HTTPXRequest does: form
and multipart bodies the emulator accepts, and TimedOut / NetworkError for a slow or an
unreachable server, so PTB's retries and the adapter's error handling see no difference."""

from __future__ import annotations

import pytest
from telegram import Bot, InputFile
from telegram.error import NetworkError, TimedOut

from adapters.telegram.http import AiohttpRequest
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
