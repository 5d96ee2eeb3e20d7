"""Telegram's private chat reads a member's first message through the same row of the flow
table as Slack's DM (free text in ``idle``): a number starts the verification with it, and
anything else asks for the number (or says the member is verified already)."""

from __future__ import annotations

import pytest

from bot.flow import Reply
from bot.texts import Catalogue
from tests.e2e.conftest import RunBot
from tests.e2e.test_telegram import E164, NUMBER, next_message
from tests.emulators.telegram import TelegramEmulator
from tests.emulators.vonage import VonageEmulator


async def test_a_number_as_the_first_message_sends_the_code(
    run_bot: RunBot, telegram: TelegramEmulator, vonage: VonageEmulator
) -> None:
    ada = telegram.add_user("Ada", language_code="en")
    async with run_bot():
        telegram.send_text(ada, NUMBER)
        await next_message(telegram, ada, "I've sent a 6-digit code")
        telegram.send_text(ada, vonage.last_code(E164))
        await next_message(telegram, ada, "You're verified")
        assert len(telegram.messages_in(ada)) == 2


@pytest.mark.parametrize(("typed", "language"), [("verify", "en"), ("verificar", "es")])
async def test_a_start_word_as_the_first_message_asks_for_the_number(
    run_bot: RunBot, telegram: TelegramEmulator, typed: str, language: str
) -> None:
    ana = telegram.add_user("Ana", language_code=language)
    async with run_bot():
        telegram.send_text(ana, typed)
        ask = await next_message(telegram, ana, "")
        assert ask.text == Catalogue.load().render(Reply("phone.ask"), language)
        assert ask.reply_markup is not None
        assert ask.reply_markup["keyboard"][0][0]["request_contact"] is True
        assert len(telegram.messages_in(ana)) == 1
