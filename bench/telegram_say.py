"""CPU of one ``TelegramClient.say`` (a conversation's reply), the Bot API emulator in another
process so that only the bot's side is counted.

    .venv/bin/python bench/telegram_say.py [--calls 2000]

Prints the CPU per call (``time.process_time``, median of 5 rounds, one call at a time, half
of them with an inline keyboard) and the Python function calls per ``say`` (deterministic,
from ``cProfile``). The pace is lifted (``TELEGRAM_SEND_RATE=0``) and the chats are private,
as in ``telegram_process.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from telegram import InlineKeyboardButton, InlineKeyboardMarkup
from telegram.ext import ExtBot

from adapters.telegram.client import TelegramClient
from adapters.telegram.http import AiohttpRequest
from adapters.telegram.updates import PaceMessages
from bot.texts import Catalogue

CHATS = 50
TEXT = "I've sent a code to +44 7700 900123. Type it here; it expires in 10 minutes."
#: The emulator's process: prints where it listens and the users' ids, then waits for stdin.
EMULATOR = f"""
import json, sys
from tests.emulators.telegram import TelegramEmulator
emu = TelegramEmulator()
emu.start()
users = [emu.add_user(f"U{{i}}") for i in range({CHATS})]
for user in users:
    emu.send_text(user, "/start")
print(json.dumps({{"token": emu.token, "base_url": emu.base_url, "users": users}}), flush=True)
sys.stdin.read()
"""


async def measure(where: dict[str, Any], calls: int) -> None:
    users: list[int] = where["users"]
    bot = ExtBot(
        where["token"],
        base_url=where["base_url"],
        request=AiohttpRequest(),
        rate_limiter=PaceMessages.at(0, max_retries=2),
    )
    keyboard = InlineKeyboardMarkup(
        [
            [InlineKeyboardButton("Resend", callback_data="vb:resend")],
            [InlineKeyboardButton("Change number", callback_data="vb:change_number")],
        ]
    )
    async with bot:
        client = TelegramClient(bot, Catalogue.load())

        async def say(n: int) -> None:
            sent = await client.say(users[n % CHATS], TEXT, keyboard if n % 2 else None)
            assert sent, "refused: this would measure an error path"

        for n in range(CHATS):
            await say(n)
        profile = cProfile.Profile()
        profile.enable()
        for n in range(500):
            await say(n)
        profile.disable()
        per_call = pstats.Stats(profile).total_calls / 500  # type: ignore[attr-defined]
        rounds = []
        for _ in range(5):
            started = time.process_time()
            for n in range(calls):
                await say(n)
            rounds.append((time.process_time() - started) / calls * 1e6)
    print(f"say: {statistics.median(rounds):.0f} µs of CPU a call (rounds: ", end="")
    print(", ".join(f"{r:.0f}" for r in rounds) + f"); {per_call:.0f} Python calls a call")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    calls = parser.parse_args().calls
    root = Path(__file__).resolve().parents[1]
    emulator = subprocess.Popen(  # noqa: S603 - this interpreter, our own script
        [sys.executable, "-c", EMULATOR], stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=root
    )
    assert emulator.stdin is not None
    assert emulator.stdout is not None
    try:
        asyncio.run(measure(json.loads(emulator.stdout.readline()), calls))
    finally:
        emulator.stdin.close()
        emulator.wait()


if __name__ == "__main__":
    main()
