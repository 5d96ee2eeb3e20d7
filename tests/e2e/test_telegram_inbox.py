"""Long polling through the bot's inbox in Redis (adapters/telegram/polling.py, bot/inbox.py).

The real PTB application and ``Polling`` against the Bot API emulator, with real Redis: an
update is in the inbox before Telegram is told it was received, leaves it once handled, and
one that a stop cut short is handled on the next start. While Redis cannot be written, the
offset stays where it was, so Telegram keeps the update.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from redis.asyncio import Redis
from structlog.testing import capture_logs
from telegram import Update
from telegram.ext import Application, ApplicationBuilder, ContextTypes, MessageHandler, filters

from adapters.telegram.polling import Polling
from adapters.telegram.updates import InOrderPerMember
from bot.inbox import UpdateInbox
from tests.emulators.telegram import TelegramEmulator
from verifybot.embedded_redis import EmbeddedRedis

Handler = Callable[[Update], Awaitable[None]]


@asynccontextmanager
async def polling(
    telegram: TelegramEmulator, inbox: UpdateInbox, handler: Handler, *, grace: float = 5.0
) -> AsyncIterator[Polling]:
    """A PTB application that hands every text to ``handler``, polling through ``inbox``."""
    processor = InOrderPerMember(per_chat=1)
    application: Application[Any, Any, Any, Any, Any, Any] = (
        ApplicationBuilder()
        .token(telegram.token)
        .base_url(telegram.base_url)
        .updater(None)
        .concurrent_updates(processor)
        .build()
    )

    async def on_text(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await handler(update)

    application.add_handler(MessageHandler(filters.TEXT, on_text))
    async with application:
        await application.start()
        poller = Polling(
            application, allowed_updates=["message"], in_flight=processor.in_flight, inbox=inbox
        )
        await poller.start()
        try:
            yield poller
        finally:
            await poller.stop(grace)
            await application.stop()


def offsets(telegram: TelegramEmulator) -> list[int]:
    return [int(call.params.get("offset") or 0) for call in telegram.calls_to("getUpdates")]


def texts(updates: dict[int, str]) -> list[str]:
    """The texts of the updates kept, as PTB reads them back."""
    messages = [Update.de_json(json.loads(raw), None).message for raw in updates.values()]
    return [message.text or "" if message else "" for message in messages]


async def test_an_update_is_kept_while_handled_and_removed_once_handled(
    telegram: TelegramEmulator, redis: Redis, key_prefix: str
) -> None:
    inbox = UpdateInbox(redis, f"{key_prefix}inbox:telegram:test")
    kept_while_handled: dict[str, list[int]] = {}
    release = asyncio.Event()
    done: list[str] = []

    async def handle(update: Update) -> None:
        assert update.message is not None and update.message.text is not None
        kept_while_handled[update.message.text] = sorted(await inbox.pending())
        if update.message.text == "slow":
            await release.wait()
        done.append(update.message.text)

    alice, bob = telegram.add_user("Alice"), telegram.add_user("Bob")
    async with polling(telegram, inbox, handle):
        slow = telegram.send_text(alice, "slow")["update_id"]
        await telegram.wait_for(lambda: "slow" in kept_while_handled)
        assert slow in kept_while_handled["slow"]
        # Telegram is told it was received while it is still being handled, and what comes
        # after it is not held back by it.
        # (A getUpdates is recorded on arrival, and applies its offset a moment later.)
        await telegram.wait_for(
            lambda: max(offsets(telegram)) > slow and telegram.pending_updates == []
        )
        fast = telegram.send_text(bob, "fast")["update_id"]
        await telegram.wait_for(lambda: "fast" in done)
        assert done == ["fast"]
        assert fast in kept_while_handled["fast"]

        release.set()
        await telegram.wait_for(lambda: done == ["fast", "slow"])
        # Handled: they leave the inbox (with the next batch, or the timer's removal).
        pending: dict[int, str] = {}
        for _ in range(100):
            pending = await inbox.pending()
            if not pending:
                break
            await asyncio.sleep(0.05)
        assert pending == {}
    assert not await redis.exists(inbox.key)  # an empty hash leaves nothing behind


async def test_what_a_stop_cut_short_is_handled_on_the_next_start(
    telegram: TelegramEmulator, redis: Redis, key_prefix: str
) -> None:
    inbox = UpdateInbox(redis, f"{key_prefix}inbox:telegram:test")
    started: list[str] = []
    never = asyncio.Event()

    async def hang(update: Update) -> None:
        assert update.message is not None and update.message.text is not None
        started.append(update.message.text)
        await never.wait()

    alice, bob = telegram.add_user("Alice"), telegram.add_user("Bob")
    async with polling(telegram, inbox, hang, grace=0.1):
        telegram.send_text(alice, "under way")
        telegram.send_text(alice, "waiting for its turn")  # Alice's updates go in order
        await telegram.wait_for(lambda: started == ["under way"])
    # Both cut short: confirmed to Telegram, kept in the inbox.
    assert telegram.pending_updates == []
    assert sorted(texts(await inbox.pending())) == ["under way", "waiting for its turn"]
    assert 0 < await redis.pttl(inbox.key) <= 24 * 3600 * 1000

    handled: list[str] = []

    async def handle(update: Update) -> None:
        assert update.message is not None and update.message.text is not None
        handled.append(update.message.text)

    async with polling(telegram, inbox, handle):
        await telegram.wait_for(lambda: len(handled) == 2)
        telegram.send_text(bob, "new")
        await telegram.wait_for(lambda: len(handled) == 3)
    assert handled == ["under way", "waiting for its turn", "new"]  # in order, each once
    assert await inbox.pending() == {}


async def test_while_redis_cannot_be_written_the_offset_stays_and_nothing_is_handled(
    telegram: TelegramEmulator, tmp_path: Path
) -> None:
    server = EmbeddedRedis(tmp_path / "redis", persist=False)
    server.start()
    redis = Redis.from_url(server.url)
    inbox = UpdateInbox(redis, "verifybot-test:inbox:telegram:test")
    handled: list[str] = []

    async def handle(update: Update) -> None:
        assert update.message is not None and update.message.text is not None
        handled.append(update.message.text)

    alice = telegram.add_user("Alice")
    try:
        with capture_logs() as logs:
            async with polling(telegram, inbox, handle):
                await telegram.wait_for(lambda: telegram.calls_to("getUpdates"))
                server.stop()  # Redis goes down while the bot waits for updates
                update_id = telegram.send_text(alice, "hello")["update_id"]
                await telegram.wait_for(
                    lambda: sum(e["event"] == "telegram_inbox_write_failed" for e in logs) >= 2
                )
                assert handled == []
                assert max(offsets(telegram)) <= update_id  # Telegram still has it
                assert [u["update_id"] for u in telegram.pending_updates] == [update_id]

                server.start()  # Redis is back: the batch is written, then confirmed
                await telegram.wait_for(lambda: handled == ["hello"], timeout=15)
                await telegram.wait_for(lambda: max(offsets(telegram)) > update_id)
                assert telegram.pending_updates == []
                assert [e for e in logs if e["event"] == "telegram_inbox_read_failed"] == []
    finally:
        await redis.aclose()
        server.stop()


async def test_the_inbox_keeps_each_update_as_telegram_sent_it(
    telegram: TelegramEmulator, redis: Redis, key_prefix: str
) -> None:
    inbox = UpdateInbox(redis, f"{key_prefix}inbox:telegram:test")
    kept: dict[int, str] = {}
    handled: list[str] = []

    async def handle(update: Update) -> None:
        kept.update(await inbox.pending())
        assert update.message is not None and update.message.text is not None
        handled.append(update.message.text)

    alice = telegram.add_user("Alice")
    async with polling(telegram, inbox, handle):
        sent = telegram.send_text(alice, "héllo")
        await telegram.wait_for(lambda: handled == ["héllo"])
    assert json.loads(kept[sent["update_id"]]) == sent
