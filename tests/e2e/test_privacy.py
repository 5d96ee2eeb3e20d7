"""No number and no code in anything verifybot writes, in every mode, at DEBUG.

Each mode runs as operators run it, ``verifybot ...`` in its own process with
``LOG_LEVEL=DEBUG``, and more: every logger is held at DEBUG (the quieted libraries too,
see ``tests.log_scan.LOUD_VERIFYBOT``), so the redactor alone must keep the secrets out.
Telegram (long polling and webhook) and Slack (HTTP and Socket Mode) run through the real
SDKs against the emulators, with the real vonage SDK against the Verify emulator; the console
uses the sandbox; the CLI reads a directory of verified members. Then all of each process's
stdout and stderr is scanned for every number used, in several forms (E.164, without '+',
national, loosely spaced), and every code Vonage or the sandbox issued.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs

import aiohttp
import pytest

from bot.directory import Directory
from bot.identity import MemberKey
from tests.conftest import VONAGE_APP_ID, unconfigured_environment
from tests.e2e.slack_harness import SECRET, TEAM, find_specs, until
from tests.e2e.test_console import CODE_LINE, Console
from tests.emulators.slack import SlackEmulator
from tests.emulators.slack_requests import SignedPoster, block_action, event_callback
from tests.emulators.telegram import TelegramEmulator
from tests.emulators.vonage import VonageEmulator
from tests.log_scan import LOUD_VERIFYBOT, leaks

REPO = Path(__file__).resolve().parents[2]
# Not the catalogue's example number (+44 7400 123456), which prompts show and logs mask.
ADA, BOB = "+447400654321", "+14155552671"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def base_env(tmp_path: Path, redis_url: str, key_prefix: str) -> dict[str, str]:
    return unconfigured_environment(
        PYTHONPATH=str(REPO),
        REDIS_URL=redis_url,
        REDIS_PREFIX=key_prefix,
        DATABASE_URL=f"sqlite:///{tmp_path / 'verifybot.db'}",
        LOG_LEVEL="DEBUG",
        LOG_FORMAT="json",
    )


@pytest.fixture
def vonage_env(
    base_env: dict[str, str], vonage: VonageEmulator, key_file: Path
) -> dict[str, str]:
    # unconfigured_environment() copied os.environ, where the vonage fixture put the CA bundle.
    return {
        **base_env,
        **unconfigured_environment(),
        "VONAGE_APPLICATION_ID": VONAGE_APP_ID,
        "VONAGE_PRIVATE_KEY_PATH": str(key_file),
        "VONAGE_API_HOST": vonage.host,
        "VONAGE_TIMEOUT_SECONDS": "5",
        "VONAGE_FALLBACK_CHANNELS": "voice",
        "RESEND_COOLDOWN_SECONDS": "0",
    }


def loud_verifybot(*args: str) -> list[str]:
    return [sys.executable, "-c", LOUD_VERIFYBOT, *args]


class Output:
    """A process's stdout and stderr, in files (a pipe left unread would block it)."""

    def __init__(self, directory: Path, name: str) -> None:
        self.paths = (directory / f"{name}.out", directory / f"{name}.err")

    def lines(self) -> list[str]:
        return [line for path in self.paths for line in path.read_text("utf-8").splitlines()]


@asynccontextmanager
async def verifybot(
    args: Sequence[str], env: dict[str, str], cwd: Path
) -> AsyncIterator[Output]:
    """``verifybot args`` running in the background; interrupted (Ctrl-C) when the block ends."""
    output = Output(cwd, "-".join(args))
    with output.paths[0].open("w") as out, output.paths[1].open("w") as err:
        process = await asyncio.create_subprocess_exec(
            *loud_verifybot(*args), env=env, cwd=cwd, stdout=out, stderr=err
        )
        try:
            yield output
        finally:
            process.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(process.wait(), 30)
            except TimeoutError:
                process.kill()
                await process.wait()
    assert process.returncode == 0, output.lines()[-20:]


def assert_private(output: Output, numbers: Sequence[str], codes: set[str]) -> list[str]:
    lines = output.lines()
    assert len(lines) > 20, lines  # DEBUG really was on
    assert codes, "the journey issued no code"
    assert leaks(lines, numbers, codes) == []
    return lines


# --- Telegram ---------------------------------------------------------------------------------


async def reply(telegram: TelegramEmulator, chat: int, containing: str) -> None:
    await telegram.wait_for(
        lambda: any(containing in m.text for m in telegram.messages_in(chat)), timeout=30
    )


async def telegram_journeys(telegram: TelegramEmulator, vonage: VonageEmulator) -> None:
    ada = telegram.add_user("Ada", language_code="en")
    bob = telegram.add_user("Bob", language_code="en")
    telegram.send_text(ada, "/start")
    await reply(telegram, ada, "phone number")
    telegram.send_text(ada, "+44 7400 654321")
    await reply(telegram, ada, "I've sent a 6-digit code")
    right = vonage.last_code(ADA[1:])
    telegram.send_text(ada, "000000" if right != "000000" else "111111")
    await reply(telegram, ada, "tries left")
    telegram.send_text(ada, right)
    await reply(telegram, ada, "You're verified")

    telegram.send_text(bob, "/verify")
    await reply(telegram, bob, "phone number")
    telegram.share_contact(bob, BOB[1:], contact_user_id=bob)
    await reply(telegram, bob, "I've sent a 6-digit code")
    code = vonage.last_code(BOB[1:])
    telegram.send_text(bob, f"{code[:3]} {code[3:]}")
    await reply(telegram, bob, "You're verified")


@pytest.mark.parametrize("mode", ["polling", "webhook"])
async def test_telegram_at_debug_logs_no_number_and_no_code(
    mode: str, vonage_env: dict[str, str], vonage: VonageEmulator, tmp_path: Path
) -> None:
    with TelegramEmulator() as telegram:
        env = {
            **vonage_env,
            "TELEGRAM_BOT_TOKEN": telegram.token,
            "TELEGRAM_API_BASE_URL": telegram.base_url,
            "LOG_FORMAT": "console" if mode == "polling" else "json",
        }
        args = ["run", "telegram"]
        if mode == "webhook":
            port = free_port()
            args.append("--webhook")
            env.update(
                TELEGRAM_WEBHOOK_URL=f"http://127.0.0.1:{port}/telegram",
                TELEGRAM_WEBHOOK_SECRET="s3cret-Token_1",
                LISTEN_HOST="127.0.0.1",
                PORT=str(port),
            )
        async with verifybot(args, env, tmp_path) as output:
            ready = "setWebhook" if mode == "webhook" else "getUpdates"
            await telegram.wait_for(lambda: telegram.calls_to(ready), timeout=60)
            await telegram_journeys(telegram, vonage)
        assert telegram.internal_errors == []
    lines = assert_private(output, [ADA, BOB], {d.code for d in vonage.deliveries})
    assert any("+44•••••4321" in line for line in lines)  # masked, as operators see it
    # PTB's own loggers were at DEBUG and printed the updates, masked. (In polling mode the
    # bot hands updates to PTB's processor itself: there is no "Processing update" line.)
    printed = (
        ["Webhook received data"]
        if mode == "webhook"
        else ["`getUpdates` finished with return value"]
    )
    for words in printed:
        assert any(words in line for line in lines), words


# --- Slack ------------------------------------------------------------------------------------

ALICE = "U0ALICE001"


class SlackMember:
    """Alice in her DM with the bot, over HTTP (signed requests) or Socket Mode (envelopes)."""

    def __init__(self, emu: SlackEmulator, poster: SignedPoster | None) -> None:
        self.emu = emu
        self.poster = poster

    async def deliver(self, kind: str, body: str) -> None:
        if self.poster is not None:
            status, _ = await self.poster.post(body, json_body=kind == "events_api")
            assert status == 200
            return
        payload = json.loads(body if kind == "events_api" else parse_qs(body)["payload"][0])
        await self.emu.wait_ack(await self.emu.send_envelope(kind, payload), within=30)

    async def say(self, text: str) -> None:
        event = {
            "type": "message", "channel": "D0ALICEDM1", "user": ALICE, "text": text,
            "ts": f"{time.time():.6f}", "channel_type": "im",
        }  # fmt: skip
        await self.deliver("events_api", event_callback(TEAM, event))

    async def hears(self, text: str) -> None:
        await until(lambda: any(text in m["text"] for m in self.emu.dm_messages(ALICE)), 30)

    async def journey(self, vonage: VonageEmulator) -> None:
        trigger = self.emu.new_trigger()
        press = block_action(TEAM, ALICE, "verifybot.start", trigger, channel="D0ALICEDM1")
        await self.deliver("interactive", press)
        await self.hears("send me your mobile phone number")
        await self.say("hello")
        await self.hears("look like a phone number")
        await self.say("+44 7400 654321")
        await self.hears("I've sent a 6-digit code")
        await self.say(vonage.last_code(ADA[1:]))
        await self.hears("You're verified")


async def listening(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    return True


@pytest.mark.parametrize("mode", ["http", "socket"])
async def test_slack_at_debug_logs_no_number_and_no_code(
    mode: str, vonage_env: dict[str, str], vonage: VonageEmulator, tmp_path: Path
) -> None:
    async with SlackEmulator(find_specs() / "slack-web-api.openapi.json") as emu:
        emu.add_user(ALICE, name="alice", locale="en-US")
        emu.dms[ALICE] = "D0ALICEDM1"
        port = free_port()
        env = {
            **vonage_env,
            "SLACK_BOT_TOKEN": emu.bot_token,
            "SLACK_SIGNING_SECRET": SECRET,
            "SLACK_APP_TOKEN": emu.app_token,
            "SLACK_API_BASE_URL": emu.url,
            "LISTEN_HOST": "127.0.0.1",
            "PORT": str(port),
        }
        args = ["run", "slack", *(["--socket"] if mode == "socket" else [])]
        async with verifybot(args, env, tmp_path) as output:
            if mode == "socket":
                await emu.wait_connected(within=60)
                await SlackMember(emu, None).journey(vonage)
            else:
                deadline = time.monotonic() + 60
                while not await listening(port):
                    assert time.monotonic() < deadline, output.lines()[-20:]
                    await asyncio.sleep(0.1)
                url = f"http://127.0.0.1:{port}/slack/events"
                async with aiohttp.ClientSession() as session:
                    await SlackMember(emu, SignedPoster(session, url, SECRET)).journey(vonage)
        assert emu.internal_errors == []
    lines = assert_private(output, [ADA], {d.code for d in vonage.deliveries})
    assert any('"logger": "slack_' in line for line in lines)  # the SDK's loggers did write


# --- The console and the CLI ------------------------------------------------------------------


def test_the_console_at_debug_shows_the_code_only_as_the_sandbox_sms(
    base_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**base_env, "RESEND_COOLDOWN_SECONDS": "0"}
    chat = Console(env, tmp_path, command=["-c", LOUD_VERIFYBOT])
    try:
        chat.expect("send me your mobile phone number")
        chat.send("+44 7700 900123")
        first = chat.code()
        chat.send("/resend")
        chat.expect("again")
        chat.send("999999" if first != "999999" else "888888")
        chat.expect("tries left")
        chat.send(chat.code())
        chat.expect("You're verified")
    finally:
        assert chat.close() == 0
    # The sandbox's "SMS" lines are the one place a code is meant to be shown.
    sms = [line for line in chat.stderr_lines if CODE_LINE.search(line)]
    codes = {match.group(1) for line in sms if (match := CODE_LINE.search(line))}
    lines = [line for line in chat.stdout_lines + chat.stderr_lines if line not in sms]
    assert len(lines) > 20
    assert leaks(lines, ["+447700900123"], codes) == []


def test_the_cli_at_debug_shows_no_full_number(base_env: dict[str, str], tmp_path: Path) -> None:
    directory = Directory(base_env["DATABASE_URL"])
    directory.upgrade()
    now = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
    for key, phone, country in ((MemberKey("telegram", "bot1", "1001"), ADA, "GB"),
                                (MemberKey("slack", "T1", "U2"), BOB, "US")):  # fmt: skip
        directory.record_verified(
            key, phone_e164=phone, country=country, display_name="Member", now=now
        )
    directory.close()
    commands = [
        ["users", "list"],
        ["users", "list", "--format", "json"],
        ["users", "show", "telegram", "1001"],
        ["users", "export"],
    ]
    for command in commands:
        done = subprocess.run(
            loud_verifybot(*command), env=base_env, cwd=tmp_path,
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        lines = (done.stdout + done.stderr).splitlines()
        assert "+44•••••4321" in done.stdout, command
        assert any('"logger": "sqlalchemy' in line for line in lines), command  # DEBUG was on
        assert leaks(lines, [ADA, BOB], set()) == [], command

