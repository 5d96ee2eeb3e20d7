"""/metrics after a scripted verification: the real Telegram adapter (long polling) with its
HEALTH_PORT server, the Bot API and Vonage emulators, a real Redis and SQLite. Each funnel
counter the script moves moves by exactly one, and the others do not move."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from adapters.telegram import serve
from tests.conftest import VONAGE_APP_ID
from tests.e2e.test_health import free_port
from tests.e2e.test_telegram import E164, NUMBER, next_message
from tests.emulators.telegram import TelegramEmulator
from tests.emulators.vonage import VonageEmulator
from verifybot import ops
from verifybot.bootstrap import open_app

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

FUNNEL = (
    "verifybot_conversations_started_total",
    "verifybot_numbers_refused_total",
    "verifybot_codes_sent_total",
    "verifybot_codes_checked_total",
    "verifybot_members_verified_total",
    "verifybot_codes_expired_total",
    "verifybot_verifications_cancelled_total",
)


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def moved(before: Samples, after: Samples, names: tuple[str, ...]) -> dict[str, float]:
    """Every series of ``names`` that changed, as ``name{label=value,...}``: its change."""
    changes = {}
    for key, value in after.items():
        name, labels = key
        if name in names and value != before.get(key, 0.0):
            shown = ",".join(f"{k}={v}" for k, v in sorted(labels))
            changes[f"{name}{{{shown}}}"] = value - before.get(key, 0.0)
    return changes


async def test_a_scripted_verification_moves_each_funnel_counter_once(
    make_settings: Callable[..., Any],
    telegram: TelegramEmulator,
    vonage: VonageEmulator,
    key_file: Path,
) -> None:
    port = free_port()
    settings = make_settings(
        telegram_bot_token=telegram.token,
        telegram_api_base_url=telegram.base_url,
        vonage_application_id=VONAGE_APP_ID,
        vonage_private_key_path=key_file,
        vonage_api_host=vonage.host,
        listen_host="127.0.0.1",
        health_port=port,
    )
    ada = telegram.add_user("Ada", language_code="en")
    async with (
        open_app(settings) as app,
        ops.serving(app, own_port=False) as health,
        aiohttp.ClientSession() as session,
    ):
        task = asyncio.create_task(serve(app, health=health))

        async def scrape() -> Samples:
            async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
                assert response.status == 200
                return parse(await response.text())

        try:
            await telegram.wait_for(lambda: telegram.calls_to("getUpdates"))
            before = await scrape()
            telegram.send_text(ada, "/start")
            await next_message(telegram, ada, "phone number")
            seen = len(telegram.messages_in(ada))
            telegram.send_text(ada, "+44 20")  # too short to be a number
            await telegram.wait_for(lambda: len(telegram.messages_in(ada)) > seen)
            telegram.send_text(ada, NUMBER)
            await next_message(telegram, ada, "I've sent a 6-digit code")
            code = vonage.last_code(E164)
            wrong = "000000" if code != "000000" else "111111"
            seen = len(telegram.messages_in(ada))
            telegram.send_text(ada, wrong)
            await telegram.wait_for(lambda: len(telegram.messages_in(ada)) > seen)
            telegram.send_text(ada, code)
            await next_message(telegram, ada, "You're verified")
            after = await scrape()
        finally:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task

    assert moved(before, after, FUNNEL) == {
        "verifybot_conversations_started_total{platform=telegram}": 1,
        "verifybot_numbers_refused_total{platform=telegram,reason=invalid}": 1,
        "verifybot_codes_sent_total{channel=sms,country=GB,platform=telegram}": 1,
        "verifybot_codes_checked_total{platform=telegram,result=wrong}": 1,
        "verifybot_codes_checked_total{platform=telegram,result=accepted}": 1,
        "verifybot_members_verified_total{platform=telegram}": 1,
    }
    vonage_calls = moved(before, after, ("verifybot_vonage_request_seconds_count",))
    assert vonage_calls == {
        "verifybot_vonage_request_seconds_count{operation=start}": 1,
        "verifybot_vonage_request_seconds_count{operation=check}": 2,
    }
    calls = moved(before, after, ("verifybot_platform_calls_total",))
    replies = "verifybot_platform_calls_total{method=sendMessage,outcome=ok,platform=telegram}"
    assert calls[replies] >= 5
    round_trips = moved(before, after, ("verifybot_redis_seconds_count",))
    assert round_trips["verifybot_redis_seconds_count{operation=commit}"] >= 4
    assert "verifybot_database_seconds_count{operation=record_verified}" in moved(
        before, after, ("verifybot_database_seconds_count",)
    )
