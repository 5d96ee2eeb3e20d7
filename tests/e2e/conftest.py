"""Fixtures shared by the Telegram journeys: the Bot API emulator, a Vonage key file, and the
real ``serve()`` started against both."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import pytest

from adapters.telegram import serve
from bot.app import App
from tests.conftest import VONAGE_APP_ID
from tests.emulators.telegram import TelegramEmulator
from tests.emulators.vonage import VonageEmulator
from verifybot.bootstrap import open_app


@pytest.fixture
def telegram() -> Iterator[TelegramEmulator]:
    with TelegramEmulator() as emulator:
        yield emulator
    assert emulator.internal_errors == []
    assert emulator.unemulated == []


RunBot = Callable[..., Any]


@pytest.fixture
def run_bot(
    make_settings: Callable[..., Any],
    telegram: TelegramEmulator,
    vonage: VonageEmulator,
    key_file: Path,
) -> RunBot:
    """Start ``verifybot run telegram`` in this event loop; stop it when the block ends."""

    @asynccontextmanager
    async def run(*, webhook: bool = False, **overrides: Any) -> AsyncIterator[App]:
        values: dict[str, Any] = {
            "telegram_bot_token": telegram.token,
            "telegram_api_base_url": telegram.base_url,
            "vonage_application_id": VONAGE_APP_ID,
            "vonage_private_key_path": key_file,
            "vonage_api_host": vonage.host,
            "vonage_timeout_seconds": 2,
            "vonage_retry_wait_seconds": 0.01,
            "vonage_fallback_channels": "voice",
            "resend_cooldown_seconds": 0,
            **overrides,
        }
        async with open_app(make_settings(**values)) as app:
            task = asyncio.create_task(serve(app, webhook=webhook))
            ready = "setWebhook" if webhook else "getUpdates"
            # A call is recorded before it takes effect: until the bot's allowed_updates do,
            # Telegram (and the emulator) drops chat_member updates, e.g. a test's first join.
            await telegram.wait_for(
                lambda: (telegram.calls_to(ready) and telegram.allowed_updates) or task.done()
            )
            if task.done():
                task.result()  # startup failed: show why
            try:
                yield app
            finally:
                task.cancel()
                with suppress(asyncio.CancelledError):
                    await task

    return run
