"""SIGTERM in the middle of fifty members' flows, then a restart: nothing is lost and nothing
is handled twice. And in webhook mode, the updates under way when the signal comes finish.

A real ``verifybot run telegram`` process (long polling) against the Bot API and Vonage
emulators. Sending a message takes the emulator two seconds, so when the signal comes every
member's number is being answered and the ``/status`` they typed right after it is waiting
for its turn (a member's updates are handled in order). The numbers under way finish within
SHUTDOWN_GRACE_SECONDS; the ``/status`` updates were never started, so they stay in the bot's
inbox in Redis and the next process handles them first (adapters/telegram/polling.py;
tests/e2e/test_telegram_inbox.py has the inbox's own cases).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

from adapters.telegram import serve
from tests.conftest import VONAGE_APP_ID, unconfigured_environment
from tests.e2e.test_telegram import free_port
from tests.e2e.test_two_workers import KEYBOARD_CLOSED, phone_of, starts_to
from tests.emulators.telegram import TelegramEmulator
from tests.emulators.vonage import VonageEmulator
from verifybot.bootstrap import open_app

MEMBERS = 50
WAIT = 60.0  # seconds for a whole wave; generous for a loaded CI runner, never a speed target

ASKED = "send me your mobile phone number"
SENT = "I've sent a 6-digit code"
STATUS = "I'm waiting for the 6-digit code"
VERIFIED = "You're verified"


class Bot:
    """One ``verifybot run telegram`` process; its output goes to a file."""

    def __init__(self, log: Path, process: asyncio.subprocess.Process) -> None:
        self.log = log
        self.process = process

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    async def stop(self) -> int:
        """SIGTERM, and the exit status once it has stopped."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        with suppress(TimeoutError):
            await asyncio.wait_for(self.process.wait(), timeout=WAIT)
        if self.process.returncode is None:
            self.process.kill()
        return await self.process.wait()


@asynccontextmanager
async def bot_process(env: dict[str, str], log: Path, cwd: Path) -> AsyncIterator[Bot]:
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "verifybot", "run", "telegram",
            env=env, cwd=cwd, stdout=out, stderr=out,
        )  # fmt: skip
    bot = Bot(log, process)
    try:
        yield bot
    finally:
        await bot.stop()


def kind(reply: str) -> str:
    return next((k for k in (ASKED, SENT, STATUS, VERIFIED) if k in reply), reply)


def replies(telegram: TelegramEmulator, member: int) -> list[str]:
    return [kind(m.text) for m in telegram.messages_in(member) if m.text != KEYBOARD_CLOSED]


def json_events(output: str, event: str) -> list[str]:
    return [line for line in output.splitlines() if f'"event": "{event}"' in line]


async def test_sigterm_mid_flow_then_a_restart_answers_every_member_once(
    telegram: TelegramEmulator,
    vonage: VonageEmulator,
    key_file: Path,
    redis_url: str,
    key_prefix: str,
    tmp_path: Path,
) -> None:
    env = unconfigured_environment(
        TELEGRAM_BOT_TOKEN=telegram.token,
        TELEGRAM_API_BASE_URL=telegram.base_url,
        REDIS_URL=redis_url,
        REDIS_PREFIX=key_prefix,
        DATABASE_URL=f"sqlite:///{tmp_path / 'verifybot.db'}",
        DATA_DIR=str(tmp_path / "data"),
        VERIFIER="vonage",
        VONAGE_APPLICATION_ID=VONAGE_APP_ID,
        VONAGE_PRIVATE_KEY_PATH=str(key_file),
        VONAGE_API_HOST=vonage.host,
        VONAGE_TIMEOUT_SECONDS="5",
        # Fifty numbers from one block: neither the per-block budget nor the fraud breaker
        # (fifty codes to one block before any is entered) is what this test is about.
        LIMIT_SMS_PER_PREFIX="100/1d",
        FRAUD_MIN_SENDS="100",
        SHUTDOWN_GRACE_SECONDS="30",
        LOG_FORMAT="json",
    )
    members = [telegram.add_user(f"Member {index}") for index in range(MEMBERS)]

    def every_member_has(count: int) -> bool:
        return all(len(replies(telegram, member)) >= count for member in members)

    async with bot_process(env, tmp_path / "first.log", tmp_path) as first:
        await telegram.wait_for(
            lambda: telegram.calls_to("getUpdates") or first.process.returncode is not None,
            timeout=WAIT,
        )
        for member in members:
            telegram.send_text(member, "/start")
        await telegram.wait_for(lambda: every_member_has(1), timeout=WAIT)

        telegram.answer_delays["sendMessage"] = 2.0
        for index, member in enumerate(members):
            telegram.send_text(member, phone_of(index)[0])
            telegram.send_text(member, "/status")
        await telegram.wait_for(
            lambda: all(starts_to(vonage, phone_of(i)[1]) for i in range(MEMBERS)), timeout=WAIT
        )
        assert await first.stop() == 0, first.output()[-3000:]
    telegram.answer_delays.clear()

    # The premise: the stop found /status updates waiting, and let the numbers finish.
    (drained,) = json_events(first.output(), "shutdown_drained")
    assert '"cancelled": 0' in drained and '"dropped_waiting": 0' not in drained, drained
    assert not every_member_has(3)

    async with bot_process(env, tmp_path / "second.log", tmp_path) as second:
        await telegram.wait_for(lambda: every_member_has(3), timeout=WAIT)
        for index, member in enumerate(members):
            telegram.send_text(member, vonage.last_code(phone_of(index)[1]))
        await telegram.wait_for(lambda: every_member_has(4), timeout=WAIT)
        # What the first process cut short, and only that, came back from the inbox.
        (replayed,) = json_events(second.output(), "telegram_inbox_replayed")
        assert json.loads(replayed)["updates"] == json.loads(drained)["dropped_waiting"] > 0
        assert await second.stop() == 0, second.output()[-3000:]

    for index, member in enumerate(members):
        assert Counter(replies(telegram, member)) == {ASKED: 1, SENT: 1, STATUS: 1, VERIFIED: 1}, (
            index,
            replies(telegram, member),
        )
        assert starts_to(vonage, phone_of(index)[1]) == 1, index
        assert len(vonage.codes_sent_to(phone_of(index)[1])) == 1, index
    for bot in (first, second):
        assert "Traceback" not in bot.output(), bot.output()[-5000:]
        assert '"level": "error"' not in bot.output(), bot.output()[-5000:]


async def test_sigterm_in_webhook_mode_lets_the_updates_under_way_finish_then_stops(
    make_settings: Callable[..., Any], telegram: TelegramEmulator
) -> None:
    """Telegram was told 200 for each update as it was queued, so the bot must finish them."""
    members = [telegram.add_user(f"Member {index}") for index in range(10)]
    port = free_port()
    settings = make_settings(
        telegram_bot_token=telegram.token,
        telegram_api_base_url=telegram.base_url,
        telegram_webhook_url=f"http://127.0.0.1:{port}/telegram",
        telegram_webhook_secret="s3cret-Token_1",
        listen_host="127.0.0.1",
        port=port,
        shutdown_grace_seconds=30,
    )
    async with open_app(settings) as app:
        serving = asyncio.create_task(serve(app, webhook=True))
        # Until serve() listens for SIGTERM itself (asyncio's handler replaces the default).
        await telegram.wait_for(
            lambda: signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL or serving.done()
        )
        assert not serving.done()
        telegram.answer_delays["sendMessage"] = 3.0
        for member in members:
            telegram.send_text(member, "/start")
        await telegram.wait_for(lambda: len(telegram.webhook_deliveries) == len(members))
        assert not any(telegram.messages_in(member) for member in members)  # all under way

        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(serving, timeout=WAIT)  # it stops by itself

    for member in members:
        assert replies(telegram, member) == [ASKED], member
    assert {status for _, status in telegram.webhook_deliveries} == {200}
