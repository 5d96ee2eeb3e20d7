"""A raid on a gated Telegram group: how long each newcomer may post before being muted.

What it measures
    ``adapters.telegram.serve`` exactly as ``verifybot run telegram`` runs it (PTB 22 long
    polling, the rate limiter, the update ordering, the gate), in ``restrict`` mode, against
    the Bot API emulator from ``tests/emulators`` with Telegram's per-group message budget
    (20 messages a minute) on. 500 accounts join one supergroup evenly over 30 s (17 joins/s;
    each join is a ``chat_member`` update and a "joined" service message), with the emulator
    answering every Bot API call after 0, 50 and 100 ms, as a real server's round trip.

    Reported per delay: newcomers restricted, join → restriction latency (p50, p95, max; from
    the moment the join was made at the emulator to the moment the restriction took effect
    there), "joined" messages deleted, welcomes posted, and 429 answers.

    Then the timeouts: 80 joins in 3 s at 100 ms with ``TELEGRAM_VERIFY_TIMEOUT=5``; reported
    is how late each member was removed after their deadline (p50, max).

How
    Redis: ``REDIS_URL`` if set, else a private ``EmbeddedRedis``. Keys use a fresh
    ``bench:<hex>:`` prefix, removed at the end (SCAN + DEL, never FLUSHDB). SQLite in a
    temporary directory, the sandbox verifier, logs at WARNING to /dev/null. Takes about
    2 minutes (three 30 s raids).

        .venv/bin/python bench/telegram_raid.py [--joins 500] [--seconds 30] [--delays 0,50,100]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from redis import Redis as SyncRedis

import adapters.telegram as telegram_adapter
from bot.logs import configure_logging
from bot.settings import Settings
from tests.e2e.raid import raid, restricted_at, restriction_latencies
from tests.emulators.telegram import TelegramEmulator
from verifybot.bootstrap import open_app
from verifybot.embedded_redis import EmbeddedRedis

#: How long to wait, after the raid's last join, for the stragglers to be muted.
DRAIN = 30.0


@asynccontextmanager
async def running_bot(
    emu: TelegramEmulator, redis_url: str, **overrides: Any
) -> AsyncIterator[None]:
    prefix = f"bench:{uuid.uuid4().hex[:12]}:"
    try:
        with tempfile.TemporaryDirectory() as tmp:
            settings = Settings(
                _env_file=None,
                telegram_bot_token=emu.token,
                telegram_api_base_url=emu.base_url,
                redis_url=redis_url,
                redis_prefix=prefix,
                database_url=f"sqlite:///{tmp}/bench.db",
                data_dir=Path(tmp) / "data",
                telegram_gate_mode="restrict",
                **overrides,
            )
            async with open_app(settings) as app:
                task = asyncio.create_task(telegram_adapter.serve(app))
                while "chat_member" not in emu.allowed_updates:  # joins before are dropped
                    if task.done():
                        task.result()  # startup failed: say why
                    await asyncio.sleep(0.01)
                try:
                    yield
                finally:
                    task.cancel()
                    with suppress(asyncio.CancelledError):
                        await task
    finally:  # this run's keys, and only those, even when it fails
        with SyncRedis.from_url(redis_url) as client:
            keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
            if keys:
                client.delete(*keys)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


async def raid_once(delay_ms: int, joins: int, seconds: float, redis_url: str) -> str:
    with TelegramEmulator() as emu:
        emu.answer_delay = delay_ms / 1000
        group = emu.add_group("Club")
        users = [emu.add_user(f"Raider {n}") for n in range(joins)]
        async with running_bot(emu, redis_url):
            joined = await raid(emu, group, users, seconds=seconds)
            ended = time.monotonic()
            while time.monotonic() - ended < DRAIN:
                if len(restricted_at(emu, group)) == joins:
                    break
                await asyncio.sleep(0.05)
            latencies = list(restriction_latencies(emu, group, joined).values())
            deleted = len(emu.calls_to("deleteMessage"))
        assert not emu.internal_errors, emu.internal_errors
        welcomes = len(emu.messages_in(group))
        limited = sum(1 for call in emu.calls if call.status == 429)
    if not latencies:
        return f"{delay_ms:>6} ms {0:>5}/{joins}"
    return (
        f"{delay_ms:>6} ms {len(latencies):>5}/{joins} {statistics.median(latencies):>8.2f} s "
        f"{percentile(latencies, 0.95):>8.2f} s {max(latencies):>8.2f} s {deleted:>8} "
        f"{welcomes:>8} {limited:>5}"
    )


async def removals(redis_url: str, joins: int = 80, deadline: int = 5) -> str:
    with TelegramEmulator() as emu:
        emu.answer_delay = 0.1
        group = emu.add_group("Club")
        users = [emu.add_user(f"Raider {n}") for n in range(joins)]
        async with running_bot(emu, redis_url, telegram_verify_timeout=deadline):
            joined = await raid(emu, group, users, seconds=3)
            ended = time.monotonic()
            while time.monotonic() - ended < deadline + 60:
                if sum(1 for u in users if emu.member_status(group, u) == "left") == joins:
                    break
                await asyncio.sleep(0.05)
        removed = {
            c.params["user_id"]: c.applied_at
            for c in emu.calls_to("unbanChatMember")
            if c.applied_at
        }
    late = [removed[u] - (joined[u] + deadline) for u in users if u in removed]
    if not late:
        return f"timeouts: none of {joins} removed"
    sweep = min(15.0, max(0.25, deadline / 4))
    return (
        f"timeouts: {len(late)}/{joins} removed; deadline → removal p50 "
        f"{statistics.median(late):.2f} s, max {max(late):.2f} s (100 ms per call, "
        f"TELEGRAM_VERIFY_TIMEOUT={deadline}, so a sweep every {sweep:.2f} s)"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--joins", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--delays", default="0,50,100", help="answer delays in ms")
    parser.add_argument("--no-timeouts", action="store_true", help="skip the timeout removals")
    args = parser.parse_args()
    configure_logging("WARNING", "json", stream=io.StringIO())
    redis_url = os.environ.get("REDIS_URL")
    embedded = None
    if not redis_url:
        embedded = EmbeddedRedis(Path(tempfile.mkdtemp()), persist=False)
        embedded.start()
        redis_url = embedded.url
    try:
        print(
            f"{args.joins} joins over {args.seconds:.0f} s "
            f"({args.joins / args.seconds:.1f}/s), one group, restrict mode"
        )
        print(
            f"{'delay':>9} {'muted':>11} {'p50':>10} {'p95':>10} {'max':>10} {'deleted':>8} "
            f"{'welcomes':>8} {'429s':>5}",
            flush=True,
        )
        for delay in (int(d) for d in args.delays.split(",") if d):
            print(await raid_once(delay, args.joins, args.seconds, redis_url), flush=True)
        if not args.no_timeouts:
            print(await removals(redis_url), flush=True)
    finally:
        if embedded is not None:
            embedded.stop()


if __name__ == "__main__":
    asyncio.run(main())
