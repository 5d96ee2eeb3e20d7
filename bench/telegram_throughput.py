"""Verifications per second through the whole Telegram stack, and what each one costs.

What it measures
    ``adapters.telegram.serve`` exactly as ``verifybot run telegram`` runs it (PTB 22 long
    polling, the rate limiter, the per-member ordering, the engine), against the Bot API
    emulator from ``tests/emulators`` on 127.0.0.1, with the sandbox verifier, SQLite and a
    real Redis. Each member sends ``/start``, a distinct UK mobile number and the code; a
    verification counts when "You're verified" has been sent. Members run one after another
    (1 in flight) and then 20 and 100 at once.

    Reported: verifications/s, updates/s, the latency from an update being queued at the
    emulator to the bot's reply (p50/p99/max), CPU per update, and Bot API calls per
    verification; "loop CPU" is the main thread alone (the bot's event loop: PTB, the engine,
    redis-py, and this script's light driver), the bot's own share. Three warm-up
    verifications run first and are not counted. **The emulator runs in this process's
    threads**, so CPU per update includes its work (parsing, validating against the spec,
    building results): it is an upper bound on the bot's own cost.

    The rate limiter paces sends to 30/s overall, as Telegram asks; that is the ceiling the
    concurrent runs meet (each verification sends at least 3 messages), so they show the
    limiter working rather than the bot's CPU limit. ``--no-limiter`` takes it out to show
    the CPU bound.

How
    Redis: ``REDIS_URL`` if set, else a private ``EmbeddedRedis``. Keys use a fresh
    ``bench:<hex>:`` prefix, removed at the end (SCAN + DEL, never FLUSHDB). Logs at WARNING
    to /dev/null. Rate limits of the core are off. Runs in well under a minute.

        .venv/bin/python bench/telegram_throughput.py [--no-limiter]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import re
import resource
import statistics
import sys
import tempfile
import time
import uuid
from contextlib import suppress
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from redis import Redis as SyncRedis
from telegram.ext import BaseRateLimiter

import adapters.telegram as telegram_adapter
from bot.logs import configure_logging
from bot.settings import Settings
from tests.emulators.telegram import TelegramEmulator
from verifybot.bootstrap import open_app
from verifybot.embedded_redis import EmbeddedRedis

CODE = re.compile(r"code for (\S+): (\d+)$")


class Codes:
    """The sandbox's "SMS": the last code per masked number's last four digits."""

    def __init__(self) -> None:
        self.by_tail: dict[str, str] = {}

    def __call__(self, line: str) -> None:
        match = CODE.search(line)
        if match:
            self.by_tail[match.group(1)[-4:]] = match.group(2)


class Replies:
    """Wakes waiting members when the bot has made new calls: one cheap poll of the
    emulator's call count for everyone, instead of every member polling its chat."""

    def __init__(self, emu: TelegramEmulator) -> None:
        self.emu = emu
        self.changed = asyncio.Condition()

    async def watch(self) -> None:
        seen = 0
        while True:
            count = len(self.emu.calls)
            if count != seen:
                seen = count
                async with self.changed:
                    self.changed.notify_all()
            await asyncio.sleep(0.001)

    async def wait(self, chat: int, after: int, text: str) -> float:
        async with self.changed:
            while True:
                for message in self.emu.messages_in(chat)[after:]:
                    if text in message.text:
                        return message.sent_at
                await self.changed.wait()


async def verify(
    emu: TelegramEmulator, replies: Replies, codes: Codes, user: int, n: int, lat: list[float]
) -> None:
    number = f"+44 7400 {100000 + n:06d}"
    tail = number[-4:]
    steps = [("/start", "phone number"), (number, "I've sent"), (None, "You're verified")]
    for text, expect in steps:
        seen = len(emu.messages_in(user))
        if text is None:
            text = codes.by_tail.pop(tail)  # the sandbox "texts" before the bot replies
        sent = time.time()
        emu.send_text(user, text)
        replied = await replies.wait(user, seen, expect)
        lat.append((replied - sent) * 1000)


async def run(concurrency: int, members: int, limiter: bool, redis_url: str) -> dict[str, Any]:
    prefix = f"bench:{uuid.uuid4().hex[:12]}:"
    try:
        return await _run(concurrency, members, limiter, redis_url, prefix)
    finally:  # this run's keys, and only those, even when it fails
        with SyncRedis.from_url(redis_url) as client:
            keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
            if keys:
                client.delete(*keys)


async def _run(
    concurrency: int, members: int, limiter: bool, redis_url: str, prefix: str
) -> dict[str, Any]:
    codes = Codes()
    no_limits: dict[str, Any] = {
        name: "off" for name in Settings.model_fields if name.startswith("limit_")
    }
    with tempfile.TemporaryDirectory() as tmp, TelegramEmulator() as emu:
        settings = Settings(
            _env_file=None,
            telegram_bot_token=emu.token,
            telegram_api_base_url=emu.base_url,
            redis_url=redis_url,
            redis_prefix=prefix,
            database_url=f"sqlite:///{tmp}/bench.db",
            data_dir=Path(tmp) / "data",
            telegram_gate_mode="off",
            # Every member in one prefix, codes sent before any is entered: the fraud breaker
            # would pause them, as it pauses a pumping attack.
            fraud_breaker=False,
            **no_limits,
        )
        users = [emu.add_user(f"M{i}") for i in range(members)]
        warmup = [emu.add_user(f"W{i}") for i in range(3)]
        if not limiter:
            telegram_adapter.PaceMessages = _NoLimiter  # type: ignore[misc,assignment]
        async with open_app(settings, show_code=codes) as app:
            task = asyncio.create_task(telegram_adapter.serve(app))
            while not emu.calls_to("getUpdates"):
                if task.done():
                    task.result()  # startup failed: say why
                await asyncio.sleep(0.01)
            replies = Replies(emu)
            watcher = asyncio.create_task(replies.watch())
            for n, user in enumerate(warmup):  # first-use costs (imports, caches) not counted
                await verify(emu, replies, codes, user, 8000 + n, [])
            calls_before = len(emu.calls)
            latencies: list[float] = []
            queue = list(enumerate(users))

            async def worker() -> None:
                while queue:
                    n, user = queue.pop()
                    await verify(emu, replies, codes, user, n, latencies)

            cpu, main = time.process_time(), time.thread_time()
            wall = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            wall = time.perf_counter() - wall
            cpu, main = time.process_time() - cpu, time.thread_time() - main
            watcher.cancel()
            api_calls = len(emu.calls) - calls_before
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
        assert not emu.internal_errors, emu.internal_errors
    updates = members * 3
    latencies.sort()
    return {
        "conc": concurrency,
        "verif/s": members / wall,
        "updates/s": updates / wall,
        "p50": statistics.median(latencies),
        "p99": latencies[int(len(latencies) * 0.99) - 1],
        "max": latencies[-1],
        "cpu/update": cpu / updates * 1000,
        "loop/update": main / updates * 1000,
        "api/verif": api_calls / members,
    }


class _NoLimiter(BaseRateLimiter[int]):
    """Stands in for AIORateLimiter in --no-limiter runs: every call goes straight out."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    async def initialize(self) -> None:
        pass

    async def shutdown(self) -> None:
        pass

    async def process_request(
        self, callback: Any, args: Any, kwargs: Any, endpoint: str, data: Any, rate_limit_args: Any
    ) -> Any:
        return await callback(*args, **kwargs)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-limiter", action="store_true", help="take AIORateLimiter out")
    args = parser.parse_args()
    configure_logging("WARNING", "json", stream=io.StringIO())
    import os

    redis_url = os.environ.get("REDIS_URL")
    embedded = None
    if not redis_url:
        embedded = EmbeddedRedis(Path(tempfile.mkdtemp()), persist=False)
        embedded.start()
        redis_url = embedded.url
    try:
        print(
            f"{'conc.':>5} {'verif/s':>8} {'updates/s':>9} {'p50 ms':>7} {'p99 ms':>7} "
            f"{'max ms':>7} {'CPU/update':>10} {'loop CPU/upd':>12} {'API calls/verif':>15}",
            flush=True,
        )
        for concurrency, members in ((1, 30), (20, 100), (100, 200)):
            r = await run(concurrency, members, not args.no_limiter, redis_url)
            print(
                f"{r['conc']:>5} {r['verif/s']:>8.1f} {r['updates/s']:>9.1f} {r['p50']:>7.1f} "
                f"{r['p99']:>7.1f} {r['max']:>7.0f} {r['cpu/update']:>7.2f} ms "
                f"{r['loop/update']:>9.2f} ms "
                f"{r['api/verif']:>15.1f}",
                flush=True,
            )
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"peak RSS {rss:.0f} MiB")
    finally:
        if embedded is not None:
            embedded.stop()


if __name__ == "__main__":
    asyncio.run(main())
